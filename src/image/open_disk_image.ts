/**
 * Opening a disk image of any supported format (raw, qcow2, VMDK, VHDX, VHD,
 * VDI), detected by its magic or named by the caller; other formats QEMU reads
 * are refused by name rather than taken for raw disks.
 *
 * @module
 */

import type { DiskImage, PositionedReader } from "./disk_image.ts";
import { openQcow2Image, type Qcow2ImageOptions } from "./qcow2_image.ts";
import { openRawImage } from "./raw_image.ts";
import { openVmdkImage, type VmdkImageOptions } from "./vmdk_image.ts";
import { openVhdxImage } from "./vhdx_image.ts";
import { openVpcImage } from "./vpc_image.ts";
import { openVdiImage } from "./vdi_image.ts";
import { foreignImageFormat, HEAD_SIZE, TAIL_SIZE } from "./_image_signatures.ts";

/** A disk image format this library reads. */
export type DiskImageFormat = "raw" | "qcow2" | "vmdk" | "vhdx" | "vpc" | "vdi";

/** Options for {@linkcode openDiskImage}: the format, and the options of each format's opener. */
export interface OpenDiskImageOptions extends Qcow2ImageOptions, VmdkImageOptions {
  /**
   * The image format, or `"auto"` to detect it with
   * {@linkcode detectImageFormat}.
   *
   * @default {"auto"}
   */
  format?: "auto" | DiskImageFormat;
}

/**
 * Detects a disk image's format from its first bytes: `QFI\xfb` is qcow2,
 * `KDMV`, `COWD` or a text starting with `# Disk DescriptorFile` is VMDK, and
 * anything else is raw.
 *
 * A few formats this library cannot read (VHDX, dynamic VHD, VDI, QED, LUKS)
 * are refused instead of being taken for raw disks.
 *
 * @param reader Positioned reads of the image file.
 * @returns `"qcow2"`, `"vmdk"` or `"raw"`.
 * @throws {TypeError} The file is in a known format that is not supported.
 *
 * @example Detecting a qcow2 image by its magic
 * ```ts
 * import { detectImageFormat, type PositionedReader } from "@vmakit/vma";
 * import assert from "node:assert/strict";
 *
 * function memoryReader(bytes: Uint8Array): PositionedReader {
 *   return {
 *     size: bytes.length,
 *     read: (position, length) => Promise.resolve(bytes.slice(position, position + length)),
 *     close: () => Promise.resolve(),
 *   };
 * }
 * const qcow2 = new Uint8Array([0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3]);
 * assert.equal(await detectImageFormat(memoryReader(qcow2)), "qcow2");
 * assert.equal(await detectImageFormat(memoryReader(new Uint8Array(4096))), "raw");
 * ```
 */
export async function detectImageFormat(reader: PositionedReader): Promise<DiskImageFormat> {
  const head = await reader.read(0, Math.min(reader.size, HEAD_SIZE));
  const tail = reader.size >= TAIL_SIZE
    ? await reader.read(reader.size - TAIL_SIZE, TAIL_SIZE)
    : new Uint8Array(0);
  const foreign = foreignImageFormat(head, tail);
  if (foreign !== undefined) {
    const readable = READABLE_FOREIGN[foreign];
    if (readable !== undefined) return readable;
    throw new TypeError(
      `Unsupported image format: this is a ${foreign} image; convert it with "qemu-img convert -O qcow2" (or -O raw) first, or give the format "raw" if it really is a raw disk`,
    );
  }
  const text = new TextDecoder("latin1").decode(head);
  if (text.startsWith("QFI\xfb")) return "qcow2";
  if (text.startsWith("KDMV") || text.startsWith("COWD")) return "vmdk";
  if (text.startsWith("# Disk DescriptorFile")) return "vmdk";
  return "raw";
}

/** The formats {@linkcode foreignImageFormat} names that this library reads. */
const READABLE_FOREIGN: Record<string, DiskImageFormat> = {
  "VDI": "vdi",
  "VHD": "vpc",
  "VHD (fixed)": "vpc",
  "VHDX": "vhdx",
};

/**
 * Opens a disk image for reading its virtual disk, in the format given by
 * `options.format` or detected from its magic.
 *
 * The other options go to the format's opener: `openBacking` and `zstd` to
 * {@linkcode openQcow2Image}, `openFile` to {@linkcode openVmdkImage};
 * `memoryBudget` to every opener. `"vhdx"`, `"vpc"` (VHD) and `"vdi"` open
 * with {@linkcode openVhdxImage}, {@linkcode openVpcImage} and
 * {@linkcode openVdiImage}.
 * Closing the image closes `reader` and everything the image opened. If
 * opening fails, `reader` stays open (the caller closes it).
 *
 * @param reader Positioned reads of the image file.
 * @param options The format, and the options of the format's opener.
 * @returns The disk image.
 * @throws {TypeError} The format option is unknown, or the image uses something not supported.
 * @throws {SyntaxError} The image is corrupt or not in the format given.
 * @throws {RangeError} The image is beyond a supported limit.
 *
 * @example Opening an image whatever its format
 * ```ts
 * import { openDiskImage, type PositionedReader } from "@vmakit/vma";
 * import assert from "node:assert/strict";
 *
 * const bytes = new Uint8Array(1024).fill(1);
 * const reader: PositionedReader = {
 *   size: bytes.length,
 *   read: (position, length) => Promise.resolve(bytes.slice(position, position + length)),
 *   close: () => Promise.resolve(),
 * };
 * const image = await openDiskImage(reader, { format: "auto" });
 * assert.equal(image.format, "raw");
 * assert.equal(image.size, 1024);
 * await image.close();
 * ```
 */
export async function openDiskImage(
  reader: PositionedReader,
  options: OpenDiskImageOptions = {},
): Promise<DiskImage> {
  const requested = options.format ?? "auto";
  if (!["auto", "raw", "qcow2", "vmdk", "vhdx", "vpc", "vdi"].includes(requested)) {
    throw new TypeError(
      `Invalid disk image format "${requested}": expected "auto", "raw", "qcow2", "vmdk", "vhdx", "vpc" or "vdi"`,
    );
  }
  const format = requested === "auto" ? await detectImageFormat(reader) : requested;
  switch (format) {
    case "qcow2":
      return await openQcow2Image(reader, options);
    case "vmdk":
      return await openVmdkImage(reader, options);
    case "vhdx":
      return await openVhdxImage(reader, options);
    case "vpc":
      return await openVpcImage(reader, options);
    case "vdi":
      return await openVdiImage(reader, options);
    default:
      return await openRawImage(reader);
  }
}
