/**
 * The qcow2 header, parsed without I/O: {@linkcode parseQcow2Header} checks
 * the first 112 bytes against the file size, {@linkcode parseQcow2Extensions}
 * finds the backing format among the header extensions.
 *
 * @module
 */

import { hex } from "./_mapped_image.ts";
import { corrupt, notImage, oversized, unsupported } from "./_image_errors.ts";

const MAGIC = 0x514649fb;
const INCOMPATIBLE_CORRUPT = 2;
const INCOMPATIBLE_DATA_FILE = 4;
const INCOMPATIBLE_COMPRESSION = 8;
const INCOMPATIBLE_EXTENDED_L2 = 16;
const INCOMPATIBLE_KNOWN = 31;
const EXTENSION_BACKING_FORMAT = 0xe2792aca;
/** QEMU's limit on the active L1 table (QCOW_MAX_L1_SIZE). */
export const MAX_L1_BYTES = 32 * 1024 * 1024;
/** The bytes {@linkcode parseQcow2Header} needs (fewer only when the file is shorter). */
export const QCOW2_HEADER_BYTES = 112;

/** What a qcow2 header says, checked. */
export interface Qcow2Header {
  version: 2 | 3;
  clusterBits: number;
  clusterSize: number;
  /** The virtual size in bytes. */
  size: number;
  extendedL2: boolean;
  /** 0 zlib, 1 zstd. */
  compressionType: number;
  headerLength: number;
  /** L1 entries that cover the virtual size (the table may hold more). */
  l1Needed: number;
  l1Offset: number;
  /** Offset and length of the backing file name, or 0 and 0. */
  backingOffset: number;
  backingLength: number;
}

const bad = (what: string) => corrupt("qcow2", what);

/**
 * Parses and checks a qcow2 header: `head` is the start of the file (up to
 * {@linkcode QCOW2_HEADER_BYTES}), `fileSize` the file's size.
 */
export function parseQcow2Header(head: Uint8Array, fileSize: number): Qcow2Header {
  const hv = new DataView(head.buffer, head.byteOffset, head.byteLength);
  if (head.length < 4 || hv.getUint32(0) !== MAGIC) {
    throw notImage("qcow2", 'the file does not start with "QFI\\xfb"');
  }
  if (head.length < 72) throw bad("the header is truncated");
  const version = hv.getUint32(4);
  if (version !== 2 && version !== 3) {
    throw unsupported("qcow2", `version ${version} is not supported`);
  }
  if (version === 3 && head.length < 104) throw bad("the header is truncated");
  const clusterBits = hv.getUint32(20);
  if (clusterBits < 9 || clusterBits > 21) {
    throw unsupported(
      "qcow2",
      `cluster size 2^${clusterBits} is not supported (2^9 to 2^21 are)`,
    );
  }
  const clusterSize = 2 ** clusterBits;
  if (hv.getUint32(32) !== 0) throw unsupported("qcow2", "encrypted images are not supported");
  const v3 = version === 3
    ? parseVersion3(hv, head, clusterSize)
    : { incompatible: 0, headerLength: 72, compressionType: 0 };
  // The dirty bit (0) only means reference counts may be stale: read anyway.
  const extendedL2 = (v3.incompatible & INCOMPATIBLE_EXTENDED_L2) !== 0;
  if (extendedL2 && clusterBits < 14) {
    throw unsupported("qcow2", "extended L2 entries need clusters of at least 16384 bytes");
  }
  const virtualSize = hv.getBigUint64(24);
  if (virtualSize > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw oversized("qcow2", `the virtual size ${virtualSize} is too large`);
  }
  const size = Number(virtualSize);
  const bytesPerL2 = (clusterSize / (extendedL2 ? 16 : 8)) * clusterSize;
  const l1Needed = Math.ceil(size / bytesPerL2);
  const l1Offset = checkL1(hv, l1Needed, size, clusterSize, fileSize);
  const backing = checkBackingName(hv, clusterSize, fileSize);
  return {
    version,
    clusterBits,
    clusterSize,
    size,
    extendedL2,
    compressionType: v3.compressionType,
    headerLength: v3.headerLength,
    l1Needed,
    l1Offset,
    ...backing,
  };
}

/** The version 3 fields: incompatible features, header length, compression type. */
function parseVersion3(hv: DataView, head: Uint8Array, clusterSize: number) {
  const high = hv.getUint32(72);
  const incompatible = hv.getUint32(76);
  if (incompatible & INCOMPATIBLE_DATA_FILE) {
    throw unsupported("qcow2", "external data files are not supported");
  }
  if (high !== 0 || (incompatible & ~INCOMPATIBLE_KNOWN) !== 0) {
    const bits = (BigInt(high) << 32n) | BigInt((incompatible & ~INCOMPATIBLE_KNOWN) >>> 0);
    throw unsupported("qcow2", `unknown incompatible features ${hex(bits)} are set`);
  }
  if (incompatible & INCOMPATIBLE_CORRUPT) {
    throw bad('the image is marked corrupt; repair it with "qemu-img check -r all"');
  }
  const headerLength = hv.getUint32(100);
  if (headerLength < 104) throw bad(`the header length ${headerLength} is below 104`);
  if (headerLength > clusterSize) {
    throw bad(`the header length ${headerLength} exceeds the cluster size`);
  }
  let compressionType = 0;
  if (headerLength > 104) {
    if (head.length < 105) throw bad("the header is truncated");
    compressionType = head[104];
  }
  const flagged = (incompatible & INCOMPATIBLE_COMPRESSION) !== 0;
  if (flagged !== (compressionType !== 0)) {
    throw bad(
      `the compression type is ${compressionType} but the compression feature bit is ${
        flagged ? "set" : "not set"
      }`,
    );
  }
  if (compressionType > 1) {
    throw unsupported("qcow2", `compression type ${compressionType} is not supported`);
  }
  return { incompatible, headerLength, compressionType };
}

/** Checks the L1 table's size and place; returns its offset. */
function checkL1(
  hv: DataView,
  l1Needed: number,
  size: number,
  clusterSize: number,
  fileSize: number,
): number {
  const l1Size = hv.getUint32(36);
  if (l1Size > MAX_L1_BYTES / 8) {
    throw oversized("qcow2", `the L1 table has ${l1Size} entries, more than ${MAX_L1_BYTES / 8}`);
  }
  if (l1Size < l1Needed) {
    throw bad(
      `the L1 table has ${l1Size} entries, ${l1Needed} are needed for the virtual size ${size}`,
    );
  }
  const l1Offset = hv.getBigUint64(40);
  if (l1Needed > 0) {
    if (l1Offset % BigInt(clusterSize) !== 0n) {
      throw bad(`the L1 table offset ${hex(l1Offset)} is not aligned to a cluster`);
    }
    if (l1Offset + BigInt(l1Needed * 8) > BigInt(fileSize)) {
      throw bad(`L1 table offset ${hex(l1Offset)} is past the end of the file`);
    }
  }
  return Number(l1Offset);
}

/** Checks where the backing file name is (within the first cluster). */
function checkBackingName(hv: DataView, clusterSize: number, fileSize: number) {
  const offset = hv.getBigUint64(8);
  const length = hv.getUint32(16);
  if (offset === 0n) return { backingOffset: 0, backingLength: 0 };
  if (length > 1023) throw bad("the backing file name is too long");
  if (offset + BigInt(length) > BigInt(Math.min(clusterSize, fileSize))) {
    throw bad(`the backing file name at ${hex(offset)} is past the first cluster`);
  }
  return { backingOffset: Number(offset), backingLength: length };
}

/**
 * The backing format from the header extensions (`ext`: the bytes from the
 * end of the header to the backing file name or the first cluster's end).
 */
export function parseQcow2Extensions(ext: Uint8Array): { backingFormat?: string } {
  const ev = new DataView(ext.buffer, ext.byteOffset, ext.byteLength);
  let backingFormat: string | undefined;
  for (let at = 0; at + 8 <= ext.length;) {
    const type = ev.getUint32(at);
    const length = ev.getUint32(at + 4);
    if (type === 0) break;
    if (at + 8 + length > ext.length) {
      throw bad(`header extension ${hex(type)} runs past the end of the header`);
    }
    if (type === EXTENSION_BACKING_FORMAT) {
      backingFormat = new TextDecoder().decode(ext.subarray(at + 8, at + 8 + length));
    }
    at += 8 + Math.ceil(length / 8) * 8;
  }
  return backingFormat === undefined ? {} : { backingFormat };
}
