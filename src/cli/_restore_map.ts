// qmrestore's map protocol for `vma extract -r <fifo>` (spec section 6.4):
// lines `skip=<devname>` or `[format=<f>:][throttling.bps=<n>:]
// [throttling.group=<g>:][cache=<c>:]<0|1>:<devname>=<path>`, ended by EOF,
// an empty line or `done`. Errors in Proxmox's words.
import { CliError, describeError } from "./_errors.ts";
import { shown } from "./_quote.ts";

/** One device's restore target. */
export interface RestoreMapEntry {
  readonly devname: string;
  readonly path: string | undefined;
  readonly format: string | undefined;
  readonly throttlingBps: number;
  readonly throttlingGroup: string | undefined;
  readonly cache: string | undefined;
  /** Write zero blocks too (the target is not known to read as zeros). */
  readonly writeZero: boolean;
  readonly skip: boolean;
}

/** The longest map line, newline included: Proxmox reads lines with fgets into 8,192 bytes. */
export const MAX_MAP_LINE = 8191;

/** Map input echoed in a message: at most this many characters. */
const ECHO_LIMIT = 80;

function fail(message: string): never {
  throw new CliError(`read map failed - ${message}`);
}

/** `text` cut to {@linkcode ECHO_LIMIT} characters for a message. */
function excerpt(text: string): string {
  return text.length > ECHO_LIMIT ? `${text.slice(0, ECHO_LIMIT)}...` : text;
}

/** Parses one map line (without its newline). */
export function parseMapLine(line: string): RestoreMapEntry {
  if (line.startsWith("skip")) {
    if (line.length < 6 || line[4] !== "=") fail(`option 'skip' has no value ('${excerpt(line)}')`);
    return {
      devname: line.slice(5),
      path: undefined,
      format: undefined,
      throttlingBps: 0,
      throttlingGroup: undefined,
      cache: undefined,
      writeZero: true,
      skip: true,
    };
  }
  const options: Record<string, string | undefined> = {};
  let rest = line;
  for (;;) {
    const name = ["format", "throttling.bps", "throttling.group", "cache"].find((o) =>
      rest.startsWith(o) && rest[o.length] === "="
    );
    if (name === undefined) break;
    if (options[name] !== undefined) fail(`duplicate value for option '${name}'`);
    const value = rest.slice(name.length + 1);
    const colon = value.indexOf(":");
    if (colon < 0) fail(`option '${name}' not terminated ('${excerpt(line)}')`);
    options[name] = value.slice(0, colon);
    rest = value.slice(colon + 1);
  }
  let throttlingBps = 0;
  const bps = options["throttling.bps"];
  if (bps !== undefined) {
    // qemu_strtou64 with base 0: decimal, 0x hex or 0 octal.
    const n = /^0[xX][0-9a-fA-F]+$/.test(bps)
      ? parseInt(bps, 16)
      : /^0[0-7]*$/.test(bps)
      ? parseInt(bps, 8)
      : /^[1-9]\d*$/.test(bps)
      ? Number(bps)
      : NaN;
    if (!Number.isSafeInteger(n)) fail(`not a number: ${excerpt(bps)}`);
    throttlingBps = n;
  }
  let writeZero: boolean;
  if (rest.startsWith("0:")) writeZero = false;
  else if (rest.startsWith("1:")) writeZero = true;
  else fail(`parse error ('${excerpt(line)}')`);
  rest = rest.slice(2);
  const eq = rest.indexOf("=");
  if (eq < 0) fail(`no dev name specified ('${excerpt(line)}')`);
  return {
    devname: rest.slice(0, eq),
    path: rest.slice(eq + 1),
    format: options.format,
    throttlingBps,
    throttlingGroup: options["throttling.group"],
    cache: options.cache,
    writeZero,
    skip: false,
  };
}

/**
 * Collects map lines into entries until `done` or an empty line; later lines
 * win per device.
 */
class MapBuilder {
  readonly entries: Map<string, RestoreMapEntry> = new Map();
  ended = false;

  /** Takes one line (without its newline); `last` when it ended at EOF without one. */
  line(line: string, last: boolean): void {
    if (line === "" || (line === "done" && !last)) {
      this.ended = true;
      return;
    }
    const entry = parseMapLine(line);
    this.entries.set(entry.devname, entry);
  }
}

/** Parses map text up to EOF, an empty line or `done`; later lines win per device. */
export function parseMap(text: string): Map<string, RestoreMapEntry> {
  const builder = new MapBuilder();
  const lines = text.split("\n");
  for (let i = 0; i < lines.length && !builder.ended; i++) {
    builder.line(lines[i], i === lines.length - 1);
  }
  return builder.entries;
}

function tooLong(start: Uint8Array): never {
  const text = new TextDecoder().decode(start.subarray(0, ECHO_LIMIT * 4));
  fail(`parse error: line longer than ${MAX_MAP_LINE} bytes ('${excerpt(text)}')`);
}

/**
 * Reads the map from a FIFO (or file) until `done`, an empty line or EOF, a
 * line at a time: at most {@linkcode MAX_MAP_LINE} bytes are held, each byte
 * is looked at once, and a longer line fails without reading the rest.
 */
export async function readMap(path: string): Promise<Map<string, RestoreMapEntry>> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (e) {
    throw new CliError(`unable to open fifo ${shown(path)} - ${describeError(e)}`, { cause: e });
  }
  const builder = new MapBuilder();
  const decoder = new TextDecoder();
  const line = new Uint8Array(MAX_MAP_LINE);
  let used = 0;
  try {
    const buf = new Uint8Array(65536);
    while (!builder.ended) {
      const n = await file.read(buf);
      if (n === null) {
        if (used > 0) builder.line(decoder.decode(line.subarray(0, used)), true);
        break;
      }
      let at = 0;
      while (at < n && !builder.ended) {
        const nl = buf.subarray(at, n).indexOf(0x0a);
        const end = nl < 0 ? n : at + nl;
        // The line so far plus its newline must fit in MAX_MAP_LINE bytes.
        if (used + (end - at) + (nl < 0 ? 0 : 1) > MAX_MAP_LINE) {
          line.set(buf.subarray(at, at + Math.max(0, MAX_MAP_LINE - used)), used);
          tooLong(line);
        }
        line.set(buf.subarray(at, end), used);
        used += end - at;
        if (nl < 0) break;
        builder.line(decoder.decode(line.subarray(0, used)), false);
        used = 0;
        at = end + 1;
      }
    }
  } finally {
    file.close();
  }
  return builder.entries;
}
