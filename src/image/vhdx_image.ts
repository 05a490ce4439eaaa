/**
 * VHDX disk images (Hyper-V), dynamic and fixed, read through an injected
 * {@linkcode PositionedReader}.
 *
 * @module
 */

import type { DiskImage, PositionedReader } from "./disk_image.ts";
import { hex, MappedImage } from "./_mapped_image.ts";
import { ByteCache } from "./_byte_cache.ts";
import { corrupt, unsupported } from "./_image_errors.ts";
import { crc32c } from "./_crc32c.ts";
import {
  checkVhdxIdentifier,
  hasLog,
  isValidRegionTable,
  parseVhdxMetadataTable,
  parseVhdxMetadataValues,
  parseVhdxRegionTable,
  pickVhdxHeader,
  VHDX_HEADER_BYTES,
  VHDX_HEADER_OFFSETS,
  VHDX_METADATA_TABLE_BYTES,
  VHDX_REGION_TABLE_BYTES,
  VHDX_REGION_TABLE_OFFSETS,
  type VhdxHeader,
  type VhdxMetadata,
  type VhdxRegion,
} from "./_vhdx_header.ts";
import { BlockMap, checkFileSize, readExactly, ZERO_BLOCK } from "./_block_map.ts";
import { charge, memoryBudget } from "./_memory_budget.ts";

/** Options for {@linkcode openVhdxImage}. */
export interface VhdxImageOptions {
  /**
   * The memory this image may hold for good (its BAT page cache), as bytes
   * `used` of `limit`; opening fails with a `RangeError` past it. Charges are
   * never given back.
   *
   * @default {{ limit: 67108864, used: 0 }}
   */
  memoryBudget?: { limit: number; used: number };
}

/** The BAT is read in pages of this many bytes, cached up to BAT_CACHE_BYTES. */
const BAT_PAGE_BYTES = 256 * 1024;
const BAT_CACHE_BYTES = 4 * 1024 * 1024;
/** The log is scanned in pieces of this size. */
const LOG_PIECE = 1024 * 1024;
const LOG_SECTOR = 4096;

/** Payload block states (the low 3 bits of a BAT entry). */
const FULLY_PRESENT = 6;
const PARTIALLY_PRESENT = 7;
/** Not present, undefined, zero, unmapped, unmapped (version 0.95): read as zeros. */
const ZERO_STATES = new Set([0, 1, 2, 3, 5]);

/**
 * Opens a VHDX image for reading its virtual disk.
 *
 * The current header is the valid one (signature, version, CRC-32C) with the
 * higher sequence number; the region table's CRC-32C is checked (the copy
 * is used when the first is damaged). Payload blocks not present, undefined,
 * zero or unmapped read as zeros, and `regions()` reports them as zero
 * without reading. Refused: images whose log holds entries to replay (open
 * them once read-write, for example with `qemu-img check -r all`),
 * differencing images (with a parent), and unknown required regions or
 * metadata. Closing the image closes `reader`; if opening fails, `reader`
 * stays open.
 *
 * @param reader Positioned reads of the VHDX file.
 * @param options The memory budget.
 * @returns The disk image, with format `"vhdx"`.
 * @throws {SyntaxError} The file is not a VHDX image or is corrupt, including a bad checksum ("Corrupt vhdx image: ...").
 * @throws {RangeError} The virtual size is over 64 TiB, or the image does not fit the memory budget ("Oversized vhdx image: ...").
 * @throws {TypeError} The image uses something not supported ("Unsupported vhdx image: ...": a log to replay, a parent).
 *
 * @example Refusing a file that is not VHDX
 * ```ts
 * import { openVhdxImage, type PositionedReader } from "@vmakit/vma";
 * import assert from "node:assert/strict";
 *
 * const file = new Uint8Array(1024);
 * const reader: PositionedReader = {
 *   size: file.length,
 *   read: (position, length) => Promise.resolve(file.slice(position, position + length)),
 *   close: () => Promise.resolve(),
 * };
 * await assert.rejects(openVhdxImage(reader), {
 *   name: "SyntaxError",
 *   message: 'Not a vhdx image: the file does not start with "vhdxfile"',
 * });
 * ```
 */
export async function openVhdxImage(
  reader: PositionedReader,
  options: VhdxImageOptions = {},
): Promise<DiskImage> {
  const fileSize = checkFileSize("vhdx", reader);
  const budget = memoryBudget(options.memoryBudget, "vhdx");
  checkVhdxIdentifier(await reader.read(0, Math.min(fileSize, 8)));
  const [first, second] = await Promise.all(
    VHDX_HEADER_OFFSETS.map((at) => readExactly("vhdx", reader, at, VHDX_HEADER_BYTES, "header")),
  );
  const header = pickVhdxHeader(first, second);
  if (hasLog(header)) await refuseActiveLog(reader, header);
  const regions = parseVhdxRegionTable(await readRegionTable(reader), fileSize);
  const metadata = await readMetadata(reader, regions.metadata);
  if (metadata.hasParent) {
    throw unsupported("vhdx", "differencing images (with a parent) are not supported");
  }
  const { blockSize, chunkRatio, size } = metadata;
  const blocks = Math.ceil(size / blockSize);
  const batEntries = blocks === 0 ? 0 : blocks + Math.floor((blocks - 1) / chunkRatio);
  if (batEntries * 8 > regions.bat.length) {
    throw corrupt(
      "vhdx",
      `the BAT region holds ${regions.bat.length / 8} entries, ${batEntries} are needed`,
    );
  }
  charge(budget, BAT_CACHE_BYTES, "vhdx");
  const pages = new ByteCache<number, DataView>(BAT_CACHE_BYTES);
  const batEnd = regions.bat.offset + batEntries * 8;
  const page = (index: number): Promise<DataView> =>
    pages.get(index, BAT_PAGE_BYTES, async () => {
      const start = regions.bat.offset + index * BAT_PAGE_BYTES;
      const length = Math.min(BAT_PAGE_BYTES, batEnd - start);
      const bytes = await readExactly("vhdx", reader, start, length, "BAT");
      return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    });
  const lookup = async (block: number): Promise<number> => {
    const entry = block + Math.floor(block / chunkRatio);
    const at = entry * 8;
    const view = await page(Math.floor(at / BAT_PAGE_BYTES));
    const low = view.getUint32(at % BAT_PAGE_BYTES, true);
    const high = view.getUint32(at % BAT_PAGE_BYTES + 4, true);
    const state = low & 7;
    if (ZERO_STATES.has(state)) return ZERO_BLOCK;
    if (state === FULLY_PRESENT) {
      const offset = (high * 4096 + (low >>> 20)) * 1024 * 1024;
      if (offset < 1024 * 1024) {
        throw corrupt("vhdx", `block ${block} is stored at ${hex(offset)}, in the header section`);
      }
      return offset;
    }
    if (state === PARTIALLY_PRESENT) {
      throw corrupt("vhdx", `block ${block} is partially present in an image without a parent`);
    }
    throw corrupt("vhdx", `block ${block} has the unknown state ${state}`);
  };
  const map = new BlockMap("vhdx", reader, blockSize, size, lookup);
  return new MappedImage("vhdx", size, map.map, undefined, [() => reader.close()]);
}

/** The first region table with a good signature and CRC-32C. */
async function readRegionTable(reader: PositionedReader): Promise<Uint8Array> {
  for (const at of VHDX_REGION_TABLE_OFFSETS) {
    const table = await readExactly("vhdx", reader, at, VHDX_REGION_TABLE_BYTES, "region table");
    if (isValidRegionTable(table)) return table;
  }
  throw corrupt("vhdx", "both region tables have a bad signature or checksum");
}

/** Reads and checks the metadata items. */
async function readMetadata(reader: PositionedReader, region: VhdxRegion): Promise<VhdxMetadata> {
  const tableLength = Math.min(VHDX_METADATA_TABLE_BYTES, region.length);
  const table = await readExactly("vhdx", reader, region.offset, tableLength, "metadata table");
  const items = parseVhdxMetadataTable(table, region.length);
  const item = (key: "parameters" | "size" | "sector", length: number) =>
    readExactly("vhdx", reader, region.offset + items.get(key)!.offset, length, `${key} item`);
  return parseVhdxMetadataValues(
    await item("parameters", 8),
    await item("size", 8),
    await item("sector", 4),
  );
}

/**
 * Scans the log for an entry of the current log GUID with a good CRC-32C:
 * one means the log must be replayed before the image reads right, which a
 * read-only reader cannot do (QEMU refuses too). An entry that wraps around
 * the end of the log is taken as valid without its checksum.
 */
async function refuseActiveLog(reader: PositionedReader, header: VhdxHeader): Promise<void> {
  const { logOffset, logLength, logGuid } = header;
  if (logOffset + logLength > reader.size) {
    throw corrupt("vhdx", `the log at ${hex(logOffset)} is past the end of the file`);
  }
  const refuse = () =>
    unsupported(
      "vhdx",
      'the log holds entries that must be replayed first; run "qemu-img check -r all" on it',
    );
  for (let piece = 0; piece < logLength; piece += LOG_PIECE) {
    const bytes = await readExactly(
      "vhdx",
      reader,
      logOffset + piece,
      Math.min(LOG_PIECE, logLength - piece),
      "log",
    );
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let at = 0; at + 64 <= bytes.length; at += LOG_SECTOR) {
      if (view.getUint32(at, true) !== 0x65676f6c) continue; // "loge"
      if (!logGuid.every((byte, i) => bytes[at + 32 + i] === byte)) continue;
      const length = view.getUint32(at + 8, true);
      if (length < LOG_SECTOR || length % LOG_SECTOR !== 0) continue;
      const start = piece + at;
      if (start + length > logLength) throw refuse();
      if (await entryChecksumIsGood(reader, logOffset + start, length)) throw refuse();
    }
  }
}

/** Whether the log entry at `position` (of `length` bytes) has a good CRC-32C. */
async function entryChecksumIsGood(
  reader: PositionedReader,
  position: number,
  length: number,
): Promise<boolean> {
  let crc = 0;
  let stored = 0;
  for (let done = 0; done < length; done += LOG_PIECE) {
    const bytes = await readExactly(
      "vhdx",
      reader,
      position + done,
      Math.min(LOG_PIECE, length - done),
      "log entry",
    );
    if (done === 0) {
      stored = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(4, true);
      bytes.fill(0, 4, 8);
    }
    crc = crc32c(bytes, crc);
  }
  return crc === stored;
}
