/**
 * What an NBD server exports: a name and a read-only disk image.
 *
 * @module
 */
import type { DiskImage } from "../image/disk_image.ts";

/** One NBD export: a name and a read-only disk (zero regions reported for NBD_CMD_BLOCK_STATUS). */
export interface NbdExport {
  /** The export name clients ask for (the device name, such as `drive-scsi0`). */
  readonly name: string;
  /** The disk served: reads, and its zero regions for block status. */
  readonly image: DiskImage;
}
