import { SummaryCounter } from "./_summary.ts";
import type { VmaReader } from "./vma_reader.ts";
import type { VmaProgress, VmaSummary } from "./vma_summary.ts";

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
