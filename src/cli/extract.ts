/**
 * `vma extract <filename> [-v] [-d <drive-list>] [-r <fifo>] <targetdir>`:
 * configs and sparse raw disk images into a new directory, or (with `-r`,
 * qmrestore's map protocol) disks into existing volumes.
 *
 * @module
 */
import * as fs from "node:fs";
import { extractVma } from "../vma/extract_vma.ts";
import type { VmaDevice } from "../vma/vma_reader.ts";
import type { VmaDeviceSink } from "../vma/extract_vma.ts";
import { lastString, parseCommandArgs, strings } from "./_args.ts";
import { openArchive, toCliError } from "./_archive.ts";
import { BrokenPipeError, CliError, describeError, UsageError } from "./_errors.ts";
import { formatList, formatSummary } from "./_proxmox_text.ts";
import { writeStdout, writeStdoutSync } from "./_stdio.ts";
import { onCleanup } from "./_cleanup.ts";
import { readProgress } from "./_read_progress.ts";
import { readMap, type RestoreMapEntry } from "./_restore_map.ts";
import { HELP } from "./_usage.ts";

const BUFFER = 4 * 1024 * 1024;
const BLOCK = 4096;
/** A restore target may be larger than the device by this much (Proxmox's slack). */
const TARGET_SLACK = 4 * 1024 * 1024;

/** Why `name` cannot be a file name in the target directory, or undefined. */
function unsafeName(name: string): string | undefined {
  if (name === "" || name === "." || name === "..") return `'${name}' is not a file name`;
  if (name.includes("/") || name.includes("\\")) return `'${name}' contains a path separator`;
  // deno-lint-ignore no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(name)) return `'${name}' contains a control character`;
  return undefined;
}

/**
 * A file written with positioned writes; contiguous writes are gathered into
 * large ones. New files are made sparse by ftruncate; with `writeZero`, the
 * blocks never written are zeroed at the end (for existing volumes).
 */
class FileSink implements VmaDeviceSink {
  #fd: number;
  #buf = new Uint8Array(BUFFER);
  #start = 0;
  #used = 0;
  #closed = false;
  #append: boolean;
  #appendAt = 0;
  #size: number;
  #written: Uint8Array | undefined; // one bit per 4 KiB block, with writeZero

  private constructor(fd: number, size: number, append: boolean, writeZero: boolean) {
    this.#fd = fd;
    this.#size = size;
    this.#append = append;
    if (writeZero) this.#written = new Uint8Array(Math.ceil(size / BLOCK / 8));
  }

  /** A new sparse file of `size` bytes (fails if it exists). */
  static create(path: string, size: number): FileSink {
    const fd = fs.openSync(path, "wx", 0o644);
    try {
      fs.ftruncateSync(fd, size);
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
    return new FileSink(fd, size, false, false);
  }

  /** A new file written sequentially (vmstate.bin). */
  static sequential(path: string): FileSink {
    return new FileSink(fs.openSync(path, "wx", 0o644), 0, true, false);
  }

  /** An existing file or block device of at least `size` bytes. */
  static existing(fd: number, size: number, writeZero: boolean): FileSink {
    return new FileSink(fd, size, false, writeZero);
  }

  #pwrite(data: Uint8Array, position: number): void {
    let off = 0;
    while (off < data.length) {
      off += fs.writeSync(this.#fd, data, off, data.length - off, position + off);
    }
  }

  #flush(): void {
    if (this.#used === 0) return;
    this.#pwrite(this.#buf.subarray(0, this.#used), this.#start);
    this.#used = 0;
  }

  #mark(offset: number, length: number): void {
    const bits = this.#written!;
    for (
      let b = Math.floor(offset / BLOCK), end = Math.ceil((offset + length) / BLOCK);
      b < end;
      b++
    ) {
      bits[b >>> 3] |= 1 << (b & 7);
    }
  }

  write(offset: number, data: Uint8Array): void {
    if (this.#append) {
      offset = this.#appendAt;
      this.#appendAt += data.length;
    }
    if (this.#written) this.#mark(offset, data.length);
    if (
      this.#used > 0 && offset === this.#start + this.#used && this.#used + data.length <= BUFFER
    ) {
      this.#buf.set(data, this.#used);
      this.#used += data.length;
      return;
    }
    this.#flush();
    if (data.length >= BUFFER / 2) {
      this.#pwrite(data, offset);
      return;
    }
    this.#start = offset;
    this.#buf.set(data, 0);
    this.#used = data.length;
  }

  #zeroUnwritten(): void {
    const bits = this.#written!;
    const zeros = new Uint8Array(BUFFER);
    const blocks = Math.ceil(this.#size / BLOCK);
    for (let b = 0; b < blocks;) {
      if (bits[b >>> 3] & (1 << (b & 7))) {
        b++;
        continue;
      }
      let e = b;
      while (e < blocks && !(bits[e >>> 3] & (1 << (e & 7))) && e - b < BUFFER / BLOCK) e++;
      const from = b * BLOCK;
      const to = Math.min(e * BLOCK, this.#size);
      this.#pwrite(zeros.subarray(0, to - from), from);
      b = e;
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#flush();
    if (this.#written) this.#zeroUnwritten();
    fs.fsyncSync(this.#fd);
    this.#closed = true;
    fs.closeSync(this.#fd);
  }

  abandon(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      fs.closeSync(this.#fd);
    } catch {
      // closed
    }
  }
}

/** Opens a `-r` map target: an existing raw file or block device. */
function openTarget(device: VmaDevice, entry: RestoreMapEntry): FileSink {
  const path = entry.path!;
  const format = entry.format ??
    (path.endsWith(".raw") || path.startsWith("/dev/") ? "raw" : undefined);
  if (format !== "raw") {
    throw new CliError(
      `can't open file ${path} - ${
        format === undefined ? "cannot tell its format (give format=raw:)" : `format '${format}'`
      } is not supported yet (only raw targets)`,
    );
  }
  if (
    entry.cache !== undefined &&
    !["none", "writeback", "unsafe", "directsync", "writethrough"].includes(entry.cache)
  ) {
    throw new CliError(`invalid cache option: ${entry.cache}`);
  }
  let fd: number;
  let size: number;
  try {
    fd = fs.openSync(path, "r+");
  } catch (e) {
    throw new CliError(
      `can't open file ${path} - Could not open '${path}': ${describeError(e)}`,
      { cause: e },
    );
  }
  try {
    const st = fs.fstatSync(fd);
    size = st.size;
    if (!st.isFile()) {
      // Block devices report size 0: their end tells the size.
      const file = Deno.openSync(path, { read: true });
      try {
        size = file.seekSync(0, Deno.SeekMode.End);
      } finally {
        file.close();
      }
    }
  } catch (e) {
    fs.closeSync(fd);
    throw new CliError(`can't open file ${path} - ${describeError(e)}`, { cause: e });
  }
  if (size !== device.size && (size < device.size || size > device.size + TARGET_SLACK)) {
    fs.closeSync(fd);
    throw new CliError(
      `vma_reader_register_bs for stream ${device.name} failed - unexpected size ${size} != ${device.size}`,
    );
  }
  return FileSink.existing(fd, device.size, entry.writeZero);
}

/** Runs `vma extract`; returns the exit status. */
export async function extractCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs("extract", args, {
    verbose: { type: "boolean", short: "v" },
    drives: { type: "string", short: "d", multiple: true },
    readmap: { type: "string", short: "r" },
    "no-progress": { type: "boolean" },
  });
  if (values.help) {
    await writeStdout(HELP.extract);
    return 0;
  }
  if (positionals.length !== 2) {
    throw new UsageError(
      positionals.length < 2
        ? `missing ${positionals.length === 0 ? "<filename> and " : ""}<targetdir>`
        : `unexpected argument '${positionals[2]}'`,
      "extract",
    );
  }
  const [filename, dir] = positionals;
  const driveList = strings(values.drives).flatMap((d) => d.split(","));
  const readmap = lastString(values.readmap);
  const verbose = values.verbose === true;

  const { reader, header } = await openArchive(filename);
  // Registered first; removes the directory only once this process made it.
  let created = false;
  const sinks: FileSink[] = [];
  const removeDir = onCleanup(() => {
    for (const s of sinks) s.abandon();
    if (created) Deno.removeSync(dir, { recursive: true });
  });
  try {
    fs.mkdirSync(dir, 0o777);
    created = true;
  } catch (e) {
    removeDir();
    await reader.cancel().catch(() => {});
    throw new CliError(`unable to create target directory ${dir} - ${describeError(e)}`, {
      cause: e,
    });
  }
  const renames: [string, string][] = [];
  const progress = readProgress(verbose, values["no-progress"] !== true, "extract");
  try {
    // Configs first: qmrestore reads qemu-server.conf once it sees CTIME.
    for (const c of header.configs) {
      const bad = unsafeName(c.name);
      if (bad) throw new CliError(`unable to write file: config name ${bad}`);
      const path = `${dir}/${c.name}`;
      try {
        fs.writeFileSync(path, c.data, { flag: "wx", mode: 0o644 });
      } catch (e) {
        throw new CliError(
          `unable to write file: Failed to create file \u201c${path}\u201d: ${describeError(e)}`,
          { cause: e },
        );
      }
    }
    let map: Map<string, RestoreMapEntry> | undefined;
    if (readmap !== undefined) {
      await writeStdout(formatList(header));
      map = await readMap(readmap);
    }
    const summary = await extractVma(reader, {
      device(d: VmaDevice) {
        const bad = unsafeName(d.name);
        if (bad) throw new CliError(`unable to extract device: device name ${bad}`);
        if (d.vmstate) {
          const path = `${dir}/vmstate.bin`;
          try {
            const sink = FileSink.sequential(path);
            sinks.push(sink);
            return sink;
          } catch (e) {
            throw new CliError(`create vmstate file '${path}' failed - ${describeError(e)}`, {
              cause: e,
            });
          }
        }
        if (driveList.length > 0 && !driveList.includes(d.name)) return undefined;
        if (map) {
          const entry = map.get(d.name);
          if (entry === undefined) throw new CliError(`no device name mapping for ${d.name}`);
          if (entry.skip) return undefined;
          const sink = openTarget(d, entry);
          sinks.push(sink);
          return sink;
        }
        const tmp = `${dir}/tmp-disk-${d.name}.raw`;
        writeStdoutSync(`DEVINFO ${tmp} ${d.size}\n`);
        try {
          const sink = FileSink.create(tmp, d.size);
          sinks.push(sink);
          renames.push([tmp, `${dir}/disk-${d.name}.raw`]);
          return sink;
        } catch (e) {
          throw new CliError(`can't create file ${tmp}: ${describeError(e)}`, { cause: e });
        }
      },
    }, { onProgress: progress.onProgress });
    progress.finish();
    for (const [from, to] of renames) {
      try {
        fs.renameSync(from, to);
      } catch (e) {
        throw new CliError(`rename ${from} to ${to} failed - ${describeError(e)}`, { cause: e });
      }
    }
    if (verbose) await writeStdout(formatSummary(summary));
  } catch (e) {
    progress.finish();
    await reader.cancel().catch(() => {});
    if (e instanceof BrokenPipeError) throw e;
    if (e instanceof CliError && !(e.cause instanceof SyntaxError)) throw e;
    throw toCliError(e, "restore failed - ");
  }
  removeDir();
  return 0;
}
