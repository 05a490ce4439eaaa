/**
 * Disk image writers: the interface every output format (raw, qcow2, VMDK,
 * VHDX, VHD, VDI) implements, so that `vma extract --format` and the library's
 * users can turn an archive's devices into any of them.
 *
 * A writer receives the device's data in any order (a VMA archive holds its
 * clusters in whatever order the backup wrote them), writes it through a
 * {@linkcode PositionedWriter} handed in by the caller, and finishes the image
 * (tables, footers) in {@linkcode DiskImageWriter.close}. Regions never
 * written read as zeros in the finished image.
 *
 * @module
 */

/** Positioned writes to one file, handed in by the caller (a file, a File System Access handle, memory). */
export interface PositionedWriter {
  /**
   * Writes all of `data` at byte `position`, growing the file as needed; a
   * gap left before `position` reads as zeros. `data` may be reused by the
   * caller once the promise settles.
   */
  write(position: number, data: Uint8Array): Promise<void>;
  /**
   * Reads up to `length` bytes at `position` (fewer only at the end of the
   * file). Writers that update an existing image (or re-read what they wrote)
   * use it; a write-only target may omit it.
   */
  read?(position: number, length: number): Promise<Uint8Array>;
  /** Sets the file's size (cutting it or growing it with zeros). */
  truncate(size: number): Promise<void>;
}

/** A disk image being written. Implements `VmaDeviceSink`, so it can be handed to `extractVma` as it is. */
export interface DiskImageWriter {
  /** Format name, as QEMU names it: `"raw"`, `"qcow2"`, `"vmdk"`, `"vhdx"`, `"vpc"`, `"vdi"`. */
  readonly format: string;
  /** Virtual size of the disk in bytes. */
  readonly size: number;
  /**
   * Writes `data` at byte `offset` of the virtual disk, in any order; each
   * byte is written at most once. `data` is valid only until the returned
   * promise settles. Bytes never written read as zeros.
   */
  write(offset: number, data: Uint8Array): Promise<void>;
  /** Finishes the image (tables, headers, footers). No write may follow. */
  close(): Promise<void>;
}
