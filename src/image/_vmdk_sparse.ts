/**
 * Hosted sparse VMDK extents (`KDMV`: monolithicSparse, streamOptimized and
 * the pieces of twoGbMaxExtentSparse): the header, parsed without I/O, and the
 * grain map.
 *
 * @module
 */

import type { PositionedReader } from "./disk_image.ts";
import { inflateZlib } from "../compress/_inflate.ts";
import { type Extent, hex, ReadAhead } from "./_mapped_image.ts";
import type { ByteCache } from "./_byte_cache.ts";
import { corrupt, oversized, unsupported } from "./_image_errors.ts";
import { charge, type MemoryBudget } from "./_memory_budget.ts";
import { parseDescriptor, refuseDelta } from "./_vmdk_descriptor.ts";

export const SECTOR = 512;
const GD_AT_END = 0xffffffffffffffffn;
const FLAG_MARKERS = 1 << 17;
const COMPRESSION_DEFLATE = 1;
const MARKER_EOS = 0;
const MARKER_FOOTER = 3;
const KDMV = 0x564d444b;
/** QEMU's limit on grain table entries. */
const MAX_GTES = 512;
/** Largest grain accepted: 64 MiB (memory for one compressed grain is bounded by it). */
export const MAX_GRAIN_SECTORS = 131072;
/** Largest embedded or text descriptor read. */
export const MAX_DESCRIPTOR = 1024 * 1024;
/** The read-ahead window of a compressed extent. */
const READ_AHEAD = 1024 * 1024;
/** Grains above this size (the unit cache's budget) are decoded into one reused buffer. */
const BIG_GRAIN = 8 * 1024 * 1024;
/** What an open extent costs besides its tables (reader, maps, objects), for the budget. */
export const EXTENT_OVERHEAD = 4096;

/** What a sparse extent header says, checked. */
export interface SparseHeader {
  /** Capacity in bytes. */
  size: number;
  grainBytes: number;
  gtes: number;
  /** Byte offset of the grain directory. */
  gdOffset: number;
  gdEntries: number;
  compressed: boolean;
  markers: boolean;
  /** Byte offset and length of the embedded descriptor, or 0 and 0. */
  descriptorOffset: number;
  descriptorLength: number;
}

/** Whether the header (the first sector) says the real header is the footer (streamOptimized). */
export function headerIsInFooter(header: Uint8Array): boolean {
  return new DataView(header.buffer, header.byteOffset, 64).getBigUint64(56, true) === GD_AT_END;
}

/**
 * Checks the last three sectors of a streamOptimized file (footer marker,
 * footer, end-of-stream marker) and returns the footer: the real header.
 */
export function footerHeader(tail: Uint8Array, file: string | undefined): Uint8Array {
  const fv = new DataView(tail.buffer, tail.byteOffset, tail.byteLength);
  if (
    tail.length !== 3 * SECTOR ||
    fv.getUint32(8, true) !== 0 || fv.getUint32(12, true) !== MARKER_FOOTER ||
    fv.getUint32(SECTOR, true) !== KDMV || fv.getBigUint64(2 * SECTOR, true) !== 0n ||
    fv.getUint32(2 * SECTOR + 8, true) !== 0 || fv.getUint32(2 * SECTOR + 12, true) !== MARKER_EOS
  ) {
    throw corrupt("vmdk", "the grain directory is at the end but there is no valid footer", file);
  }
  return tail.subarray(SECTOR, 2 * SECTOR);
}

/** Parses and checks a sparse extent header (one sector) against the file size. */
export function parseSparseHeader(
  header: Uint8Array,
  fileSize: number,
  file: string | undefined,
): SparseHeader {
  const hv = new DataView(header.buffer, header.byteOffset, header.byteLength);
  if (header.length < SECTOR || hv.getUint32(0, true) !== KDMV) {
    throw corrupt("vmdk", 'the sparse extent does not start with "KDMV"', file);
  }
  const version = hv.getUint32(4, true);
  if (version < 1 || version > 3) {
    throw unsupported("vmdk", `sparse extent version ${version} is not supported`, file);
  }
  const compressAlgorithm = hv.getUint16(77, true);
  if (compressAlgorithm > COMPRESSION_DEFLATE) {
    throw unsupported("vmdk", `compression algorithm ${compressAlgorithm} is not supported`, file);
  }
  const capacity = hv.getBigUint64(12, true);
  if (capacity * BigInt(SECTOR) > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw oversized("vmdk", `the capacity ${capacity} sectors is too large`, file);
  }
  const size = Number(capacity) * SECTOR;
  const grainSectors = hv.getBigUint64(20, true);
  if (grainSectors < 1n || grainSectors > BigInt(MAX_GRAIN_SECTORS)) {
    throw oversized(
      "vmdk",
      `the grain size ${grainSectors} sectors is not supported (1 to ${MAX_GRAIN_SECTORS} are)`,
      file,
    );
  }
  const grainBytes = Number(grainSectors) * SECTOR;
  const gtes = hv.getUint32(44, true);
  if (gtes < 1 || gtes > MAX_GTES) {
    throw oversized(
      "vmdk",
      `${gtes} grain table entries are not supported (1 to ${MAX_GTES} are)`,
      file,
    );
  }
  const gdEntries = Math.ceil(size / (gtes * grainBytes));
  const gdAt = hv.getBigUint64(56, true) * BigInt(SECTOR);
  if (gdEntries > 0 && gdAt + BigInt(gdEntries * 4) > BigInt(fileSize)) {
    throw corrupt(
      "vmdk",
      `the grain directory offset ${hex(gdAt)} is past the end of the file`,
      file,
    );
  }
  const descriptor = checkDescriptorPlace(hv, fileSize, file);
  return {
    size,
    grainBytes,
    gtes,
    gdOffset: Number(gdAt),
    gdEntries,
    compressed: compressAlgorithm === COMPRESSION_DEFLATE,
    markers: (hv.getUint32(8, true) & FLAG_MARKERS) !== 0,
    ...descriptor,
  };
}

function checkDescriptorPlace(hv: DataView, fileSize: number, file: string | undefined) {
  const offset = hv.getBigUint64(28, true);
  const sectors = hv.getBigUint64(36, true);
  if (offset === 0n || sectors === 0n) return { descriptorOffset: 0, descriptorLength: 0 };
  const at = offset * BigInt(SECTOR);
  const length = sectors * BigInt(SECTOR) > BigInt(MAX_DESCRIPTOR)
    ? MAX_DESCRIPTOR
    : Number(sectors) * SECTOR;
  if (at + BigInt(length) > BigInt(fileSize)) {
    throw corrupt(
      "vmdk",
      `the embedded descriptor at ${hex(at)} is past the end of the file`,
      file,
    );
  }
  return { descriptorOffset: Number(at), descriptorLength: length };
}

/** Reads whole; a short read means it lies past the end of the file. */
async function readExact(
  reader: PositionedReader,
  position: number,
  length: number,
  what: string,
  file: string | undefined,
): Promise<Uint8Array> {
  const bytes = await reader.read(position, length);
  if (bytes.length !== length) {
    throw corrupt("vmdk", `the ${what} at ${hex(position)} is past the end of the file`, file);
  }
  return bytes;
}

/** What the extents of one image share: the grain table cache and the memory budget. */
export interface SparseContext {
  grainTables: ByteCache<string, Uint32Array>;
  budget: MemoryBudget;
}

/**
 * Opens a hosted sparse extent (`KDMV`): checks the header (or footer),
 * refuses delta disks, reads the grain directory. `file` names the extent in
 * messages (undefined for the image file itself); `id` keys its caches.
 */
export async function openSparseExtent(
  reader: PositionedReader,
  file: string | undefined,
  id: number,
  context: SparseContext,
): Promise<SparseExtentMap> {
  const fileSize = reader.size;
  if (fileSize < SECTOR) throw corrupt("vmdk", "the sparse extent header is truncated", file);
  let head = await readExact(reader, 0, SECTOR, "sparse extent header", file);
  if (new DataView(head.buffer, head.byteOffset, 4).getUint32(0, true) !== KDMV) {
    throw corrupt("vmdk", 'the sparse extent does not start with "KDMV"', file);
  }
  if (headerIsInFooter(head)) {
    // streamOptimized: the real header is the footer, 1024 bytes before the end.
    const at = Math.floor(fileSize / SECTOR) * SECTOR - 3 * SECTOR;
    if (at < SECTOR) throw corrupt("vmdk", "the footer is missing (the file is too short)", file);
    head = footerHeader(await readExact(reader, at, 3 * SECTOR, "footer", file), file);
  }
  const header = parseSparseHeader(head, fileSize, file);
  if (header.descriptorLength > 0) {
    const { descriptorOffset: at, descriptorLength: length } = header;
    const text = await readExact(reader, at, length, "embedded descriptor", file);
    refuseDelta(parseDescriptor(new TextDecoder().decode(text)).values, file);
  }
  charge(
    context.budget,
    EXTENT_OVERHEAD + header.gdEntries * 4 + (header.compressed ? READ_AHEAD : 0),
    "vmdk",
    file,
  );
  const gd = await readGrainDirectory(reader, header, file);
  return new SparseExtentMap(reader, header, gd, file, id, context.grainTables);
}

async function readGrainDirectory(
  reader: PositionedReader,
  header: SparseHeader,
  file: string | undefined,
): Promise<Uint32Array> {
  const { gdEntries, gtes } = header;
  const gd = new Uint32Array(gdEntries);
  if (gdEntries === 0) return gd;
  const bytes = await readExact(reader, header.gdOffset, gdEntries * 4, "grain directory", file);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < gdEntries; i++) {
    const sector = view.getUint32(i * 4, true);
    if (sector !== 0 && sector * SECTOR + gtes * 4 > reader.size) {
      throw corrupt(
        "vmdk",
        `grain table offset ${hex(sector * SECTOR)} is past the end of the file`,
        file,
      );
    }
    gd[i] = sector;
  }
  return gd;
}

/** The grain map of one sparse extent, from offsets within it. */
export class SparseExtentMap {
  readonly size: number;
  #reader: PositionedReader;
  #header: SparseHeader;
  #gd: Uint32Array;
  #file: string | undefined;
  #id: number;
  #grainTables: ByteCache<string, Uint32Array>;
  #readAhead: ReadAhead;
  /**
   * For grains larger than {@linkcode BIG_GRAIN}: one output buffer reused by
   * every decode, and the chain that runs the decodes one at a time. Such a
   * grain never shares the unit cache with another (it is over its budget),
   * so the previous grain is no longer cached when the next overwrites it;
   * without reuse, each 64 MiB grain would be fresh garbage.
   */
  #bigGrain: Uint8Array | undefined;
  #decodes: Promise<unknown> = Promise.resolve();

  constructor(
    reader: PositionedReader,
    header: SparseHeader,
    gd: Uint32Array,
    file: string | undefined,
    id: number,
    grainTables: ByteCache<string, Uint32Array>,
  ) {
    this.size = header.size;
    this.#reader = reader;
    this.#header = header;
    this.#gd = gd;
    this.#file = file;
    this.#id = id;
    this.#grainTables = grainTables;
    this.#readAhead = new ReadAhead(reader, READ_AHEAD);
  }

  #grainTable(sector: number): Promise<Uint32Array> {
    const { gtes } = this.#header;
    return this.#grainTables.get(`${this.#id}:${sector}`, gtes * 4, async () => {
      const bytes = await readExact(
        this.#reader,
        sector * SECTOR,
        gtes * 4,
        "grain table",
        this.#file,
      );
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      return Uint32Array.from({ length: gtes }, (_, i) => view.getUint32(i * 4, true));
    });
  }

  /** The extent at `offset`; runs stop at `end` (rounded up to a grain) or the grain table's end. */
  map = async (offset: number, end: number): Promise<Extent> => {
    const { grainBytes, gtes } = this.#header;
    const bytesPerGt = gtes * grainBytes;
    const gdIndex = Math.floor(offset / bytesPerGt);
    const gtStart = gdIndex * bytesPerGt;
    if (this.#gd[gdIndex] === 0) return { kind: "zero", length: gtStart + bytesPerGt - offset };
    const table = await this.#grainTable(this.#gd[gdIndex]);
    let index = Math.floor((offset - gtStart) / grainBytes);
    const grainStart = gtStart + index * grainBytes;
    const first = table[index];
    if (first <= 1) {
      // 0: unallocated, 1: a zeroed grain. Both read as zeros here.
      let runEnd = grainStart + grainBytes;
      while (runEnd < end && ++index < gtes && table[index] <= 1) runEnd += grainBytes;
      return { kind: "zero", length: runEnd - offset };
    }
    if (first * SECTOR >= this.#reader.size) {
      throw corrupt(
        "vmdk",
        `grain offset ${hex(first * SECTOR)} is past the end of the file`,
        this.#file,
      );
    }
    if (this.#header.compressed) {
      return {
        kind: "unit",
        length: grainStart + grainBytes - offset,
        key: `${this.#id}:${first}`,
        size: grainBytes,
        skip: offset - grainStart,
        load: () => this.#loadGrain(first, grainStart),
      };
    }
    let runEnd = grainStart + grainBytes;
    let next = first + grainBytes / SECTOR;
    while (runEnd < end && ++index < gtes && table[index] === next) {
      runEnd += grainBytes;
      next += grainBytes / SECTOR;
    }
    return {
      kind: "data",
      length: runEnd - offset,
      reader: this.#reader,
      position: first * SECTOR + (offset - grainStart),
      file: this.#file,
    };
  };

  /**
   * Inflates a grain stored without a marker (its compressed size unknown):
   * from a small read first, growing it fourfold while the stream runs past
   * it, up to two grains' worth (QEMU's bound). A 64 MiB grain that
   * compresses well is read as a few KiB, not 128 MiB.
   */
  async #inflateUnmarked(at: number, grain: Uint8Array): Promise<number> {
    const most = Math.min(2 * this.#header.grainBytes, this.#reader.size - at);
    for (let length = Math.min(most, READ_AHEAD / 4);; length = Math.min(most, length * 4)) {
      const data = await this.#readAhead.read(at, length);
      try {
        return inflateZlib(data, grain);
      } catch (error) {
        const short = error instanceof SyntaxError && /ends early|truncated/.test(error.message);
        if (!short || length >= most) throw error;
      }
    }
  }

  /** The compressed bytes of the grain at `at`, after its marker. */
  async #compressedGrain(at: number): Promise<Uint8Array> {
    const { grainBytes } = this.#header;
    const file = this.#file;
    // The marker: the grain's LBA (8 bytes) and the compressed size (4).
    const marker = await this.#readAhead.read(at, 12);
    if (marker.length < 12) {
      throw corrupt("vmdk", `the grain marker at ${hex(at)} is past the end of the file`, file);
    }
    const length = new DataView(marker.buffer, marker.byteOffset, 12).getUint32(8, true);
    if (length === 0 || length > 2 * grainBytes) {
      throw corrupt(
        "vmdk",
        `the grain marker at ${hex(at)} gives the invalid size ${length}`,
        file,
      );
    }
    const data = await this.#readAhead.read(at + 12, length);
    if (data.length < length) {
      throw corrupt("vmdk", `the compressed grain at ${hex(at)} is past the end of the file`, file);
    }
    return data;
  }

  #loadGrain(sector: number, grainStart: number): Promise<Uint8Array> {
    const { grainBytes } = this.#header;
    if (grainBytes <= BIG_GRAIN) {
      return this.#decode(sector, grainStart, new Uint8Array(grainBytes));
    }
    const run = this.#decodes.then(() =>
      this.#decode(sector, grainStart, this.#bigGrain ??= new Uint8Array(grainBytes))
    );
    this.#decodes = run.catch(() => {});
    return run;
  }

  /** Decompresses one grain into `grain` (exactly one grain long): no more can be produced. */
  async #decode(sector: number, grainStart: number, grain: Uint8Array): Promise<Uint8Array> {
    const { grainBytes, size } = this.#header;
    const at = sector * SECTOR;
    let written: number;
    try {
      written = this.#header.markers
        ? inflateZlib(await this.#compressedGrain(at), grain)
        : await this.#inflateUnmarked(at, grain);
    } catch (error) {
      if (!(error instanceof SyntaxError) || error.message.startsWith("Corrupt")) throw error;
      throw corrupt(
        "vmdk",
        `the compressed grain at ${hex(at)} cannot be decompressed: ${error.message}`,
        this.#file,
      );
    }
    const needed = Math.min(grainBytes, size - grainStart);
    if (written < needed) {
      throw corrupt(
        "vmdk",
        `the compressed grain at ${hex(at)} decompresses to ${written} bytes, ${needed} are needed`,
        this.#file,
      );
    }
    return grain;
  }
}
