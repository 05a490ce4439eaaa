/**
 * VDI disk images (VirtualBox, static and dynamic), read through an injected
 * {@linkcode PositionedReader}.
 *
 * @module
 */

import type { DiskImage, PositionedReader } from "./disk_image.ts";
import { MappedImage } from "./_mapped_image.ts";
import { parseVdiHeader, VDI_HEADER_BYTES } from "./_vdi_header.ts";
import { BlockMap, checkFileSize, readExactly, ZERO_BLOCK } from "./_block_map.ts";
import { charge, memoryBudget } from "./_memory_budget.ts";

/** Options for {@linkcode openVdiImage}. */
export interface VdiImageOptions {
  /**
   * The memory this image may hold for good (its block map, 4 bytes per
   * block), as bytes `used` of `limit`; opening fails with a `RangeError`
   * past it. Charges are never given back.
   *
   * @default {{ limit: 67108864, used: 0 }}
   */
  memoryBudget?: { limit: number; used: number };
}

/** Block map entries at or above this read as zeros (free, discarded). */
const DISCARDED = 0xfffffffe;

/**
 * Opens a VDI image (VirtualBox version 1.1, static or dynamic) for reading
 * its virtual disk.
 *
 * Blocks the block map leaves unallocated or discarded read as zeros, and
 * `regions()` reports them as zero without reading. Refused: differencing
 * images (a parent UUID), linked images and blocks with extra data. Closing
 * the image closes `reader`; if opening fails, `reader` stays open.
 *
 * @param reader Positioned reads of the VDI file.
 * @param options The memory budget.
 * @returns The disk image, with format `"vdi"` and the virtual size from the header.
 * @throws {SyntaxError} The file is not a VDI image or is corrupt ("Corrupt vdi image: ...").
 * @throws {RangeError} The block map does not fit the memory budget ("Oversized vdi image: ...").
 * @throws {TypeError} The image uses something not supported ("Unsupported vdi image: ...").
 *
 * @example Reading a tiny dynamic VDI image built in memory
 * ```ts
 * import { openVdiImage, type PositionedReader } from "@vmakit/vma";
 * import assert from "node:assert/strict";
 *
 * // Two 512-byte blocks: block 0 is stored at the data offset, block 1 is free.
 * const file = new Uint8Array(2048);
 * const view = new DataView(file.buffer);
 * view.setUint32(64, 0xbeda107f, true); // signature
 * view.setUint32(68, 0x00010001, true); // version 1.1
 * view.setUint32(76, 1, true); // dynamic
 * view.setUint32(340, 1024, true); // block map offset
 * view.setUint32(344, 1536, true); // data offset
 * view.setUint32(360, 512, true); // sector size
 * view.setBigUint64(368, 1024n, true); // disk size
 * view.setUint32(376, 512, true); // block size
 * view.setUint32(384, 2, true); // blocks
 * view.setUint32(1024, 0, true); // block 0 at data block 0
 * view.setUint32(1028, 0xffffffff, true); // block 1 free
 * file.set(new TextEncoder().encode("hello"), 1536);
 *
 * const reader: PositionedReader = {
 *   size: file.length,
 *   read: (position, length) => Promise.resolve(file.slice(position, position + length)),
 *   close: () => Promise.resolve(),
 * };
 * const image = await openVdiImage(reader);
 * assert.equal(image.size, 1024);
 * assert.equal(new TextDecoder().decode(await image.read(0, 5)), "hello");
 * assert.deepEqual(await Array.fromAsync(image.regions()), [
 *   { offset: 0, length: 512, zero: false },
 *   { offset: 512, length: 512, zero: true },
 * ]);
 * await image.close();
 * ```
 */
export async function openVdiImage(
  reader: PositionedReader,
  options: VdiImageOptions = {},
): Promise<DiskImage> {
  const fileSize = checkFileSize("vdi", reader);
  const budget = memoryBudget(options.memoryBudget, "vdi");
  const header = parseVdiHeader(
    await reader.read(0, Math.min(fileSize, VDI_HEADER_BYTES)),
    fileSize,
  );
  const { blocksNeeded, blockSize, dataOffset } = header;
  charge(budget, blocksNeeded * 4, "vdi");
  const bytes = await readExactly("vdi", reader, header.mapOffset, blocksNeeded * 4, "block map");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const lookup = (index: number): number => {
    const entry = view.getUint32(index * 4, true);
    if (entry >= DISCARDED) return ZERO_BLOCK;
    return dataOffset + entry * blockSize;
  };
  const map = new BlockMap("vdi", reader, blockSize, header.size, lookup);
  return new MappedImage("vdi", header.size, map.map, undefined, [() => reader.close()]);
}
