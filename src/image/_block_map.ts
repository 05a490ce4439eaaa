/**
 * The map shared by the block-based formats (VHD, VHDX, VDI): the virtual
 * disk is cut into equal blocks, each either stored whole at a host offset or
 * reading as zeros. Consecutive blocks stored one after the other, and
 * consecutive zero blocks, come out as one extent.
 *
 * @module
 */

import type { PositionedReader } from "./disk_image.ts";
import { type Extent, hex } from "./_mapped_image.ts";
import { corrupt, type ImageFormatName } from "./_image_errors.ts";

/** A block that reads as zeros (unallocated, discarded, a zero block). */
export const ZERO_BLOCK = -1;

/**
 * Where block `index` is stored in the file (its first byte), or
 * {@linkcode ZERO_BLOCK}. May throw for a malformed entry.
 */
export type BlockLookup = (index: number) => number | Promise<number>;

/** Maps virtual offsets to extents through a {@linkcode BlockLookup}. */
export class BlockMap {
  #reader: PositionedReader;
  #format: ImageFormatName;
  #blockSize: number;
  #size: number;
  #lookup: BlockLookup;

  /**
   * @param size The virtual size: the blocks that cover it are looked up.
   */
  constructor(
    format: ImageFormatName,
    reader: PositionedReader,
    blockSize: number,
    size: number,
    lookup: BlockLookup,
  ) {
    this.#format = format;
    this.#reader = reader;
    this.#blockSize = blockSize;
    this.#size = size;
    this.#lookup = lookup;
  }

  /** The host offset of a block, checked to lie in the file. */
  async #host(index: number): Promise<number> {
    const host = await this.#lookup(index);
    if (host !== ZERO_BLOCK && (!Number.isSafeInteger(host) || host >= this.#reader.size)) {
      throw corrupt(
        this.#format,
        `block ${index} is stored at ${hex(host)}, past the end of the file`,
      );
    }
    return host;
  }

  /** The extent at `offset`: a run of blocks up to `end` (rounded up to a block). */
  map = async (offset: number, end: number): Promise<Extent> => {
    const blockSize = this.#blockSize;
    const blocks = Math.ceil(this.#size / blockSize);
    let index = Math.floor(offset / blockSize);
    const blockStart = index * blockSize;
    const host = await this.#host(index);
    let runEnd = blockStart + blockSize;
    let next = host === ZERO_BLOCK ? ZERO_BLOCK : host + blockSize;
    while (runEnd < end && ++index < blocks) {
      const following = await this.#host(index);
      if (following !== next) break;
      runEnd += blockSize;
      if (next !== ZERO_BLOCK) next += blockSize;
    }
    const length = runEnd - offset;
    if (host === ZERO_BLOCK) return { kind: "zero", length };
    return { kind: "data", length, reader: this.#reader, position: host + (offset - blockStart) };
  };
}

/** Reads exactly `length` bytes at `position`; a short read is a corrupt image. */
export async function readExactly(
  format: ImageFormatName,
  reader: PositionedReader,
  position: number,
  length: number,
  what: string,
): Promise<Uint8Array> {
  const bytes = position < reader.size ? await reader.read(position, length) : new Uint8Array(0);
  if (bytes.length !== length) {
    throw corrupt(format, `the ${what} at ${hex(position)} is past the end of the file`);
  }
  return bytes;
}

/** Checks the reader's size; returns it. */
export function checkFileSize(format: ImageFormatName, reader: PositionedReader): number {
  const fileSize = reader.size;
  if (!Number.isSafeInteger(fileSize) || fileSize < 0) {
    throw new RangeError(`Invalid ${format} image: the file size "${fileSize}" is invalid`);
  }
  return fileSize;
}
