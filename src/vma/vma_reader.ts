/**
 * The VMA reader: {@linkcode VmaReader} reads an archive stream without
 * seeking, first the header, then the extents and their clusters, and checks
 * everything Proxmox's reader checks, and more.
 *
 * How it is built: `ByteSource` (`_byte_source.ts`) reads exact byte counts
 * from the stream; `readHeader` (`_header_reader.ts`) reads and checks the
 * header in steps (bytes and MD5, blob walk, devices, configs); `readExtent`
 * below checks one extent and its blockinfo slots, and `DataState` keeps the
 * clusters seen per device (a `ClusterSet`, `_cluster_set.ts`) for the
 * duplicate and completeness checks.
 *
 * @module
 */
import {
  BLOCK_SIZE,
  BLOCKS_PER_CLUSTER,
  bytesEqual,
  CLUSTER_SIZE,
  clusterCount,
  EXT_OFF_BLOCK_COUNT,
  EXT_OFF_BLOCKINFO,
  EXT_OFF_MD5,
  EXT_OFF_UUID,
  EXTENT_HEADER_SIZE,
  EXTENT_MAGIC,
  MAX_EXTENT_SIZE,
  popcount16,
  SLOTS_PER_EXTENT,
} from "./_layout.ts";
import { ByteSource } from "./_byte_source.ts";
import type { Compression, DecompressionOptions } from "../compress/compression.ts";
import { ClusterSet } from "./_cluster_set.ts";
import { type ParsedHeader, readHeader } from "./_header_reader.ts";
import { extentMd5Matches } from "./_extent_md5.ts";
import { VmaFormatError } from "./vma_format_error.ts";

const EMPTY = new Uint8Array(0);
/** A config file stored in a VMA archive. */
export interface VmaConfig {
  /** The file name, such as `qemu-server.conf`. */
  readonly name: string;
  /** The file contents. */
  readonly data: Uint8Array;
}

/** A device (disk image) stored in a VMA archive. */
export interface VmaDevice {
  /** The device id, 1 to 254. */
  readonly id: number;
  /** The device name, such as `drive-scsi0`. */
  readonly name: string;
  /** The device size in bytes. */
  readonly size: number;
  /** True for the `vmstate` device (saved VM memory), whose clusters are sequential. */
  readonly vmstate: boolean;
}

/** The header of a VMA archive. */
export interface VmaHeader {
  /** The archive UUID, lower-case. */
  readonly uuid: string;
  /** The creation time (whole seconds). */
  readonly ctime: Date;
  /** Header length in bytes: where the first extent starts. */
  readonly headerSize: number;
  /** The config files, in slot order. */
  readonly configs: readonly VmaConfig[];
  /** The devices, by ascending id. */
  readonly devices: readonly VmaDevice[];
}

/** One cluster (64 KiB) of a device, as stored in the archive. */
export interface VmaCluster {
  /** The device it belongs to. */
  readonly device: VmaDevice;
  /** The cluster number: the cluster starts at byte `cluster * 65536` of the device. */
  readonly cluster: number;
  /** Bit j set when the 4 KiB block j of the cluster is stored; clear bits are zeros. */
  readonly mask: number;
  /**
   * The stored blocks, in increasing j, 4,096 bytes each. For a cluster
   * that ends past the device end, the bytes past the end are to be dropped.
   */
  readonly data: Uint8Array;
}

/**
 * Options of {@linkcode VmaReader}. The archive may be compressed as
 * `vzdump` writes it (zstd, every frame; gzip; lzop): the compression is
 * found by its magic and undone. zstd and gzip use node:zlib where the
 * runtime has it (Deno, Bun, Node; zstd from Node 22.15), else
 * `DecompressionStream`; where neither decodes zstd (browsers without a zstd
 * `DecompressionStream`, Node 20), pass a decoder as `zstd`. A corrupt
 * compressed stream is a `SyntaxError` reading
 * `<compression> decompression failed - <why>`.
 */
export interface VmaReaderOptions extends DecompressionOptions {}

/** Options of {@linkcode VmaReader.extents}. */
export interface VmaExtentsOptions {
  /**
   * Read every extent into the same memory; each extent's data is then valid
   * only until the next one is requested.
   *
   * @default {false}
   */
  reuseBuffers?: boolean;
}

/** One extent of the archive: up to 59 clusters. */
export interface VmaExtent {
  /** Byte offset of the extent in the archive stream. */
  readonly offset: number;
  /** The clusters it holds, in stream order. */
  readonly clusters: readonly VmaCluster[];
}

/**
 * Reads a VMA archive from a stream, without seeking: first the header, then
 * the clusters as they come.
 *
 * It makes every check of Proxmox's reader, in the same order and with the
 * same wording, and some more: every cluster of every device must be present
 * (checked at the end of the stream, where Proxmox's `vma verify` does not
 * check), device and config names must be safe as file names and unique, and
 * bytes after the last extent are an error. Malformed input raises
 * {@linkcode VmaFormatError}; memory stays within one extent plus the header.
 *
 * @example Listing what an archive holds
 * ```ts
 * import { VmaReader, VmaWriter } from "@vmakit/vma";
 * import assert from "node:assert/strict";
 *
 * const writer = new VmaWriter();
 * writer.addConfig("qemu-server.conf", "memory: 512\n");
 * const disk = writer.addDevice("drive-scsi0", 65536);
 * const archive = new Response(writer.readable).bytes();
 * await disk.write(0, new Uint8Array(65536).fill(1));
 * await writer.close();
 *
 * const reader = new VmaReader(ReadableStream.from([await archive]));
 * const header = await reader.header();
 * assert.deepEqual(header.devices.map((d) => d.name), ["drive-scsi0"]);
 * for await (const cluster of reader.clusters()) {
 *   assert.equal(cluster.mask, 0xffff);
 * }
 * ```
 */
export class VmaReader {
  #source: ByteSource;
  #header: Promise<ParsedHeader> | undefined;
  #iterating = false;

  /**
   * Creates a reader over an archive stream (a file, stdin, a `DecompressionStream`).
   *
   * @param readable The archive bytes.
   */
  constructor(readable: ReadableStream<Uint8Array>, options: VmaReaderOptions = {}) {
    this.#source = new ByteSource(readable, options);
  }

  /**
   * The compression found around the archive (`"none"` for a plain one);
   * undefined until the header has been asked for.
   */
  get compression(): Compression | undefined {
    return this.#source.compression;
  }

  /** Archive bytes read so far. */
  get bytesRead(): number {
    return this.#source.position;
  }

  /**
   * Reads and checks the header. Later calls return the same result.
   *
   * @returns The archive header.
   * @throws {VmaFormatError} When the header is malformed.
   */
  async header(): Promise<VmaHeader> {
    this.#header ??= readHeader(this.#source);
    return (await this.#header).header;
  }

  /**
   * Reads the extents after the header, checking each. After the last, checks
   * that every cluster of every device was present. Can be called once.
   *
   * @param options `reuseBuffers: true` reads every extent into the same
   *   memory: the clusters' `data` is then valid only until the next extent
   *   is requested (less garbage, for consumers that write data out at once).
   * @returns The extents, in stream order.
   * @throws {VmaFormatError} When an extent is malformed, the stream has
   *   trailing bytes, or a cluster is duplicated or missing.
   * @throws {TypeError} When called a second time.
   */
  async *extents(options: VmaExtentsOptions = {}): AsyncGenerator<VmaExtent> {
    if (this.#iterating) throw new TypeError("Cannot read the extents twice");
    this.#iterating = true;
    this.#header ??= readHeader(this.#source);
    const parsed = await this.#header;
    const state = new DataState(parsed);
    this.#source.readAhead = true;
    const scratch = options.reuseBuffers ? { buffer: new ArrayBuffer(MAX_EXTENT_SIZE) } : undefined;
    // The data is needed only until the next extent: read through the ring.
    if (options.reuseBuffers) this.#source.useRing();
    try {
      for (;;) {
        const extent = await readExtent(this.#source, parsed, state, scratch);
        if (extent === undefined) break;
        yield extent;
      }
      state.checkComplete(this.#source.position);
    } finally {
      await this.#source.release();
    }
  }

  /**
   * Reads the clusters after the header, in stream order; see {@linkcode VmaReader.extents}.
   *
   * @returns The clusters.
   * @throws {VmaFormatError} As for `extents`.
   */
  async *clusters(): AsyncGenerator<VmaCluster> {
    for await (const extent of this.extents()) yield* extent.clusters;
  }

  /**
   * Stops reading and cancels the underlying stream.
   *
   * @param reason Passed to the stream's `cancel`.
   * @returns A promise that settles when the stream is cancelled.
   */
  cancel(reason?: unknown): Promise<void> {
    return this.#source.cancel(reason);
  }
}

/** What the data phase tracks across extents. */
class DataState {
  readonly parsed: ParsedHeader;
  /** Per device id: the clusters seen. */
  readonly seen: (ClusterSet | undefined)[] = [];
  /** Per device id: its cluster count. */
  readonly clusters: number[] = [];
  /** Per device id: the device size rounded down to 512 (Proxmox's end of writes). */
  readonly maxBytes: number[] = [];
  /** Scratch memory for reading extent headers. */
  readonly headScratch: { buffer: ArrayBuffer } = { buffer: new ArrayBuffer(EXTENT_HEADER_SIZE) };
  /** The extent header being checked, copied here (aligned, so compared as words). */
  readonly head: Uint8Array = new Uint8Array(EXTENT_HEADER_SIZE);
  readonly #headWords = new Int32Array(this.head.buffer);
  /**
   * The last extent header whose MD5 was checked: a run of identical headers
   * (empty extents, which list no cluster) is checked once.
   */
  readonly #lastWords = new Int32Array(EXTENT_HEADER_SIZE / 4);
  #hasLast = false;
  vmstateClusters = 0;

  constructor(parsed: ParsedHeader) {
    this.parsed = parsed;
    for (const d of parsed.header.devices) {
      this.seen[d.id] = new ClusterSet();
      this.clusters[d.id] = clusterCount(d.size);
      this.maxBytes[d.id] = d.vmstate ? Infinity : Math.floor(d.size / 512) * 512;
    }
  }

  /** Whether `head` holds the header last checked (MD5 field first: it differs soonest). */
  sameAsChecked(): boolean {
    if (!this.#hasLast) return false;
    const head = this.#headWords;
    const last = this.#lastWords;
    for (let i = EXT_OFF_MD5 / 4; i < EXT_OFF_MD5 / 4 + 4; i++) {
      if (head[i] !== last[i]) return false;
    }
    for (let i = 0; i < EXTENT_HEADER_SIZE / 4; i++) if (head[i] !== last[i]) return false;
    return true;
  }

  /** Remembers `head` as checked. */
  checked(): void {
    this.#lastWords.set(this.#headWords);
    this.#hasLast = true;
  }

  checkComplete(offset: number): void {
    for (const device of this.parsed.header.devices) {
      if (device.vmstate) continue;
      const missing = this.seen[device.id]!.firstMissing(this.clusters[device.id]);
      if (missing !== undefined) {
        throw new VmaFormatError(
          `detected missing cluster ${missing} for stream ${device.name}`,
          offset,
        );
      }
    }
  }
}

/** Reads and checks one extent; undefined at the end of the stream. */
async function readExtent(
  source: ByteSource,
  parsed: ParsedHeader,
  state: DataState,
  scratch: { buffer: ArrayBuffer } | undefined,
): Promise<VmaExtent | undefined> {
  const offset = source.position;
  const raw = source.readBuffered(EXTENT_HEADER_SIZE, state.headScratch) ??
    await source.read(EXTENT_HEADER_SIZE, state.headScratch);
  if (raw.length === 0) return undefined;
  if (raw.length < EXTENT_HEADER_SIZE) {
    throw new VmaFormatError(`read short extent (${raw.length} bytes)`, offset);
  }
  const head = state.head;
  head.set(raw);
  if (!state.sameAsChecked()) {
    if (!extentMd5Matches(head)) {
      throw new VmaFormatError("wrong vma extent header chechsum", offset);
    }
    state.checked();
  }
  if (!bytesEqual(head.subarray(EXT_OFF_UUID, EXT_OFF_UUID + 16), parsed.uuid)) {
    throw new VmaFormatError("wrong vma extent uuid", offset);
  }
  if (!bytesEqual(head.subarray(0, 4), EXTENT_MAGIC) || head[4] !== 0 || head[5] !== 0) {
    throw new VmaFormatError("wrong vma extent header magic", offset);
  }
  const blockCount = (head[EXT_OFF_BLOCK_COUNT] << 8) | head[EXT_OFF_BLOCK_COUNT + 1];
  const extentSize = EXTENT_HEADER_SIZE + blockCount * BLOCK_SIZE;
  const want = Math.min(extentSize, MAX_EXTENT_SIZE) - EXTENT_HEADER_SIZE;
  // With reused buffers, the data comes as pieces (the windows of the
  // source's ring or a decoder's chunks) and only clusters straddling two
  // pieces are copied, into `scratch` at their own offset.
  const pieces = want === 0
    ? []
    : scratch !== undefined
    ? await source.readPieces(want, scratch)
    : [await source.read(want)];
  let got = 0;
  for (const piece of pieces) got += piece.length;
  if (EXTENT_HEADER_SIZE + got < extentSize) {
    throw new VmaFormatError(
      `short vma extent (${EXTENT_HEADER_SIZE + got} < ${extentSize})`,
      offset,
    );
  }
  const clusters = readSlots(head, new Pieces(pieces, scratch), got, offset, parsed, state);
  return { offset, clusters };
}

/** Checks the blockinfo slots of an extent against its data; returns its clusters. */
function readSlots(
  head: Uint8Array,
  data: Pieces,
  size: number,
  offset: number,
  parsed: ParsedHeader,
  state: DataState,
): VmaCluster[] {
  const clusters: VmaCluster[] = [];
  let start = 0; // into the extent's data
  for (let at = EXT_OFF_BLOCKINFO; at < EXT_OFF_BLOCKINFO + 8 * SLOTS_PER_EXTENT; at += 8) {
    const devId = head[at + 3];
    if (devId === 0) continue;
    const mask = (head[at] << 8) | head[at + 1];
    const cluster = ((head[at + 4] << 24) | (head[at + 5] << 16) | (head[at + 6] << 8) |
      head[at + 7]) >>> 0;
    const device = parsed.devices[devId];
    if (device === undefined) throw new VmaFormatError(`got wrong dev id ${devId}`, offset + at);
    if (device.vmstate) {
      if (cluster !== state.vmstateClusters) {
        throw new VmaFormatError("found out of order vmstate data", offset + at);
      }
      state.vmstateClusters++;
    } else {
      if (cluster >= state.clusters[devId]) {
        throw new VmaFormatError("got wrong block address - write beyond end", offset + at);
      }
      if (!state.seen[devId]!.add(cluster)) {
        throw new VmaFormatError(
          `found duplicated cluster ${cluster} for stream ${device.name}`,
          offset + at,
        );
      }
    }
    if (mask === 0) {
      clusters.push({ device, cluster, mask, data: EMPTY });
      continue;
    }
    const stored = popcount16(mask) * BLOCK_SIZE;
    if (start + stored > size) {
      throw new VmaFormatError("short vma extent - too many blocks", offset + at);
    }
    if (mask !== 0xffff && !blocksInside(cluster, mask, state.maxBytes[devId])) {
      throw new VmaFormatError("got wrong block address - write beyond end", offset + at);
    }
    const end = start + stored;
    clusters.push({ device, cluster, mask, data: data.slice(start, end) });
    start = end;
  }
  if (start !== size) {
    throw new VmaFormatError("vma extent error - missing blocks", offset);
  }
  return clusters;
}

/**
 * An extent's data in pieces, sliced in increasing order: a slice inside one
 * piece is a view of it; one straddling pieces is copied, into `scratch` at
 * its own offset in the extent (so slices never overlap) or into new memory.
 */
class Pieces {
  readonly #pieces: readonly Uint8Array[];
  readonly #scratch: { buffer: ArrayBuffer } | undefined;
  #index = 0;
  /** Offset in the extent's data of piece `#index`. */
  #base = 0;

  constructor(pieces: readonly Uint8Array[], scratch: { buffer: ArrayBuffer } | undefined) {
    this.#pieces = pieces;
    this.#scratch = scratch;
  }

  /** Bytes `start .. end` of the data; `start` never decreases between calls. */
  slice(start: number, end: number): Uint8Array {
    const pieces = this.#pieces;
    while (start >= this.#base + pieces[this.#index].length) {
      this.#base += pieces[this.#index].length;
      this.#index++;
    }
    const first = pieces[this.#index];
    if (end <= this.#base + first.length) {
      return first.subarray(start - this.#base, end - this.#base);
    }
    const scratch = this.#scratch;
    const out = scratch !== undefined && scratch.buffer.byteLength >= end
      ? new Uint8Array(scratch.buffer, start, end - start)
      : new Uint8Array(end - start);
    let at = 0;
    for (let i = this.#index, base = this.#base; at < out.length; base += pieces[i].length, i++) {
      const from = start + at - base;
      const k = Math.min(pieces[i].length - from, out.length - at);
      out.set(pieces[i].subarray(from, from + k), at);
      at += k;
    }
    return out;
  }
}

/** Whether every block `mask` marks in `cluster` starts before `maxBytes`. */
function blocksInside(cluster: number, mask: number, maxBytes: number): boolean {
  const base = cluster * CLUSTER_SIZE;
  if (base + CLUSTER_SIZE <= maxBytes) return true;
  for (let j = 0; j < BLOCKS_PER_CLUSTER; j++) {
    if ((mask & (1 << j)) !== 0 && base + j * BLOCK_SIZE >= maxBytes) return false;
  }
  return true;
}
