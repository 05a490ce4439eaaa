/**
 * Writes dynamic VHD images (Virtual PC, Hyper-V, Azure; `qemu-img` calls
 * the format `vpc`).
 *
 * Layout: a copy of the footer at 0, the dynamic disk header at 512, the
 * block allocation table (BAT) at 1536 (one 32-bit entry per 2 MiB block,
 * padded to a sector), then the blocks, each a 512-byte sector bitmap and
 * 2 MiB of data, then the footer. Blocks are allocated in the order the data
 * arrives: the first write into a block appends it (bitmap all ones: every
 * sector present, unwritten ones read as the file's zeros) after the last
 * one. The BAT is written when the image is closed; until then it is held in
 * pages allocated only where blocks are (4 bytes per allocated 2 MiB), so
 * memory is proportional to the allocated data. Blocks never written stay
 * unallocated (read as zeros).
 *
 * Virtual size: QEMU and Virtual PC take the size of a VHD from its CHS
 * geometry unless the creator application is one that uses the footer's
 * size. The footer names Hyper-V's creator (`win `), so QEMU, Hyper-V and
 * Azure read exactly the size given (rounded up to 512 bytes); the CHS
 * geometry is still computed as the VHD specification says, for Virtual PC.
 *
 * Writes may come in any order and may overlap (the last write wins).
 *
 * @module
 */

import type { DiskImageWriter, PositionedWriter } from "./disk_image_writer.ts";
import {
  BlockWriter,
  checkCreate,
  type PagedTable,
  randomUuid,
  roundUp,
  writeTable32,
} from "./_block_writer.ts";

/** Options for {@linkcode createVpcWriter} (none yet). */
export type VpcWriterOptions = Record<string, never>;

const BLOCK = 2 * 1024 * 1024;
const BITMAP = 512;
const UNALLOCATED = 0xffffffff;
const BAT_OFFSET = 1536;
/** QEMU's and Hyper-V's limit for VHD: 2040 GiB. */
const MAX_SIZE = 0xff000000 * 512;
/** Seconds between the Unix epoch and the VHD epoch (2000-01-01). */
const VHD_EPOCH = 946684800;

/** The CHS geometry of the VHD specification (appendix "CHS Calculation"). */
function vhdGeometry(size: number): { cylinders: number; heads: number; sectors: number } {
  let total = Math.min(size / 512, 65535 * 16 * 255);
  let sectors: number;
  let heads: number;
  let cylinderTimesHeads: number;
  total = Math.floor(total);
  if (total >= 65535 * 16 * 63) {
    sectors = 255;
    heads = 16;
    cylinderTimesHeads = Math.floor(total / sectors);
  } else {
    sectors = 17;
    cylinderTimesHeads = Math.floor(total / sectors);
    heads = Math.max(4, Math.floor((cylinderTimesHeads + 1023) / 1024));
    if (cylinderTimesHeads >= heads * 1024 || heads > 16) {
      sectors = 31;
      heads = 16;
      cylinderTimesHeads = Math.floor(total / sectors);
    }
    if (cylinderTimesHeads >= heads * 1024) {
      sectors = 63;
      heads = 16;
      cylinderTimesHeads = Math.floor(total / sectors);
    }
  }
  return { cylinders: Math.floor(cylinderTimesHeads / heads), heads, sectors };
}

/** Sets the one's complement checksum of `bytes` at `at` (the field counted as zero). */
function checksum(bytes: Uint8Array, at: number): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  view.setUint32(at, 0);
  let sum = 0;
  for (const byte of bytes) sum += byte;
  view.setUint32(at, ~sum >>> 0);
}

function footer(size: number, uuid: Uint8Array, timestamp: number): Uint8Array {
  const bytes = new Uint8Array(512);
  const view = new DataView(bytes.buffer);
  const ascii = (text: string, at: number) => bytes.set(new TextEncoder().encode(text), at);
  ascii("conectix", 0);
  view.setUint32(8, 2); // features: reserved bit
  view.setUint32(12, 0x00010000); // version 1.0
  view.setBigUint64(16, 512n); // dynamic header
  view.setUint32(24, timestamp);
  ascii("win ", 28); // creator application: the footer's size is the disk's size
  view.setUint32(32, 0x000a0000); // creator version (Hyper-V's)
  ascii("Wi2k", 36); // creator host OS
  view.setBigUint64(40, BigInt(size)); // original size
  view.setBigUint64(48, BigInt(size)); // current size
  const { cylinders, heads, sectors } = vhdGeometry(size);
  view.setUint16(56, cylinders);
  view.setUint8(58, heads);
  view.setUint8(59, sectors);
  view.setUint32(60, 3); // disk type: dynamic
  bytes.set(uuid, 68);
  checksum(bytes, 64);
  return bytes;
}

function dynamicHeader(entries: number): Uint8Array {
  const bytes = new Uint8Array(1024);
  const view = new DataView(bytes.buffer);
  bytes.set(new TextEncoder().encode("cxsparse"), 0);
  view.setBigUint64(8, 0xffffffffffffffffn); // data offset: unused
  view.setBigUint64(16, BigInt(BAT_OFFSET));
  view.setUint32(24, 0x00010000); // header version
  view.setUint32(28, entries);
  view.setUint32(32, BLOCK);
  checksum(bytes, 36);
  return bytes;
}

/**
 * Creates a dynamic VHD image of `size` bytes written through `target`.
 *
 * @param target Where the image file is written.
 * @param size Virtual size in bytes; rounded up to a multiple of 512.
 * @param _options None yet.
 * @returns The writer; {@linkcode DiskImageWriter.close} writes the BAT, headers and footer.
 * @throws {TypeError} `target` is not a {@linkcode PositionedWriter}.
 * @throws {RangeError} `size` is not a byte count, or past the format's limit (2040 GiB).
 *
 * @example Writing a 5 MiB image in memory
 * ```ts
 * import { createVpcWriter } from "@vmakit/vma";
 * import assert from "node:assert/strict";
 *
 * let file = new Uint8Array(0);
 * const target = {
 *   async write(position: number, data: Uint8Array) {
 *     if (position + data.length > file.length) {
 *       const grown = new Uint8Array(position + data.length);
 *       grown.set(file);
 *       file = grown;
 *     }
 *     file.set(data, position);
 *   },
 *   async truncate(size: number) {
 *     const cut = new Uint8Array(size);
 *     cut.set(file.subarray(0, size));
 *     file = cut;
 *   },
 * };
 * const writer = await createVpcWriter(target, 5 * 1024 * 1024);
 * await writer.write(4096, new Uint8Array(512).fill(7));
 * await writer.close();
 * assert.equal(new TextDecoder().decode(file.subarray(file.length - 512, file.length - 504)), "conectix");
 * ```
 */
export function createVpcWriter(
  target: PositionedWriter,
  size: number,
  _options?: VpcWriterOptions,
): Promise<DiskImageWriter> {
  try {
    const virtual = checkCreate("vpc", target, size, MAX_SIZE);
    const entries = Math.ceil(virtual / BLOCK);
    const dataStart = BAT_OFFSET + roundUp(entries * 4, 512);
    const unitBytes = BITMAP + BLOCK;
    const bitmap = new Uint8Array(BITMAP).fill(0xff);
    const allocated = (target: PositionedWriter, position: number) =>
      target.write(position, bitmap);
    const finish = async (target: PositionedWriter, table: PagedTable, units: number) => {
      await writeTable32(target, BAT_OFFSET, entries, (i) => {
        const entry = table.get(i);
        return entry === 0 ? UNALLOCATED : (dataStart + (entry - 1) * unitBytes) / 512;
      }, false);
      const seconds = Math.max(0, Math.floor(Date.now() / 1000) - VHD_EPOCH) >>> 0;
      const tail = footer(virtual, randomUuid(), seconds);
      await target.write(512, dynamicHeader(entries));
      await target.write(0, tail);
      const end = dataStart + units * unitBytes;
      await target.write(end, tail);
      await target.truncate(end + 512);
    };
    return Promise.resolve(
      new BlockWriter({
        format: "vpc",
        size: virtual,
        blockBytes: BLOCK,
        dataStart,
        unitBytes,
        prefixBytes: BITMAP,
        allocated,
        finish,
      }, target),
    );
  } catch (error) {
    return Promise.reject(error);
  }
}
