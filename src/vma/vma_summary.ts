/**
 * What {@linkcode verifyVma} and {@linkcode extractVma} count while they read
 * an archive: progress after each cluster and the closing summary, with the
 * figures Proxmox's `vma verify -v` and `vma extract -v` print.
 *
 * @module
 */
import type { VmaDevice } from "./vma_reader.ts";

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
