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
  /** Its part of {@linkcode VmaSummary.sparseBytes}. */
  readonly sparseBytes: number;
  /** Bytes of its stored (non-zero) blocks, 4,096 each. */
  readonly storedBytes: number;
}

/** What {@linkcode verifyVma} and {@linkcode extractVma} counted. */
export interface VmaSummary {
  /** Clusters in the archive. */
  readonly clusters: number;
  /** `clusters * 65536`: Proxmox's "total bytes read". */
  readonly bytes: number;
  /**
   * Proxmox's "sparse bytes": the bytes of every 4 KiB block the archive
   * leaves out (mask bit clear), in every cluster whose mask is not 0xffff
   * (all-zero clusters included), counted only up to the device end (the
   * size rounded down to 512): the padding of a partial last cluster does
   * not count. For the `vmstate` device nothing is cut.
   */
  readonly sparseBytes: number;
  /**
   * The part of `sparseBytes` in clusters that store some blocks (mask
   * neither 0 nor 0xffff). Proxmox's "space reduction due to 4K zero blocks"
   * is `zeroBlockBytes / (bytes - sparseBytes)`.
   */
  readonly zeroBlockBytes: number;
  /** Bytes of stored (non-zero) blocks, 4,096 each. */
  readonly storedBytes: number;
  /** The same per device, by ascending id. */
  readonly devices: readonly VmaDeviceSummary[];
}
