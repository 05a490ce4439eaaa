// Counting clusters for verify and extract, as Proxmox's `vma -v` reports them
// (docs: vma-format.md, section 3, "How the two closing figures are counted").
// Private to the library.
import { BLOCK_SIZE, BLOCKS_PER_CLUSTER, CLUSTER_SIZE, popcount16 } from "./_layout.ts";
import type { VmaCluster, VmaDevice, VmaHeader } from "./vma_reader.ts";
import type { VmaDeviceSummary, VmaProgress, VmaSummary } from "./vma_summary.ts";

const SECTOR = 512;

interface DeviceCounts {
  clusters: number;
  sparseBytes: number;
  storedBytes: number;
}

/** Accumulates a {@linkcode VmaSummary} and reports progress. */
export class SummaryCounter {
  #header: VmaHeader;
  #total: number;
  #onProgress: ((progress: VmaProgress) => void) | undefined;
  #clusters = 0;
  #sparse = 0;
  #zeroBlocks = 0;
  #stored = 0;
  /** Per device id. */
  #byId: DeviceCounts[] = [];

  constructor(header: VmaHeader, onProgress?: (progress: VmaProgress) => void) {
    this.#header = header;
    // Proxmox's reader sums floor(size / 65536) over the devices.
    this.#total = header.devices.reduce((n, d) => n + Math.floor(d.size / CLUSTER_SIZE), 0);
    this.#onProgress = onProgress;
    for (const d of header.devices) {
      this.#byId[d.id] = { clusters: 0, sparseBytes: 0, storedBytes: 0 };
    }
  }

  add(cluster: VmaCluster): void {
    const mask = cluster.mask;
    const device = cluster.device;
    const counts = this.#byId[device.id];
    this.#clusters++;
    counts.clusters++;
    if (mask !== 0xffff) {
      const zero = mask === 0 && (cluster.cluster + 1) * CLUSTER_SIZE <= device.size
        ? CLUSTER_SIZE // an all-zero cluster inside the device: the usual case
        : zeroBytesInDevice(device, cluster.cluster, mask);
      this.#sparse += zero;
      counts.sparseBytes += zero;
      if (mask !== 0) this.#zeroBlocks += zero;
    }
    const stored = cluster.data.length;
    this.#stored += stored;
    counts.storedBytes += stored;
    if (this.#onProgress !== undefined) {
      this.#onProgress({
        clustersRead: this.#clusters,
        clustersTotal: this.#total,
        bytesRead: this.#clusters * CLUSTER_SIZE,
      });
    }
  }

  summary(): VmaSummary {
    return {
      clusters: this.#clusters,
      bytes: this.#clusters * CLUSTER_SIZE,
      sparseBytes: this.#sparse,
      zeroBlockBytes: this.#zeroBlocks,
      storedBytes: this.#stored,
      devices: this.#header.devices.map((device): VmaDeviceSummary => ({
        device,
        ...this.#byId[device.id],
      })),
    };
  }
}

/**
 * The bytes of the 4 KiB blocks of cluster `cluster` whose bit in `mask` is
 * clear, cut at the device end as Proxmox cuts them: block j covers sectors
 * [s, e) with s = (cluster·65536 + j·4096)/512 and e = min(s + 8, ⌊size/512⌋)
 * (no cut for vmstate), and counts (e − s)·512 when e > s.
 */
export function zeroBytesInDevice(device: VmaDevice, cluster: number, mask: number): number {
  const base = cluster * CLUSTER_SIZE;
  const end = Math.floor(device.size / SECTOR) * SECTOR;
  if (device.vmstate || base + CLUSTER_SIZE <= end) {
    return (BLOCKS_PER_CLUSTER - popcount16(mask)) * BLOCK_SIZE;
  }
  let bytes = 0;
  for (let j = 0; j < BLOCKS_PER_CLUSTER; j++) {
    if ((mask & (1 << j)) !== 0) continue;
    const start = base + j * BLOCK_SIZE;
    if (start < end) bytes += Math.min(BLOCK_SIZE, end - start);
  }
  return bytes;
}
