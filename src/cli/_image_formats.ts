// The image formats `vma extract --format` writes, by QEMU's name: the file
// extension and the writer factory (a new format is one entry here).
import { deflateRawSync } from "node:zlib";
import { zstdFrameBound, ZstdFrameEncoder } from "../compress/_zstd_frame.ts";
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
/**
 * One zstd context for every cluster (a 64 KiB window: one cluster), writing
 * into one scratch buffer that is returned as it is. That is safe here: the
 * qcow2 writer writes each compressed cluster to its target before it
 * compresses the next, and the target (FileWriter) copies or writes the
 * bytes before its write returns. A context and an output buffer per call
 * (`zstdCompressSync`), then a copy per cluster, left so much memory to the
 * garbage collector that extracting 1 GiB of data to a zstd-compressed qcow2
 * peaked at 142-170 MB, then 124-132 MB; 84-87 MB now.
 */
let zstdEncoder: ZstdFrameEncoder | undefined;
let zstdScratch = new Uint8Array(0);
const zstd = (data: Uint8Array) => {
  zstdEncoder ??= new ZstdFrameEncoder(3, { windowLog: 16, checksum: false });
  if (zstdScratch.length < zstdFrameBound(data.length)) {
    zstdScratch = new Uint8Array(zstdFrameBound(data.length));
  }
  const length = zstdEncoder.encode(data, zstdScratch);
  return Promise.resolve(zstdScratch.subarray(0, length));
};

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
