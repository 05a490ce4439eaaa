/**
 * A disk image as `VmaWriter` input: its virtual size, which regions are
 * known to read as zeros, and positioned reads of its virtual contents.
 *
 * Image formats (raw, qcow2, VMDK) implement this over a
 * {@linkcode PositionedReader}, so the library never touches a file API itself.
 *
 * @module
 */

/** Positioned reads of one file (or block device), handed in by the caller. */
export interface PositionedReader {
  /** Size of the file in bytes. */
  readonly size: number;
  /**
   * Reads up to `length` bytes at `position`. Returns fewer bytes only at the
   * end of the file. The returned bytes belong to the caller.
   */
  read(position: number, length: number): Promise<Uint8Array>;
  /** Releases the file. */
  close(): Promise<void>;
}

/** One region of a disk image's virtual contents. */
export interface DiskImageRegion {
  /** Byte offset in the virtual disk. */
  readonly offset: number;
  /** Length in bytes. */
  readonly length: number;
  /** True when the region is known to read as zeros (unallocated or a zero cluster). */
  readonly zero: boolean;
}

/** A disk image's virtual contents. */
export interface DiskImage {
  /** Format name: `"raw"`, `"qcow2"` or `"vmdk"`. */
  readonly format: string;
  /** Virtual size of the disk in bytes. */
  readonly size: number;
  /**
   * The regions of the disk in order, covering `0 .. size` without gaps.
   * Regions not marked `zero` may still contain zeros.
   */
  regions(): AsyncIterable<DiskImageRegion>;
  /**
   * Reads `length` bytes of the virtual disk at `offset` (within `0 .. size`).
   * Unallocated parts read as zeros. The returned bytes belong to the caller.
   */
  read(offset: number, length: number): Promise<Uint8Array>;
  /** Releases the image and every file it opened. */
  close(): Promise<void>;
}
