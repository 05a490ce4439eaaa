// Counting clusters for verify and extract, as Proxmox's `vma -v` reports them.
// Private to the library.
import { CLUSTER_SIZE } from "./_layout.ts";
import type { VmaCluster, VmaHeader } from "./vma_reader.ts";
import type { VmaDeviceSummary, VmaProgress, VmaSummary } from "./vma_summary.ts";

/** Accumulates a {@linkcode VmaSummary} and reports progress. */
export class SummaryCounter {
  #clusters = 0;
  #sparse = 0;
  #zeroBlocks = 0;
  #stored = 0;
  #total: number;
  #onProgress: ((progress: VmaProgress) => void) | undefined;
  #devices = new Map<number, { clusters: number; sparseBytes: number; storedBytes: number }>();

  constructor(header: VmaHeader, onProgress?: (progress: VmaProgress) => void) {
    // Proxmox's reader sums floor(size / 65536) over the devices.
    this.#total = header.devices.reduce((n, d) => n + Math.floor(d.size / CLUSTER_SIZE), 0);
    this.#onProgress = onProgress;
    for (const d of header.devices) {
      this.#devices.set(d.id, { clusters: 0, sparseBytes: 0, storedBytes: 0 });
    }
    this.#header = header;
  }

  #header: VmaHeader;

  add(cluster: VmaCluster): void {
    this.#clusters++;
    if (cluster.mask === 0) this.#sparse += CLUSTER_SIZE;
    else {
      // Zero blocks inside the device only, as Proxmox counts them.
      const base = cluster.cluster * CLUSTER_SIZE;
      const end = cluster.device.size;
      for (let j = 0; j < 16 && base + j * 4096 < end; j++) {
        if ((cluster.mask & (1 << j)) === 0) this.#zeroBlocks += 4096;
      }
    }
    this.#stored += cluster.data.length;
    const device = this.#devices.get(cluster.device.id)!;
    device.clusters++;
    if (cluster.mask === 0) device.sparseBytes += CLUSTER_SIZE;
    device.storedBytes += cluster.data.length;
    this.#onProgress?.({
      clustersRead: this.#clusters,
      clustersTotal: this.#total,
      bytesRead: this.#clusters * CLUSTER_SIZE,
    });
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
        ...this.#devices.get(device.id)!,
      })),
    };
  }
}
