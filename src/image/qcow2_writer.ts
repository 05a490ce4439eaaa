/**
 * A qcow2 (version 3) image writer: {@linkcode createQcow2Writer}.
 *
 * How clusters arriving in any order are handled, with memory bounded by
 * bytes:
 *
 * - The file only grows: every cluster (data, L2 table, refcount block) is
 *   allocated at the end of the file when it is first needed, so the image
 *   never needs rewriting and unwritten bytes read as zeros.
 * - Data clusters of 64 KiB are allocated on their first non-zero write;
 *   writes of zeros allocate nothing, so zero clusters stay unallocated.
 * - L2 tables (64 KiB each, one per 512 MiB of virtual disk) are allocated
 *   as the first data cluster of their range arrives; at most
 *   `l2CacheBytes` of them are kept in memory, the least recently used one
 *   being written to its place in the file and read back when needed again
 *   (when the target cannot read, every table stays in memory: 1/8192 of
 *   the data written).
 * - Since allocation only moves forward, the reference count of a cluster is
 *   final once the end of the file has moved past it: only the refcount block
 *   of the file's end (64 KiB, 2 GiB of file) is kept in memory and written
 *   when the file grows past it. The refcount table (8 bytes per 2 GiB of
 *   file) and the L1 table (8 bytes per 512 MiB of virtual disk) are kept in
 *   memory and written, with the header, at {@linkcode DiskImageWriter.close}.
 * - With `compress`, a cluster is compressed once all of it has been written
 *   (zero blocks never written are taken as zeros once later clusters have
 *   pushed it out of the `pendingBytes` window); compressed clusters are
 *   packed one after another, as QEMU packs them.
 *
 * @module
 */

import { deflateRaw } from "../compress/_deflate.ts";
import { openQcow2Update } from "./_qcow2_update.ts";
import { Serial } from "./_block_writer.ts";
import type { DiskImageWriter, PositionedWriter } from "./disk_image_writer.ts";

const CLUSTER_BITS = 16;
const CLUSTER = 1 << CLUSTER_BITS;
/** L2 entries per table, and virtual bytes per L2 table. */
const L2_ENTRIES = CLUSTER / 8;
const L2_SPAN = L2_ENTRIES * CLUSTER;
/** 16-bit reference counts: clusters per refcount block. */
const REFCOUNT_ORDER = 4;
const REFBLOCK_ENTRIES = CLUSTER / 2;
const HEADER_LENGTH = 112;
const MAGIC = 0x514649fb;
const INCOMPATIBLE_COMPRESSION = 8;
/** QCOW_OFLAG_COPIED and QCOW_OFLAG_COMPRESSED, as the high word's bits. */
const COPIED_HI = 0x80000000;
const COMPRESSED_HI = 0x40000000;
/** Compressed-cluster descriptor: sector count above bit 62 - (cluster_bits - 8). */
const CSIZE_SHIFT = 62 - (CLUSTER_BITS - 8);
/** QEMU's limit on the L1 table (QCOW_MAX_L1_SIZE): 32 MiB, 2^22 entries, 2 PiB. */
const MAX_L1_ENTRIES = 4 * 1024 * 1024;
const DEFAULT_L2_CACHE = 4 * 1024 * 1024;
const DEFAULT_PENDING = 4 * 1024 * 1024;

/** Options of {@linkcode createQcow2Writer}. */
export interface Qcow2WriterOptions {
  /**
   * Compresses the data clusters: `"zlib"` (readable by every qcow2 reader)
   * or `"zstd"` (the header says so; QEMU 5.1 and later).
   *
   * @default {undefined}
   */
  compress?: "zlib" | "zstd";
  /**
   * Compresses one cluster to raw deflate data (no zlib header) that inflates
   * with a window of 4 KiB (QEMU inflates with `windowBits` -12), for
   * `compress: "zlib"`. In Deno or Node:
   * `(data) => Promise.resolve(deflateRawSync(data, { windowBits: 12 }))`
   * from `node:zlib`. Without it, a built-in compressor is used.
   *
   * @default {undefined}
   */
  deflate?: (data: Uint8Array) => Promise<Uint8Array>;
  /**
   * Compresses one cluster to one zstd frame, for `compress: "zstd"`
   * (required then). In Deno or Node: `(data) => Promise.resolve(zstdCompressSync(data))`.
   *
   * @default {undefined}
   */
  zstd?: (data: Uint8Array) => Promise<Uint8Array>;
  /**
   * Memory for L2 tables (64 KiB each), when the target can read.
   *
   * @default {4194304}
   */
  l2CacheBytes?: number;
  /**
   * With `compress`: memory for clusters written in part and not compressed
   * yet (64 KiB each); a write to a cluster pushed out of it is refused.
   *
   * @default {4194304}
   */
  pendingBytes?: number;
}

const isZero = (data: Uint8Array): boolean => {
  let i = 0;
  const n = data.length;
  // Word at a time where aligned.
  if (data.byteOffset % 4 === 0) {
    const words = new Uint32Array(data.buffer, data.byteOffset, n >>> 2);
    for (const w of words) if (w !== 0) return false;
    i = words.length * 4;
  }
  for (; i < n; i++) if (data[i] !== 0) return false;
  return true;
};

const setU64 = (view: DataView, at: number, hi: number, lo: number) => {
  view.setUint32(at, hi >>> 0);
  view.setUint32(at + 4, lo >>> 0);
};

const hiOf = (n: number) => Math.floor(n / 2 ** 32);

/**
 * Creates a qcow2 version 3 image of `size` bytes (64 KiB clusters, 16-bit
 * reference counts, no backing file) written through `target`, which should
 * be empty. See the module documentation for how clusters arriving in any
 * order are handled.
 *
 * @example Writing an image into memory
 * ```ts
 * import { createQcow2Writer } from "./qcow2_writer.ts";
 * import assert from "node:assert/strict";
 *
 * let file = new Uint8Array(0);
 * const target = {
 *   write: (position: number, data: Uint8Array) => {
 *     if (position + data.length > file.length) {
 *       const grown = new Uint8Array(position + data.length);
 *       grown.set(file);
 *       file = grown;
 *     }
 *     file.set(data, position);
 *     return Promise.resolve();
 *   },
 *   truncate: (size: number) => {
 *     const cut = new Uint8Array(size);
 *     cut.set(file.subarray(0, size));
 *     file = cut;
 *     return Promise.resolve();
 *   },
 * };
 * const writer = await createQcow2Writer(target, 1 << 20);
 * await writer.write(65536, new Uint8Array(4096).fill(7));
 * await writer.close();
 * assert.deepEqual(file.subarray(0, 4), new Uint8Array([0x51, 0x46, 0x49, 0xfb]));
 * ```
 *
 * @param target Where the image is written.
 * @param size The virtual size in bytes.
 * @param options Compression and memory.
 * @returns The writer; {@linkcode DiskImageWriter.close} writes the tables and the header.
 * @throws {TypeError} An option has the wrong type, or `compress: "zstd"` has no `zstd` compressor.
 * @throws {RangeError} `size` is not a safe non-negative integer, or beyond qcow2's 2 PiB with an L1 table QEMU opens.
 */
export function createQcow2Writer(
  target: PositionedWriter,
  size: number,
  options: Qcow2WriterOptions = {},
): Promise<DiskImageWriter> {
  try {
    return Promise.resolve(new Qcow2Writer(target, size, options));
  } catch (e) {
    return Promise.reject(e);
  }
}

function checkOptions(options: Qcow2WriterOptions): void {
  const { compress, deflate, zstd, l2CacheBytes, pendingBytes } = options;
  if (compress !== undefined && compress !== "zlib" && compress !== "zstd") {
    throw new TypeError(
      `Invalid qcow2 options: compress must be "zlib" or "zstd", not ${JSON.stringify(compress)}`,
    );
  }
  for (const [name, fn] of [["deflate", deflate], ["zstd", zstd]] as const) {
    if (fn !== undefined && typeof fn !== "function") {
      throw new TypeError(`Invalid qcow2 options: ${name} must be a function`);
    }
  }
  if (compress === "zstd" && zstd === undefined) {
    throw new TypeError(
      'Invalid qcow2 options: compress "zstd" needs a zstd compressor (the zstd option)',
    );
  }
  for (const [name, n] of [["l2CacheBytes", l2CacheBytes], ["pendingBytes", pendingBytes]]) {
    if (n !== undefined && !(Number.isSafeInteger(n) && (n as number) >= 0)) {
      throw new RangeError(`Invalid qcow2 options: ${name} must be a non-negative integer`);
    }
  }
}

class Qcow2Writer implements DiskImageWriter {
  readonly format = "qcow2";
  readonly size: number;
  #target: PositionedWriter;
  #compress: ((data: Uint8Array) => Promise<Uint8Array>) | undefined;
  #compressionType: number;
  /** The end of the file: where the next allocation goes (bytes; compressed data packs). */
  #end = 0;
  #l1: Float64Array;
  /** L2 tables in memory by L1 index, least recently used first. */
  #l2 = new Map<number, { table: Uint8Array; dirty: boolean }>();
  #l2Limit: number;
  /** Refcount table: the file offset of each refcount block (0: none). */
  #refTable: number[] = [];
  /** The refcount block in memory: its index and contents. */
  #refIndex = -1;
  #refBlock = new Uint8Array(CLUSTER);
  /** Compressed clusters being filled, by guest cluster index, oldest first. */
  #pending = new Map<number, { data: Uint8Array; filled: number }>();
  #pendingLimit: number;
  /** Cluster buffers of compressed clusters, for reuse (allocations are what grows memory). */
  #spare: Uint8Array[] = [];
  #closed = false;
  readonly #serial = new Serial();

  constructor(target: PositionedWriter, size: number, options: Qcow2WriterOptions) {
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new RangeError(`Invalid qcow2 size ${size}: it must be a non-negative safe integer`);
    }
    const l1Size = Math.ceil(Math.ceil(size / 512) * 512 / L2_SPAN);
    if (l1Size > MAX_L1_ENTRIES) {
      throw new RangeError(
        `Invalid qcow2 size ${size}: qcow2 images with 64 KiB clusters hold at most ${
          MAX_L1_ENTRIES * L2_SPAN
        } bytes`,
      );
    }
    if (target === null || typeof target !== "object" || typeof target.write !== "function") {
      throw new TypeError("Invalid qcow2 target: it must have a write method");
    }
    checkOptions(options);
    this.size = size;
    this.#target = target;
    this.#l1 = new Float64Array(l1Size);
    this.#l2Limit = typeof target.read === "function"
      ? Math.max(1, Math.floor((options.l2CacheBytes ?? DEFAULT_L2_CACHE) / CLUSTER))
      : Infinity;
    this.#pendingLimit = Math.max(
      1,
      Math.floor((options.pendingBytes ?? DEFAULT_PENDING) / CLUSTER),
    );
    this.#compressionType = options.compress === "zstd" ? 1 : 0;
    if (options.compress === "zstd") this.#compress = options.zstd;
    else if (options.compress === "zlib") this.#compress = options.deflate ?? deflateRaw;
  }

  write(offset: number, data: Uint8Array): Promise<void> {
    if (this.#closed) {
      return Promise.reject(new TypeError("Cannot write: the qcow2 image is closed"));
    }
    if (!(data instanceof Uint8Array)) {
      return Promise.reject(new TypeError("Cannot write: data must be a Uint8Array"));
    }
    if (!Number.isSafeInteger(offset) || offset < 0 || offset + data.length > this.size) {
      return Promise.reject(
        new RangeError(
          `Cannot write ${data.length} bytes at offset ${offset}: the image holds ${this.size} bytes`,
        ),
      );
    }
    return this.#serial.run(async () => {
      this.#start();
      for (let at = 0; at < data.length;) {
        const pos = offset + at;
        const inCluster = pos % CLUSTER;
        const n = Math.min(CLUSTER - inCluster, data.length - at);
        const piece = data.subarray(at, at + n);
        const cluster = (pos - inCluster) / CLUSTER;
        if (this.#compress) await this.#writeCompressed(cluster, inCluster, piece);
        else if (!isZero(piece)) {
          const host = await this.#dataCluster(cluster);
          await this.#target.write(host + inCluster, piece);
        }
        at += n;
      }
    });
  }

  close(): Promise<void> {
    if (this.#closed) return this.#serial.settled;
    this.#closed = true;
    return this.#serial.run(() => this.#finish());
  }

  // --- allocation and reference counts ---

  /** Allocates the header and the first refcount block (clusters 0 and 1), once. */
  #start(): void {
    if (this.#end !== 0) return;
    this.#end = 2 * CLUSTER;
    this.#refIndex = 0;
    this.#refTable = [CLUSTER];
    this.#refBlock.set([0, 1, 0, 1]);
  }

  /**
   * Reserves `length` bytes at the end of the file (at a cluster boundary when
   * `aligned`), never over the first cluster of a refcount block's range (which
   * holds that block); returns the offset.
   */
  #reserve(length: number, aligned: boolean): number {
    let start = aligned ? Math.ceil(this.#end / CLUSTER) * CLUSTER : this.#end;
    for (;;) {
      const first = Math.floor(start / CLUSTER);
      const last = Math.floor((start + length - 1) / CLUSTER);
      const reserved = Math.max(1, Math.ceil(first / REFBLOCK_ENTRIES)) * REFBLOCK_ENTRIES;
      if (reserved > last) break;
      start = (reserved + 1) * CLUSTER;
    }
    this.#end = start + length;
    return start;
  }

  /** Allocates `count` whole clusters at the end of the file; returns the first one's offset. */
  async #allocClusters(count: number): Promise<number> {
    const start = this.#reserve(count * CLUSTER, true);
    for (let i = 0; i < count; i++) await this.#ref(start / CLUSTER + i);
    return start;
  }

  /**
   * Adds one reference to host cluster `cluster`; clusters come in order, so
   * the refcount block of an earlier range is final and written out. A range's
   * block lives in the range's first cluster.
   */
  async #ref(cluster: number): Promise<void> {
    const index = Math.floor(cluster / REFBLOCK_ENTRIES);
    const view = () => new DataView(this.#refBlock.buffer);
    if (index !== this.#refIndex) {
      await this.#target.write(this.#refTable[this.#refIndex], this.#refBlock);
      this.#refIndex = index;
      this.#refBlock = new Uint8Array(CLUSTER);
      while (this.#refTable.length <= index) this.#refTable.push(0);
      this.#refTable[index] = index * REFBLOCK_ENTRIES * CLUSTER;
      view().setUint16(0, 1);
    }
    const at = (cluster % REFBLOCK_ENTRIES) * 2;
    view().setUint16(at, view().getUint16(at) + 1);
  }

  // --- L2 tables ---

  async #l2Table(l1Index: number): Promise<{ table: Uint8Array; dirty: boolean }> {
    const cached = this.#l2.get(l1Index);
    if (cached !== undefined) {
      this.#l2.delete(l1Index);
      this.#l2.set(l1Index, cached);
      return cached;
    }
    let entry: { table: Uint8Array; dirty: boolean };
    if (this.#l1[l1Index] === 0) {
      this.#l1[l1Index] = await this.#allocClusters(1);
      entry = { table: new Uint8Array(CLUSTER), dirty: true };
    } else {
      const read = await this.#target.read!(this.#l1[l1Index], CLUSTER);
      const table = new Uint8Array(CLUSTER);
      table.set(read.subarray(0, CLUSTER));
      entry = { table, dirty: false };
    }
    this.#l2.set(l1Index, entry);
    while (this.#l2.size > this.#l2Limit) {
      const [oldest, old] = this.#l2.entries().next().value!;
      this.#l2.delete(oldest);
      if (old.dirty) await this.#target.write(this.#l1[oldest], old.table);
    }
    return entry;
  }

  /** The L2 entry of guest cluster `cluster`: its table and byte offset there. */
  async #l2Entry(
    cluster: number,
  ): Promise<{ view: DataView; at: number; entry: { dirty: boolean } }> {
    const l1Index = Math.floor(cluster / L2_ENTRIES);
    const entry = await this.#l2Table(l1Index);
    return {
      view: new DataView(entry.table.buffer),
      at: (cluster % L2_ENTRIES) * 8,
      entry,
    };
  }

  /** Whether guest cluster `cluster` has been stored (without allocating an L2 table). */
  async #mapped(cluster: number): Promise<boolean> {
    if (this.#l1[Math.floor(cluster / L2_ENTRIES)] === 0) return false;
    const { view, at } = await this.#l2Entry(cluster);
    return view.getUint32(at) !== 0 || view.getUint32(at + 4) !== 0;
  }

  /** The host offset of guest cluster `cluster`, allocated on first use. */
  async #dataCluster(cluster: number): Promise<number> {
    const { view, at } = await this.#l2Entry(cluster);
    const hi = view.getUint32(at);
    if (hi !== 0 || view.getUint32(at + 4) !== 0) {
      return (hi & 0x00ffffff) * 2 ** 32 + view.getUint32(at + 4);
    }
    const host = await this.#allocClusters(1);
    // Allocation may have evicted the table: look it up again.
    const again = await this.#l2Entry(cluster);
    setU64(again.view, again.at, COPIED_HI | hiOf(host), host);
    again.entry.dirty = true;
    return host;
  }

  // --- compression ---

  async #writeCompressed(cluster: number, inCluster: number, piece: Uint8Array): Promise<void> {
    let pending = this.#pending.get(cluster);
    if (pending === undefined) {
      if (await this.#mapped(cluster)) {
        throw new RangeError(
          `Cannot write at offset ${
            cluster * CLUSTER + inCluster
          }: its cluster was already compressed (writes to one cluster must arrive within ${
            this.#pendingLimit * CLUSTER
          } bytes of pending clusters)`,
        );
      }
      pending = { data: this.#spare.pop()?.fill(0) ?? new Uint8Array(CLUSTER), filled: 0 };
      this.#pending.set(cluster, pending);
    }
    pending.data.set(piece, inCluster);
    pending.filled += piece.length;
    const length = Math.min(CLUSTER, this.size - cluster * CLUSTER);
    if (pending.filled >= length) {
      this.#pending.delete(cluster);
      await this.#storeCompressed(cluster, pending.data);
    }
    while (this.#pending.size > this.#pendingLimit) {
      const [oldest, old] = this.#pending.entries().next().value!;
      this.#pending.delete(oldest);
      await this.#storeCompressed(oldest, old.data);
    }
  }

  async #storeCompressed(cluster: number, data: Uint8Array): Promise<void> {
    try {
      await this.#storeCompressedData(cluster, data);
    } finally {
      if (this.#spare.length < 4) this.#spare.push(data);
    }
  }

  async #storeCompressedData(cluster: number, data: Uint8Array): Promise<void> {
    if (isZero(data)) return;
    const packed = await this.#compress!(data);
    if (!(packed instanceof Uint8Array)) {
      throw new TypeError("Cannot compress a qcow2 cluster: the compressor returned no Uint8Array");
    }
    if (packed.length >= CLUSTER) {
      const host = await this.#dataCluster(cluster);
      await this.#target.write(host, data);
      return;
    }
    const start = this.#reserve(packed.length, false);
    await this.#target.write(start, packed);
    const first = Math.floor(start / CLUSTER);
    const last = Math.floor((start + packed.length - 1) / CLUSTER);
    // A cluster already counted by the data before it is counted again, as QEMU does.
    for (let c = first; c <= last; c++) await this.#ref(c);
    const sectors = Math.floor((start + packed.length - 1) / 512) - Math.floor(start / 512);
    const { view, at, entry } = await this.#l2Entry(cluster);
    // The sector count (minus one) sits above bit CSIZE_SHIFT, in the high word.
    setU64(view, at, COMPRESSED_HI | (sectors << (CSIZE_SHIFT - 32)) | hiOf(start), start);
    entry.dirty = true;
  }

  // --- close ---

  async #finish(): Promise<void> {
    this.#start();
    for (const [cluster, p] of [...this.#pending]) {
      this.#pending.delete(cluster);
      await this.#storeCompressed(cluster, p.data);
    }
    for (const [l1Index, entry] of this.#l2) {
      if (entry.dirty) await this.#target.write(this.#l1[l1Index], entry.table);
      entry.dirty = false;
    }
    this.#l2.clear();
    // L1 table.
    const l1Bytes = new Uint8Array(
      Math.max(CLUSTER, Math.ceil(this.#l1.length * 8 / CLUSTER) * CLUSTER),
    );
    const l1View = new DataView(l1Bytes.buffer);
    this.#l1.forEach((offset, i) => {
      if (offset !== 0) setU64(l1View, i * 8, COPIED_HI | hiOf(offset), offset);
    });
    const l1Offset = this.#l1.length === 0
      ? 0
      : await this.#allocClusters(l1Bytes.length / CLUSTER);
    if (l1Offset !== 0) {
      await this.#target.write(l1Offset, l1Bytes.subarray(0, this.#l1.length * 8));
    }
    // Refcount table: room for the blocks so far and two more (its own may need one).
    const tableClusters = Math.ceil((this.#refTable.length + 2) * 8 / CLUSTER);
    const tableOffset = await this.#allocClusters(tableClusters);
    await this.#target.write(this.#refTable[this.#refIndex], this.#refBlock);
    const table = new Uint8Array(tableClusters * CLUSTER);
    const tableView = new DataView(table.buffer);
    this.#refTable.forEach((offset, i) => setU64(tableView, i * 8, hiOf(offset), offset));
    await this.#target.write(tableOffset, table);
    await this.#target.write(0, this.#header(l1Offset, tableOffset, tableClusters));
    await this.#target.truncate(Math.ceil(this.#end / CLUSTER) * CLUSTER);
  }

  #header(l1Offset: number, tableOffset: number, tableClusters: number): Uint8Array {
    const header = new Uint8Array(HEADER_LENGTH + 8); // + the end of the header extensions
    const v = new DataView(header.buffer);
    v.setUint32(0, MAGIC);
    v.setUint32(4, 3);
    v.setUint32(20, CLUSTER_BITS);
    // QEMU counts a disk in 512-byte sectors: the header's size is rounded up.
    const sectors = Math.ceil(this.size / 512) * 512;
    setU64(v, 24, hiOf(sectors), sectors);
    v.setUint32(36, this.#l1.length);
    setU64(v, 40, hiOf(l1Offset), l1Offset);
    setU64(v, 48, hiOf(tableOffset), tableOffset);
    v.setUint32(56, tableClusters);
    if (this.#compressionType !== 0) v.setUint32(76, INCOMPATIBLE_COMPRESSION);
    v.setUint32(96, REFCOUNT_ORDER);
    v.setUint32(100, HEADER_LENGTH);
    header[104] = this.#compressionType;
    return header;
  }
}

/** Options of {@linkcode openQcow2Writer}. */
export interface OpenQcow2WriterOptions {
  /**
   * Make every cluster the writes do not cover read as zeros (a target that
   * held data before), as `vma extract -r`'s `1:` map lines ask.
   *
   * @default {false}
   */
  zeroUnwritten?: boolean;
}

/**
 * Opens an existing qcow2 image (made by `qemu-img create -f qcow2`, possibly
 * with preallocated metadata) to write its virtual disk the way QEMU would:
 * clusters already allocated are written in place, the others are allocated
 * at the end of the file, and L2 tables, L1 entries and reference counts are
 * updated, so the image stays valid. Memory: the L1 and refcount tables, one
 * bit per guest cluster, up to 32 L2 tables and one refcount block.
 *
 * @example Writing into an existing image, in memory
 * ```ts
 * import { createQcow2Writer, openQcow2Writer } from "./qcow2_writer.ts";
 * import assert from "node:assert/strict";
 *
 * let file = new Uint8Array(0);
 * const target = {
 *   write: (position: number, data: Uint8Array) => {
 *     if (position + data.length > file.length) {
 *       const grown = new Uint8Array(position + data.length);
 *       grown.set(file);
 *       file = grown;
 *     }
 *     file.set(data, position);
 *     return Promise.resolve();
 *   },
 *   read: (position: number, length: number) =>
 *     Promise.resolve(file.slice(position, position + length)),
 *   truncate: (size: number) => {
 *     const cut = new Uint8Array(size);
 *     cut.set(file.subarray(0, size));
 *     file = cut;
 *     return Promise.resolve();
 *   },
 * };
 * await (await createQcow2Writer(target, 1 << 20)).close(); // an empty image
 * const writer = await openQcow2Writer(target, file.length);
 * assert.equal(writer.size, 1 << 20);
 * await writer.write(65536, new Uint8Array(4096).fill(7));
 * await writer.close();
 * assert.equal(file.length, 6 * 65536); // + an L2 table and a data cluster
 * ```
 *
 * @param target The image file; it must be readable.
 * @param fileSize The size of the file in bytes.
 * @param options Whether unwritten clusters must read as zeros.
 * @returns The writer of the image's virtual disk (`size` from its header).
 * @throws {TypeError} `target` cannot read, or the image uses what is not supported here (a backing file, snapshots, extended L2 entries, compressed clusters written over, reference counts other than 16-bit).
 * @throws {SyntaxError} The image is not qcow2 or is corrupt.
 * @throws {RangeError} The refcount table would have to grow.
 */
export function openQcow2Writer(
  target: PositionedWriter,
  fileSize: number,
  options: OpenQcow2WriterOptions = {},
): Promise<DiskImageWriter> {
  return openQcow2Update(target, fileSize, options);
}
