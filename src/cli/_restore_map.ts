// qmrestore's map protocol for `vma extract -r <fifo>` (spec section 6.4):
// lines `skip=<devname>` or `[format=<f>:][throttling.bps=<n>:]
// [throttling.group=<g>:][cache=<c>:]<0|1>:<devname>=<path>`, ended by EOF,
// an empty line or `done`. Errors in Proxmox's words.
import { CliError, describeError } from "./_errors.ts";

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

function fail(message: string): never {
  throw new CliError(`read map failed - ${message}`);
}

/** Parses one map line (without its newline). */
export function parseMapLine(line: string): RestoreMapEntry {
  if (line.startsWith("skip")) {
    if (line.length < 6 || line[4] !== "=") fail(`option 'skip' has no value ('${line}')`);
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
    if (colon < 0) fail(`option '${name}' not terminated ('${line}')`);
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
    if (!Number.isSafeInteger(n)) fail(`not a number: ${bps}`);
    throttlingBps = n;
  }
  let writeZero: boolean;
  if (rest.startsWith("0:")) writeZero = false;
  else if (rest.startsWith("1:")) writeZero = true;
  else fail(`parse error ('${line}')`);
  rest = rest.slice(2);
  const eq = rest.indexOf("=");
  if (eq < 0) fail(`no dev name specified ('${line}')`);
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

/** Parses map text up to EOF, an empty line or `done`; later lines win per device. */
export function parseMap(text: string): Map<string, RestoreMapEntry> {
  const map = new Map<string, RestoreMapEntry>();
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const last = i === lines.length - 1;
    if (line === "" || (line === "done" && !last)) break;
    const entry = parseMapLine(line);
    map.set(entry.devname, entry);
  }
  return map;
}

/** Reads the map from a FIFO (or file) until `done`, an empty line or EOF. */
export async function readMap(path: string): Promise<Map<string, RestoreMapEntry>> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (e) {
    throw new CliError(`unable to open fifo ${path} - ${describeError(e)}`, { cause: e });
  }
  const decoder = new TextDecoder();
  let text = "";
  try {
    const buf = new Uint8Array(65536);
    for (;;) {
      // Stop at a `done` or empty line without waiting for EOF.
      if (/(^|\n)(done)?\n/.test(text)) break;
      const n = await file.read(buf);
      if (n === null) break;
      text += decoder.decode(buf.subarray(0, n), { stream: true });
    }
  } finally {
    file.close();
  }
  return parseMap(text);
}
