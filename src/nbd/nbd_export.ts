/**
 * What an NBD server exports: a name and a read-only disk image.
 *
 * @module
 */
import type { DiskImage } from "../image/disk_image.ts";

/** One NBD export: a name and a read-only disk (zero regions reported for NBD_CMD_BLOCK_STATUS). */
export interface NbdExport {
  readonly name: string;
  readonly image: DiskImage;
}
