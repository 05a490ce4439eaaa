/**
 * Detection of the VHDX, VHD and VDI formats by their real magic, for
 * `format=auto` (wired into `detectImageFormat` by whoever owns detection):
 *
 * - VHDX: `"vhdxfile"` at offset 0.
 * - VHD: `"conectix"` at offset 0 (dynamic disks, as QEMU probes), or a
 *   footer at the end of the file with a good checksum and the fixed type.
 *   QEMU's probe misses fixed disks and reads them as raw, footer included;
 *   a fixed disk is found here so that its footer never ends up as the last
 *   sector of the disk.
 * - VDI: the signature `0xbeda107f` (little-endian) at offset 64, as QEMU
 *   probes (the text before it varies between VirtualBox versions).
 *
 * @module
 */

import type { PositionedReader } from "./disk_image.ts";
import { hasVpcCookie, VPC_FIXED, VPC_FOOTER_BYTES, vpcChecksum } from "./_vpc_header.ts";

/** The format `reader` holds, if it is VHDX, VHD or VDI. */
export async function detectForeignFormat(
  reader: PositionedReader,
): Promise<"vhdx" | "vpc" | "vdi" | undefined> {
  const head = await reader.read(0, Math.min(reader.size, 512));
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  if (new TextDecoder("latin1").decode(head.subarray(0, 8)) === "vhdxfile") return "vhdx";
  if (hasVpcCookie(head)) return "vpc";
  if (head.length >= 68 && view.getUint32(64, true) === 0xbeda107f) return "vdi";
  if (reader.size >= 2 * VPC_FOOTER_BYTES) {
    const footer = await reader.read(reader.size - VPC_FOOTER_BYTES, VPC_FOOTER_BYTES);
    if (footer.length === VPC_FOOTER_BYTES && hasVpcCookie(footer)) {
      const fv = new DataView(footer.buffer, footer.byteOffset, footer.byteLength);
      if (fv.getUint32(60) === VPC_FIXED && fv.getUint32(64) === vpcChecksum(footer, 64)) {
        return "vpc";
      }
    }
  }
  return undefined;
}
