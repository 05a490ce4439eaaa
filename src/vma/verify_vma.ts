import { SummaryCounter } from "./_summary.ts";
import type { VmaDevice, VmaReader } from "./vma_reader.ts";

/** Progress of {@linkcode verifyVma} or {@linkcode extractVma}, after each cluster. */
export interface VmaProgress {
  /** Clusters read so far. */
  readonly clustersRead: number;
  /**
   * The clusters Proxmox's `vma` counts as the whole: the sum over the
   * devices of `floor(size / 65536)`. `clustersRead` can pass it by the
   * devices' partial last clusters, as in Proxmox's `progress 101%`.
   */
  readonly clustersTotal: number;
  /** `clustersRead * 65536`. */
  readonly bytesRead: number;
}

/** What {@linkcode verifyVma} and {@linkcode extractVma} counted for one device. */
export interface VmaDeviceSummary {
  /** The device. */
  readonly device: VmaDevice;
  /** Its clusters in the archive. */
  readonly clusters: number;
  /** Bytes of its all-zero clusters. */
  readonly sparseBytes: number;
  /** Bytes of its stored (non-zero) blocks. */
  readonly storedBytes: number;
}

/** What {@linkcode verifyVma} and {@linkcode extractVma} counted. */
export interface VmaSummary {
  /** Clusters in the archive. */
  readonly clusters: number;
  /** `clusters * 65536`: Proxmox's "total bytes read". */
  readonly bytes: number;
  /** Bytes of all-zero clusters: Proxmox's "sparse bytes". */
  readonly sparseBytes: number;
  /** Bytes of zero 4 KiB blocks inside the other clusters. */
  readonly zeroBlockBytes: number;
  /** Bytes of stored (non-zero) blocks. */
  readonly storedBytes: number;
  /** The same per device, by ascending id. */
  readonly devices: readonly VmaDeviceSummary[];
}

/** Options of {@linkcode verifyVma}. */
export interface VerifyVmaOptions {
  /** Called after each cluster. */
  onProgress?: (progress: VmaProgress) => void;
}

/**
 * Reads a whole archive and checks it: the header, every extent, and that
 * every cluster of every device is present exactly once. Image data carries
 * no checksum in the VMA format, so this proves the structure, not the data.
 *
 * @example Verifying an archive
 * ```ts
 * import { verifyVma, VmaReader, VmaWriter } from "@vmakit/vma";
 * import assert from "node:assert/strict";
 *
 * const writer = new VmaWriter();
 * const disk = writer.addDevice("drive-scsi0", 131072);
 * const archive = new Response(writer.readable).bytes();
 * await disk.writeZeroes(0, 131072);
 * await writer.close();
 *
 * const summary = await verifyVma(new VmaReader(ReadableStream.from([await archive])));
 * assert.equal(summary.sparseBytes, 131072);
 * ```
 *
 * @param reader The archive; its header may already have been read.
 * @param options A progress callback.
 * @returns The counts.
 * @throws {VmaFormatError} When the archive is malformed or incomplete.
 */
export async function verifyVma(
  reader: VmaReader,
  options: VerifyVmaOptions = {},
): Promise<VmaSummary> {
  const counter = new SummaryCounter(await reader.header(), options.onProgress);
  for await (const extent of reader.extents({ reuseBuffers: true })) {
    for (const cluster of extent.clusters) counter.add(cluster);
  }
  return counter.summary();
}
