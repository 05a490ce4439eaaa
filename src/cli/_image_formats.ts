// The image formats `vma extract --format` writes, by QEMU's name: the file
// extension and the writer factory. Formats whose writer is not wired in yet
// have `create: NOT_BUILT`; wiring one in is one line, for example
//   vmdk: { ext: "vmdk", create: (t, s, o) => createVmdkWriter(t, s, { subformat: o.vmdkSubformat }) },
import { constants, deflateRawSync, zstdCompressSync } from "node:zlib";
import type { DiskImageWriter, PositionedWriter } from "../image/disk_image_writer.ts";
import { createQcow2Writer } from "../image/qcow2_writer.ts";
import { createRawWriter } from "../image/raw_writer.ts";

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

/** The factory of a format whose writer is not wired in yet. */
export const NOT_BUILT = (): Promise<DiskImageWriter> =>
  Promise.reject(new Error("this image format is not built yet"));

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
  vmdk: { ext: "vmdk", create: NOT_BUILT },
  vhdx: { ext: "vhdx", create: NOT_BUILT },
  vdi: { ext: "vdi", create: NOT_BUILT },
  vpc: { ext: "vhd", create: NOT_BUILT },
};
