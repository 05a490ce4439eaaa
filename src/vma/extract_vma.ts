import { BLOCK_SIZE, BLOCKS_PER_CLUSTER, CLUSTER_SIZE } from "./_layout.ts";
import { SummaryCounter } from "./_summary.ts";
import type { VmaConfig, VmaDevice, VmaReader } from "./vma_reader.ts";
import type { VmaProgress, VmaSummary } from "./vma_summary.ts";

/** Where {@linkcode extractVma} writes one device: positioned writes, like a sparse file. */
export interface VmaDeviceSink {
  /**
   * Writes non-zero data at a byte offset of the device. Zero regions are
   * never written, so the sink must read as zeros where nothing was written
   * (a sparse file of the device size, for example). `data` is valid only
   * until the returned promise settles (its memory is reused): copy it to
   * keep it.
   */
  write(offset: number, data: Uint8Array): Promise<void> | void;
  /** Called once after the last write of a successful extraction. */
  close?(): Promise<void> | void;
}

/** Where {@linkcode extractVma} writes configs and devices. */
export interface VmaExtractTarget {
  /** Receives each config file, before any device data. */
  config?(config: VmaConfig): Promise<void> | void;
  /** Returns the sink of a device, or undefined to skip the device (its data is still checked). */
  device(device: VmaDevice): Promise<VmaDeviceSink | undefined> | VmaDeviceSink | undefined;
}

/** Options of {@linkcode extractVma}. */
export interface ExtractVmaOptions {
  /** Called after each cluster. */
  onProgress?: (progress: VmaProgress) => void;
}

/**
 * Extracts an archive into caller-supplied sinks, checking it as
 * {@linkcode verifyVma} does. Runs of stored blocks become one write each;
 * zero blocks and bytes past a device's end are never written.
 *
 * @example Extracting a disk into memory
 * ```ts
 * import { extractVma, VmaReader, VmaWriter } from "@vmakit/vma";
 * import assert from "node:assert/strict";
 *
 * const writer = new VmaWriter();
 * const device = writer.addDevice("drive-scsi0", 65536);
 * const archive = new Response(writer.readable).bytes();
 * await device.write(0, new Uint8Array(65536).fill(9));
 * await writer.close();
 *
 * const disk = new Uint8Array(65536);
 * await extractVma(new VmaReader(ReadableStream.from([await archive])), {
 *   device: () => ({ write: (offset, data) => disk.set(data, offset) }),
 * });
 * assert.equal(disk[65535], 9);
 * ```
 *
 * @param reader The archive; its header may already have been read.
 * @param target The config and device sinks.
 * @param options A progress callback.
 * @returns The counts, as `verifyVma` gives them.
 * @throws {VmaFormatError} When the archive is malformed or incomplete.
 */
export async function extractVma(
  reader: VmaReader,
  target: VmaExtractTarget,
  options: ExtractVmaOptions = {},
): Promise<VmaSummary> {
  const header = await reader.header();
  const counter = new SummaryCounter(header, options.onProgress);
  for (const config of header.configs) await target.config?.(config);
  const sinks = new Map<number, VmaDeviceSink>();
  for (const device of header.devices) {
    const sink = await target.device(device);
    if (sink !== undefined) sinks.set(device.id, sink);
  }
  const vmstateAt = new Map<number, number>();
  // Runs that continue each other on the device and in the extent buffer are
  // merged into one write (a whole extent of full clusters becomes one write).
  let pending: { sink: VmaDeviceSink; offset: number; data: Uint8Array } | undefined;
  const flush = async () => {
    if (pending !== undefined) await pending.sink.write(pending.offset, pending.data);
    pending = undefined;
  };
  const put = async (sink: VmaDeviceSink, offset: number, data: Uint8Array) => {
    if (
      pending !== undefined && pending.sink === sink &&
      pending.offset + pending.data.length === offset &&
      pending.data.buffer === data.buffer &&
      pending.data.byteOffset + pending.data.length === data.byteOffset
    ) {
      pending.data = new Uint8Array(
        data.buffer,
        pending.data.byteOffset,
        pending.data.length + data.length,
      );
      return;
    }
    await flush();
    pending = { sink, offset, data };
  };
  for await (const extent of reader.extents({ reuseBuffers: true })) {
    for (const cluster of extent.clusters) {
      counter.add(cluster);
      const sink = sinks.get(cluster.device.id);
      if (sink === undefined || cluster.mask === 0) continue;
      const { device, mask, data } = cluster;
      if (device.vmstate) {
        // Sequential: stored bytes in order, up to the device size.
        const at = vmstateAt.get(device.id) ?? 0;
        const n = Math.min(data.length, device.size - at);
        if (n > 0) await put(sink, at, data.subarray(0, n));
        vmstateAt.set(device.id, at + n);
        continue;
      }
      const base = cluster.cluster * CLUSTER_SIZE;
      const end = Math.floor(device.size / 512) * 512;
      let from = 0; // into data
      for (let j = 0; j < BLOCKS_PER_CLUSTER; j++) {
        if ((mask & (1 << j)) === 0) continue;
        let k = j;
        while (k + 1 < BLOCKS_PER_CLUSTER && (mask & (1 << (k + 1))) !== 0) k++;
        const runBytes = (k - j + 1) * BLOCK_SIZE;
        const at = base + j * BLOCK_SIZE;
        const n = Math.min(runBytes, end - at);
        if (n > 0) await put(sink, at, data.subarray(from, from + n));
        from += runBytes;
        j = k;
      }
    }
    await flush();
  }
  for (const sink of sinks.values()) await sink.close?.();
  return counter.summary();
}
