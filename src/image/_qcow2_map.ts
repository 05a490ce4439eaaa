/**
 * The qcow2 cluster map: which host bytes (or zeros, compressed clusters, the
 * backing image) hold each part of the virtual disk, from the L1 and L2 tables.
 *
 * @module
 */

import type { PositionedReader } from "./disk_image.ts";
import { inflateRaw } from "../compress/_inflate.ts";
import { type Extent, hex, ReadAhead } from "./_mapped_image.ts";
import { ByteCache } from "./_byte_cache.ts";
import { corrupt } from "./_image_errors.ts";
import type { Qcow2Header } from "./_qcow2_header.ts";

/** The most memory for cached L2 tables of one image. */
export const MAX_L2_CACHE_BYTES = 32 * 1024 * 1024;

/** The read-ahead window for compressed clusters. */
export function readAheadWindow(clusterSize: number): number {
  return Math.max(1024 * 1024, clusterSize + 512);
}
const TWO_32 = 2 ** 32;
const ZERO = 0, BACKING = 1, DATA = 2, COMPRESSED = 3;

/** Decompresses one zstd frame into at most `maxSize` bytes (see `Qcow2ImageOptions.zstd`). */
export type ZstdDecompress = (data: Uint8Array, maxSize: number) => Promise<Uint8Array>;

const bad = (what: string) => corrupt("qcow2", what);

/** Reads a whole table; a short read means it lies past the end of the file. */
export async function readExact(
  reader: PositionedReader,
  position: number,
  length: number,
  what: string,
): Promise<Uint8Array> {
  const bytes = await reader.read(position, length);
  if (bytes.length !== length) {
    throw bad(`the ${what} at ${hex(position)} is past the end of the file`);
  }
  return bytes;
}

/** Reads the L1 entries that cover the virtual size, each checked: L2 table offsets, 0 for none. */
export async function readL1(reader: PositionedReader, header: Qcow2Header): Promise<Float64Array> {
  const { l1Needed, clusterSize } = header;
  const l1 = new Float64Array(l1Needed);
  if (l1Needed === 0) return l1;
  const bytes = await readExact(reader, header.l1Offset, l1Needed * 8, "L1 table");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < l1Needed; i++) {
    const offset = (view.getUint32(i * 8) & 0xffffff) * TWO_32 +
      ((view.getUint32(i * 8 + 4) & 0xfffffe00) >>> 0);
    if (offset === 0) continue;
    if (offset % clusterSize !== 0) {
      throw bad(`L2 table offset ${hex(offset)} is not aligned to a cluster (L1 index ${i})`);
    }
    if (offset + clusterSize > reader.size) {
      throw bad(`L2 table offset ${hex(offset)} is past the end of the file`);
    }
    l1[i] = offset;
  }
  return l1;
}

/**
 * Maps virtual offsets to extents. `classify` leaves its result in the
 * `#kind`, `#host`, `#high` and `#low` fields, so the scan of a run of L2
 * entries allocates nothing.
 */
export class Qcow2Map {
  #reader: PositionedReader;
  #header: Qcow2Header;
  #l1: Float64Array;
  #zstd: ZstdDecompress | undefined;
  #entryBytes: number;
  #subclusters: number;
  #unitSize: number;
  #bytesPerL2: number;
  #l2Cache: ByteCache<number, DataView>;
  #readAhead: ReadAhead;
  #kind = ZERO;
  #host = 0;
  #high = 0;
  #low = 0;

  constructor(
    reader: PositionedReader,
    header: Qcow2Header,
    l1: Float64Array,
    zstd: ZstdDecompress | undefined,
    l2CacheBytes: number,
  ) {
    this.#l2Cache = new ByteCache(l2CacheBytes);
    this.#reader = reader;
    this.#header = header;
    this.#l1 = l1;
    this.#zstd = zstd;
    this.#entryBytes = header.extendedL2 ? 16 : 8;
    this.#subclusters = header.extendedL2 ? 32 : 1;
    this.#unitSize = header.clusterSize / this.#subclusters;
    this.#bytesPerL2 = (header.clusterSize / this.#entryBytes) * header.clusterSize;
    this.#readAhead = new ReadAhead(reader, readAheadWindow(header.clusterSize));
  }

  #l2Table(offset: number): Promise<DataView> {
    const size = this.#header.clusterSize;
    return this.#l2Cache.get(offset, size, async () => {
      const bytes = await readExact(this.#reader, offset, size, "L2 table");
      return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    });
  }

  /** Classifies one unit (a subcluster, or a cluster without subclusters) into the fields. */
  #classify(table: DataView, index: number, sub: number): void {
    const at = index * this.#entryBytes;
    const high = this.#high = table.getUint32(at);
    const low = this.#low = table.getUint32(at + 4);
    if (high & 0x40000000) {
      this.#kind = COMPRESSED;
      return;
    }
    const { clusterSize } = this.#header;
    const host = (high & 0xffffff) * TWO_32 + ((low & 0xfffffe00) >>> 0);
    if (host !== 0) {
      if (host % clusterSize !== 0) {
        throw bad(`data cluster offset ${hex(host)} is not aligned to a cluster`);
      }
      if (host >= this.#reader.size) {
        throw bad(`data cluster offset ${hex(host)} is past the end of the file`);
      }
    }
    if (!this.#header.extendedL2) {
      this.#kind = low & 1 ? ZERO : host === 0 ? BACKING : DATA;
      this.#host = host;
      return;
    }
    const zeroBits = table.getUint32(at + 8);
    const allocBits = table.getUint32(at + 12);
    const allocated = (allocBits >>> sub) & 1;
    const zero = (zeroBits >>> sub) & 1;
    if (host === 0) {
      if (allocBits !== 0) {
        throw bad(`unallocated cluster with allocated subclusters (${hex(allocBits)})`);
      }
      this.#kind = zero ? ZERO : BACKING;
    } else if (allocated && zero) {
      throw bad(`subcluster ${sub} of cluster ${hex(host)} is both allocated and zero`);
    } else {
      this.#kind = allocated ? DATA : zero ? ZERO : BACKING;
      this.#host = host + sub * this.#unitSize;
    }
  }

  /** The extent at `offset`; runs stop at `end` (rounded up to a unit) or the L2 table's end. */
  map = async (offset: number, end: number): Promise<Extent> => {
    const { clusterSize } = this.#header;
    const unitSize = this.#unitSize;
    const subclusters = this.#subclusters;
    const l1Index = Math.floor(offset / this.#bytesPerL2);
    const tableStart = l1Index * this.#bytesPerL2;
    const l2Offset = this.#l1[l1Index];
    if (l2Offset === 0) return { kind: "backing", length: tableStart + this.#bytesPerL2 - offset };
    const table = await this.#l2Table(l2Offset);
    let unit = Math.floor((offset - tableStart) / unitSize);
    this.#classify(table, Math.floor(unit / subclusters), unit % subclusters);
    const kind = this.#kind;
    const unitStart = tableStart + unit * unitSize;
    if (kind === COMPRESSED) {
      const high = this.#high;
      const low = this.#low;
      const clusterStart = tableStart + Math.floor(unit / subclusters) * clusterSize;
      return {
        kind: "unit",
        length: clusterStart + clusterSize - offset,
        key: `${high}:${low}`,
        size: clusterSize,
        skip: offset - clusterStart,
        load: () => this.#loadCompressed(high, low),
      };
    }
    const host = this.#host;
    let runEnd = unitStart + unitSize;
    let nextHost = host + unitSize;
    const units = (clusterSize / this.#entryBytes) * subclusters;
    while (runEnd < end && ++unit < units) {
      this.#classify(table, Math.floor(unit / subclusters), unit % subclusters);
      if (this.#kind !== kind || (kind === DATA && this.#host !== nextHost)) break;
      runEnd += unitSize;
      nextHost += unitSize;
    }
    const length = runEnd - offset;
    if (kind === DATA) {
      return { kind: "data", length, reader: this.#reader, position: host + (offset - unitStart) };
    }
    return { kind: kind === ZERO ? "zero" : "backing", length };
  };

  /** Reads and decompresses the compressed cluster of an L2 entry: exactly one cluster. */
  async #loadCompressed(high: number, low: number): Promise<Uint8Array> {
    const { clusterBits, clusterSize } = this.#header;
    const fileSize = this.#reader.size;
    const entry = (BigInt(high & 0x3fffffff) << 32n) | BigInt(low >>> 0);
    const offsetBits = BigInt(62 - (clusterBits - 8));
    const hostOffset = Number(entry & ((1n << offsetBits) - 1n));
    const sectors = Number((entry >> offsetBits) & ((1n << BigInt(clusterBits - 8)) - 1n)) + 1;
    if (hostOffset >= fileSize) {
      throw bad(`compressed cluster offset ${hex(hostOffset)} is past the end of the file`);
    }
    // The stored size is rounded up to whole sectors; the end may lie past a
    // file that was not padded.
    const storedLength = Math.min(sectors * 512 - (hostOffset % 512), fileSize - hostOffset);
    const data = await this.#readAhead.read(hostOffset, storedLength);
    if (data.length !== storedLength) {
      throw bad(`the compressed cluster at ${hex(hostOffset)} is past the end of the file`);
    }
    let cluster: Uint8Array;
    try {
      cluster = await this.#decompress(data, clusterSize);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      throw bad(`compressed cluster at ${hex(hostOffset)} cannot be decompressed: ${message}`);
    }
    const where = `compressed cluster at ${hex(hostOffset)}`;
    if (cluster.length > clusterSize) {
      throw bad(`${where} decompresses to more than ${clusterSize} bytes`);
    }
    if (cluster.length < clusterSize) {
      throw bad(`${where} decompresses to ${cluster.length} bytes, not ${clusterSize}`);
    }
    return cluster;
  }

  /** Decompresses a cluster; the decompressors stop at `clusterSize` bytes. */
  async #decompress(data: Uint8Array, clusterSize: number): Promise<Uint8Array> {
    if (this.#header.compressionType === 1) {
      const frame = data.subarray(0, zstdFrameLength(data));
      return await this.#zstd!(frame, clusterSize);
    }
    // Like QEMU, a deflate stream that fills the cluster is read up to there.
    const cluster = new Uint8Array(clusterSize);
    return cluster.subarray(0, inflateRaw(data, cluster).written);
  }
}

/** The length of the zstd frame at the start of `data` (RFC 8878), without decoding it. */
export function zstdFrameLength(data: Uint8Array): number {
  if (data.length < 6) throw new SyntaxError("the zstd frame is truncated");
  const magic = (data[0] | (data[1] << 8) | (data[2] << 16) | (data[3] << 24)) >>> 0;
  if (magic !== 0xfd2fb528) throw new SyntaxError(`bad zstd frame magic ${hex(magic)}`);
  const descriptor = data[4];
  if (descriptor & 0x08) throw new SyntaxError("reserved zstd frame header bit set");
  const singleSegment = (descriptor >> 5) & 1;
  const contentSizeBytes = [singleSegment, 2, 4, 8][descriptor >> 6];
  const dictionaryBytes = [0, 1, 2, 4][descriptor & 3];
  let at = 5 + (singleSegment ? 0 : 1) + dictionaryBytes + contentSizeBytes;
  for (;;) {
    if (at + 3 > data.length) throw new SyntaxError("the zstd frame is truncated");
    const header = data[at] | (data[at + 1] << 8) | (data[at + 2] << 16);
    const type = (header >> 1) & 3;
    if (type === 3) throw new SyntaxError("reserved zstd block type");
    at += 3 + (type === 1 ? 1 : header >>> 3);
    if (header & 1) break;
  }
  if (descriptor & 0x04) at += 4;
  if (at > data.length) throw new SyntaxError("the zstd frame is truncated");
  return at;
}
