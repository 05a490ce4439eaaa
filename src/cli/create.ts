/**
 * `vma create <filename> [-v] [-c <config>]... [-d format=<fmt>:[<name>=]<path>]...`:
 * writes a VMA archive of config files and disk images.
 *
 * @module
 */
import { VmaWriter } from "../vma/vma_writer.ts";
import type { VmaDeviceWriter } from "../vma/vma_writer.ts";
import { lastString, parseCommandArgs, strings } from "./_args.ts";
import { toCliError } from "./_archive.ts";
import { BrokenPipeError, CliError, describeError, UsageError } from "./_errors.ts";
import { formatVzdumpTime } from "./_proxmox_text.ts";
import { stdoutWritable, warn, writeStderr, writeStdout } from "./_stdio.ts";
import { AtomicFile, baseName, lstatOrUndefined } from "./_output.ts";
import { createProgress } from "./_progress.ts";
import { type DiskSource, openDiskSource } from "./_raw_source.ts";
import { openDiskImageSource } from "./_image_source.ts";
import { generateConfig, restoreProblems } from "./_qemu_server_conf.ts";
import { nodeTransformToWeb } from "./_node_stream.ts";
import { HELP } from "./_usage.ts";
import { constants as zlibConstants, createGzip, createZstdCompress } from "node:zlib";

type Compress = "none" | "zstd" | "gzip";

/** QEMU block drivers that `create` cannot read (yet). */
const UNSUPPORTED_FORMATS = [
  "vhdx",
  "vpc",
  "vdi",
  "qed",
  "parallels",
  "dmg",
  "cloop",
  "bochs",
  "luks",
  "vvfat",
];

interface DiskSpec {
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
      throw new CliError(`option 'format' not terminated ('${spec}')`);
    } else if (dashD.length) {
      throw new CliError(`No format specified for device: '${spec}'`);
    } else {
      warn(
        `Specifying a device without a format is deprecated - use '-d format=<format>:${spec}'`,
      );
      format = "auto"; // QEMU probes the format when none is given
    }
    const eq = rest.indexOf("=");
    const name = eq >= 0 ? rest.slice(0, eq) : `disk${index}`;
    const path = eq >= 0 ? rest.slice(eq + 1) : rest;
    if (path === "") throw new CliError(`No path specified for device: '${spec}'`);
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
      `invalid ${what} '${text}': give seconds since the epoch or an ISO 8601 date`,
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

/** Where the archive goes. */
interface Sink {
  readonly writable: WritableStream<Uint8Array>;
  /** True when a chunk is no longer referenced once its write has settled. */
  readonly reusesNothing?: boolean;
  commit(): Promise<void>;
  discard(): void;
  readonly description: string;
}

async function openSink(target: string): Promise<Sink> {
  if (target === "-") {
    if (Deno.stdout.isTerminal()) {
      throw new CliError(
        "refusing to write the archive to a terminal (redirect standard output or give a file name)",
      );
    }
    return {
      writable: stdoutWritable(),
      reusesNothing: true,
      commit: () => Promise.resolve(),
      discard() {},
      description: "standard output",
    };
  }
  if (target.startsWith("exec:")) return openExecSink(target.slice(5));
  const info = lstatOrUndefined(target);
  if (info && (info.isFifo || info.isCharDevice)) {
    let file: Deno.FsFile;
    try {
      file = await Deno.open(target, { write: true });
    } catch (e) {
      throw new CliError(`can't open file ${target} - ${describeError(e)}`, { cause: e });
    }
    return {
      writable: new WritableStream({
        async write(chunk) {
          let off = 0;
          while (off < chunk.length) off += await file.write(chunk.subarray(off));
        },
      }),
      commit() {
        file.close();
        return Promise.resolve();
      },
      discard() {
        try {
          file.close();
        } catch {
          // closed
        }
      },
      description: target,
    };
  }
  const file = await AtomicFile.create(target);
  return {
    writable: file.writable,
    reusesNothing: true,
    commit: () => file.commit(),
    discard: () => file.discard(),
    description: target,
  };
}

function openExecSink(command: string): Sink {
  if (Deno.build.os === "windows") {
    throw new CliError(`can't popen command '${command}' - not supported on Windows`);
  }
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command("sh", { args: ["-c", command], stdin: "piped" }).spawn();
  } catch (e) {
    throw new CliError(`can't popen command '${command}' - ${describeError(e)}`, { cause: e });
  }
  const stdin = child.stdin.getWriter();
  let closed = false;
  const failed = async (): Promise<CliError | undefined> => {
    const status = await child.status;
    return status.success
      ? undefined
      : new CliError(`command '${command}' failed with exit status ${status.code}`);
  };
  return {
    writable: new WritableStream({
      async write(chunk) {
        try {
          await stdin.write(chunk);
        } catch (e) {
          throw (await failed()) ??
            new CliError(`command '${command}' stopped reading - ${describeError(e)}`, {
              cause: e,
            });
        }
      },
    }),
    async commit() {
      closed = true;
      await stdin.close().catch(() => {});
      const error = await failed();
      if (error) throw error;
    },
    discard() {
      if (closed) return;
      closed = true;
      stdin.abort().catch(() => {});
      try {
        child.kill("SIGTERM");
      } catch {
        // exited
      }
    },
    description: `command '${command}'`,
  };
}

/** zstd level when `--zstd-level` is not given: vzdump's (the zstd tool's default). */
const DEFAULT_ZSTD_LEVEL = 3;

function compressor(
  kind: Compress,
  zstdLevel: number,
): TransformStream<Uint8Array, Uint8Array> | undefined {
  switch (kind) {
    case "none":
      return undefined;
    case "gzip":
      return nodeTransformToWeb(createGzip({ chunkSize: 1024 * 1024 })) as TransformStream<
        Uint8Array,
        Uint8Array
      >;
    case "zstd":
      return nodeTransformToWeb(
        createZstdCompress({
          chunkSize: 1024 * 1024,
          params: { [zlibConstants.ZSTD_c_compressionLevel]: zstdLevel },
        }),
      ) as TransformStream<Uint8Array, Uint8Array>;
  }
}

/**
 * Copies the archive into `writable`, handing each chunk back to the writer
 * once written (VmaWriter.recycle), so extent buffers are reused instead of
 * allocated per extent.
 */
async function pumpRecycling(writer: VmaWriter, writable: WritableStream<Uint8Array>) {
  const reader = writer.readable.getReader();
  const out = writable.getWriter();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      await out.write(value);
      writer.recycle(value);
    }
    await out.close();
  } catch (e) {
    reader.cancel(e).catch(() => {});
    out.abort(e).catch(() => {});
    throw e;
  }
}

/** Runs `vma create`; returns the exit status. */
export async function createCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs("create", args, {
    config: { type: "string", short: "c", multiple: true },
    device: { type: "string", short: "d", multiple: true },
    verbose: { type: "boolean", short: "v" },
    compress: { type: "string" },
    "zstd-level": { type: "string" },
    uuid: { type: "string" },
    ctime: { type: "string" },
    ordered: { type: "boolean" },
    vmid: { type: "string" },
    "make-config": { type: "boolean" },
    storage: { type: "string" },
    "no-progress": { type: "boolean" },
  });
  if (values.help) {
    await writeStdout(HELP.create);
    return 0;
  }
  if (positionals.length === 0) throw new UsageError("missing <filename>", "create");
  const [target, ...legacy] = positionals;
  const verbose = values.verbose === true;

  // Options.
  const compressOption = lastString(values.compress);
  if (compressOption !== undefined && !["zstd", "gzip", "none"].includes(compressOption)) {
    throw new UsageError(
      `invalid --compress '${compressOption}': use zstd, gzip or none`,
      "create",
    );
  }
  const zstdLevelText = lastString(values["zstd-level"]);
  const zstdLevel = zstdLevelText === undefined ? DEFAULT_ZSTD_LEVEL : Number(zstdLevelText);
  if (!/^\d{1,2}$/.test(zstdLevelText ?? "3") || zstdLevel < 1 || zstdLevel > 19) {
    throw new UsageError(
      `invalid --zstd-level '${zstdLevelText}': use a number from 1 to 19`,
      "create",
    );
  }
  const vmid = lastString(values.vmid);
  if (vmid !== undefined && !/^[1-9]\d{2,8}$/.test(vmid)) {
    throw new UsageError(`invalid --vmid '${vmid}': a VM id is a number from 100`, "create");
  }
  if (vmid !== undefined && (target === "-" || target.startsWith("exec:"))) {
    throw new UsageError("--vmid needs a directory as <filename>", "create");
  }
  const ctimeText = lastString(values.ctime);
  const sde = ctimeText === undefined ? sourceDateEpoch() : undefined;
  const ctime = ctimeText !== undefined
    ? parseTime(ctimeText, "--ctime")
    : sde !== undefined
    ? parseTime(sde, "SOURCE_DATE_EPOCH")
    : undefined;
  const uuid = lastString(values.uuid);
  let writer: VmaWriter;
  try {
    writer = new VmaWriter({ uuid, ctime, ordered: values.ordered === true });
  } catch (e) {
    throw new UsageError(
      `invalid --uuid '${uuid}': ${e instanceof Error ? e.message : String(e)}`,
      "create",
    );
  }
  const disks = parseDisks(strings(values.device), legacy);
  const storage = lastString(values.storage) ?? "local-lvm";

  // Where to write, and how.
  let path = target;
  let compress: Compress = (compressOption as Compress | undefined) ?? "none";
  if (vmid !== undefined) {
    const info = lstatOrUndefined(target);
    if (!info?.isDirectory) {
      throw new CliError(`--vmid: '${target}' is not a directory`);
    }
    const ext = compress === "zstd" ? ".vma.zst" : compress === "gzip" ? ".vma.gz" : ".vma";
    path = `${target.replace(/\/+$/, "") || "/"}/vzdump-qemu-${vmid}-${
      formatVzdumpTime(writer.ctime)
    }${ext}`.replace(/^\/\//, "/");
  } else if (compressOption === undefined && target !== "-" && !target.startsWith("exec:")) {
    if (target.endsWith(".zst")) compress = "zstd";
    else if (target.endsWith(".gz")) compress = "gzip";
  }
  if (path !== "-" && !path.startsWith("exec:")) {
    const info = lstatOrUndefined(path);
    if (info && !info.isFifo && !info.isCharDevice) {
      throw new CliError(`can't open file ${path} - File exists`);
    }
  }

  // Configs.
  const configs: { name: string; data: Uint8Array }[] = [];
  for (const file of strings(values.config)) {
    let data: Uint8Array;
    try {
      data = await Deno.readFile(file);
    } catch (e) {
      throw new CliError(
        `Unable to read file: Failed to open file \u201c${file}\u201d: ${describeError(e)}`,
        { cause: e },
      );
    }
    const name = baseName(file);
    try {
      writer.addConfig(name, data);
    } catch (e) {
      throw new CliError(
        `Unable to append config data ${file} (len = ${data.length}) - ${describeError(e)}`,
        { cause: e },
      );
    }
    configs.push({ name, data });
  }

  // Disks.
  const sources: DiskSource[] = [];
  const devices: VmaDeviceWriter[] = [];
  try {
    for (const disk of disks) {
      if (UNSUPPORTED_FORMATS.includes(disk.format)) {
        throw new CliError(
          `bdrv_open '${disk.path}' failed - format '${disk.format}' is not supported yet (raw, qcow2 and vmdk are)`,
        );
      }
      const source = disk.format === "raw"
        ? await openDiskSource(disk.path, disk.format)
        : await openDiskImageSource(disk.path, disk.format);
      sources.push(source);
      if (source.size !== source.imageSize) {
        warn(
          `image '${disk.path}' size ${source.imageSize} is not a multiple of 512: padded with ${
            source.size - source.imageSize
          } zero bytes to ${source.size}`,
        );
      }
    }
    // A generated qemu-server.conf comes before the devices are added.
    const hasConf = configs.some((c) => c.name === "qemu-server.conf");
    if (values["make-config"] === true) {
      if (hasConf) {
        warn("--make-config: a qemu-server.conf is given, so none is generated");
      } else {
        const text = generateConfig(
          disks.map((d, i) => ({ name: d.name, size: sources[i].size })),
          { storage, vmid },
        );
        writer.addConfig("qemu-server.conf", text);
        configs.push({ name: "qemu-server.conf", data: new TextEncoder().encode(text) });
      }
    }
    for (let i = 0; i < disks.length; i++) {
      try {
        devices.push(writer.addDevice(disks[i].name, sources[i].size));
      } catch (e) {
        throw new CliError(
          `vma_writer_register_stream '${disks[i].name}' failed - ${describeError(e)}`,
          { cause: e },
        );
      }
    }
    const conf = configs.find((c) => c.name === "qemu-server.conf");
    if (conf) {
      const problems = restoreProblems(
        new TextDecoder().decode(conf.data),
        disks.map((d) => d.name).filter((n) => n !== "vmstate"),
      );
      for (const p of problems) warn(p);
    }
  } catch (e) {
    for (const s of sources) s.close();
    throw e;
  }

  // Write.
  const sink = await openSink(path);
  const transform = compressor(compress, zstdLevel);
  const pump = transform || !sink.reusesNothing
    ? (transform ? writer.readable.pipeThrough(transform) : writer.readable).pipeTo(sink.writable)
    : pumpRecycling(writer, sink.writable);
  const total = sources.reduce((n, s) => n + s.size, 0);
  let transferred = 0;
  let lastPercent = -1;
  const bar = createProgress("create", !verbose && values["no-progress"] !== true);
  const onBytes = (n: number) => {
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
    bar.update(transferred, total);
  };
  const zeros: number[] = [];
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
    await writer.abort(e).catch(() => {});
    sink.discard();
    for (const s of sources) s.close();
    if (e instanceof BrokenPipeError) throw e;
    throw toCliError(e, e instanceof CliError ? "" : "creating vma archive failed - ");
  }
  bar.finish();
  if (verbose) {
    disks.forEach((d, i) => {
      writeStderr(
        `image ${d.name}: size=${sources[i].size} zeros=${zeros[i]} saved=${
          sources[i].size - zeros[i]
        }\n`,
      );
    });
  }
  if (vmid !== undefined) await writeStdout(`${path}\n`);
  return 0;
}
