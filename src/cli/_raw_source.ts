// Disk images as `create` input. Raw files and block devices are read
// sequentially in large pieces here; qcow2 and VMDK go through the library's
// openDiskImage in _disk_image_source.ts, which uses filePositionedReader and
// feedDiskImage below.
import type { DiskImage, PositionedReader } from "../image/disk_image.ts";
import type { VmaDeviceWriter } from "../vma/vma_writer.ts";
import { type FileKind, openChecked } from "./_open_checked.ts";
import { CliError, describeError } from "./_errors.ts";
import { openHoleMap } from "./_holes.ts";
import { shownQuoted } from "./_quote.ts";

const CHUNK = 4 * 1024 * 1024;
/** Raw disks are read in pieces of this size, two at a time (one read ahead). */
const RAW_CHUNK = 2 * 1024 * 1024;
const CLUSTER = 65536;

/** An opened disk image, ready to feed one device. */
export interface DiskSource {
  readonly path: string;
  readonly format: string;
  /** The device size: the image's virtual size, padded up to a multiple of 512. */
  readonly size: number;
  /** The image's own size in bytes. */
  readonly imageSize: number;
  /** Writes the whole image into `device`; `onBytes` gets each piece's length. */
  feed(device: VmaDeviceWriter, onBytes: (n: number) => void): Promise<void>;
  close(): void;
}

/** Opens a disk for `create`; errors in Proxmox's `bdrv_open '<path>' failed - ...` wording. */
export async function openDiskSource(path: string, format: string): Promise<DiskSource> {
  if (format !== "raw") {
    throw new CliError(
      `bdrv_open ${shownQuoted(path)} failed - format ${
        shownQuoted(format)
      } is not supported yet (only 'raw')`,
    );
  }
  let file: Deno.FsFile;
  try {
    file = await openRawFile(path);
  } catch (e) {
    throw new CliError(
      `bdrv_open ${shownQuoted(path)} failed - Could not open ${shownQuoted(path)}: ${
        describeError(e)
      }`,
      { cause: e },
    );
  }
  let size: number;
  try {
    // Block devices report size 0 in stat; their end tells the size.
    size = await file.seek(0, Deno.SeekMode.End);
    await file.seek(0, Deno.SeekMode.Start);
  } catch (e) {
    file.close();
    throw new CliError(
      `bdrv_open ${shownQuoted(path)} failed - Could not open ${shownQuoted(path)}: ${
        describeError(e)
      }`,
      { cause: e },
    );
  }
  return new RawSource(path, file, size);
}

/**
 * Opens a raw disk without ever blocking in open ({@linkcode openChecked}):
 * regular files and block devices only (a FIFO, socket or character device
 * has no size to back up).
 */
function openRawFile(path: string): Promise<Deno.FsFile> {
  return openChecked(path, checkRawKind);
}

function checkRawKind(info: FileKind): void {
  if (info.isDirectory()) throw new Error("Is a directory");
  if (info.isFile() || info.isBlockDevice()) return;
  const kind = info.isFIFO()
    ? "a FIFO"
    : info.isCharacterDevice()
    ? "a character device"
    : "a socket or special file";
  throw new Error(`it is ${kind}, not a regular file or block device`);
}

/**
 * Read buffers of a raw source that finished feeding, for the next one: disks
 * are fed one after another, so a four-disk archive needs one pair, not four.
 */
let spareBuffers: Uint8Array[] | undefined;

class RawSource implements DiskSource {
  readonly format = "raw";
  readonly size: number;
  #file: Deno.FsFile;
  #closed = false;

  constructor(readonly path: string, file: Deno.FsFile, readonly imageSize: number) {
    this.#file = file;
    this.size = Math.ceil(imageSize / 512) * 512;
  }

  async #readFull(buf: Uint8Array): Promise<number> {
    let filled = 0;
    while (filled < buf.length) {
      let n: number | null;
      try {
        n = await this.#file.read(buf.subarray(filled));
      } catch (e) {
        throw new CliError(`read error on ${shownQuoted(this.path)} - ${describeError(e)}`, {
          cause: e,
        });
      }
      if (n === null) break;
      filled += n;
    }
    return filled;
  }

  async feed(device: VmaDeviceWriter, onBytes: (n: number) => void): Promise<void> {
    // Where the file system tells holes (SEEK_HOLE), they become zero
    // clusters without being read: a mostly empty 64 GiB image takes moments.
    const holes = openHoleMap(this.path);
    try {
      let at = 0;
      if (holes === undefined) at = await this.#feedRange(device, 0, this.imageSize, onBytes);
      while (holes !== undefined && at < this.imageSize) {
        const data = holes.nextData(at);
        if (data === undefined) break;
        // Data is read in whole clusters; a hole must cover clusters to be skipped.
        const start = Math.max(at, Math.floor(data / CLUSTER) * CLUSTER);
        if (start > at) {
          await device.writeZeroes(at, start - at);
          onBytes(start - at);
        }
        const end = Math.min(this.imageSize, Math.ceil(holes.nextHole(data) / CLUSTER) * CLUSTER);
        at = await this.#feedRange(device, start, end, onBytes);
      }
      if (at < this.size) {
        await device.writeZeroes(at, this.size - at);
        onBytes(this.size - at);
      }
    } finally {
      holes?.close();
    }
    // An image that grew while it was read is not the image that was sized
    // (one that shrank fails above), so the archive is not finished.
    let end: number;
    try {
      end = await this.#file.seek(0, Deno.SeekMode.End);
    } catch (e) {
      throw new CliError(`read error on ${shownQuoted(this.path)} - ${describeError(e)}`, {
        cause: e,
      });
    }
    if (end !== this.imageSize) {
      throw new CliError(
        `read error on ${
          shownQuoted(this.path)
        } - the image changed size while it was read (${this.imageSize} bytes at the start, ${end} at the end)`,
      );
    }
    await device.close();
    // Every read has settled (a failed feed keeps its buffers: a read may be pending).
    if (this.#buffers !== undefined) spareBuffers = this.#buffers;
    this.#buffers = undefined;
  }

  /**
   * Feeds bytes `start .. end` of the image (end: a cluster boundary or the
   * image end, which is padded up to the device size). Returns where it ended.
   */
  async #feedRange(
    device: VmaDeviceWriter,
    start: number,
    end: number,
    onBytes: (n: number) => void,
  ): Promise<number> {
    if (start >= end) return start;
    try {
      await this.#file.seek(start, Deno.SeekMode.Start);
    } catch (e) {
      throw new CliError(`read error on ${shownQuoted(this.path)} - ${describeError(e)}`, {
        cause: e,
      });
    }
    // Two buffers: the next piece is read while the writer takes this one.
    if (this.#buffers === undefined) {
      this.#buffers = spareBuffers ?? [new Uint8Array(RAW_CHUNK), new Uint8Array(RAW_CHUNK)];
      spareBuffers = undefined;
    }
    const buffers = this.#buffers;
    let offset = start;
    let which = 0;
    const want = (at: number) => Math.min(RAW_CHUNK, end - at);
    // A read-ahead is marked handled at once: when the archive fails first
    // (stdout closed), it is never awaited and fails when the file is closed.
    const readAhead = (buf: Uint8Array) => {
      const read = this.#readFull(buf);
      read.catch(() => {});
      return read;
    };
    let pending: Promise<number> | undefined = readAhead(buffers[0].subarray(0, want(start)));
    while (pending) {
      const n: number = await pending;
      const expected = want(offset);
      if (n < expected) {
        throw new CliError(
          `read error on ${shownQuoted(this.path)} - the image ended at ${
            offset + n
          } bytes, before its size ${this.imageSize}`,
        );
      }
      const buf = buffers[which];
      const next: number = offset + n;
      pending = next < end ? readAhead(buffers[which ^ 1].subarray(0, want(next))) : undefined;
      let length = n;
      if (next === this.imageSize && this.size > this.imageSize) {
        // Pad the last piece with zeros up to the device size (within the buffer).
        buf.fill(0, n, n + (this.size - this.imageSize));
        length += this.size - this.imageSize;
      }
      await device.write(offset, buf.subarray(0, length));
      onBytes(length);
      offset += length;
      which ^= 1;
    }
    return offset;
  }

  #buffers: Uint8Array[] | undefined;

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#file.close();
    } catch {
      // closed
    }
  }
}

/**
 * CHUNK-sized buffers that feedDiskImage is done with (the DiskImage contract
 * makes the bytes `read` returns the caller's), for filePositionedReader's
 * next CHUNK-sized read: a qcow2 or VMDK image is then read without a fresh
 * 4 MiB buffer per piece.
 */
const readPool: Uint8Array[] = [];
const READ_POOL_SIZE = 2;

/** A PositionedReader over an open file (for the image-format readers). */
export function filePositionedReader(file: Deno.FsFile, size: number): PositionedReader {
  return {
    size,
    async read(position: number, length: number): Promise<Uint8Array> {
      const want = Math.max(0, Math.min(length, size - position));
      const buf = want === CHUNK ? readPool.pop() ?? new Uint8Array(CHUNK) : new Uint8Array(want);
      await file.seek(position, Deno.SeekMode.Start);
      let filled = 0;
      while (filled < buf.length) {
        const n = await file.read(buf.subarray(filled));
        if (n === null) break;
        filled += n;
      }
      return buf.subarray(0, filled);
    },
    close(): Promise<void> {
      file.close();
      return Promise.resolve();
    },
  };
}

/**
 * Feeds a DiskImage into `device`: zero regions as zero clusters without
 * reading them, the rest read in large pieces.
 */
export async function feedDiskImage(
  image: DiskImage,
  device: VmaDeviceWriter,
  onBytes: (n: number) => void,
): Promise<void> {
  const zeros = new Uint8Array(CLUSTER);
  let at = 0; // next byte to write
  const writeData = async (end: number) => {
    while (at < end) {
      const n = Math.min(CHUNK, end - at);
      const bytes = await image.read(at, n);
      await device.write(at, bytes);
      if (
        bytes.byteLength === CHUNK && bytes.buffer.byteLength === CHUNK &&
        readPool.length < READ_POOL_SIZE && !readPool.includes(bytes)
      ) {
        readPool.push(bytes);
      }
      onBytes(n);
      at += n;
    }
  };
  const writeZeros = async (end: number) => {
    // Unaligned head and tail as data, the aligned middle as zero clusters.
    const head = Math.min(end, Math.ceil(at / CLUSTER) * CLUSTER);
    while (at < head) {
      const n = head - at;
      await device.write(at, zeros.subarray(0, n));
      onBytes(n);
      at += n;
    }
    const middleEnd = end === image.size ? end : Math.floor(end / CLUSTER) * CLUSTER;
    if (middleEnd > at) {
      await device.writeZeroes(at, middleEnd - at);
      onBytes(middleEnd - at);
      at = middleEnd;
    }
    while (at < end) {
      const n = Math.min(CLUSTER, end - at);
      await device.write(at, zeros.subarray(0, n));
      onBytes(n);
      at += n;
    }
  };
  for await (const region of image.regions()) {
    const end = region.offset + region.length;
    if (region.zero) await writeZeros(end);
    else await writeData(end);
  }
  await device.close();
}
