/**
 * Writes VMDK images (VMware): hosted sparse extents with the descriptor
 * embedded, as `monolithicSparse` (grains stored as they are) or
 * `streamOptimized` (deflate-compressed grains with markers, the format of
 * OVA files and VMware's imports). Both use 64 KiB grains and grain tables
 * of 512 entries.
 *
 * monolithicSparse layout: header, descriptor (sectors 1 to 20), the grain
 * directory, the grains from the next 64 KiB boundary on, then the grain
 * tables. The first write into a grain appends it after the last one, so
 * data may come in any order; writes into a grain that is already placed go
 * to the same place (overlapping writes: the last one wins). The grain
 * tables and the directory are written when the image is closed, from a map
 * of 4 bytes per grain held in pages allocated only where grains are: memory
 * is proportional to the data written (64 MiB for 1 TiB of data, nothing for
 * the empty parts of a sparse disk). Grain tables whose grains were never
 * written are left out (directory entry 0), as in streamOptimized.
 *
 * streamOptimized layout: header (grain directory "at the end"),
 * descriptor, then compressed grains, each with its marker, in the order
 * they are completed, then the grain tables, the directory, the footer and
 * the end-of-stream marker, each with its marker. A grain is compressed once
 * all its bytes have been written; grains that are only partly written are
 * held (at most 16 MiB of them, the oldest compressed first when that is
 * full, the rest at close). All-zero grains are not stored. A write into a
 * grain already compressed reads the grain back (through
 * {@linkcode PositionedWriter.read}), merges and stores it again; without
 * `read` it fails. Grains are thus in the order the data came, not always
 * by address: QEMU, VirtualBox and vmakit read any order, but a strictly
 * streaming consumer expects ascending grains, which needs the data in order
 * (as `vma create` writes it).
 *
 * Grains are compressed (zlib) by a small compressor of vmakit's own (LZ77
 * with fixed Huffman codes) whose memory is fixed, rather than by the web
 * `CompressionStream`: that keeps each stream's native zlib state until the
 * garbage collector gets to it, and in Deno one stream per 64 KiB grain grew
 * the process past 300 MiB over 2 GiB of grains.
 *
 * The virtual size is rounded up to a multiple of 512 bytes.
 *
 * @module
 */

import type { DiskImageWriter, PositionedWriter } from "./disk_image_writer.ts";
import {
  BlockWriter,
  checkCreate,
  checkWrite,
  PagedTable,
  roundUp,
  Serial,
  writeTable32,
} from "./_block_writer.ts";
import { inflateZlib } from "../compress/_inflate.ts";
import { Deflater } from "../compress/_deflate.ts";

/** Options for {@linkcode createVmdkWriter}. */
export interface VmdkWriterOptions {
  /**
   * `"monolithicSparse"` (grains as they are) or `"streamOptimized"`
   * (compressed grains, for OVA files and VMware's imports).
   *
   * @default {"monolithicSparse"}
   */
  subformat?: "monolithicSparse" | "streamOptimized";
}

const SECTOR = 512;
const GRAIN = 65536;
const GRAIN_SECTORS = GRAIN / SECTOR;
const GTES = 512;
const GT_BYTES = GTES * 4;
const DESCRIPTOR_SECTORS = 20;
const GI_B = 1024 * 1024 * 1024;
/** Grain offsets are 32-bit sector numbers, so the file stays under 2 TiB; tables included. */
const MAX_SPARSE = 2040 * GI_B;
/** The same with incompressible grains taking a sector more each. */
const MAX_STREAM = 2024 * GI_B;
/** Partly written grains held by the streamOptimized writer. */
const PENDING_BYTES = 16 * 1024 * 1024;
const FLAG_NEWLINE_TEST = 1;
const FLAG_COMPRESSED = 1 << 16;
const FLAG_MARKERS = 1 << 17;
const MARKER_GT = 1;
const MARKER_GD = 2;
const MARKER_FOOTER = 3;

function descriptor(subformat: string, sectors: number): Uint8Array {
  const cid = crypto.getRandomValues(new Uint32Array(1))[0].toString(16).padStart(8, "0");
  const cylinders = Math.min(65535, Math.floor(sectors / (16 * 63)));
  const text = `# Disk DescriptorFile
version=1
CID=${cid}
parentCID=ffffffff
createType="${subformat}"

# Extent description
RW ${sectors} SPARSE "disk.vmdk"

# The Disk Data Base
#DDB

ddb.virtualHWVersion = "4"
ddb.geometry.cylinders = "${cylinders}"
ddb.geometry.heads = "16"
ddb.geometry.sectors = "63"
ddb.adapterType = "ide"
`;
  const bytes = new Uint8Array(DESCRIPTOR_SECTORS * SECTOR);
  bytes.set(new TextEncoder().encode(text));
  return bytes;
}

interface HeaderFields {
  stream: boolean;
  sectors: number;
  /** Sector of the grain directory; for streamOptimized's first header, "at the end". */
  gdSector: number | "end";
  overhead: number;
}

function header({ stream, sectors, gdSector, overhead }: HeaderFields): Uint8Array {
  const bytes = new Uint8Array(SECTOR);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, 0x564d444b, true); // "KDMV"
  view.setUint32(4, stream ? 3 : 1, true);
  view.setUint32(8, FLAG_NEWLINE_TEST | (stream ? FLAG_COMPRESSED | FLAG_MARKERS : 0), true);
  view.setBigUint64(12, BigInt(sectors), true);
  view.setBigUint64(20, BigInt(GRAIN_SECTORS), true);
  view.setBigUint64(28, 1n, true); // descriptor
  view.setBigUint64(36, BigInt(DESCRIPTOR_SECTORS), true);
  view.setUint32(44, GTES, true);
  view.setBigUint64(56, gdSector === "end" ? 0xffffffffffffffffn : BigInt(gdSector), true);
  view.setBigUint64(64, BigInt(overhead), true);
  bytes.set([0x0a, 0x20, 0x0d, 0x0a], 73); // the newline test
  view.setUint16(77, stream ? 1 : 0, true); // compression: deflate
  return bytes;
}

/** A metadata marker sector: `value` sectors follow, of `type`. */
function marker(value: number, type: number): Uint8Array {
  const bytes = new Uint8Array(SECTOR);
  const view = new DataView(bytes.buffer);
  view.setBigUint64(0, BigInt(value), true);
  view.setUint32(12, type, true);
  return bytes;
}

/**
 * Builds grain table `g` from `table` (grain index to sector, 0 absent),
 * or returns undefined when none of its grains was stored.
 */
function grainTable(table: PagedTable, g: number, entry: (value: number) => number) {
  if (!table.hasPage(Math.floor(g * GTES / PagedTable.PAGE))) return undefined;
  const bytes = new Uint8Array(GT_BYTES);
  const view = new DataView(bytes.buffer);
  let any = false;
  for (let i = 0; i < GTES; i++) {
    const value = table.get(g * GTES + i);
    if (value === 0) continue;
    view.setUint32(i * 4, entry(value), true);
    any = true;
  }
  return any ? bytes : undefined;
}

function sparseWriter(target: PositionedWriter, virtual: number): DiskImageWriter {
  const sectors = virtual / SECTOR;
  const gdEntries = Math.ceil(virtual / (GTES * GRAIN));
  const gdSector = 1 + DESCRIPTOR_SECTORS;
  const dataStart = roundUp(gdSector * SECTOR + gdEntries * 4, GRAIN);
  const finish = async (target: PositionedWriter, table: PagedTable, units: number) => {
    const gd = new Uint32Array(gdEntries);
    let at = dataStart + units * GRAIN;
    for (let g = 0; g < gdEntries; g++) {
      const gt = grainTable(table, g, (v) => (dataStart + (v - 1) * GRAIN) / SECTOR);
      if (gt === undefined) continue;
      await target.write(at, gt);
      gd[g] = at / SECTOR;
      at += GT_BYTES;
    }
    await writeTable32(target, gdSector * SECTOR, gdEntries, (g) => gd[g], true);
    const overhead = dataStart / SECTOR;
    await target.write(SECTOR, descriptor("monolithicSparse", sectors));
    await target.write(0, header({ stream: false, sectors, gdSector, overhead }));
    await target.truncate(at);
  };
  return new BlockWriter({
    format: "vmdk",
    size: virtual,
    blockBytes: GRAIN,
    dataStart,
    unitBytes: GRAIN,
    prefixBytes: 0,
    finish,
  }, target);
}

function allZero(data: Uint8Array): boolean {
  const words = new Uint32Array(data.buffer, data.byteOffset, data.length / 4);
  for (let i = 0; i < words.length; i++) if (words[i] !== 0) return false;
  return true;
}

/** A grain being filled: its bytes and how many of them were written. */
interface Pending {
  bytes: Uint8Array;
  filled: number;
}

/** The streamOptimized writer: compressed grains as they complete, tables at the end. */
class StreamVmdkWriter implements DiskImageWriter {
  readonly #target: PositionedWriter;
  readonly #size: number;
  /** Grain index to the sector of its marker; 0: not stored. */
  readonly #table = new PagedTable();
  readonly #pending = new Map<number, Pending>();
  readonly #serial = new Serial();
  readonly #deflater = new Deflater({ windowBits: 15, format: "zlib" });
  /** Grain buffers to reuse: at most as many as the budget holds. */
  readonly #spare: Uint8Array[] = [];
  /** The marker and compressed grain being written, reused. */
  #record = new Uint8Array(GRAIN + 2 * SECTOR);
  #end: number;
  #closed = false;

  constructor(target: PositionedWriter, size: number, dataStart: number) {
    this.#target = target;
    this.#size = size;
    this.#end = dataStart;
  }

  /** `"vmdk"`. */
  get format(): string {
    return "vmdk";
  }

  /** The virtual size in bytes. */
  get size(): number {
    return this.#size;
  }

  /** Writes `data` at `offset` of the virtual disk. */
  write(offset: number, data: Uint8Array): Promise<void> {
    try {
      checkWrite("vmdk", this.#size, this.#closed, offset, data);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#serial.run(() => this.#write(offset, data));
  }

  async #write(offset: number, data: Uint8Array): Promise<void> {
    let done = 0;
    while (done < data.length) {
      const at = offset + done;
      const grain = Math.floor(at / GRAIN);
      const inGrain = at - grain * GRAIN;
      const n = Math.min(data.length - done, GRAIN - inGrain);
      let pending = this.#pending.get(grain);
      if (pending === undefined) {
        pending = { bytes: await this.#stored(grain), filled: 0 };
        if (this.#table.get(grain) !== 0) pending.filled = GRAIN;
        await this.#makeRoom();
        this.#pending.set(grain, pending);
      }
      pending.bytes.set(data.subarray(done, done + n), inGrain);
      pending.filled += n;
      if (pending.filled >= Math.min(GRAIN, this.#size - grain * GRAIN)) await this.#flush(grain);
      done += n;
    }
  }

  /** The grain's stored bytes (read back and inflated), or zeros when it was never stored. */
  async #stored(grain: number): Promise<Uint8Array> {
    const bytes = this.#spare.pop()?.fill(0) ?? new Uint8Array(GRAIN);
    const sector = this.#table.get(grain);
    if (sector === 0) return bytes;
    if (this.#target.read === undefined) {
      throw new TypeError(
        `Cannot write to the vmdk image: grain ${grain} is already compressed and the target cannot be read back`,
      );
    }
    const head = await this.#target.read(sector * SECTOR, 12);
    const length = new DataView(head.buffer, head.byteOffset, 12).getUint32(8, true);
    const compressed = await this.#target.read(sector * SECTOR + 12, length);
    inflateZlib(compressed, bytes);
    return bytes;
  }

  /** Compresses the oldest partly written grains until a new one fits in the budget. */
  async #makeRoom(): Promise<void> {
    while ((this.#pending.size + 1) * GRAIN > PENDING_BYTES) {
      const [oldest] = this.#pending.keys();
      await this.#flush(oldest);
    }
  }

  async #flush(grain: number): Promise<void> {
    const pending = this.#pending.get(grain)!;
    this.#pending.delete(grain);
    try {
      if (this.#table.get(grain) === 0 && allZero(pending.bytes)) return;
      const compressed = this.#deflater.compress(pending.bytes);
      const length = roundUp(12 + compressed.length, SECTOR);
      if (this.#record.length < length) this.#record = new Uint8Array(length);
      const record = this.#record.subarray(0, length);
      record.fill(0, 12 + compressed.length);
      const view = new DataView(record.buffer, 0, 12);
      view.setBigUint64(0, BigInt(grain * GRAIN_SECTORS), true);
      view.setUint32(8, compressed.length, true);
      record.set(compressed, 12);
      await this.#target.write(this.#end, record);
      this.#table.set(grain, this.#end / SECTOR);
      this.#end += length;
    } finally {
      if (this.#spare.length < PENDING_BYTES / GRAIN) this.#spare.push(pending.bytes);
    }
  }

  /** Compresses the grains still held, writes the tables, footer and end-of-stream marker. */
  close(): Promise<void> {
    if (this.#closed) {
      return Promise.reject(new TypeError("Cannot close the vmdk image: it is already closed"));
    }
    this.#closed = true;
    return this.#serial.run(() => this.#finish());
  }

  async #finish(): Promise<void> {
    for (const grain of [...this.#pending.keys()].sort((a, b) => a - b)) await this.#flush(grain);
    const target = this.#target;
    const sectors = this.#size / SECTOR;
    const gdEntries = Math.ceil(this.#size / (GTES * GRAIN));
    const gd = new Uint32Array(gdEntries);
    for (let g = 0; g < gdEntries; g++) {
      const gt = grainTable(this.#table, g, (v) => v);
      if (gt === undefined) continue;
      await target.write(this.#end, marker(GT_BYTES / SECTOR, MARKER_GT));
      gd[g] = this.#end / SECTOR + 1;
      await target.write(this.#end + SECTOR, gt);
      this.#end += SECTOR + GT_BYTES;
    }
    const gdBytes = roundUp(gdEntries * 4, SECTOR);
    await target.write(this.#end, marker(gdBytes / SECTOR, MARKER_GD));
    const gdSector = this.#end / SECTOR + 1;
    await writeTable32(target, this.#end + SECTOR, gdEntries, (g) => gd[g], true);
    this.#end += SECTOR + gdBytes;
    const overhead = GRAIN_SECTORS;
    await target.write(this.#end, marker(1, MARKER_FOOTER));
    await target.write(this.#end + SECTOR, header({ stream: true, sectors, gdSector, overhead }));
    await target.write(this.#end + 2 * SECTOR, new Uint8Array(SECTOR)); // end of stream
    this.#end += 3 * SECTOR;
    await target.truncate(this.#end);
  }
}

/**
 * Creates a VMDK image of `size` bytes written through `target`:
 * monolithicSparse, or streamOptimized for VMware's imports and OVA files.
 *
 * @param target Where the image file is written. streamOptimized uses its
 *   `read`, when present, only if data comes for a grain already compressed.
 * @param size Virtual size in bytes; rounded up to a multiple of 512.
 * @param options The subformat.
 * @returns The writer; {@linkcode DiskImageWriter.close} writes the tables.
 * @throws {TypeError} `target` is not a {@linkcode PositionedWriter}, or the subformat is unknown.
 * @throws {RangeError} `size` is not a byte count, or past the format's limit
 *   (2040 GiB for monolithicSparse, 2024 GiB for streamOptimized: the file must stay under 2 TiB).
 *
 * @example Writing a streamOptimized image in memory and reading it back
 * ```ts
 * import { createVmdkWriter, openVmdkImage } from "@vmakit/vma";
 * import assert from "node:assert/strict";
 *
 * let file = new Uint8Array(0);
 * const target = {
 *   async write(position: number, data: Uint8Array) {
 *     if (position + data.length > file.length) {
 *       const grown = new Uint8Array(position + data.length);
 *       grown.set(file);
 *       file = grown;
 *     }
 *     file.set(data, position);
 *   },
 *   async truncate(size: number) {
 *     const cut = new Uint8Array(size);
 *     cut.set(file.subarray(0, size));
 *     file = cut;
 *   },
 * };
 * const writer = await createVmdkWriter(target, 1024 * 1024, { subformat: "streamOptimized" });
 * await writer.write(65536, new Uint8Array(65536).fill(7));
 * await writer.close();
 * const image = await openVmdkImage({
 *   size: file.length,
 *   read: async (position, length) => file.slice(position, position + length),
 *   close: async () => {},
 * });
 * assert.deepEqual(await image.read(65536, 4), new Uint8Array([7, 7, 7, 7]));
 * ```
 */
export function createVmdkWriter(
  target: PositionedWriter,
  size: number,
  options?: VmdkWriterOptions,
): Promise<DiskImageWriter> {
  try {
    const subformat = options?.subformat ?? "monolithicSparse";
    if (subformat !== "monolithicSparse" && subformat !== "streamOptimized") {
      throw new TypeError(
        `Cannot create a vmdk image: the subformat ${
          JSON.stringify(String(subformat))
        } is not supported ("monolithicSparse" and "streamOptimized" are)`,
      );
    }
    const stream = subformat === "streamOptimized";
    const virtual = checkCreate("vmdk", target, size, stream ? MAX_STREAM : MAX_SPARSE);
    if (!stream) return Promise.resolve(sparseWriter(target, virtual));
    const sectors = virtual / SECTOR;
    return (async () => {
      await target.write(0, header({ stream, sectors, gdSector: "end", overhead: GRAIN_SECTORS }));
      await target.write(SECTOR, descriptor(subformat, sectors));
      return new StreamVmdkWriter(target, virtual, GRAIN);
    })();
  } catch (error) {
    return Promise.reject(error);
  }
}
