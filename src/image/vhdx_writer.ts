/**
 * Writes dynamic VHDX images (Hyper-V; `qemu-img` calls the format `vhdx`).
 *
 * Layout, as QEMU makes it: the file identifier, two headers and two region
 * tables in the first MiB; an empty log at 1 MiB (1 MiB, never used: the
 * headers' log GUID is zero); the metadata region at 2 MiB (file parameters,
 * virtual size, page 83 data, logical sector size 512, physical sector size
 * 4096); the block allocation table (BAT) at 3 MiB; then the payload blocks,
 * each aligned to 1 MiB. The block size is QEMU's default for the size: 8 MiB
 * up to 1 GiB, 16 MiB up to 100 GiB, 32 MiB up to 32 TiB, 64 MiB above.
 *
 * Blocks are allocated in the order the data arrives: the first write into
 * a block appends it after the last one (state "fully present"; the parts
 * never written read as the file's zeros), so data may come in any order
 * and overlapping writes simply overwrite (the last one wins). The BAT is
 * written when the image is closed; until then it is a map of 4 bytes per
 * block held in pages allocated only where blocks are, so memory is
 * proportional to the allocated data. Blocks never written are "not
 * present" and read as zeros.
 *
 * The virtual size is rounded up to a multiple of 512 bytes.
 *
 * @module
 */

import type { DiskImageWriter, PositionedWriter } from "./disk_image_writer.ts";
import { BlockWriter, checkCreate, type PagedTable, randomUuid, roundUp } from "./_block_writer.ts";
import { crc32c } from "./_crc32c.ts";

/** Options for {@linkcode createVhdxWriter} (none yet). */
export type VhdxWriterOptions = Record<string, never>;

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const TiB = 1024 * GiB;
/** The VHDX specification's limit. */
const MAX_SIZE = 64 * TiB;
const LOG_OFFSET = 1 * MiB;
const LOG_LENGTH = 1 * MiB;
const METADATA_OFFSET = 2 * MiB;
const METADATA_LENGTH = 1 * MiB;
const BAT_OFFSET = 3 * MiB;
const LOGICAL_SECTOR = 512;
const PHYSICAL_SECTOR = 4096;
const PAYLOAD_BLOCK_FULLY_PRESENT = 6;

/** An MS GUID in its on-disk byte order (the first three fields little-endian). */
function guid(text: string): Uint8Array {
  const hex = text.replaceAll("-", "");
  const bytes = new Uint8Array(16);
  for (let i = 0; i < 16; i++) bytes[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  bytes.subarray(0, 4).reverse();
  bytes.subarray(4, 6).reverse();
  bytes.subarray(6, 8).reverse();
  return bytes;
}

const BAT_GUID = guid("2DC27766-F623-4200-9D64-115E9BFD4A08");
const METADATA_GUID = guid("8B7CA206-4790-4B9A-B8FE-575F050F886E");
const FILE_PARAMETERS_GUID = guid("CAA16737-FA36-4D43-B3B6-33F0AA44E76B");
const VIRTUAL_DISK_SIZE_GUID = guid("2FA54224-CD1B-4876-B211-5DBED83BF4B8");
const PAGE_83_GUID = guid("BECA12AB-B2E6-4523-93EF-C309E000C746");
const LOGICAL_SECTOR_GUID = guid("8141BF1D-A96F-4709-BA47-F233A8FAAB5F");
const PHYSICAL_SECTOR_GUID = guid("CDA348C7-445D-4471-9CC9-E9885251C556");

/** QEMU's default block size for a disk of `size` bytes. */
function blockSizeFor(size: number): number {
  if (size > 32 * TiB) return 64 * MiB;
  if (size > 100 * GiB) return 32 * MiB;
  if (size > 1 * GiB) return 16 * MiB;
  return 8 * MiB;
}

function fileIdentifier(): Uint8Array {
  const bytes = new Uint8Array(64 * KiB);
  bytes.set(new TextEncoder().encode("vhdxfile"), 0);
  const creator = "vmakit";
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < creator.length; i++) view.setUint16(8 + i * 2, creator.charCodeAt(i), true);
  return bytes;
}

function header(sequence: number, fileWrite: Uint8Array, dataWrite: Uint8Array): Uint8Array {
  const bytes = new Uint8Array(4 * KiB);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, 0x64616568, true); // "head"
  view.setBigUint64(8, BigInt(sequence), true);
  bytes.set(fileWrite, 16);
  bytes.set(dataWrite, 32);
  // log GUID (48) zero: no log to replay
  view.setUint16(64, 0, true); // log version
  view.setUint16(66, 1, true); // version
  view.setUint32(68, LOG_LENGTH, true);
  view.setBigUint64(72, BigInt(LOG_OFFSET), true);
  view.setUint32(4, crc32c(bytes), true);
  return bytes;
}

function regionTable(batLength: number): Uint8Array {
  const bytes = new Uint8Array(64 * KiB);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, 0x69676572, true); // "regi"
  view.setUint32(8, 2, true); // entries
  const entry = (at: number, id: Uint8Array, offset: number, length: number) => {
    bytes.set(id, at);
    view.setBigUint64(at + 16, BigInt(offset), true);
    view.setUint32(at + 24, length, true);
    view.setUint32(at + 28, 1, true); // required
  };
  entry(16, BAT_GUID, BAT_OFFSET, batLength);
  entry(48, METADATA_GUID, METADATA_OFFSET, METADATA_LENGTH);
  view.setUint32(4, crc32c(bytes), true);
  return bytes;
}

function metadata(size: number, blockSize: number): Uint8Array {
  const bytes = new Uint8Array(64 * KiB + 40);
  const view = new DataView(bytes.buffer);
  bytes.set(new TextEncoder().encode("metadata"), 0);
  const REQUIRED = 4;
  const VIRTUAL_DISK = 2;
  const items: [Uint8Array, number, number][] = [
    [FILE_PARAMETERS_GUID, 8, REQUIRED],
    [VIRTUAL_DISK_SIZE_GUID, 8, REQUIRED | VIRTUAL_DISK],
    [PAGE_83_GUID, 16, REQUIRED | VIRTUAL_DISK],
    [LOGICAL_SECTOR_GUID, 4, REQUIRED | VIRTUAL_DISK],
    [PHYSICAL_SECTOR_GUID, 4, REQUIRED | VIRTUAL_DISK],
  ];
  view.setUint16(10, items.length, true);
  let offset = 64 * KiB;
  items.forEach(([id, length, flags], i) => {
    const at = 32 + i * 32;
    bytes.set(id, at);
    view.setUint32(at + 16, offset, true);
    view.setUint32(at + 20, length, true);
    view.setUint32(at + 24, flags, true);
    offset += length;
  });
  const data = 64 * KiB;
  view.setUint32(data, blockSize, true); // file parameters: no flags
  view.setBigUint64(data + 8, BigInt(size), true);
  bytes.set(randomUuid(), data + 16);
  view.setUint32(data + 32, LOGICAL_SECTOR, true);
  view.setUint32(data + 36, PHYSICAL_SECTOR, true);
  return bytes;
}

/**
 * Creates a dynamic VHDX image of `size` bytes written through `target`.
 *
 * @param target Where the image file is written.
 * @param size Virtual size in bytes; rounded up to a multiple of 512.
 * @param _options None yet.
 * @returns The writer; {@linkcode DiskImageWriter.close} writes the BAT, metadata and headers.
 * @throws {TypeError} `target` is not a {@linkcode PositionedWriter}.
 * @throws {RangeError} `size` is not a byte count, or past the format's limit (64 TiB).
 *
 * @example Writing a 10 MiB image in memory
 * ```ts
 * import { createVhdxWriter } from "@vmakit/vma";
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
 * const writer = await createVhdxWriter(target, 10 * 1024 * 1024);
 * await writer.write(9 * 1024 * 1024, new Uint8Array(4096).fill(7));
 * await writer.close();
 * assert.equal(new TextDecoder().decode(file.subarray(0, 8)), "vhdxfile");
 * assert.equal(file.length, 4 * 1024 * 1024 + 8 * 1024 * 1024); // headers, log, metadata, BAT, a block
 * ```
 */
export function createVhdxWriter(
  target: PositionedWriter,
  size: number,
  _options?: VhdxWriterOptions,
): Promise<DiskImageWriter> {
  try {
    const virtual = checkCreate("vhdx", target, size, MAX_SIZE);
    const blockSize = blockSizeFor(virtual);
    const chunkRatio = (2 ** 23 * LOGICAL_SECTOR) / blockSize;
    const dataBlocks = Math.ceil(virtual / blockSize);
    const batEntries = dataBlocks === 0
      ? 0
      : dataBlocks + Math.floor((dataBlocks - 1) / chunkRatio);
    // QEMU counts the entries of an empty disk with 32-bit unsigned arithmetic
    // (0 - 1 wraps), so its BAT region must be as long as that says.
    const qemuEntries = dataBlocks + Math.floor(((dataBlocks - 1) >>> 0) / chunkRatio);
    const batLength = Math.max(MiB, roundUp(Math.max(batEntries, qemuEntries) * 8, MiB));
    const dataStart = BAT_OFFSET + batLength;
    const finish = async (target: PositionedWriter, table: PagedTable, units: number) => {
      await writeBat(
        target,
        table,
        batEntries,
        chunkRatio,
        (ordinal) => dataStart + ordinal * blockSize,
      );
      await target.write(METADATA_OFFSET, metadata(virtual, blockSize));
      const regions = regionTable(batLength);
      await target.write(3 * 64 * KiB, regions);
      await target.write(4 * 64 * KiB, regions);
      const fileWrite = randomUuid();
      const dataWrite = randomUuid();
      await target.write(64 * KiB, header(1, fileWrite, dataWrite));
      await target.write(2 * 64 * KiB, header(2, fileWrite, dataWrite));
      await target.write(0, fileIdentifier());
      await target.truncate(dataStart + units * blockSize);
    };
    return Promise.resolve(
      new BlockWriter({
        format: "vhdx",
        size: virtual,
        blockBytes: blockSize,
        dataStart,
        unitBytes: blockSize,
        prefixBytes: 0,
        finish,
      }, target),
    );
  } catch (error) {
    return Promise.reject(error);
  }
}

/** Writes the BAT: payload entries with a sector bitmap entry (not present) after every `chunkRatio`. */
async function writeBat(
  target: PositionedWriter,
  table: PagedTable,
  entries: number,
  chunkRatio: number,
  position: (ordinal: number) => number,
): Promise<void> {
  const CHUNK = 8192;
  const buffer = new Uint8Array(Math.min(CHUNK, entries) * 8);
  const view = new DataView(buffer.buffer);
  for (let start = 0; start < entries; start += CHUNK) {
    const n = Math.min(CHUNK, entries - start);
    buffer.fill(0);
    for (let i = 0; i < n; i++) {
      const j = start + i;
      if ((j + 1) % (chunkRatio + 1) === 0) continue; // sector bitmap block: not present
      const value = table.get(j - Math.floor(j / (chunkRatio + 1)));
      if (value === 0) continue;
      const offset = position(value - 1);
      view.setUint32(i * 8, (offset % 2 ** 32) + PAYLOAD_BLOCK_FULLY_PRESENT, true);
      view.setUint32(i * 8 + 4, Math.floor(offset / 2 ** 32), true);
    }
    await target.write(BAT_OFFSET + start * 8, buffer.subarray(0, n * 8));
  }
}
