// Text formats of Proxmox's `vma` output: ctime(3) dates, C's `%.3g`, the
// `vma list` block and the verify/extract summary lines. No Deno.* here.

const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

function pad2(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

/**
 * Formats `date` like C's ctime(3) in the local time zone, without the trailing
 * newline: `Tue Sep  5 15:29:21 2023` (the day of the month is padded with a space).
 */
export function formatCtime(date: Date): string {
  const day = date.getDate();
  return `${DAYS[date.getDay()]} ${MONTHS[date.getMonth()]} ${day < 10 ? ` ${day}` : day} ${
    pad2(date.getHours())
  }:${pad2(date.getMinutes())}:${pad2(date.getSeconds())} ${date.getFullYear()}`;
}

/** `YYYY_MM_DD-HH_MM_SS` in the local time zone, as vzdump names its archives. */
export function formatVzdumpTime(date: Date): string {
  return `${date.getFullYear()}_${pad2(date.getMonth() + 1)}_${pad2(date.getDate())}-${
    pad2(date.getHours())
  }_${pad2(date.getMinutes())}_${pad2(date.getSeconds())}`;
}

/**
 * The exact decimal expansion of a finite, non-negative double, as a digit
 * string and the position of the decimal point (value = 0.digits × 10^point).
 */
function exactDecimal(value: number): { digits: string; point: number } {
  if (value === 0) return { digits: "0", point: 1 };
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, value);
  const bits = view.getBigUint64(0);
  const exponentBits = Number((bits >> 52n) & 0x7ffn);
  let mantissa = bits & 0xfffffffffffffn;
  let exponent: number;
  if (exponentBits === 0) {
    exponent = -1074;
  } else {
    mantissa |= 1n << 52n;
    exponent = exponentBits - 1075;
  }
  // value = mantissa * 2^exponent
  let digits: string;
  let point: number;
  if (exponent >= 0) {
    digits = (mantissa << BigInt(exponent)).toString();
    point = digits.length;
  } else {
    // mantissa * 5^-exponent / 10^-exponent
    const scaled = (mantissa * 5n ** BigInt(-exponent)).toString();
    point = scaled.length - -exponent;
    digits = scaled;
  }
  // Strip leading zeros (only possible from the scaled form).
  let lead = 0;
  while (lead < digits.length - 1 && digits[lead] === "0") lead++;
  digits = digits.slice(lead);
  point -= lead;
  return { digits, point };
}

/**
 * Rounds the exact decimal `digits` (value = 0.digits × 10^point) to `count`
 * significant digits, half to even as glibc does for exact ties.
 */
function roundDigits(
  digits: string,
  point: number,
  count: number,
): { digits: string; point: number } {
  if (digits.length <= count) return { digits: digits.padEnd(count, "0"), point };
  const kept = digits.slice(0, count);
  const next = digits.charCodeAt(count) - 48;
  const rest = digits.slice(count + 1);
  const restNonZero = /[1-9]/.test(rest);
  const last = kept.charCodeAt(count - 1) - 48;
  const roundUp = next > 5 || (next === 5 && (restNonZero || last % 2 === 1));
  if (!roundUp) return { digits: kept, point };
  const bumped = (BigInt(kept) + 1n).toString();
  if (bumped.length > count) return { digits: bumped.slice(0, count), point: point + 1 };
  return { digits: bumped, point };
}

/**
 * Formats a finite, non-negative number like C's `printf("%.<precision>g")`
 * (glibc: exact decimal value, ties to even), e.g. 58.0246 → `58`, 0.0001234 →
 * `0.000123`, 1234567 → `1.23e+06`.
 */
export function formatG(value: number, precision = 3): string {
  if (!Number.isFinite(value)) return value > 0 ? "inf" : value < 0 ? "-inf" : "nan";
  if (value < 0) return `-${formatG(-value, precision)}`;
  const p = precision === 0 ? 1 : precision;
  if (value === 0) return "0";
  const exact = exactDecimal(value);
  const rounded = roundDigits(exact.digits, exact.point, p);
  const x = rounded.point - 1; // decimal exponent of the rounded value
  const stripZeros = (s: string) => s.includes(".") ? s.replace(/0+$/, "").replace(/\.$/, "") : s;
  if (x < -4 || x >= p) {
    const mantissa = stripZeros(
      rounded.digits.length > 1
        ? `${rounded.digits[0]}.${rounded.digits.slice(1)}`
        : rounded.digits,
    );
    const e = Math.abs(x);
    return `${mantissa}e${x < 0 ? "-" : "+"}${e < 10 ? `0${e}` : e}`;
  }
  // Fixed notation with p - 1 - x decimals: re-round the exact value at that place.
  const decimals = p - 1 - x;
  const fixed = roundDigits(exact.digits, exact.point, Math.max(1, exact.point + decimals));
  let intPart: string;
  let fracPart: string;
  if (exact.point + decimals <= 0) {
    // The value rounds at a place left of its first digit (cannot happen for x >= -4 with p >= 1).
    intPart = "0";
    fracPart = "0".repeat(decimals);
  } else if (fixed.point <= 0) {
    intPart = "0";
    fracPart = ("0".repeat(-fixed.point) + fixed.digits).slice(0, decimals).padEnd(decimals, "0");
  } else {
    intPart = fixed.digits.slice(0, fixed.point).padEnd(fixed.point, "0");
    fracPart = fixed.digits.slice(fixed.point).padEnd(decimals, "0").slice(0, decimals);
  }
  return stripZeros(decimals > 0 ? `${intPart}.${fracPart}` : intPart);
}

/** A header as `vma list` prints it (the fields the CLI needs). */
export interface ListableHeader {
  readonly ctime: Date;
  readonly configs: readonly { readonly name: string; readonly data: Uint8Array }[];
  readonly devices: readonly {
    readonly id: number;
    readonly name: string;
    readonly size: number;
    readonly vmstate: boolean;
  }[];
}

/** The `CFG:`/`DEV:`/`VMSTATE:`/`CTIME:` block of `vma list`, newline-terminated. */
export function formatList(header: ListableHeader): string {
  let out = "";
  for (const c of header.configs) out += `CFG: size: ${c.data.length} name: ${c.name}\n`;
  const devices = [...header.devices].sort((a, b) => a.id - b.id);
  for (const d of devices) {
    if (d.id < 1 || d.id > 254) continue;
    out += d.vmstate
      ? `VMSTATE: dev_id=${d.id} memory: ${d.size}\n`
      : `DEV: dev_id=${d.id} size: ${d.size} devname: ${d.name}\n`;
  }
  out += `CTIME: ${formatCtime(header.ctime)}\n`;
  return out;
}

/** Counters for the closing lines of `verify -v` / `extract -v`. */
export interface SummaryCounts {
  /** Bytes of all clusters read (clusters × 65536). */
  readonly bytes: number;
  /** Bytes of all-zero clusters. */
  readonly sparseBytes: number;
  /** Bytes of zero 4 KiB blocks inside stored clusters. */
  readonly zeroBlockBytes: number;
}

/** Proxmox's closing lines of a verbose verify or extract, newline-terminated. */
export function formatSummary(s: SummaryCounts): string {
  if (s.bytes === 0) return "vma archive contains no image data\n";
  let out = `total bytes read ${s.bytes}, sparse bytes ${s.sparseBytes} (${
    formatG((100 * s.sparseBytes) / s.bytes)
  }%)\n`;
  const dataSize = s.bytes - s.sparseBytes;
  if (dataSize !== 0) {
    out += `space reduction due to 4K zero blocks ${
      formatG((100 * s.zeroBlockBytes) / dataSize)
    }%\n`;
  }
  return out;
}

/** `1.5 GiB`-style sizes for the progress bar. */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let u = 0;
  let v = n;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)} ${units[u]}`;
}

/** `h:mm:ss` or `m:ss`. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  return h > 0 ? `${h}:${pad2(m)}:${pad2(sec)}` : `${m}:${pad2(sec)}`;
}
