/**
 * `vma extract <filename> [-v] [-d <drive-list>] [-r <fifo>] <targetdir>`:
 * configs and sparse raw disk images into a new directory, or (with `-r`,
 * qmrestore's map protocol) disks into existing volumes.
 *
 * The steps: {@linkcode extractOptions} (options), {@linkcode planFiles}
 * (every name written, refused when two collide), {@linkcode makeTargetDir},
 * {@linkcode writeConfigs}, then {@linkcode runExtract} (the devices).
 *
 * @module
 */
import * as fs from "node:fs";
import { extractVma } from "../vma/extract_vma.ts";
import type { DiskImageWriter } from "../image/disk_image_writer.ts";
import type { VmaDevice, VmaHeader, VmaReader } from "../vma/vma_reader.ts";
import { lastString, strings } from "./_args.ts";
import { defineCommand, type Values } from "./_command.ts";
import { openArchive, toCliError } from "./_archive.ts";
import { BrokenPipeError, CliError, describeError, UsageError } from "./_errors.ts";
import { formatList, formatSummary } from "./_proxmox_text.ts";
import { warn, writeStdout, writeStdoutSync } from "./_stdio.ts";
import { onCleanup } from "./_cleanup.ts";
import { renameNoReplace } from "./_output.ts";
import { readProgress } from "./_read_progress.ts";
import { readMap, type RestoreMapEntry } from "./_restore_map.ts";
import { FileSink } from "./_file_sink.ts";
import { type AbandonableSink, FileWriter, imageWriterSink } from "./_file_writer.ts";
import { IMAGE_FORMATS, type ImageWriterOptions } from "./_image_formats.ts";
import { FileIdentity, openTarget } from "./_restore_target.ts";
import { quote, shown, shownQuoted } from "./_quote.ts";

/** The options of `vma extract`, checked and typed. */
export interface ExtractOptions {
  readonly filename: string;
  readonly dir: string;
  /** `-d`: the devices to extract; empty for all. */
  readonly drives: readonly string[];
  /** `-r`: the map FIFO. */
  readonly readmap: string | undefined;
  readonly verbose: boolean;
  readonly progress: boolean;
  /** `--format`: the disk image format (QEMU's name), `raw` by default. */
  readonly format: string;
  /** `--compress` and `--vmdk-subformat`. */
  readonly writer: ImageWriterOptions;
}

const COMPRESS = ["zlib", "zstd"] as const;
const VMDK_SUBFORMATS = ["monolithicSparse", "streamOptimized"] as const;

/** Checks `--format`, `--compress` and `--vmdk-subformat` against each other and `-r`. */
function imageOptions(values: Values<typeof OPTIONS>, readmap: string | undefined) {
  const format = lastString(values.format);
  const compress = lastString(values.compress);
  const subformat = lastString(values["vmdk-subformat"]);
  if (format !== undefined && !Object.hasOwn(IMAGE_FORMATS, format)) {
    throw new UsageError(
      `invalid --format ${quote(format)} (one of ${Object.keys(IMAGE_FORMATS).join(", ")})`,
      "extract",
    );
  }
  if (format !== undefined && readmap !== undefined) {
    throw new UsageError(
      "--format cannot be used with -r (the map names each target's format)",
      "extract",
    );
  }
  if (compress !== undefined && !(COMPRESS as readonly string[]).includes(compress)) {
    throw new UsageError(`invalid --compress ${quote(compress)} (zlib or zstd)`, "extract");
  }
  if (compress !== undefined && format !== "qcow2") {
    throw new UsageError("--compress needs --format qcow2", "extract");
  }
  if (subformat !== undefined && !(VMDK_SUBFORMATS as readonly string[]).includes(subformat)) {
    throw new UsageError(
      `invalid --vmdk-subformat ${quote(subformat)} (monolithicSparse or streamOptimized)`,
      "extract",
    );
  }
  if (subformat !== undefined && format !== "vmdk") {
    throw new UsageError("--vmdk-subformat needs --format vmdk", "extract");
  }
  return {
    format: format ?? "raw",
    writer: {
      compress: compress as ImageWriterOptions["compress"],
      vmdkSubformat: subformat as ImageWriterOptions["vmdkSubformat"],
    },
  };
}

/** The options of `vma extract` from its command line. */
export function extractOptions(
  values: Values<typeof OPTIONS>,
  positionals: string[],
): ExtractOptions {
  const readmap = lastString(values.readmap);
  return {
    filename: positionals[0],
    dir: positionals[1],
    drives: strings(values.drives).flatMap((d) => d.split(",")),
    readmap,
    verbose: values.verbose === true,
    progress: values["no-progress"] !== true,
    ...imageOptions(values, readmap),
  };
}

/** Why `name` cannot be a file name in the target directory, or undefined. */
function unsafeName(name: string): string | undefined {
  if (name === "" || name === "." || name === "..") return `${quote(name)} is not a file name`;
  if (name.includes("/") || name.includes("\\")) {
    return `${quote(name)} contains a path separator`;
  }
  // deno-lint-ignore no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(name)) return `${quote(name)} contains a control character`;
  return undefined;
}

/** How a name is compared: as case-insensitive, normalising file systems would. */
function fileKey(name: string): string {
  return name.normalize("NFC").toLowerCase();
}

/**
 * Every file name extract writes into the target directory (configs, vmstate.bin,
 * tmp-disk-*.raw and disk-*.raw), checked before anything is written: unsafe
 * names and two names that one case-insensitive file system would take for the
 * same file are refused.
 */
export function planFiles(header: VmaHeader, options: ExtractOptions): string[] {
  const owners = new Map<string, string>();
  const claim = (file: string, owner: string) => {
    const other = owners.get(fileKey(file));
    if (other !== undefined) {
      throw new CliError(
        `refusing to extract: ${other} and ${owner} would both be written to ${quote(file)}`,
      );
    }
    owners.set(fileKey(file), owner);
  };
  for (const c of header.configs) {
    const bad = unsafeName(c.name);
    if (bad) throw new CliError(`unable to write file: config name ${bad}`);
    claim(c.name, `config ${quote(c.name)}`);
  }
  for (const d of header.devices) {
    const bad = unsafeName(d.name);
    if (bad) throw new CliError(`unable to extract device: device name ${bad}`);
    const owner = `device ${quote(d.name)}`;
    if (d.vmstate) claim("vmstate.bin", owner);
    else if (options.readmap === undefined && wanted(d, options)) {
      const ext = IMAGE_FORMATS[options.format].ext;
      claim(`tmp-disk-${d.name}.${ext}`, owner);
      claim(`disk-${d.name}.${ext}`, owner);
    }
  }
  return [...owners.keys()];
}

/**
 * Warns for each `-d` name the archive has no device of (Proxmox silently
 * extracts nothing for it; so do we, with the same exit status).
 */
export function warnUnknownDrives(header: VmaHeader, options: ExtractOptions): void {
  const names = header.devices.map((d) => d.name);
  for (const drive of new Set(options.drives)) {
    if (names.includes(drive)) continue;
    warn(
      `-d ${shownQuoted(drive)}: the archive has no such device, so nothing is extracted for it (${
        names.length ? `its devices: ${names.map(shownQuoted).join(", ")}` : "it has no devices"
      })`,
    );
  }
}

function wanted(device: VmaDevice, options: ExtractOptions): boolean {
  return options.drives.length === 0 || options.drives.includes(device.name);
}

/**
 * Creates the target directory (it must not exist) and registers its removal
 * on failure; returns the remover's unregistration and the sinks to abandon.
 */
export function makeTargetDir(dir: string): { done: () => void; sinks: AbandonableSink[] } {
  let created = false;
  const sinks: AbandonableSink[] = [];
  const done = onCleanup(() => {
    for (const s of sinks) s.abandon();
    if (created) Deno.removeSync(dir, { recursive: true });
  });
  try {
    fs.mkdirSync(dir, 0o777);
    created = true;
  } catch (e) {
    done();
    throw new CliError(`unable to create target directory ${shown(dir)} - ${describeError(e)}`, {
      cause: e,
    });
  }
  return { done, sinks };
}

/** Writes the configs (first: qmrestore reads qemu-server.conf once it sees CTIME). */
export function writeConfigs(dir: string, header: VmaHeader): void {
  for (const c of header.configs) {
    const path = `${dir}/${c.name}`;
    try {
      fs.writeFileSync(path, c.data, { flag: "wx", mode: 0o644 });
    } catch (e) {
      throw new CliError(
        `unable to write file: Failed to create file \u201c${shown(path)}\u201d: ${
          describeError(e)
        }`,
        { cause: e },
      );
    }
  }
}

/** What the device callback needs besides the device. */
interface DeviceContext {
  readonly options: ExtractOptions;
  map: Map<string, RestoreMapEntry> | undefined;
  readonly archive: FileIdentity | undefined;
  readonly sinks: AbandonableSink[];
  readonly renames: [string, string][];
  readonly targets: Map<string, string>;
}

/** The sink for device `d`: vmstate.bin, a map target, a new disk file or none. */
function sinkFor(
  d: VmaDevice,
  ctx: DeviceContext,
): AbandonableSink | Promise<AbandonableSink> | undefined {
  const { dir } = ctx.options;
  if (d.vmstate) {
    const path = `${dir}/vmstate.bin`;
    try {
      const sink = FileSink.sequential(path);
      ctx.sinks.push(sink);
      return sink;
    } catch (e) {
      throw new CliError(`create vmstate file ${shownQuoted(path)} failed - ${describeError(e)}`, {
        cause: e,
      });
    }
  }
  if (!wanted(d, ctx.options)) return undefined;
  if (ctx.map) {
    const entry = ctx.map.get(d.name);
    if (entry === undefined) throw new CliError(`no device name mapping for ${shown(d.name)}`);
    if (entry.skip) return undefined;
    const sink = openTarget(d, entry, ctx.archive, ctx.targets);
    if (sink instanceof Promise) {
      return sink.then((s) => {
        ctx.sinks.push(s);
        return s;
      });
    }
    ctx.sinks.push(sink);
    return sink;
  }
  const ext = IMAGE_FORMATS[ctx.options.format].ext;
  const tmp = `${dir}/tmp-disk-${d.name}.${ext}`;
  writeStdoutSync(`DEVINFO ${tmp} ${d.size}\n`);
  try {
    if (ctx.options.format !== "raw") {
      return imageSink(d, tmp, ctx, `${dir}/disk-${d.name}.${ext}`).catch((e) => {
        throw new CliError(`can't create file ${shown(tmp)}: ${describeError(e)}`, { cause: e });
      });
    }
    const sink = FileSink.create(tmp, d.size);
    ctx.sinks.push(sink);
    ctx.renames.push([tmp, `${dir}/disk-${d.name}.raw`]);
    return sink;
  } catch (e) {
    throw new CliError(`can't create file ${shown(tmp)}: ${describeError(e)}`, { cause: e });
  }
}

/** A new image file of `--format` at `tmp`, renamed to `final` at the end. */
async function imageSink(
  d: VmaDevice,
  tmp: string,
  ctx: DeviceContext,
  final: string,
): Promise<AbandonableSink> {
  const file = FileWriter.create(tmp);
  let writer: DiskImageWriter;
  try {
    writer = await IMAGE_FORMATS[ctx.options.format].create(file, d.size, ctx.options.writer);
  } catch (e) {
    file.abandon(); // the file goes with the target directory
    throw e;
  }
  const sink = imageWriterSink(file, writer);
  ctx.sinks.push(sink);
  ctx.renames.push([tmp, final]);
  return sink;
}

/**
 * Reads the map (`-r`), extracts the devices, renames the finished disks and
 * prints the summary (`-v`).
 */
export async function runExtract(
  reader: VmaReader,
  header: VmaHeader,
  options: ExtractOptions,
  sinks: AbandonableSink[],
): Promise<void> {
  const ctx: DeviceContext = {
    options,
    map: undefined,
    archive: options.readmap === undefined ? undefined : FileIdentity.of(options.filename),
    sinks,
    renames: [],
    targets: new Map(),
  };
  const progress = readProgress(options.verbose, options.progress, "extract");
  try {
    if (options.readmap !== undefined) {
      await writeStdout(formatList(header));
      ctx.map = await readMap(options.readmap);
    }
    const summary = await extractVma(reader, { device: (d) => sinkFor(d, ctx) }, {
      onProgress: progress.onProgress,
    });
    progress.finish();
    for (const [from, to] of ctx.renames) {
      try {
        renameNoReplace(from, to);
      } catch (e) {
        throw new CliError(`rename ${shown(from)} to ${shown(to)} failed - ${describeError(e)}`, {
          cause: e,
        });
      }
    }
    if (options.verbose) await writeStdout(formatSummary(summary));
  } catch (e) {
    progress.finish();
    await reader.cancel().catch(() => {});
    if (e instanceof BrokenPipeError) throw e;
    if (e instanceof CliError && !(e.cause instanceof SyntaxError)) throw e;
    throw toCliError(e, "restore failed - ");
  }
}

const SYNOPSIS = "usage: vma extract <filename> [-v] [-d <drive-list>] [-r <fifo>] <targetdir>";

const OPTIONS = {
  verbose: { type: "boolean", short: "v" },
  drives: { type: "string", short: "d", multiple: true },
  readmap: { type: "string", short: "r" },
  "no-progress": { type: "boolean" },
  format: { type: "string" },
  compress: { type: "string" },
  "vmdk-subformat": { type: "string" },
} as const;

/** `vma extract`. */
export const extract = defineCommand({
  name: "extract",
  synopsis: SYNOPSIS,
  help: `${SYNOPSIS}

Extracts an archive into <targetdir>, which must not exist yet: one file per
config, and disk-<devname>.raw per device (exact size, sparse: zero regions
are not written). Prints 'DEVINFO <targetdir>/tmp-disk-<devname>.raw <size>'
per device, as Proxmox's vma; each disk is written under that temporary name,
fsynced and renamed when the archive has been read completely. On failure or
on SIGINT/SIGTERM/SIGHUP, the target directory is removed again. An archive
with two names for one file (a config named like a disk file, or names
differing only in case) is refused before anything is written.

Options:
  -d, --drives <drive-list>  extract only these devices (comma-separated
                  device names); the others are still read and checked; a
                  name the archive does not have is a warning, not an error
  -r, --readmap <fifo>  qmrestore's map protocol: write the configs, print the
                  list block, read map lines from <fifo> ('[format=<raw|qcow2>:]
                  <0|1>:<devname>=<path>' or 'skip=<devname>', up to 'done'),
                  and write each disk into its existing volume (raw files,
                  block devices, and qcow2 images, written as QEMU would:
                  new clusters at the end; throttling.* and cache= are
                  accepted and ignored); a map line holds at most 8,191
                  bytes, and
                  the archive itself or one volume for two devices is refused
      --format <fmt>  write the disks as raw (the default), qcow2, vmdk, vhdx,
                  vdi or vpc images: disk-<devname>.<ext> (.raw, .qcow2,
                  .vmdk, .vhdx, .vdi, .vhd), in one pass, from any archive
                  vma extract reads (standard input, .vma.zst, ...); qcow2
                  images are version 3 with 64 KiB clusters, zero clusters
                  left unallocated
      --compress <zlib|zstd>  with --format qcow2: compressed clusters
                  (zstd needs QEMU 5.1 or later to read)
      --vmdk-subformat <monolithicSparse|streamOptimized>  with --format vmdk
  -v, --verbose   print Proxmox's progress lines and summary on standard output
      --no-progress  no progress bar (see verify)
  -h, --help      show this help
`,
  options: OPTIONS,
  positionals: ["<filename>", "<targetdir>"],
  run: (values, positionals) => extractCommand(extractOptions(values, positionals)),
});

/** Runs `vma extract` with `options`; returns the exit status. */
export async function extractCommand(options: ExtractOptions): Promise<number> {
  const { reader, header } = await openArchive(options.filename);
  let target: ReturnType<typeof makeTargetDir>;
  try {
    planFiles(header, options);
    warnUnknownDrives(header, options);
    target = makeTargetDir(options.dir);
  } catch (e) {
    await reader.cancel().catch(() => {});
    throw e;
  }
  try {
    writeConfigs(options.dir, header);
  } catch (e) {
    await reader.cancel().catch(() => {});
    throw e;
  }
  await runExtract(reader, header, options, target.sinks);
  target.done();
  return 0;
}
