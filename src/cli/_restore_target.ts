// `vma extract -r`: opening a map target, an existing raw file or block device,
// never the archive being read and never the target of another device.
import * as fs from "node:fs";
import type { VmaDevice } from "../vma/vma_reader.ts";
import { CliError, describeError } from "./_errors.ts";
import { FileSink } from "./_file_sink.ts";
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

function checkEntry(path: string, entry: RestoreMapEntry): void {
  const format = entry.format ??
    (path.endsWith(".raw") || path.startsWith("/dev/") ? "raw" : undefined);
  if (format !== "raw") {
    throw new CliError(
      `can't open file ${shown(path)} - ${
        format === undefined
          ? "cannot tell its format (give format=raw:)"
          : `format ${shownQuoted(format)}`
      } is not supported yet (only raw targets)`,
    );
  }
  if (entry.cache !== undefined && !CACHE_MODES.includes(entry.cache)) {
    throw new CliError(`invalid cache option: ${shown(entry.cache)}`);
  }
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
): FileSink {
  const path = entry.path!;
  checkEntry(path, entry);
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
    let size: number;
    try {
      size = targetSize(fd, path);
    } catch (e) {
      throw new CliError(`can't open file ${shown(path)} - ${describeError(e)}`, { cause: e });
    }
    if (size !== device.size && (size < device.size || size > device.size + TARGET_SLACK)) {
      throw new CliError(
        `vma_reader_register_bs for stream ${
          shown(device.name)
        } failed - unexpected size ${size} != ${device.size}`,
      );
    }
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
  return FileSink.existing(fd, device.size, entry.writeZero);
}
