// `vma extract -r`: opening a map target, an existing raw file or block device,
// never the archive being read and never the target of another device.
import * as fs from "node:fs";
import type { VmaDevice } from "../vma/vma_reader.ts";
import { CliError, describeError } from "./_errors.ts";
import { FileSink } from "./_file_sink.ts";
import { type AbandonableSink, FileWriter, imageWriterSink } from "./_file_writer.ts";
import { openQcow2Writer } from "../image/qcow2_writer.ts";
import type { DiskImageWriter } from "../image/disk_image_writer.ts";
import type { RestoreMapEntry } from "./_restore_map.ts";
import { quote, shown, shownQuoted } from "./_quote.ts";

/** A restore target may be larger than the device by this much (Proxmox's slack). */
const TARGET_SLACK = 4 * 1024 * 1024;

const CACHE_MODES = ["none", "writeback", "unsafe", "directsync", "writethrough"];

/** Which file an open file or path is: device and inode (or the device number). */
export class FileIdentity {
  readonly key: string;
  private constructor(stat: fs.BigIntStats) {
    const special = stat.isBlockDevice() || stat.isCharacterDevice();
    this.key = special ? `rdev:${stat.rdev}` : `${stat.dev}:${stat.ino}`;
  }

  /** The file at `path` (`-`: standard input), or undefined when it cannot be told. */
  static of(path: string): FileIdentity | undefined {
    try {
      return new FileIdentity(
        path === "-" ? fs.fstatSync(0, { bigint: true }) : fs.statSync(
          path,
          { bigint: true },
        ),
      );
    } catch {
      return undefined;
    }
  }

  /** The file open as `fd`. */
  static ofFd(fd: number): FileIdentity {
    return new FileIdentity(fs.fstatSync(fd, { bigint: true }));
  }
}

/** The size of the file or block device open as `fd` (block devices: their end). */
function targetSize(fd: number, path: string): number {
  const st = fs.fstatSync(fd);
  if (st.isFile()) return st.size;
  const file = Deno.openSync(path, { read: true });
  try {
    return file.seekSync(0, Deno.SeekMode.End);
  } finally {
    file.close();
  }
}

/** The target's format (`raw` or `qcow2`), checked with the map entry's other options. */
function checkEntry(path: string, entry: RestoreMapEntry): "raw" | "qcow2" {
  const format = entry.format ??
    (path.endsWith(".raw") || path.startsWith("/dev/")
      ? "raw"
      : path.endsWith(".qcow2")
      ? "qcow2"
      : undefined);
  if (format !== "raw" && format !== "qcow2") {
    throw new CliError(
      `can't open file ${shown(path)} - ${
        format === undefined
          ? "cannot tell its format (give format=raw:)"
          : `format ${shownQuoted(format)}`
      } is not supported (only raw and qcow2 targets)`,
    );
  }
  if (entry.cache !== undefined && !CACHE_MODES.includes(entry.cache)) {
    throw new CliError(`invalid cache option: ${shown(entry.cache)}`);
  }
  return format;
}

/** Checks a target's size (`size`) against the device's, with Proxmox's slack. */
function checkSize(device: VmaDevice, size: number): void {
  if (size !== device.size && (size < device.size || size > device.size + TARGET_SLACK)) {
    throw new CliError(
      `vma_reader_register_bs for stream ${
        shown(device.name)
      } failed - unexpected size ${size} != ${device.size}`,
    );
  }
}

/** Opens the qcow2 image at `path` (open as `fd`, closed here) for writing the device. */
async function openQcow2Target(
  device: VmaDevice,
  entry: RestoreMapEntry,
  path: string,
  fd: number,
): Promise<AbandonableSink> {
  fs.closeSync(fd);
  let file: FileWriter;
  try {
    file = new FileWriter(Deno.openSync(path, { read: true, write: true }));
  } catch (e) {
    throw new CliError(
      `can't open file ${shown(path)} - Could not open ${shownQuoted(path)}: ${describeError(e)}`,
      { cause: e },
    );
  }
  let writer: DiskImageWriter;
  try {
    const fileSize = Deno.statSync(path).size;
    writer = await openQcow2Writer(file, fileSize, { zeroUnwritten: entry.writeZero });
    checkSize(device, writer.size);
  } catch (e) {
    file.abandon();
    if (e instanceof CliError) throw e;
    // Not as the cause: runExtract would take a SyntaxError for a broken archive.
    throw new CliError(`can't open file ${shown(path)} - ${describeError(e)}`);
  }
  return imageWriterSink(file, writer);
}

/**
 * Opens the `-r` map target of `device`: an existing raw file or block device
 * of the device's size (up to 4 MiB more). Refuses the archive being read
 * (`archive`) and a file already in `targets` (identity key to device name),
 * where it adds this one.
 */
export function openTarget(
  device: VmaDevice,
  entry: RestoreMapEntry,
  archive: FileIdentity | undefined,
  targets: Map<string, string>,
): FileSink | Promise<AbandonableSink> {
  const path = entry.path!;
  const format = checkEntry(path, entry);
  let fd: number;
  try {
    fd = fs.openSync(path, "r+");
  } catch (e) {
    throw new CliError(
      `can't open file ${shown(path)} - Could not open ${shownQuoted(path)}: ${describeError(e)}`,
      { cause: e },
    );
  }
  try {
    const identity = FileIdentity.ofFd(fd);
    if (archive !== undefined && identity.key === archive.key) {
      throw new CliError(
        `refusing to restore device ${quote(device.name)} to ${
          quote(path)
        }: it is the archive being read`,
      );
    }
    const other = targets.get(identity.key);
    if (other !== undefined) {
      throw new CliError(
        `refusing to restore device ${quote(device.name)} to ${quote(path)}: device ${
          quote(other)
        } is restored there too`,
      );
    }
    targets.set(identity.key, device.name);
    if (format === "qcow2") return openQcow2Target(device, entry, path, fd);
    let size: number;
    try {
      size = targetSize(fd, path);
    } catch (e) {
      throw new CliError(`can't open file ${shown(path)} - ${describeError(e)}`, { cause: e });
    }
    checkSize(device, size);
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
  return FileSink.existing(fd, device.size, entry.writeZero);
}
