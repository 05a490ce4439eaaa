/**
 * Write and read Proxmox VE VMA backup archives (the `vzdump-qemu-*.vma`
 * files that `qmrestore` restores) with WHATWG streams, in any runtime.
 *
 * {@linkcode VmaWriter} turns configs and disk images into an archive stream;
 * {@linkcode VmaReader} parses one back, plain or compressed as vzdump writes
 * it (zstd, gzip, lzop: {@linkcode detectCompression}), checking everything
 * Proxmox's own reader checks and more; {@linkcode verifyVma} and
 * {@linkcode extractVma} are built on it. File access in Deno:
 * `@vmakit/vma/deno`.
 *
 * @example Writing an archive and reading it back
 * ```ts
 * import { extractVma, VmaReader, VmaWriter } from "@vmakit/vma";
 * import assert from "node:assert/strict";
 *
 * const writer = new VmaWriter();
 * writer.addConfig("qemu-server.conf", "memory: 512\n#qmdump#map:scsi0:drive-scsi0:local:raw:\n");
 * const device = writer.addDevice("drive-scsi0", 4 * 65536);
 * const archive = new Response(writer.readable).bytes();
 * const image = new Uint8Array(4 * 65536).fill(1, 70000, 80000);
 * await ReadableStream.from([image]).pipeTo(device.writable);
 * await writer.close();
 *
 * const disk = new Uint8Array(device.size);
 * await extractVma(new VmaReader(ReadableStream.from([await archive])), {
 *   device: () => ({ write: (offset, data) => disk.set(data, offset) }),
 * });
 * assert.deepEqual(disk, image);
 * ```
 *
 * @module
 */
export * from "./src/vma/vma_writer.ts";
export * from "./src/vma/vma_reader.ts";
export * from "./src/vma/vma_format_error.ts";
export type * from "./src/vma/vma_summary.ts";
export * from "./src/vma/verify_vma.ts";
export * from "./src/vma/extract_vma.ts";
export * from "./src/vma/vma_index.ts";
export type * from "./src/image/disk_image.ts";
export type * from "./src/image/disk_image_writer.ts";
export * from "./src/image/raw_image.ts";
export * from "./src/image/qcow2_image.ts";
export * from "./src/image/vmdk_image.ts";
export * from "./src/image/vhdx_image.ts";
export * from "./src/image/vpc_image.ts";
export * from "./src/image/vdi_image.ts";
export * from "./src/image/open_disk_image.ts";
export * from "./src/image/raw_writer.ts";
export * from "./src/image/qcow2_writer.ts";
export * from "./src/image/vdi_writer.ts";
export * from "./src/image/vpc_writer.ts";
export * from "./src/image/vmdk_writer.ts";
export * from "./src/image/vhdx_writer.ts";
export * from "./src/compress/lzop_decompression_stream.ts";
export * from "./src/compress/compression.ts";
export * from "./src/compress/zstd_seekable.ts";
export type * from "./src/nbd/nbd_export.ts";
export * from "./src/nbd/nbd_server.ts";
