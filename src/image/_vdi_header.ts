/**
 * The VDI (VirtualBox) header, parsed without I/O: {@linkcode parseVdiHeader}
 * checks the first 512 bytes against the file size. Fields are little-endian.
 *
 * @module
 */

import { hex } from "./_mapped_image.ts";
import { corrupt, notImage, oversized, unsupported } from "./_image_errors.ts";

const SIGNATURE = 0xbeda107f;
const VERSION_1_1 = 0x00010001;
/** The bytes {@linkcode parseVdiHeader} needs. */
export const VDI_HEADER_BYTES = 512;
/** QEMU's limit on blocks (VDI_BLOCKS_IN_IMAGE_MAX). */
const MAX_BLOCKS = 0x1fffff80;

/** What a VDI header says, checked. */
export interface VdiHeader {
  /** 1 dynamic, 2 static. */
  type: number;
  /** The virtual size in bytes (rounded up to a sector, as QEMU does). */
  size: number;
  blockSize: number;
  /** Block map entries that cover the virtual size. */
  blocksNeeded: number;
  mapOffset: number;
  dataOffset: number;
}

const bad = (what: string) => corrupt("vdi", what);

function isNull(head: Uint8Array, at: number): boolean {
  return head.subarray(at, at + 16).every((b) => b === 0);
}

/**
 * Parses and checks a VDI header: `head` is the start of the file, `fileSize`
 * its size (the block map's end is checked when it is read, after its memory).
 */
export function parseVdiHeader(head: Uint8Array, fileSize: number): VdiHeader {
  const hv = new DataView(head.buffer, head.byteOffset, head.byteLength);
  if (head.length < 72 || hv.getUint32(64, true) !== SIGNATURE) {
    throw notImage("vdi", "the signature 0xbeda107f is missing at offset 64");
  }
  if (head.length < 456) throw bad("the header is truncated");
  const version = hv.getUint32(68, true);
  if (version !== VERSION_1_1) {
    throw unsupported("vdi", `version ${version >>> 16}.${version & 0xffff} is not supported`);
  }
  const type = hv.getUint32(76, true);
  if (type !== 1 && type !== 2) throw unsupported("vdi", `image type ${type} is not supported`);
  const mapOffset = hv.getUint32(340, true);
  const dataOffset = hv.getUint32(344, true);
  if (mapOffset % 512 !== 0) throw bad(`the block map offset ${hex(mapOffset)} is not aligned`);
  if (dataOffset % 512 !== 0) throw bad(`the data offset ${hex(dataOffset)} is not aligned`);
  const sectorSize = hv.getUint32(360, true);
  if (sectorSize !== 512) throw unsupported("vdi", `sector size ${sectorSize} is not supported`);
  const blockSize = hv.getUint32(376, true);
  if (blockSize < 512 || blockSize > 2 ** 28 || (blockSize & (blockSize - 1)) !== 0) {
    throw unsupported("vdi", `block size ${blockSize} is not supported (2^9 to 2^28 are)`);
  }
  const blockExtra = hv.getUint32(380, true);
  if (blockExtra !== 0) throw unsupported("vdi", `${blockExtra} extra bytes per block`);
  const blocks = hv.getUint32(384, true);
  if (blocks > MAX_BLOCKS) {
    throw oversized("vdi", `the image has ${blocks} blocks, more than ${MAX_BLOCKS}`);
  }
  const diskSize = hv.getBigUint64(368, true);
  if (diskSize > BigInt(blocks) * BigInt(blockSize)) {
    throw bad(`the disk size ${diskSize} is larger than its ${blocks} blocks`);
  }
  // Like QEMU, a size that is not whole sectors is rounded up.
  const size = Math.ceil(Number(diskSize) / 512) * 512;
  if (!isNull(head, 424)) throw unsupported("vdi", "linked images are not supported");
  if (!isNull(head, 440)) {
    throw unsupported("vdi", "differencing images (with a parent) are not supported");
  }
  const blocksNeeded = Math.ceil(size / blockSize);
  if (mapOffset > fileSize) {
    throw bad(`the block map at ${hex(mapOffset)} is past the end of the file`);
  }
  return { type, size, blockSize, blocksNeeded, mapOffset, dataOffset };
}
