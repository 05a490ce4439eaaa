/**
 * The VHDX structures at fixed places, parsed without I/O: the file
 * identifier, the two headers ({@linkcode pickVhdxHeader} picks the current
 * one by checksum and sequence number), the region table and the metadata
 * table with the items a reader needs. Fields are little-endian; GUIDs are
 * stored with their first three fields little-endian.
 *
 * @module
 */

import { hex } from "./_mapped_image.ts";
import { corrupt, notImage, oversized, unsupported } from "./_image_errors.ts";
import { crc32cWithZeroField } from "./_crc32c.ts";

const MiB = 1024 * 1024;
/** Where the two headers are, and how many bytes each checksum covers. */
export const VHDX_HEADER_OFFSETS = [64 * 1024, 128 * 1024] as const;
export const VHDX_HEADER_BYTES = 4096;
/** Where the region table and its copy are, and their size. */
export const VHDX_REGION_TABLE_OFFSETS = [192 * 1024, 256 * 1024] as const;
export const VHDX_REGION_TABLE_BYTES = 64 * 1024;
/** The metadata table at the start of the metadata region. */
export const VHDX_METADATA_TABLE_BYTES = 64 * 1024;
/** QEMU's and the specification's largest virtual disk: 64 TiB. */
const MAX_SIZE = 64 * 1024 * 1024 * MiB;

/** The on-disk bytes of a GUID written as text. */
export function guidBytes(text: string): Uint8Array {
  const hexDigits = text.replaceAll("-", "");
  const bytes = new Uint8Array(16);
  for (let i = 0; i < 16; i++) bytes[i] = parseInt(hexDigits.slice(i * 2, i * 2 + 2), 16);
  // The first three fields are little-endian on disk.
  bytes.subarray(0, 4).reverse();
  bytes.subarray(4, 6).reverse();
  bytes.subarray(6, 8).reverse();
  return bytes;
}

function guidEquals(bytes: Uint8Array, at: number, guid: Uint8Array): boolean {
  for (let i = 0; i < 16; i++) if (bytes[at + i] !== guid[i]) return false;
  return true;
}

const BAT_REGION = guidBytes("2DC27766-F623-4200-9D64-115E9BFD4A08");
const METADATA_REGION = guidBytes("8B7CA206-4790-4B9A-B8FE-575F050F886E");
const FILE_PARAMETERS = guidBytes("CAA16737-FA36-4D43-B3B6-33F0AA44E76B");
const VIRTUAL_DISK_SIZE = guidBytes("2FA54224-CD1B-4876-B211-5DBED83BF4B8");
const LOGICAL_SECTOR_SIZE = guidBytes("8141BF1D-A96F-4709-BA47-F233A8FAAB5F");
const KNOWN_METADATA = [
  FILE_PARAMETERS,
  VIRTUAL_DISK_SIZE,
  LOGICAL_SECTOR_SIZE,
  guidBytes("BECA12AB-B2E6-4523-93EF-C309E000C746"), // page 83 data
  guidBytes("CDA348C7-445D-4471-9CC9-E9885251C556"), // physical sector size
  guidBytes("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C"), // parent locator
];

const bad = (what: string) => corrupt("vhdx", what);
const latin1 = new TextDecoder("latin1");

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** A 64-bit field as a number, or -1 past 2^53. */
function u64(v: DataView, at: number): number {
  const value = v.getBigUint64(at, true);
  return value > BigInt(Number.MAX_SAFE_INTEGER) ? -1 : Number(value);
}

/** Checks the file type identifier ("vhdxfile") at the start of the file. */
export function checkVhdxIdentifier(head: Uint8Array): void {
  if (head.length < 8 || latin1.decode(head.subarray(0, 8)) !== "vhdxfile") {
    throw notImage("vhdx", 'the file does not start with "vhdxfile"');
  }
}

/** What the current header says. */
export interface VhdxHeader {
  sequence: bigint;
  /** Only 0 is defined. */
  logVersion: number;
  /** The log GUID's bytes: all zero when there is no log to replay. */
  logGuid: Uint8Array;
  logOffset: number;
  logLength: number;
}

function parseOne(bytes: Uint8Array): VhdxHeader | undefined {
  if (bytes.length < VHDX_HEADER_BYTES) return undefined;
  const v = view(bytes);
  if (latin1.decode(bytes.subarray(0, 4)) !== "head" || v.getUint16(66, true) !== 1) {
    return undefined;
  }
  if (v.getUint32(4, true) !== crc32cWithZeroField(bytes.subarray(0, VHDX_HEADER_BYTES), 4)) {
    return undefined;
  }
  return {
    logVersion: v.getUint16(64, true),
    sequence: v.getBigUint64(8, true),
    logGuid: bytes.slice(48, 64),
    logLength: v.getUint32(68, true),
    logOffset: u64(v, 72),
  };
}

/**
 * The current header of the two (4 KiB each): of those with a good signature,
 * version and CRC-32C, the one with the higher sequence number. Two valid
 * headers with the same sequence number must be identical (Disk2vhd writes
 * them so).
 */
export function pickVhdxHeader(first: Uint8Array, second: Uint8Array): VhdxHeader {
  const one = parseOne(first);
  const two = parseOne(second);
  let current: VhdxHeader;
  if (one === undefined && two === undefined) {
    throw bad("no valid header: both have a bad signature, version or checksum");
  } else if (one === undefined || two === undefined) {
    current = (one ?? two)!;
  } else if (one.sequence !== two.sequence) {
    current = one.sequence > two.sequence ? one : two;
  } else if (first.subarray(0, 80).every((byte, i) => byte === second[i])) {
    current = one;
  } else {
    throw bad(`both headers have the sequence number ${one.sequence} but differ`);
  }
  const { logOffset, logLength, logVersion } = current;
  if (logVersion !== 0) throw unsupported("vhdx", `log version ${logVersion} is not supported`);
  if (logOffset < MiB || logOffset % MiB !== 0) {
    throw bad(`the log offset ${hex(logOffset)} is not a multiple of 1 MiB from 1 MiB`);
  }
  if (logLength % MiB !== 0) throw bad(`the log length ${logLength} is not a multiple of 1 MiB`);
  return current;
}

/** True when the log GUID is not all zeros (the log may hold entries to replay). */
export function hasLog(header: VhdxHeader): boolean {
  return header.logLength > 0 && header.logGuid.some((byte) => byte !== 0);
}

/** A region: where it is in the file and how long it is. */
export interface VhdxRegion {
  offset: number;
  length: number;
}

/** Where the BAT and the metadata are, from a region table (64 KiB). */
export interface VhdxRegions {
  bat: VhdxRegion;
  metadata: VhdxRegion;
}

/** True when `table` has the region table signature and a good CRC-32C. */
export function isValidRegionTable(table: Uint8Array): boolean {
  if (table.length < VHDX_REGION_TABLE_BYTES) return false;
  if (latin1.decode(table.subarray(0, 4)) !== "regi") return false;
  return view(table).getUint32(4, true) ===
    crc32cWithZeroField(table.subarray(0, VHDX_REGION_TABLE_BYTES), 4);
}

/** Parses a region table (checked with {@linkcode isValidRegionTable}) against the file size. */
export function parseVhdxRegionTable(table: Uint8Array, fileSize: number): VhdxRegions {
  const v = view(table);
  const count = v.getUint32(8, true);
  if (count > 2047) throw bad(`the region table has ${count} entries, more than 2047`);
  let bat: VhdxRegion | undefined;
  let metadata: VhdxRegion | undefined;
  for (let i = 0; i < count; i++) {
    const at = 16 + i * 32;
    const offset = u64(v, at + 16);
    const length = v.getUint32(at + 24, true);
    const required = (v.getUint32(at + 28, true) & 1) !== 0;
    const isBat = guidEquals(table, at, BAT_REGION);
    const isMetadata = guidEquals(table, at, METADATA_REGION);
    if (!isBat && !isMetadata) {
      if (required) throw unsupported("vhdx", `required region ${i} is of an unknown kind`);
      continue;
    }
    const name = isBat ? "BAT" : "metadata";
    if ((isBat ? bat : metadata) !== undefined) throw bad(`the ${name} region is listed twice`);
    if (offset < MiB || offset % MiB !== 0 || length % MiB !== 0 || length === 0) {
      throw bad(`the ${name} region at ${hex(offset)} (${length} bytes) is not aligned to 1 MiB`);
    }
    if (offset + length > fileSize) {
      throw bad(`the ${name} region at ${hex(offset)} is past the end of the file`);
    }
    if (isBat) bat = { offset, length };
    else metadata = { offset, length };
  }
  if (bat === undefined) throw bad("the region table has no BAT region");
  if (metadata === undefined) throw bad("the region table has no metadata region");
  return { bat, metadata };
}

/** What the metadata says, checked. */
export interface VhdxMetadata {
  blockSize: number;
  hasParent: boolean;
  /** The virtual size in bytes (whole sectors, as QEMU reads it). */
  size: number;
  logicalSectorSize: number;
  /** Payload blocks per sector bitmap block: the BAT has a bitmap entry after each run of these. */
  chunkRatio: number;
}

/**
 * Parses the metadata table (the first 64 KiB of the metadata region, of
 * `regionLength` bytes) and returns where each known item is, relative to
 * the region's start; unknown required items are refused.
 */
export function parseVhdxMetadataTable(
  table: Uint8Array,
  regionLength: number,
): Map<"parameters" | "size" | "sector", VhdxRegion> {
  if (table.length < 32 || latin1.decode(table.subarray(0, 8)) !== "metadata") {
    throw bad('the metadata region does not start with "metadata"');
  }
  const v = view(table);
  const count = v.getUint16(10, true);
  if (count > 2047 || 32 + count * 32 > table.length) {
    throw bad(`the metadata table has ${count} entries, more than fit`);
  }
  const items = new Map<"parameters" | "size" | "sector", VhdxRegion>();
  for (let i = 0; i < count; i++) {
    const at = 32 + i * 32;
    const offset = v.getUint32(at + 16, true);
    const length = v.getUint32(at + 20, true);
    const required = (v.getUint32(at + 24, true) & 4) !== 0;
    const known = KNOWN_METADATA.find((guid) => guidEquals(table, at, guid));
    if (known === undefined) {
      if (required) throw unsupported("vhdx", `required metadata item ${i} is of an unknown kind`);
      continue;
    }
    const key = known === FILE_PARAMETERS
      ? "parameters"
      : known === VIRTUAL_DISK_SIZE
      ? "size"
      : known === LOGICAL_SECTOR_SIZE
      ? "sector"
      : undefined;
    if (key === undefined) continue;
    if (items.has(key)) throw bad(`metadata item ${i} repeats the ${key} item`);
    const need = key === "sector" ? 4 : 8;
    if (length < need || offset < 64 * 1024 || offset + length > regionLength) {
      throw bad(`metadata item ${i} (${key}) at ${hex(offset)} lies outside the metadata region`);
    }
    items.set(key, { offset, length });
  }
  for (const key of ["parameters", "size", "sector"] as const) {
    if (!items.has(key)) throw bad(`the metadata has no ${key} item`);
  }
  return items;
}

/** Checks the values of the three items: `parameters` (8 bytes), `size` (8), `sector` (4). */
export function parseVhdxMetadataValues(
  parameters: Uint8Array,
  size: Uint8Array,
  sector: Uint8Array,
): VhdxMetadata {
  const pv = view(parameters);
  const blockSize = pv.getUint32(0, true);
  const flags = pv.getUint32(4, true);
  if (blockSize < MiB || blockSize > 256 * MiB || (blockSize & (blockSize - 1)) !== 0) {
    throw bad(`the block size ${blockSize} is not a power of two from 1 MiB to 256 MiB`);
  }
  const logicalSectorSize = view(sector).getUint32(0, true);
  if (logicalSectorSize !== 512 && logicalSectorSize !== 4096) {
    throw bad(`the logical sector size ${logicalSectorSize} is neither 512 nor 4096`);
  }
  const virtualSize = view(size).getBigUint64(0, true);
  if (virtualSize > BigInt(MAX_SIZE)) {
    throw oversized("vhdx", `the virtual size ${virtualSize} is larger than 64 TiB`);
  }
  return {
    blockSize,
    hasParent: (flags & 2) !== 0,
    // Like QEMU, whole 512-byte sectors.
    size: Math.floor(Number(virtualSize) / 512) * 512,
    logicalSectorSize,
    chunkRatio: (2 ** 23 * logicalSectorSize) / blockSize,
  };
}
