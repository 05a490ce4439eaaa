// The image formats `vma extract --format` writes, by QEMU's name: the file
// extension and the writer factory (a new format is one entry here).
import { deflateRawBound, DeflateRawEncoder } from "../compress/_deflate_raw_encoder.ts";
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

/**
 * qcow2's cluster compressors: one context for every cluster, writing into
 * one scratch buffer that is returned as it is. That is safe here: the qcow2
 * writer writes each compressed cluster to its target before it compresses
 * the next, and the target (FileWriter) copies or writes the bytes before its
 * write returns. A context and an output buffer per call (`zstdCompressSync`,
 * `deflateRawSync`), then a copy per cluster, left so much memory to the
 * garbage collector that extracting 1 GiB of data to a compressed qcow2
 * peaked at 142-170 MB (zstd) and 150 MB (zlib); 84-87 MB now.
 */
function scratchCompressor(
  encoder: () => { encode(input: Uint8Array, out: Uint8Array): number },
  bound: (length: number) => number,
): (data: Uint8Array) => Promise<Uint8Array> {
  let made: { encode(input: Uint8Array, out: Uint8Array): number } | undefined;
  let scratch = new Uint8Array(0);
  return (data) => {
    made ??= encoder();
    if (scratch.length < bound(data.length)) scratch = new Uint8Array(bound(data.length));
    return Promise.resolve(scratch.subarray(0, made.encode(data, scratch)));
  };
}

/** QEMU inflates qcow2 clusters with windowBits -12: deflate with the same window. */
const deflate = scratchCompressor(() => new DeflateRawEncoder(12), deflateRawBound);
/** zstd with a 64 KiB window (one cluster) and no checksum, as QEMU writes. */
const zstd = scratchCompressor(
  () => new ZstdFrameEncoder(3, { windowLog: 16, checksum: false }),
  zstdFrameBound,
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
