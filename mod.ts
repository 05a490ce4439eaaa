/**
 * Write and read Proxmox VE VMA backup archives.
 *
 * @module
 */
export * from "./src/vma_format_error.ts";
export type * from "./src/disk_image.ts";
