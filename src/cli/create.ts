/**
 * `vma create <filename> [-v] [-c <config>]... [-d format=<fmt>:[<name>=]<path>]...`:
 * writes a VMA archive of config files and disk images.
 *
 * The steps: {@linkcode createOptions} (options), {@linkcode planOutput}
 * (where and how to write), {@linkcode readConfigs} and {@linkcode openInputs}
 * (configs, disks and devices), then {@linkcode runPipeline} (the writing).
 *
 * @module
 */
import { VmaWriter } from "../vma/vma_writer.ts";
import type { VmaDeviceWriter } from "../vma/vma_writer.ts";
import { defineCommand } from "./_command.ts";
import {
  type CreateOptions,
  createOptions,
  type DiskSpec,
  OPTIONS,
  warnZstdOptionsIgnored,
} from "./_create_options.ts";
import { BrokenPipeError, CliError, describeError, UsageError } from "./_errors.ts";
import { formatVzdumpTime } from "./_proxmox_text.ts";
import { warn, writeStderr, writeStdout } from "./_stdio.ts";
import { baseName, lstatOrUndefined } from "./_output.ts";
import { createProgress } from "./_progress.ts";
import { type DiskSource, openDiskSource } from "./_raw_source.ts";
import { generateConfig, restoreProblems } from "./_qemu_server_conf.ts";
import { parseVmConfig, vmConfigPlan } from "./_vm_config.ts";
import { type Compress, compressor, openSink, pumpArchive } from "./_archive_sink.ts";
import { quote, shown, shownQuoted } from "./_quote.ts";
import { MAX_BLOB_SIZE } from "../vma/_layout.ts";

/** QEMU block drivers that `create` cannot read (yet). */
const UNSUPPORTED_FORMATS = [
  "qed",
  "parallels",
  "dmg",
  "cloop",
  "bochs",
  "luks",
  "vvfat",
];

const SYNOPSIS = `usage: vma create <filename> [-v] [-c <config>]... [--vm-config <file>]
                  [-d format=<format>:[<device name>=]<path>]...`;

/** `vma create`. */
export const create = defineCommand({
  name: "create",
  synopsis: SYNOPSIS,
  help: `${SYNOPSIS}
       vma create <filename> [options] [<device name>=]<path>...   (deprecated)

Writes a VMA archive of config files and disk images (raw files, block
devices, qcow2 or VMDK images). <filename> must not exist yet: the archive is
written under a temporary name in the same directory, fsynced and renamed at
the end, and nothing is left behind on failure or SIGINT/SIGTERM/SIGHUP. '-'
writes the archive to standard output; an existing FIFO or character device
is written to directly; 'exec:<command>' pipes it into a shell command (as
vzdump does).

Options:
  -c, --config <file>   add a config file, stored under its base name
                        (repeatable; at most 65,535 bytes)
      --vm-config <file>
                        the VM's config as Proxmox keeps it
                        (/etc/pve/qemu-server/<vmid>.conf): stored as
                        qemu-server.conf the way vzdump stores it, with a
                        '#qmdump#map' line for each disk <key> of the config
                        given as -d ...drive-<key>=<path> (storage from the
                        volume id, format from format= or the volume's
                        extension, else raw)
  -d, --device format=<format>:[<device name>=]<path>
                        add a disk (repeatable): format raw (files and block
                        devices), qcow2 (backing files, compressed clusters),
                        vmdk, vhdx, vpc (VHD, alias vhd), vdi, or auto
                        (detect). Without a name, the disk is
                        called disk<N>, where N is its position among the -d
                        options: disk0 for the first, disk1 for the second.
                        A size not a multiple of 512 is padded with zeros,
                        with a warning, as QEMU does. Disks are read one after
                        the other. qmrestore needs the names drive-<key>
                        (drive-scsi0, drive-virtio1, drive-efidisk0...).
  -v, --verbose         print Proxmox's progress lines and per-image summary
                        on stderr
      --compress <zstd|gzip|none>
                        compress the archive (default: zstd for a name ending
                        in .zst, gzip for .gz, else none)
      --zstd-level <1-19>
                        zstd compression level (default: 3, as vzdump and the
                        zstd tool; 1 is faster, and on incompressible data
                        about as small)
      --threads <n>     threads for zstd: n-1 workers compress, and this
                        thread too when they are busy (default: the number
                        of cores, at most 4; 1: no workers). zstd output is
                        independent 2 MiB frames with a seek table (zstd's
                        seekable format), the same bytes whatever n is
      --uuid <uuid>     the archive uuid (default: random)
      --ctime <time>    the archive time: seconds since the epoch or an ISO
                        8601 date (default: $SOURCE_DATE_EPOCH, else now)
      --ordered         write clusters in device and cluster order, so the
                        same inputs, uuid and ctime give the same bytes
      --vmid <vmid>     <filename> is a directory: write
                        vzdump-qemu-<vmid>-<YYYY_MM_DD-HH_MM_SS>.vma[.zst|.gz]
                        in it (the time is the archive's, local time;
                        qmrestore accepts only such names) and print its path;
                        <vmid> is a number from 100 to 999999999
      --make-config     when there is no VM config at all, add a minimal
                        qemu-server.conf with a drive line and a
                        '#qmdump#map' line per device
      --storage <id>    storage id for --make-config (default: local-lvm)
      --confine         backing files and VMDK extents must be regular files
                        in the image's own directory; use it for images you
                        did not make yourself
      --no-progress     no progress bar (shown on stderr only when stderr is
                        a terminal and -v is not given)
  -h, --help            show this help

Warnings (stderr), as qmrestore refuses such archives or restores them
incompletely: no qemu-server.conf at all; a -c file named <vmid>.conf (stored
under that name; use --vm-config); a device without a '#qmdump#map' line, or
a map line for a device not in the archive; with --vm-config, a device that
is not a disk of the config, or a disk of the config not in the archive.
`,
  options: OPTIONS,
  positionals: ["<filename>"],
  morePositionals: true,
  run: (values, positionals) => createCommand(createOptions(values, positionals)),
});

/** The writer for `options`; a bad `--uuid` is a usage error. */
function newWriter(options: CreateOptions): VmaWriter {
  try {
    return new VmaWriter({ uuid: options.uuid, ctime: options.ctime, ordered: options.ordered });
  } catch (e) {
    throw new UsageError(
      `invalid --uuid ${shownQuoted(String(options.uuid))}: ${
        e instanceof Error ? e.message : String(e)
      }`,
      "create",
    );
  }
}

/** Where the archive goes and how it is compressed. */
export interface OutputPlan {
  /** A file path, `-` or `exec:<command>`. */
  readonly path: string;
  readonly compress: Compress;
}

/**
 * Decides the output path (the vzdump name in the `--vmid` directory) and the
 * compression (from `--compress` or the name), and refuses an existing file.
 */
export function planOutput(options: CreateOptions, ctime: Date): OutputPlan {
  const { target, vmid } = options;
  let path = target;
  let compress: Compress = options.compress ?? "none";
  if (vmid !== undefined) {
    const info = lstatOrUndefined(target);
    if (!info?.isDirectory) {
      throw new CliError(`--vmid: ${shownQuoted(target)} is not a directory`);
    }
    const ext = compress === "zstd" ? ".vma.zst" : compress === "gzip" ? ".vma.gz" : ".vma";
    path = `${target.replace(/\/+$/, "") || "/"}/vzdump-qemu-${vmid}-${
      formatVzdumpTime(ctime)
    }${ext}`.replace(/^\/\//, "/");
  } else if (options.compress === undefined && target !== "-" && !target.startsWith("exec:")) {
    if (target.endsWith(".zst")) compress = "zstd";
    else if (target.endsWith(".gz")) compress = "gzip";
  }
  if (path !== "-" && !path.startsWith("exec:")) {
    const info = lstatOrUndefined(path);
    if (info && !info.isFifo && !info.isCharDevice) {
      throw new CliError(`can't open file ${shown(path)} - File exists`);
    }
  }
  warnZstdOptionsIgnored(options.zstdOptions, compress);
  return { path, compress };
}

/** A config as added to the archive. */
interface Config {
  readonly name: string;
  readonly data: Uint8Array;
  /** The file it came from, when it came from one. */
  readonly file?: string;
  /** Warnings to print once the devices are in (`--vm-config`'s unmatched disks). */
  readonly warnings?: readonly string[];
}

/**
 * Reads at most `limit` bytes of `path`; undefined when it holds more, without
 * reading the rest (`/dev/zero`, a FIFO, a huge file).
 */
async function readAtMost(path: string, limit: number): Promise<Uint8Array | undefined> {
  const file = await Deno.open(path, { read: true });
  try {
    const buf = new Uint8Array(limit + 1);
    let used = 0;
    while (used < buf.length) {
      const n = await file.read(buf.subarray(used));
      if (n === null) return buf.slice(0, used);
      used += n;
    }
    return undefined;
  } finally {
    file.close();
  }
}

/** Reads a config file given on the command line: at most a blob's 65,535 bytes. */
async function readConfigFile(file: string, name: string): Promise<Uint8Array> {
  let data: Uint8Array | undefined;
  try {
    data = await readAtMost(file, MAX_BLOB_SIZE);
  } catch (e) {
    throw new CliError(
      `Unable to read file: Failed to open file \u201c${shown(file)}\u201d: ${describeError(e)}`,
      { cause: e },
    );
  }
  if (data === undefined) {
    throw new CliError(
      `Unable to append config data ${shown(file)} (len > ${MAX_BLOB_SIZE}) - Cannot add config ${
        quote(name)
      }: the data is more than ${MAX_BLOB_SIZE} bytes`,
    );
  }
  return data;
}

/** Adds a config to `writer`; a refusal names the file it came from. */
function addConfig(writer: VmaWriter, file: string, config: Config): void {
  try {
    writer.addConfig(config.name, config.data);
  } catch (e) {
    throw new CliError(
      `Unable to append config data ${shown(file)} (len = ${config.data.length}) - ${
        describeError(e)
      }`,
      { cause: e },
    );
  }
}

/** A `-c` file named `<vmid>.conf` is a VM config that qmrestore would not find. */
function warnVmidConf({ file, name }: Config): void {
  if (file === undefined || !/^\d+\.conf$/.test(name)) return;
  warn(
    `-c ${shownQuoted(file)} is stored as ${
      shownQuoted(name)
    }, but qmrestore reads only qemu-server.conf: for a VM config from /etc/pve/qemu-server use --vm-config`,
  );
}

/**
 * Reads `--vm-config` (stored as qemu-server.conf with vzdump's map lines) and
 * the `-c` files (at most 65,535 bytes each, the most a config blob holds),
 * and adds them to `writer`, the `-c` files under their base names.
 */
export async function readConfigs(
  writer: VmaWriter,
  options: Pick<CreateOptions, "configFiles" | "vmConfig" | "disks">,
): Promise<Config[]> {
  const configs: Config[] = [];
  if (options.vmConfig !== undefined) {
    const file = options.vmConfig;
    const vm = parseVmConfig(await readConfigFile(file, "qemu-server.conf"));
    const plan = vmConfigPlan(file, vm, options.disks.map((d) => d.name));
    const config = { name: "qemu-server.conf", data: plan.data, file, warnings: plan.warnings };
    addConfig(writer, file, config);
    configs.push(config);
  }
  for (const file of options.configFiles) {
    const name = baseName(file);
    const config = { name, data: await readConfigFile(file, name), file };
    addConfig(writer, file, config);
    configs.push(config);
  }
  return configs;
}

/** The opened disks and their devices in the writer. */
export interface Inputs {
  readonly sources: readonly DiskSource[];
  readonly devices: readonly VmaDeviceWriter[];
}

/**
 * Opens the disks, adds the generated qemu-server.conf (`--make-config`) and
 * then the devices to `writer`, and warns about map lines qmrestore refuses.
 * Closes what it opened when it fails.
 */
export async function openInputs(
  writer: VmaWriter,
  options: CreateOptions,
  configs: Config[],
): Promise<Inputs> {
  const sources: DiskSource[] = [];
  try {
    for (const disk of options.disks) sources.push(await openDisk(disk, options.confine));
    if (options.makeConfig) addGeneratedConfig(writer, options, configs, sources);
    const devices = options.disks.map((disk, i) => {
      try {
        return writer.addDevice(disk.name, sources[i].size);
      } catch (e) {
        throw new CliError(
          `vma_writer_register_stream ${shownQuoted(disk.name)} failed - ${describeError(e)}`,
          { cause: e },
        );
      }
    });
    // Advice on what qmrestore would make of it, once the inputs are good.
    for (const c of configs) warnVmidConf(c);
    const conf = configs.find((c) => c.name === "qemu-server.conf");
    for (const w of conf?.warnings ?? []) warn(w);
    if (conf && options.vmConfig === undefined) {
      const problems = restoreProblems(
        new TextDecoder().decode(conf.data),
        options.disks.map((d) => d.name).filter((n) => n !== "vmstate"),
      );
      for (const p of problems) warn(p);
    }
    return { sources, devices };
  } catch (e) {
    for (const s of sources) s.close();
    throw e;
  }
}

/** Opens one `-d` disk; warns when its size is padded to a multiple of 512. */
async function openDisk(disk: DiskSpec, confine: boolean): Promise<DiskSource> {
  if (UNSUPPORTED_FORMATS.includes(disk.format)) {
    throw new CliError(
      `bdrv_open ${shownQuoted(disk.path)} failed - format ${
        shownQuoted(disk.format)
      } is not supported yet (raw, qcow2, vmdk, vhdx, vpc and vdi are)`,
    );
  }
  const source = disk.format === "raw"
    ? await openDiskSource(disk.path, disk.format)
    // Loaded only for images: a raw-only archive does not pay for their readers.
    : await (await import("./_image_source.ts")).openDiskImageSource(disk.path, disk.format, {
      confine,
    });
  if (source.size !== source.imageSize) {
    warn(
      `image ${
        shownQuoted(disk.path)
      } size ${source.imageSize} is not a multiple of 512: padded with ${
        source.size - source.imageSize
      } zero bytes to ${source.size}`,
    );
  }
  return source;
}

/** `--make-config`: a minimal qemu-server.conf, unless one is given. */
function addGeneratedConfig(
  writer: VmaWriter,
  options: CreateOptions,
  configs: Config[],
  sources: readonly DiskSource[],
): void {
  if (configs.some((c) => c.name === "qemu-server.conf")) {
    warn("--make-config: a qemu-server.conf is given, so none is generated");
    return;
  }
  const text = generateConfig(
    options.disks.map((d, i) => ({ name: d.name, size: sources[i].size })),
    { storage: options.storage, vmid: options.vmid },
  );
  writer.addConfig("qemu-server.conf", text);
  configs.push({ name: "qemu-server.conf", data: new TextEncoder().encode(text) });
}

/** Bytes of zeros per disk, as counted by the writer. */
type ZeroCounts = number[];

/**
 * Feeds the disks into `writer` while its archive streams into the sink
 * (compressed as planned, by `makeCompressor`: tests give a failing one);
 * commits the output, or discards it on failure.
 */
export async function runPipeline(
  writer: VmaWriter,
  inputs: Inputs,
  plan: OutputPlan,
  options: CreateOptions,
  makeCompressor: typeof compressor = compressor,
): Promise<ZeroCounts> {
  const { sources, devices } = inputs;
  const sink = await openSink(plan.path);
  const transform = makeCompressor(plan.compress, options.zstdLevel, options.threads);
  const pump = pumpArchive(writer, transform, sink);
  const bar = createProgress("create", options.progress);
  const onBytes = progressCounter(
    writer,
    sources,
    options.verbose,
    (done, total) => bar.update(done, total),
  );
  const zeros: ZeroCounts = [];
  const feed = async () => {
    for (let i = 0; i < sources.length; i++) {
      const before = writer.stats.zeroBytes;
      await sources[i].feed(devices[i], onBytes);
      zeros.push(writer.stats.zeroBytes - before);
      sources[i].close();
    }
    await writer.close();
  };
  try {
    await Promise.all([feed(), pump]);
    await sink.commit();
  } catch (e) {
    bar.finish();
    transform?.terminate();
    await writer.abort(e).catch(() => {});
    sink.discard();
    for (const s of sources) s.close();
    if (e instanceof BrokenPipeError) throw e;
    if (e instanceof CliError) throw e;
    // An OS error ("No space left on device (os error 28)") in strerror's words.
    throw new CliError(`creating vma archive failed - ${describeError(e)}`, { cause: e });
  }
  bar.finish();
  return zeros;
}

/** The per-chunk progress callback: `-v` percent lines and the progress bar. */
function progressCounter(
  writer: VmaWriter,
  sources: readonly DiskSource[],
  verbose: boolean,
  update: (done: number, total: number) => void,
): (n: number) => void {
  const total = sources.reduce((n, s) => n + s.size, 0);
  let transferred = 0;
  let lastPercent = -1;
  return (n: number) => {
    transferred += n;
    if (verbose && total > 0) {
      const percent = Math.floor((transferred * 100) / total);
      if (percent !== lastPercent) {
        lastPercent = percent;
        writeStderr(
          `progress ${percent}% ${transferred}/${total} ${writer.stats.zeroBytes}\n`,
        );
      }
    }
    update(transferred, total);
  };
}

/** Runs `vma create` with `options`; returns the exit status. */
export async function createCommand(options: CreateOptions): Promise<number> {
  const writer = newWriter(options);
  const plan = planOutput(options, writer.ctime);
  const configs = await readConfigs(writer, options);
  const inputs = await openInputs(writer, options, configs);
  const zeros = await runPipeline(writer, inputs, plan, options);
  if (options.verbose) {
    options.disks.forEach((d, i) => {
      const size = inputs.sources[i].size;
      writeStderr(`image ${d.name}: size=${size} zeros=${zeros[i]} saved=${size - zeros[i]}\n`);
    });
  }
  if (!configs.some((c) => c.name === "qemu-server.conf")) {
    // Last, once the archive is written: a failure stays the only line.
    warn(
      "the archive has no qemu-server.conf, which qmrestore needs: give the VM's config with --vm-config <file>, or --make-config",
    );
  }
  if (options.vmid !== undefined) await writeStdout(`${plan.path}\n`);
  return 0;
}
