// The command line of `vma create`: its options, checked and typed.
import { lastString, strings } from "./_args.ts";
import type { Values } from "./_command.ts";
import { CliError, UsageError } from "./_errors.ts";
import { warn } from "./_stdio.ts";
import { shownQuoted } from "./_quote.ts";
import { baseName } from "./_output.ts";
import { type Compress, DEFAULT_ZSTD_LEVEL } from "./_archive_sink.ts";

/** One `-d` disk. */
export interface DiskSpec {
  spec: string;
  format: string;
  name: string;
  path: string;
}

/** Parses `-d` values and legacy positional disks into names, formats and paths. */
function parseDisks(dashD: string[], legacy: string[]): DiskSpec[] {
  if (dashD.length > 0 && legacy.length > 0) {
    throw new UsageError("Unexpected extra argument - specify all devices via '-d'", "create");
  }
  const specs = dashD.length ? dashD : legacy;
  return specs.map((spec, index) => {
    let rest = spec;
    let format: string;
    const m = /^format=([^:]*):/.exec(spec);
    if (m) {
      format = m[1];
      rest = spec.slice(m[0].length);
    } else if (spec.startsWith("format=")) {
      throw new CliError(`option 'format' not terminated (${shownQuoted(spec)})`);
    } else if (dashD.length) {
      throw new CliError(`No format specified for device: ${shownQuoted(spec)}`);
    } else {
      warn(
        `Specifying a device without a format is deprecated - use '-d format=<format>:${spec}'`,
      );
      format = "auto"; // QEMU probes the format when none is given
    }
    const eq = rest.indexOf("=");
    const name = eq >= 0 ? rest.slice(0, eq) : `disk${index}`;
    const path = eq >= 0 ? rest.slice(eq + 1) : rest;
    if (path === "") throw new CliError(`No path specified for device: ${shownQuoted(spec)}`);
    return { spec, format, name, path };
  });
}

/** `--ctime` / SOURCE_DATE_EPOCH: seconds since the epoch or an ISO 8601 date. */
function parseTime(text: string, what: string): Date {
  let ms: number;
  if (/^-?\d+$/.test(text.trim())) ms = Number(text.trim()) * 1000;
  else if (/^\d{4}-\d\d-\d\d/.test(text.trim())) ms = Date.parse(text.trim());
  else ms = NaN;
  if (!Number.isFinite(ms) || Math.abs(ms) > 8.64e15) {
    throw new UsageError(
      `invalid ${what} ${shownQuoted(text)}: give seconds since the epoch or an ISO 8601 date`,
      "create",
    );
  }
  return new Date(ms);
}

function sourceDateEpoch(): string | undefined {
  try {
    const v = Deno.env.get("SOURCE_DATE_EPOCH");
    return v === undefined || v === "" ? undefined : v;
  } catch {
    return undefined; // no env permission
  }
}

/** The options of `vma create`, checked and typed. */
export interface CreateOptions {
  /** `<filename>`: a file, `-`, `exec:<command>`, or a directory with `--vmid`. */
  readonly target: string;
  readonly verbose: boolean;
  readonly progress: boolean;
  /** `--compress`, when given. */
  readonly compress: Compress | undefined;
  readonly zstdLevel: number;
  /** `--threads`: threads that compress (1: no workers). */
  readonly threads: number;
  /** The zstd-only options given (`--zstd-level`, `--threads`), for a warning without zstd. */
  readonly zstdOptions: readonly string[];
  readonly vmid: string | undefined;
  readonly uuid: string | undefined;
  readonly ctime: Date | undefined;
  readonly ordered: boolean;
  readonly makeConfig: boolean;
  readonly storage: string;
  /** `--confine`: backing files and extents only beside the image. */
  readonly confine: boolean;
  /** `-c` files. */
  readonly configFiles: readonly string[];
  /** `--vm-config`: a VM config as Proxmox keeps it, stored as qemu-server.conf. */
  readonly vmConfig: string | undefined;
  readonly disks: readonly DiskSpec[];
}

/** The options of `vma create` for node:util parseArgs. */
export const OPTIONS = {
  config: { type: "string", short: "c", multiple: true },
  device: { type: "string", short: "d", multiple: true },
  verbose: { type: "boolean", short: "v" },
  compress: { type: "string" },
  "zstd-level": { type: "string" },
  threads: { type: "string" },
  uuid: { type: "string" },
  ctime: { type: "string" },
  ordered: { type: "boolean" },
  vmid: { type: "string" },
  "make-config": { type: "boolean" },
  "vm-config": { type: "string" },
  storage: { type: "string" },
  confine: { type: "boolean" },
  "no-progress": { type: "boolean" },
} as const;

/** The options of `vma create` from its command line, checked. */
export function createOptions(
  values: Values<typeof OPTIONS>,
  positionals: string[],
): CreateOptions {
  const [target, ...legacy] = positionals;
  const compress = lastString(values.compress);
  if (compress !== undefined && !["zstd", "gzip", "none"].includes(compress)) {
    throw new UsageError(
      `invalid --compress ${shownQuoted(compress)}: use zstd, gzip or none`,
      "create",
    );
  }
  const zstdLevel = parseZstdLevel(lastString(values["zstd-level"]));
  const threads = parseThreads(lastString(values.threads));
  const vmid = lastString(values.vmid);
  if (vmid !== undefined && !/^[1-9]\d{2,8}$/.test(vmid)) {
    throw new UsageError(
      `invalid --vmid ${shownQuoted(vmid)}: a VM id is a number from 100 to 999999999`,
      "create",
    );
  }
  if (vmid !== undefined && (target === "-" || target.startsWith("exec:"))) {
    throw new UsageError("--vmid needs a directory as <filename>", "create");
  }
  const configFiles = strings(values.config);
  const vmConfig = lastString(values["vm-config"]);
  if (vmConfig !== undefined) checkVmConfig(values["make-config"] === true, configFiles);
  return {
    target,
    verbose: values.verbose === true,
    progress: values.verbose !== true && values["no-progress"] !== true,
    compress: compress as Compress | undefined,
    zstdLevel,
    threads,
    zstdOptions: zstdOptionsGiven(values),
    vmid,
    uuid: lastString(values.uuid),
    ctime: parseCtime(lastString(values.ctime)),
    ordered: values.ordered === true,
    makeConfig: values["make-config"] === true,
    storage: lastString(values.storage) ?? "local-lvm",
    confine: values.confine === true,
    configFiles,
    vmConfig,
    disks: parseDisks(strings(values.device), legacy),
  };
}

/** `--vm-config` is the qemu-server.conf: no `--make-config`, no `-c .../qemu-server.conf`. */
function checkVmConfig(makeConfig: boolean, configFiles: readonly string[]): void {
  if (makeConfig) {
    throw new UsageError(
      "--vm-config and --make-config both give qemu-server.conf: use one",
      "create",
    );
  }
  const conf = configFiles.find((f) => baseName(f) === "qemu-server.conf");
  if (conf !== undefined) {
    throw new UsageError(
      `--vm-config and -c ${shownQuoted(conf)} both give qemu-server.conf: use one`,
      "create",
    );
  }
}

/** `--zstd-level <1-19>` of `command`; 3 when absent. */
export function parseZstdLevel(text: string | undefined, command = "create"): number {
  const level = text === undefined ? DEFAULT_ZSTD_LEVEL : Number(text);
  if (!/^\d{1,2}$/.test(text ?? "3") || level < 1 || level > 19) {
    throw new UsageError(
      `invalid --zstd-level ${shownQuoted(String(text))}: use a number from 1 to 19`,
      command,
    );
  }
  return level;
}

/** The most `--threads` accepted. */
const MAX_THREADS = 64;

/**
 * The most threads used by default: each worker costs about 20 MB of peak RSS
 * (its isolate and node:zlib), so 4 keep create near 150 MB on big hosts.
 */
const DEFAULT_MAX_THREADS = 4;

/**
 * `--threads <n>`: 1 to 64; by default the number of cores, at most
 * DEFAULT_MAX_THREADS (on 2 cores, compressible data: 2 threads took 0.68x
 * the time of 1).
 */
export function parseThreads(text: string | undefined, command = "create"): number {
  if (text === undefined) {
    return Math.max(
      1,
      Math.min(DEFAULT_MAX_THREADS, globalThis.navigator?.hardwareConcurrency ?? 1),
    );
  }
  const n = Number(text);
  if (!/^\d{1,2}$/.test(text) || n < 1 || n > MAX_THREADS) {
    throw new UsageError(
      `invalid --threads ${shownQuoted(text)}: use a number from 1 to ${MAX_THREADS}`,
      command,
    );
  }
  return n;
}

/**
 * Warns that the zstd-only options `given` (`--zstd-level`, `--threads`)
 * are ignored when the output is not zstd.
 */
export function warnZstdOptionsIgnored(given: readonly string[], compress: Compress): void {
  if (compress === "zstd" || given.length === 0) return;
  warn(
    `${given.join(" and ")} ${given.length > 1 ? "apply" : "applies"} to zstd only, and the ${
      compress === "gzip" ? "archive is gzip-compressed" : "archive is not compressed"
    }: ignored`,
  );
}

/** The zstd-only options among `values`, as `--name`s. */
export function zstdOptionsGiven(values: { "zstd-level"?: unknown; threads?: unknown }): string[] {
  return (["zstd-level", "threads"] as const).filter((o) => values[o] !== undefined).map((o) =>
    `--${o}`
  );
}

/** `--ctime`, else $SOURCE_DATE_EPOCH, else undefined (now). */
function parseCtime(text: string | undefined): Date | undefined {
  if (text !== undefined) return parseTime(text, "--ctime");
  const sde = sourceDateEpoch();
  return sde === undefined ? undefined : parseTime(sde, "SOURCE_DATE_EPOCH");
}
