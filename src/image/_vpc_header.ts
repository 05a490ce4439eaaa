/**
 * The VHD (QEMU's "vpc") footer and dynamic disk header, parsed without I/O:
 * {@linkcode parseVpcFooter} checks a 512-byte footer and works out the
 * virtual size as QEMU does, {@linkcode parseVpcDynamicHeader} checks the
 * 1024-byte dynamic disk header. Fields are big-endian.
 *
 * @module
 */

import { hex } from "./_mapped_image.ts";
import { corrupt, notImage, oversized, unsupported } from "./_image_errors.ts";

/** The size of the footer (and of its copy at the start of a dynamic disk). */
export const VPC_FOOTER_BYTES = 512;
/** The size of the dynamic disk header. */
export const VPC_DYNAMIC_HEADER_BYTES = 1024;
export const VPC_FIXED = 2;
export const VPC_DYNAMIC = 3;
export const VPC_DIFFERENCING = 4;
/** QEMU's limit: 2040 GiB in sectors (VHD_MAX_SECTORS). */
const MAX_SECTORS = 0xff000000;
/** The largest CHS geometry, 65535 x 16 x 255: the footer's size is used instead. */
const MAX_GEOMETRY = 65535 * 16 * 255;

/** What a VHD footer says, checked. */
export interface VpcFooter {
  /** 2 fixed, 3 dynamic, 4 differencing. */
  type: number;
  /** Where the dynamic disk header is (dynamic and differencing disks). */
  dataOffset: number;
  /** The virtual size in bytes, as QEMU reads it. */
  size: number;
}

/** What a dynamic disk header says, checked. */
export interface VpcDynamicHeader {
  tableOffset: number;
  /** BAT entries that cover the virtual size. */
  entriesNeeded: number;
  blockSize: number;
  /** The sector bitmap before each block's data, as QEMU sizes it. */
  bitmapSize: number;
}

const bad = (what: string) => corrupt("vpc", what);
const latin1 = new TextDecoder("latin1");

/** The one's complement of the byte sum, with the checksum field at `at` taken as zero. */
export function vpcChecksum(bytes: Uint8Array, at: number): number {
  let sum = 0;
  for (let i = 0; i < bytes.length; i++) {
    if (i < at || i >= at + 4) sum += bytes[i];
  }
  return ~sum >>> 0;
}

function checkSum(bytes: Uint8Array, at: number, what: string): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const stored = view.getUint32(at);
  const computed = vpcChecksum(bytes, at);
  if (stored !== computed) {
    throw bad(`incorrect ${what} checksum ${hex(stored)} (the bytes sum to ${hex(computed)})`);
  }
}

/** True when `bytes` (at least 8) start with the footer cookie "conectix". */
export function hasVpcCookie(bytes: Uint8Array): boolean {
  return bytes.length >= 8 && latin1.decode(bytes.subarray(0, 8)) === "conectix";
}

/**
 * Parses and checks a footer (or its copy at the start of the file). The
 * size follows QEMU: the CHS geometry for images written by Virtual PC
 * (`"vpc "`) and QEMU (`"qemu"`) unless it is the largest geometry, the
 * footer's current size (whole sectors) for everything else (Hyper-V, Azure,
 * Disk2vhd, `qemu-img` with `force_size`).
 */
export function parseVpcFooter(footer: Uint8Array): VpcFooter {
  if (footer.length < VPC_FOOTER_BYTES || !hasVpcCookie(footer)) {
    throw notImage("vpc", 'the footer cookie "conectix" is missing');
  }
  checkSum(footer.subarray(0, VPC_FOOTER_BYTES), 64, "footer");
  const view = new DataView(footer.buffer, footer.byteOffset, VPC_FOOTER_BYTES);
  const type = view.getUint32(60);
  if (type === VPC_DIFFERENCING) {
    throw unsupported("vpc", "differencing disks (with a parent) are not supported");
  }
  if (type !== VPC_FIXED && type !== VPC_DYNAMIC) {
    throw unsupported("vpc", `disk type ${type} is not supported`);
  }
  const creator = latin1.decode(footer.subarray(28, 32));
  const chs = view.getUint16(56) * footer[58] * footer[59];
  let sectors = BigInt(chs);
  if ((creator !== "vpc " && creator !== "qemu") || chs === MAX_GEOMETRY) {
    sectors = view.getBigUint64(48) / 512n;
  }
  if (sectors > BigInt(MAX_SECTORS)) {
    throw oversized("vpc", `the disk has ${sectors} sectors, more than ${MAX_SECTORS} (2040 GiB)`);
  }
  const dataOffset = view.getBigUint64(16);
  return {
    type,
    dataOffset: dataOffset > BigInt(Number.MAX_SAFE_INTEGER) ? -1 : Number(dataOffset),
    size: Number(sectors) * 512,
  };
}

/**
 * Parses and checks a dynamic disk header against the virtual size and the
 * file size (the table's end is checked when it is read, after its memory).
 */
export function parseVpcDynamicHeader(
  head: Uint8Array,
  size: number,
  fileSize: number,
): VpcDynamicHeader {
  if (head.length < VPC_DYNAMIC_HEADER_BYTES || latin1.decode(head.subarray(0, 8)) !== "cxsparse") {
    throw bad('the dynamic disk header has no cookie "cxsparse"');
  }
  checkSum(head.subarray(0, VPC_DYNAMIC_HEADER_BYTES), 36, "dynamic disk header");
  const view = new DataView(head.buffer, head.byteOffset, VPC_DYNAMIC_HEADER_BYTES);
  const blockSize = view.getUint32(32);
  if (blockSize < 512 || (blockSize & (blockSize - 1)) !== 0) {
    throw bad(`the block size ${blockSize} is not a power of two of at least 512`);
  }
  const entries = view.getUint32(28);
  if (entries * blockSize < size) {
    throw bad(`the block table has ${entries} entries, too few for ${size} bytes`);
  }
  const entriesNeeded = Math.ceil(size / blockSize);
  const tableOffset = view.getBigUint64(16);
  if (tableOffset > BigInt(fileSize)) {
    throw bad(`the block table at ${hex(tableOffset)} is past the end of the file`);
  }
  // QEMU's bitmap size, rounded to a sector (and 0 for blocks under 4 KiB).
  const bitmapSize = (Math.floor(blockSize / 4096) + 511) & ~511;
  return { tableOffset: Number(tableOffset), entriesNeeded, blockSize, bitmapSize };
}
