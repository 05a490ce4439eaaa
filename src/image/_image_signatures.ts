// The signatures of disk image formats QEMU reads besides raw, qcow2 and VMDK:
// detection opens the ones this library reads (VHDX, VHD, VDI) and refuses the
// others by name instead of taking the container file for a raw disk. Where QEMU probes a format (block/<driver>.c, `*_probe`), the same
// bytes are checked here; formats QEMU knows only by name or position (fixed
// VHD's footer, DMG's `koly` trailer) are checked by their trailer instead.

/** Bytes read from the start of the file for detection (bochs' header is 512). */
export const HEAD_SIZE = 512;
/** Bytes read from the end of the file: a VHD footer or a DMG trailer. */
export const TAIL_SIZE = 512;

const latin1 = (bytes: Uint8Array, start: number, length: number): string =>
  String.fromCharCode(...bytes.subarray(start, start + length));

const at = (bytes: Uint8Array, offset: number, text: string): boolean =>
  bytes.length >= offset + text.length && latin1(bytes, offset, text.length) === text;

const u32le = (b: Uint8Array, o: number): number =>
  (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0;

const u32be = (b: Uint8Array, o: number): number =>
  ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;

/** A VHD footer (512 bytes): "conectix", and a checksum that is the one's complement of the byte sum without it. */
function isVhdFooter(footer: Uint8Array): boolean {
  if (footer.length !== 512 || !at(footer, 0, "conectix")) return false;
  let sum = 0;
  for (let i = 0; i < 512; i++) if (i < 64 || i >= 68) sum += footer[i];
  return ((~sum) >>> 0) === u32be(footer, 64);
}

/** A UDIF (DMG) trailer: "koly", version 4, header size 512. */
function isDmgTrailer(trailer: Uint8Array): boolean {
  return trailer.length === 512 && at(trailer, 0, "koly") && u32be(trailer, 4) === 4 &&
    u32be(trailer, 8) === 512;
}

/**
 * Names the foreign format `head` (the first HEAD_SIZE bytes, fewer in a small
 * file) and `tail` (the last TAIL_SIZE bytes, empty in a file smaller than
 * that) belong to, or undefined when they belong to none.
 */
export function foreignImageFormat(head: Uint8Array, tail: Uint8Array): string | undefined {
  // QFI\xfb version 1 is qcow, version 2 and 3 qcow2 (block/qcow.c, qcow2.c).
  if (at(head, 0, "QFI\xfb") && head.length >= 8 && u32be(head, 4) === 1) {
    return "qcow (version 1)";
  }
  // block/vdi.c: the signature 0xbeda107f at 0x40, whatever the text before it.
  if (head.length >= 0x44 && u32le(head, 0x40) === 0xbeda107f) return "VDI";
  // block/vpc.c: a dynamic or differencing VHD starts with a copy of its footer;
  // a fixed one is the raw disk followed by the footer.
  if (at(head, 0, "conectix")) return "VHD";
  if (isVhdFooter(tail)) return "VHD (fixed)";
  if (at(head, 0, "vhdxfile")) return "VHDX";
  if (at(head, 0, "QED\0")) return "QED";
  if (at(head, 0, "WithoutFreeSpace") || at(head, 0, "WithouFreSpacExt")) return "Parallels";
  // crypto/block-luks.c: LUKS1 and LUKS2 share the magic.
  if (at(head, 0, "LUKS\xba\xbe")) return "LUKS";
  if (at(head, 0, "Bochs Virtual HD Image")) return "Bochs";
  // block/cloop.c: a shell script header that loads the cloop module.
  if (at(head, 0, "#!/bin/sh\n#V") && latin1(head, 0, 128).includes("modprobe cloop")) {
    return "cloop";
  }
  if (isDmgTrailer(tail)) return "DMG";
  return undefined;
}
