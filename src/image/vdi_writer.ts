/**
 * Writes dynamic VDI images (VirtualBox; `qemu-img` calls the format `vdi`).
 *
 * Layout: the 512-byte header, the block map at 512 (one 32-bit entry per
 * 1 MiB block, padded to a sector), then the data blocks. Blocks are
 * allocated in the order the data arrives: the first write into a block
 * appends it after the last one, and its entry in the map is the block's
 * position in the data area. The map is written when the image is closed;
 * until then it is held in pages allocated only where blocks are (4 bytes
 * per allocated MiB), so a sparse 16 TiB disk costs next to nothing and a
 * full one 64 MiB. Blocks never written stay unallocated (read as zeros).
 *
 * Writes may come in any order and may overlap (the last write wins). The
 * virtual size is rounded up to a multiple of 512 bytes, as `qemu-img create`
 * does.
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

/** Options for {@linkcode createVdiWriter} (none yet). */
export type VdiWriterOptions = Record<string, never>;

const BLOCK = 1024 * 1024;
const UNALLOCATED = 0xffffffff;
/** QEMU's limit: 0x1fffff80 blocks of 1 MiB. */
const MAX_SIZE = 0x1fffff8000000;
const TEXT = "<<< QEMU VM Virtual Disk Image >>>\n";

function header(size: number, blocks: number, dataStart: number, allocated: number): Uint8Array {
  const bytes = new Uint8Array(512);
  const view = new DataView(bytes.buffer);
  bytes.set(new TextEncoder().encode(TEXT), 0);
  view.setUint32(0x40, 0xbeda107f, true); // signature
  view.setUint32(0x44, 0x00010001, true); // version 1.1
  view.setUint32(0x48, 0x180, true); // header size
  view.setUint32(0x4c, 1, true); // image type: dynamic
  view.setUint32(0x154, 512, true); // block map offset
  view.setUint32(0x158, dataStart, true); // data offset
  view.setUint32(0x168, 512, true); // sector size
  view.setBigUint64(0x170, BigInt(size), true);
  view.setUint32(0x178, BLOCK, true);
  view.setUint32(0x180, blocks, true);
  view.setUint32(0x184, allocated, true);
  bytes.set(randomUuid(), 0x188); // image UUID
  bytes.set(randomUuid(), 0x198); // last snapshot UUID
  return bytes;
}

/**
 * Creates a dynamic VDI image of `size` bytes written through `target`.
 *
 * @param target Where the image file is written.
 * @param size Virtual size in bytes; rounded up to a multiple of 512.
 * @param _options None yet.
 * @returns The writer; {@linkcode DiskImageWriter.close} writes the block map and header.
 * @throws {TypeError} `target` is not a {@linkcode PositionedWriter}.
 * @throws {RangeError} `size` is not a byte count, or past the format's limit (QEMU's: 0x1fffff8000000 bytes).
 *
 * @example Writing a 3 MiB image in memory
 * ```ts
 * import { createVdiWriter } from "@vmakit/vma";
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
 * const writer = await createVdiWriter(target, 3 * 1024 * 1024);
 * await writer.write(2 * 1024 * 1024, new Uint8Array(4096).fill(7));
 * await writer.close();
 * assert.equal(new DataView(file.buffer).getUint32(0x40, true), 0xbeda107f);
 * assert.equal(file.length, 1024 + 1024 * 1024); // header, map, one block
 * ```
 */
export function createVdiWriter(
  target: PositionedWriter,
  size: number,
  _options?: VdiWriterOptions,
): Promise<DiskImageWriter> {
  try {
    const virtual = checkCreate("vdi", target, size, MAX_SIZE);
    const blocks = Math.ceil(virtual / BLOCK);
    const dataStart = 512 + roundUp(blocks * 4, 512);
    const finish = async (target: PositionedWriter, table: PagedTable, units: number) => {
      await writeTable32(target, 512, blocks, (i) => {
        const entry = table.get(i);
        return entry === 0 ? UNALLOCATED : entry - 1;
      }, true);
      await target.write(0, header(virtual, blocks, dataStart, units));
      await target.truncate(dataStart + units * BLOCK);
    };
    return Promise.resolve(
      new BlockWriter({
        format: "vdi",
        size: virtual,
        blockBytes: BLOCK,
        dataStart,
        unitBytes: BLOCK,
        prefixBytes: 0,
        finish,
      }, target),
    );
  } catch (error) {
    return Promise.reject(error);
  }
}
