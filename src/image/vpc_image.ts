/**
 * VHD disk images (Virtual PC, Hyper-V, Azure; QEMU calls the format "vpc"),
 * fixed and dynamic, read through an injected {@linkcode PositionedReader}.
 *
 * @module
 */

import type { DiskImage, PositionedReader } from "./disk_image.ts";
import { hex, MappedImage } from "./_mapped_image.ts";
import { corrupt, notImage } from "./_image_errors.ts";
import {
  hasVpcCookie,
  parseVpcDynamicHeader,
  parseVpcFooter,
  VPC_DYNAMIC,
  VPC_DYNAMIC_HEADER_BYTES,
  VPC_FIXED,
  VPC_FOOTER_BYTES,
} from "./_vpc_header.ts";
import { BlockMap, checkFileSize, readExactly, ZERO_BLOCK } from "./_block_map.ts";
import { charge, memoryBudget } from "./_memory_budget.ts";

/** Options for {@linkcode openVpcImage}. */
export interface VpcImageOptions {
  /**
   * The memory this image may hold for good (its block table, 4 bytes per
   * block), as bytes `used` of `limit`; opening fails with a `RangeError`
   * past it. Charges are never given back.
   *
   * @default {{ limit: 67108864, used: 0 }}
   */
  memoryBudget?: { limit: number; used: number };
}

const UNALLOCATED = 0xffffffff;

/**
 * Opens a VHD image (fixed or dynamic) for reading its virtual disk.
 *
 * A fixed disk is its data followed by a 512-byte footer; a dynamic disk
 * starts with a copy of the footer, then a dynamic disk header and a block
 * table. The footer's checksum (and the dynamic header's) is verified. The
 * virtual size is the one QEMU reads: the CHS geometry for images written by
 * Virtual PC and QEMU, the footer's current size for the rest (Hyper-V,
 * Azure, Disk2vhd). Unallocated blocks read as zeros and `regions()` reports
 * them as zero without reading; in an allocated block every sector is read,
 * whatever its sector bitmap says (as QEMU does). Refused: differencing
 * disks. Closing the image closes `reader`; if opening fails, `reader` stays
 * open.
 *
 * @param reader Positioned reads of the VHD file.
 * @param options The memory budget.
 * @returns The disk image, with format `"vpc"`.
 * @throws {SyntaxError} The file is not a VHD image or is corrupt, including a bad checksum ("Corrupt vpc image: ...").
 * @throws {RangeError} The disk is larger than 2040 GiB, or the block table does not fit the memory budget ("Oversized vpc image: ...").
 * @throws {TypeError} The image uses something not supported ("Unsupported vpc image: ...": a differencing disk).
 *
 * @example Reading a tiny fixed VHD image built in memory
 * ```ts
 * import { openVpcImage, type PositionedReader } from "@vmakit/vma";
 * import assert from "node:assert/strict";
 *
 * // 1 KiB of data, then the footer: a fixed disk whose size is the footer's
 * // current size (creator "win ", as Hyper-V writes).
 * const file = new Uint8Array(1024 + 512);
 * file.set(new TextEncoder().encode("hello"), 0);
 * const footer = file.subarray(1024);
 * const view = new DataView(file.buffer, 1024);
 * footer.set(new TextEncoder().encode("conectix"), 0);
 * view.setBigUint64(16, 0xffffffffffffffffn); // no dynamic header
 * footer.set(new TextEncoder().encode("win "), 28);
 * view.setBigUint64(48, 1024n); // current size
 * view.setUint32(60, 2); // fixed
 * view.setUint32(64, ~footer.reduce((sum, byte) => sum + byte, 0) >>> 0); // checksum
 *
 * const reader: PositionedReader = {
 *   size: file.length,
 *   read: (position, length) => Promise.resolve(file.slice(position, position + length)),
 *   close: () => Promise.resolve(),
 * };
 * const image = await openVpcImage(reader);
 * assert.equal(image.size, 1024);
 * assert.equal(new TextDecoder().decode(await image.read(0, 5)), "hello");
 * await image.close();
 * ```
 */
export async function openVpcImage(
  reader: PositionedReader,
  options: VpcImageOptions = {},
): Promise<DiskImage> {
  const fileSize = checkFileSize("vpc", reader);
  const budget = memoryBudget(options.memoryBudget, "vpc");
  if (fileSize < VPC_FOOTER_BYTES) {
    throw notImage("vpc", `the file is ${fileSize} bytes long, too short for a footer`);
  }
  let footer = await readExactly("vpc", reader, 0, VPC_FOOTER_BYTES, "footer");
  let atStart = true;
  if (!hasVpcCookie(footer)) {
    // A fixed disk has its footer only at the end.
    const at = fileSize - VPC_FOOTER_BYTES;
    footer = await readExactly("vpc", reader, at, VPC_FOOTER_BYTES, "footer");
    atStart = false;
  }
  const { type, size, dataOffset } = parseVpcFooter(footer);
  const closers = [() => reader.close()];
  if (!atStart || type === VPC_FIXED) {
    if (atStart || type !== VPC_FIXED) {
      throw corrupt(
        "vpc",
        atStart
          ? "the file starts with the footer of a fixed disk"
          : "the footer at the end is not the footer of a fixed disk",
      );
    }
    if (size > fileSize - VPC_FOOTER_BYTES) {
      throw corrupt("vpc", `the ${size}-byte disk is longer than the data before the footer`);
    }
    const map = (offset: number) =>
      Promise.resolve({ kind: "data" as const, length: size - offset, reader, position: offset });
    return new MappedImage("vpc", size, map, undefined, closers);
  }
  if (type !== VPC_DYNAMIC) throw new Error(`Internal error: VHD type ${type}`);
  if (dataOffset < 0 || dataOffset > fileSize) {
    throw corrupt(
      "vpc",
      `the dynamic disk header at ${hex(dataOffset)} is past the end of the file`,
    );
  }
  const dynamic = parseVpcDynamicHeader(
    await readExactly("vpc", reader, dataOffset, VPC_DYNAMIC_HEADER_BYTES, "dynamic disk header"),
    size,
    fileSize,
  );
  const { entriesNeeded, blockSize, bitmapSize } = dynamic;
  charge(budget, entriesNeeded * 4, "vpc");
  const table = await readExactly(
    "vpc",
    reader,
    dynamic.tableOffset,
    entriesNeeded * 4,
    "block table",
  );
  const view = new DataView(table.buffer, table.byteOffset, table.byteLength);
  const lookup = (index: number): number => {
    const entry = view.getUint32(index * 4);
    return entry === UNALLOCATED ? ZERO_BLOCK : entry * 512 + bitmapSize;
  };
  const map = new BlockMap("vpc", reader, blockSize, size, lookup);
  return new MappedImage("vpc", size, map.map, undefined, closers);
}
