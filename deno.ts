/**
 * The Deno-only half of the library: what reads files, kept apart so that the
 * main entry (`@vmakit/vma`) stays free of `Deno.*` and loads in any runtime.
 *
 * {@linkcode openPositionedReader} opens a disk image file as the
 * {@linkcode PositionedReader} that `openDiskImage` and the image
 * readers take.
 *
 * @example Reading a raw disk image's size
 * ```ts
 * import { openDiskImage } from "@vmakit/vma";
 * import { openPositionedReader } from "@vmakit/vma/deno";
 * import assert from "node:assert/strict";
 *
 * const path = await Deno.makeTempFile();
 * await Deno.writeFile(path, new Uint8Array(65536));
 * const image = await openDiskImage(await openPositionedReader(path), { format: "raw" });
 * assert.equal(image.size, 65536);
 * await image.close();
 * await Deno.remove(path);
 * ```
 *
 * @module
 */
import type { PositionedReader } from "./src/image/disk_image.ts";

export type { PositionedReader };

/**
 * A {@linkcode PositionedReader} over an open file of `size` bytes. Reads are
 * done one at a time (each is a seek then reads), in the order they are
 * asked; `close` closes the file.
 */
export function filePositionedReader(file: Deno.FsFile, size: number): PositionedReader {
  if (!Number.isSafeInteger(size) || size < 0) {
    throw new RangeError(`Cannot read the file: size ${size} is not a byte count`);
  }
  let queue: Promise<unknown> = Promise.resolve();
  const readAt = async (position: number, length: number): Promise<Uint8Array> => {
    const want = Math.max(0, Math.min(length, size - position));
    const buf = new Uint8Array(want);
    if (want === 0) return buf;
    await file.seek(position, Deno.SeekMode.Start);
    let filled = 0;
    while (filled < want) {
      const n = await file.read(buf.subarray(filled));
      if (n === null) break;
      filled += n;
    }
    return buf.subarray(0, filled);
  };
  return {
    size,
    read(position: number, length: number): Promise<Uint8Array> {
      if (!Number.isSafeInteger(position) || position < 0) {
        return Promise.reject(new RangeError(`Cannot read at ${position}: not a byte offset`));
      }
      if (!Number.isSafeInteger(length) || length < 0) {
        return Promise.reject(new RangeError(`Cannot read ${length} bytes: not a byte count`));
      }
      const result = queue.then(() => readAt(position, length));
      queue = result.catch(() => {});
      return result;
    },
    async close(): Promise<void> {
      await queue;
      file.close();
    },
  };
}

/**
 * Opens the file at `path` for reading as a {@linkcode PositionedReader}; its
 * size is taken when opened. A directory is refused with a `TypeError`.
 */
export async function openPositionedReader(path: string | URL): Promise<PositionedReader> {
  const file = await Deno.open(path, { read: true });
  try {
    const info = await file.stat();
    if (info.isDirectory) {
      throw new TypeError(`Cannot read ${JSON.stringify(String(path))}: it is a directory`);
    }
    let size = info.size;
    if (!info.isFile) size = await file.seek(0, Deno.SeekMode.End); // a block device
    return filePositionedReader(file, size);
  } catch (e) {
    file.close();
    throw e;
  }
}
