/**
 * A raw image writer: {@linkcode createRawWriter}. Data is written where it
 * belongs, in any order, with nothing kept in memory; the file is sized first,
 * so regions never written are holes that read as zeros.
 *
 * @module
 */

import type { DiskImageWriter, PositionedWriter } from "./disk_image_writer.ts";

/**
 * Creates a raw image of `size` bytes written through `target`.
 *
 * @example Writing a raw image into memory
 * ```ts
 * import { createRawWriter } from "./raw_writer.ts";
 * import assert from "node:assert/strict";
 *
 * const file = new Uint8Array(8);
 * const writer = await createRawWriter({
 *   write: (position, data) => Promise.resolve(file.set(data, position)),
 *   truncate: () => Promise.resolve(),
 * }, 8);
 * await writer.write(4, new Uint8Array([1, 2]));
 * await writer.close();
 * assert.deepEqual(file, new Uint8Array([0, 0, 0, 0, 1, 2, 0, 0]));
 * ```
 *
 * @param target Where the image is written.
 * @param size The size in bytes.
 * @returns The writer.
 * @throws {RangeError} `size` is not a safe non-negative integer, or a write falls outside it.
 */
export async function createRawWriter(
  target: PositionedWriter,
  size: number,
): Promise<DiskImageWriter> {
  if (!Number.isSafeInteger(size) || size < 0) {
    throw new RangeError(`Invalid raw size ${size}: it must be a non-negative safe integer`);
  }
  await target.truncate(size);
  return {
    format: "raw",
    size,
    write(offset: number, data: Uint8Array): Promise<void> {
      if (!Number.isSafeInteger(offset) || offset < 0 || offset + data.length > size) {
        return Promise.reject(
          new RangeError(
            `Cannot write ${data.length} bytes at offset ${offset}: the image holds ${size} bytes`,
          ),
        );
      }
      return target.write(offset, data);
    },
    close: () => Promise.resolve(),
  };
}
