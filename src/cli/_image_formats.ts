// The image formats `vma extract --format` writes, by QEMU's name: the file
// extension and the writer factory (a new format is one entry here).
import { constants, deflateRawSync, zstdCompressSync } from "node:zlib";
import type { DiskImageWriter, PositionedWriter } from "../image/disk_image_writer.ts";
import { createQcow2Writer } from "../image/qcow2_writer.ts";
import { createRawWriter } from "../image/raw_writer.ts";
import { createVdiWriter } from "../image/vdi_writer.ts";
import { createVhdxWriter } from "../image/vhdx_writer.ts";
import { createVmdkWriter } from "../image/vmdk_writer.ts";
import { createVpcWriter } from "../image/vpc_writer.ts";

/** What `--compress` and `--vmdk-subformat` ask of a writer. */
export interface ImageWriterOptions {
  readonly compress: "zlib" | "zstd" | undefined;
  readonly vmdkSubformat: "monolithicSparse" | "streamOptimized" | undefined;
}

/** An output format: file extension and writer factory. */
export interface ImageFormat {
  /** Without the dot: `raw`, `qcow2`, `vmdk`, `vhdx`, `vdi`, `vhd`. */
  readonly ext: string;
  create(
    target: PositionedWriter,
    size: number,
    options: ImageWriterOptions,
  ): Promise<DiskImageWriter>;
}

/** QEMU inflates qcow2 clusters with windowBits -12: deflate with the same window. */
const deflate = (data: Uint8Array) =>
  Promise.resolve<Uint8Array>(deflateRawSync(data, { windowBits: 12 }));
/** A 64 KiB window (one cluster) keeps each call's compression context small. */
const zstd = (data: Uint8Array) =>
  Promise.resolve(
    zstdCompressSync(data, { params: { [constants.ZSTD_c_windowLog]: 16 } }),
  );

/** The formats by QEMU's name, in the order `--help` lists them. */
export const IMAGE_FORMATS: Readonly<Record<string, ImageFormat>> = {
  raw: { ext: "raw", create: (t, s) => createRawWriter(t, s) },
  qcow2: {
    ext: "qcow2",
    create: (t, s, o) =>
      createQcow2Writer(t, s, {
        compress: o.compress,
        deflate,
        zstd,
        l2CacheBytes: 2 * 1024 * 1024,
        pendingBytes: 1024 * 1024,
      }),
  },
  vmdk: {
    ext: "vmdk",
    create: (t, s, o) => createVmdkWriter(t, s, { subformat: o.vmdkSubformat }),
  },
  vhdx: { ext: "vhdx", create: (t, s) => createVhdxWriter(t, s) },
  vdi: { ext: "vdi", create: (t, s) => createVdiWriter(t, s) },
  vpc: { ext: "vhd", create: (t, s) => createVpcWriter(t, s) },
};
