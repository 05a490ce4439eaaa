// Writing into an existing qcow2 image, the way QEMU does (for `vma extract -r`
// into images qmrestore pre-created with `qemu-img create -f qcow2`): the
// header, L1 table and refcount table are read; a guest cluster already
// allocated is written in place, any other gets a new cluster at the end of
// the file, with its L2 entry and reference count updated; L2 tables and
// refcount blocks are created as needed. Memory: the L1 and refcount tables
// (8 bytes per 512 MiB of disk and per 2 GiB of file), one bit per guest
// cluster (which clusters were written), an LRU cache of L2 tables and one
// refcount block.

import type { DiskImageWriter, PositionedWriter } from "./disk_image_writer.ts";
import { corrupt, unsupported } from "./_image_errors.ts";
import { parseQcow2Header, QCOW2_HEADER_BYTES } from "./_qcow2_header.ts";
import { Serial } from "./_block_writer.ts";

const COPIED_HI = 0x80000000;
const COMPRESSED_HI = 0x40000000;
/** Offset bits of L1/L2 entries, in the high word (bits 9..55 overall). */
const OFFSET_HI_MASK = 0x00ffffff;
const ZERO_FLAG = 1;
const L2_CACHE_TABLES = 32;
/** The refcount table is read whole: at most this many bytes (8 MiB: 2 EiB of file). */
const MAX_REFCOUNT_TABLE = 8 * 1024 * 1024;

const entryOffset = (view: DataView, at: number) =>
  (view.getUint32(at) & OFFSET_HI_MASK) * 2 ** 32 + ((view.getUint32(at + 4) & ~0x1ff) >>> 0);

const setEntry = (view: DataView, at: number, offset: number, flagsHi: number, flagsLo = 0) => {
  view.setUint32(at, (flagsHi | Math.floor(offset / 2 ** 32)) >>> 0);
  view.setUint32(at + 4, ((offset >>> 0) | flagsLo) >>> 0);
};

async function readExactly(target: PositionedWriter, position: number, length: number) {
  const data = await target.read!(position, length);
  if (data.length < length) {
    throw corrupt("qcow2", `${length} bytes at ${position} are past the end of the file`);
  }
  return data;
}

/** Opens the qcow2 image in `target` (`fileSize` bytes) for writing its virtual disk. */
export async function openQcow2Update(
  target: PositionedWriter,
  fileSize: number,
  options: { zeroUnwritten?: boolean } = {},
): Promise<DiskImageWriter> {
  if (typeof target?.read !== "function") {
    throw new TypeError("Invalid qcow2 target: updating an image needs a read method");
  }
  const head = await target.read(0, QCOW2_HEADER_BYTES);
  const header = parseQcow2Header(head, fileSize);
  const hv = new DataView(head.buffer, head.byteOffset, head.byteLength);
  if (header.backingOffset !== 0) {
    throw unsupported("qcow2", "writing into an image with a backing file is not supported");
  }
  if (header.extendedL2) {
    throw unsupported("qcow2", "writing into an image with extended L2 entries is not supported");
  }
  if (hv.getUint32(60) !== 0) {
    throw unsupported("qcow2", "writing into an image with snapshots is not supported");
  }
  const refcountOrder = header.version === 3 ? hv.getUint32(96) : 4;
  if (refcountOrder !== 4) {
    throw unsupported(
      "qcow2",
      `writing into an image with ${
        2 ** refcountOrder
      }-bit reference counts is not supported (16-bit are)`,
    );
  }
  const clusterSize = header.clusterSize;
  const l1Size = hv.getUint32(36);
  const l1 = l1Size === 0
    ? new Uint8Array(0)
    : (await readExactly(target, header.l1Offset, l1Size * 8)).slice();
  const tableOffset = Number(hv.getBigUint64(48));
  const tableBytes = hv.getUint32(56) * clusterSize;
  if (tableBytes > MAX_REFCOUNT_TABLE || tableBytes === 0 || tableOffset % clusterSize !== 0) {
    throw corrupt("qcow2", `the refcount table (${tableBytes} bytes at ${tableOffset}) is invalid`);
  }
  const refTable = (await readExactly(target, tableOffset, tableBytes)).slice();
  return new Qcow2Update(target, header.size, clusterSize, l1, header.l1Offset, refTable, {
    tableOffset,
    end: Math.ceil(fileSize / clusterSize) * clusterSize,
    zeroFlag: header.version === 3,
    zeroUnwritten: options.zeroUnwritten === true,
  });
}

class Qcow2Update implements DiskImageWriter {
  readonly format = "qcow2";
  readonly size: number;
  #target: PositionedWriter;
  #cluster: number;
  #l1: DataView;
  #l1Bytes: Uint8Array;
  #l1Offset: number;
  #l1Dirty = false;
  #refTable: DataView;
  #refTableBytes: Uint8Array;
  #refTableOffset: number;
  #refTableDirty = false;
  #perBlock: number;
  #block: { index: number; data: Uint8Array; dirty: boolean } | undefined;
  #l2 = new Map<number, { table: Uint8Array; dirty: boolean }>();
  #end: number;
  /** The end of the file as opened: existing metadata and data lie before it. */
  #fileEnd: number;
  #zeroFlag: boolean;
  #zeroUnwritten: boolean;
  /** Clusters (by index) holding metadata when opened: no data is written over them. */
  #metadata = new Set<number>();
  /** One bit per guest cluster touched by a write, per L2 table touched (by L1 index). */
  #touched = new Map<number, Uint8Array>();
  #closed = false;
  readonly #serial = new Serial();

  constructor(
    target: PositionedWriter,
    size: number,
    cluster: number,
    l1: Uint8Array,
    l1Offset: number,
    refTable: Uint8Array,
    o: { tableOffset: number; end: number; zeroFlag: boolean; zeroUnwritten: boolean },
  ) {
    this.#target = target;
    this.size = size;
    this.#cluster = cluster;
    this.#l1Bytes = l1;
    this.#l1 = new DataView(l1.buffer);
    this.#l1Offset = l1Offset;
    this.#refTableBytes = refTable;
    this.#refTable = new DataView(refTable.buffer);
    this.#refTableOffset = o.tableOffset;
    this.#perBlock = cluster / 2;
    this.#end = o.end;
    this.#fileEnd = o.end;
    this.#zeroFlag = o.zeroFlag;
    this.#zeroUnwritten = o.zeroUnwritten;
    const span = (offset: number, bytes: number) => {
      for (let c = offset / cluster; c < (offset + bytes) / cluster; c++) this.#metadata.add(c);
    };
    span(0, cluster);
    span(l1Offset, l1.length);
    span(o.tableOffset, refTable.length);
    for (let i = 0; i < l1.length / 8; i++) {
      const at = entryOffset(this.#l1, i * 8);
      if (at !== 0) this.#metadata.add(Math.floor(at / cluster));
    }
    for (let i = 0; i < refTable.length / 8; i++) {
      const at = this.#refTable.getUint32(i * 8) * 2 ** 32 + this.#refTable.getUint32(i * 8 + 4);
      if (at !== 0) this.#metadata.add(Math.floor(at / cluster));
    }
  }

  write(offset: number, data: Uint8Array): Promise<void> {
    if (this.#closed) {
      return Promise.reject(new TypeError("Cannot write: the qcow2 image is closed"));
    }
    if (!Number.isSafeInteger(offset) || offset < 0 || offset + data.length > this.size) {
      return Promise.reject(
        new RangeError(
          `Cannot write ${data.length} bytes at offset ${offset}: the image holds ${this.size} bytes`,
        ),
      );
    }
    return this.#serial.run(async () => {
      const c = this.#cluster;
      for (let at = 0; at < data.length;) {
        const pos = offset + at;
        const inCluster = pos % c;
        const n = Math.min(c - inCluster, data.length - at);
        const host = await this.#hostCluster((pos - inCluster) / c);
        await this.#target.write(host + inCluster, data.subarray(at, at + n));
        at += n;
      }
    });
  }

  close(): Promise<void> {
    if (this.#closed) return this.#serial.settled;
    this.#closed = true;
    return this.#serial.run(() => this.#finish());
  }

  // --- reference counts ---

  async #refBlock(index: number): Promise<{ index: number; data: Uint8Array; dirty: boolean }> {
    if (this.#block?.index === index) return this.#block;
    if (this.#block?.dirty) await this.#writeBlock(this.#block);
    const offset = this.#tableEntry(index);
    const data = (await readExactly(this.#target, offset, this.#cluster)).slice();
    this.#block = { index, data, dirty: false };
    return this.#block;
  }

  async #writeBlock(block: { index: number; data: Uint8Array; dirty: boolean }) {
    await this.#target.write(this.#tableEntry(block.index), block.data);
    block.dirty = false;
  }

  #tableEntry(index: number): number {
    const offset = this.#refTable.getUint32(index * 8) * 2 ** 32 +
      this.#refTable.getUint32(index * 8 + 4);
    return offset === 0 ? 0 : this.#checked(offset, `refcount block ${index}`);
  }

  /**
   * `offset` of an existing cluster, checked: aligned, after the header and
   * before the end of the file (never written over the header or past the file).
   */
  #checked(offset: number, what: string): number {
    const c = this.#cluster;
    if (offset % c !== 0 || offset < c || offset + c > this.#fileEnd) {
      if (offset >= this.#fileEnd && offset < this.#end) return offset; // allocated here
      throw corrupt("qcow2", `the offset ${offset} of ${what} is invalid`);
    }
    return offset;
  }

  /** Allocates one cluster at the end of the file, with a reference count of one. */
  async #alloc(): Promise<number> {
    for (;;) {
      const n = this.#end / this.#cluster;
      const index = Math.floor(n / this.#perBlock);
      if (index * 8 >= this.#refTableBytes.length) {
        throw new RangeError(
          "Cannot allocate a qcow2 cluster: the refcount table is full (growing it is not supported)",
        );
      }
      if (this.#tableEntry(index) === 0) {
        // A new refcount block, in the first free cluster, counting itself.
        if (this.#block?.dirty) await this.#writeBlock(this.#block);
        setEntry(this.#refTable, index * 8, this.#end, 0);
        this.#refTableDirty = true;
        const data = new Uint8Array(this.#cluster);
        new DataView(data.buffer).setUint16((n % this.#perBlock) * 2, 1);
        this.#block = { index, data, dirty: true };
        this.#end += this.#cluster;
        continue;
      }
      const block = await this.#refBlock(index);
      const view = new DataView(block.data.buffer);
      const at = (n % this.#perBlock) * 2;
      if (view.getUint16(at) !== 0) {
        throw corrupt("qcow2", `cluster ${n} past the end of the file has a reference count`);
      }
      view.setUint16(at, 1);
      block.dirty = true;
      this.#end += this.#cluster;
      return n * this.#cluster;
    }
  }

  // --- L2 tables ---

  async #l2Table(l1Index: number): Promise<{ table: Uint8Array; dirty: boolean }> {
    const cached = this.#l2.get(l1Index);
    if (cached !== undefined) {
      this.#l2.delete(l1Index);
      this.#l2.set(l1Index, cached);
      return cached;
    }
    let offset = entryOffset(this.#l1, l1Index * 8);
    if (offset !== 0) offset = this.#checked(offset, `L2 table ${l1Index}`);
    let entry: { table: Uint8Array; dirty: boolean };
    if (offset === 0) {
      offset = await this.#alloc();
      setEntry(this.#l1, l1Index * 8, offset, COPIED_HI);
      this.#l1Dirty = true;
      entry = { table: new Uint8Array(this.#cluster), dirty: true };
    } else {
      entry = {
        table: (await readExactly(this.#target, offset, this.#cluster)).slice(),
        dirty: false,
      };
    }
    this.#l2.set(l1Index, entry);
    while (this.#l2.size > L2_CACHE_TABLES) {
      const [oldest, old] = this.#l2.entries().next().value!;
      this.#l2.delete(oldest);
      if (old.dirty) await this.#target.write(entryOffset(this.#l1, oldest * 8), old.table);
    }
    return entry;
  }

  /** The host offset of guest cluster `cluster`, ready to be written (see the module notes). */
  async #hostCluster(cluster: number): Promise<number> {
    const perL2 = this.#cluster / 8;
    const l1Index = Math.floor(cluster / perL2);
    let entry = await this.#l2Table(l1Index);
    let view = new DataView(entry.table.buffer);
    const at = (cluster % perL2) * 8;
    const offset = entryOffset(view, at);
    let bits = this.#touched.get(l1Index);
    if (bits === undefined) this.#touched.set(l1Index, bits = new Uint8Array(perL2 / 8));
    const i = cluster % perL2;
    if (bits[i >>> 3] & (1 << (i & 7))) return offset;
    bits[i >>> 3] |= 1 << (i & 7);
    if (view.getUint32(at) & COMPRESSED_HI) {
      throw unsupported("qcow2", "writing over compressed clusters is not supported");
    }
    const zero = (view.getUint32(at + 4) & ZERO_FLAG) !== 0;
    if (offset !== 0) {
      this.#checked(offset, `guest cluster ${cluster}`);
      if (this.#metadata.has(offset / this.#cluster)) {
        throw corrupt(
          "qcow2",
          `guest cluster ${cluster} overlaps the image's metadata at ${offset}`,
        );
      }
      // Allocated: written in place; zeroed first where it must read as zeros.
      if (zero || this.#zeroUnwritten) {
        await this.#target.write(offset, new Uint8Array(this.#cluster));
      }
      if (zero) {
        setEntry(view, at, offset, COPIED_HI);
        entry.dirty = true;
      }
      return offset;
    }
    const host = await this.#alloc();
    // Allocation may have pushed the table out of the cache.
    entry = await this.#l2Table(l1Index);
    view = new DataView(entry.table.buffer);
    setEntry(view, at, host, COPIED_HI);
    entry.dirty = true;
    return host;
  }

  async #finish(): Promise<void> {
    if (this.#zeroUnwritten) await this.#zeroUntouched();
    for (const [l1Index, entry] of this.#l2) {
      if (entry.dirty) await this.#target.write(entryOffset(this.#l1, l1Index * 8), entry.table);
    }
    this.#l2.clear();
    if (this.#block?.dirty) await this.#writeBlock(this.#block);
    if (this.#l1Dirty) await this.#target.write(this.#l1Offset, this.#l1Bytes);
    if (this.#refTableDirty) await this.#target.write(this.#refTableOffset, this.#refTableBytes);
    await this.#target.truncate(this.#end);
  }

  /** Makes every allocated cluster no write touched read as zeros (the map's `1:`). */
  async #zeroUntouched(): Promise<void> {
    const perL2 = this.#cluster / 8;
    const clusters = Math.ceil(this.size / this.#cluster);
    for (let l1Index = 0; l1Index * perL2 < clusters; l1Index++) {
      if (entryOffset(this.#l1, l1Index * 8) === 0) continue;
      const entry = await this.#l2Table(l1Index);
      const view = new DataView(entry.table.buffer);
      for (let i = 0; i < perL2 && l1Index * perL2 + i < clusters; i++) {
        const bits = this.#touched.get(l1Index);
        if (bits !== undefined && bits[i >>> 3] & (1 << (i & 7))) continue;
        const offset = entryOffset(view, i * 8);
        if (offset === 0 || (view.getUint32(i * 8 + 4) & ZERO_FLAG) !== 0) continue;
        if (view.getUint32(i * 8) & COMPRESSED_HI) {
          throw unsupported("qcow2", "writing over compressed clusters is not supported");
        }
        this.#checked(offset, `guest cluster ${l1Index * perL2 + i}`);
        if (this.#zeroFlag) {
          setEntry(view, i * 8, offset, COPIED_HI, ZERO_FLAG);
          entry.dirty = true;
        } else if (!this.#metadata.has(offset / this.#cluster)) {
          await this.#target.write(offset, new Uint8Array(this.#cluster));
        }
      }
    }
  }
}
