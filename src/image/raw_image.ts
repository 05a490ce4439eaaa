/**
 * Raw disk images: the file's bytes are the disk's bytes.
 *
 * @module
 */

import type { DiskImage, DiskImageRegion, PositionedReader } from "./disk_image.ts";
import { checkReadRange } from "./_mapped_image.ts";

/**
 * Opens a raw disk image: the virtual disk is the file itself, byte for byte.
 *
 * `regions()` reports the whole disk as one region that is not known to be
 * zero (finding holes in a raw file is left to the caller). Closing the image
 * closes `reader`.
 *
 * @param reader Positioned reads of the image file.
 * @returns The disk image, with format `"raw"` and the file's size.
 * @throws {RangeError} The file size is not a non-negative safe integer.
 *
 * @example Reading a raw image held in memory
 * ```ts
 * import { openRawImage, type PositionedReader } from "@vmakit/vma";
 * import assert from "node:assert/strict";
 *
 * const bytes = new Uint8Array([1, 2, 3, 4, 5]);
 * const reader: PositionedReader = {
 *   size: bytes.length,
 *   read: (position, length) => Promise.resolve(bytes.slice(position, position + length)),
 *   close: () => Promise.resolve(),
 * };
 * const image = await openRawImage(reader);
 * assert.equal(image.size, 5);
 * assert.deepEqual(await image.read(1, 3), new Uint8Array([2, 3, 4]));
 * assert.deepEqual(await Array.fromAsync(image.regions()), [{ offset: 0, length: 5, zero: false }]);
 * await image.close();
 * ```
 */
export function openRawImage(reader: PositionedReader): Promise<DiskImage> {
  const size = reader.size;
  if (!Number.isSafeInteger(size) || size < 0) {
    return Promise.reject(new RangeError(`Invalid raw image: the file size "${size}" is invalid`));
  }
  return Promise.resolve(new RawImage(reader, size));
}

class RawImage implements DiskImage {
  readonly format = "raw";
  readonly size: number;
  #reader: PositionedReader;

  constructor(reader: PositionedReader, size: number) {
    this.#reader = reader;
    this.size = size;
  }

  async *regions(): AsyncGenerator<DiskImageRegion> {
    if (this.size > 0) yield { offset: 0, length: this.size, zero: false };
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    checkReadRange(offset, length, this.size);
    const bytes = await this.#reader.read(offset, length);
    if (bytes.length !== length) {
      throw new SyntaxError(
        `Truncated raw image: ${length} bytes at offset ${offset} asked, ${bytes.length} read`,
      );
    }
    return bytes;
  }

  close(): Promise<void> {
    return this.#reader.close();
  }
}
