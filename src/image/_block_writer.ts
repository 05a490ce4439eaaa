/**
 * The shared core of the block-allocating image writers (VDI, VHD, VMDK
 * monolithicSparse, VHDX): argument and state checks, one write at a time,
 * sticky failures, and blocks allocated in the file in the order the data
 * arrives.
 *
 * Out-of-order data: the first write that touches a block of the virtual
 * disk appends a new unit (the block, plus any per-block prefix) at the end of
 * the data area, and the block table records the unit's ordinal. Later writes
 * into the block go to the same unit. Unwritten parts of a unit are never
 * written, so they read as zeros (the file's gap). The format writes its
 * tables from the block table when the image is closed.
 *
 * Memory: the block table is a {@linkcode PagedTable}: 4 bytes per block,
 * in pages allocated only where blocks are, so it is proportional to the
 * allocated data (4 bytes per 64 KiB grain for VMDK, 4 bytes per 1 MiB or
 * more for the others), never a full-size array for a sparse disk. Data
 * passes straight through to the target.
 *
 * @module
 */

import type { DiskImageWriter, PositionedWriter } from "./disk_image_writer.ts";

/** The writers' format names, as QEMU names them. */
export type WriterFormatName = "vdi" | "vpc" | "vmdk" | "vhdx";

/** Block index to value (0 = absent), in lazily allocated pages of 1024 entries. */
export class PagedTable {
  static readonly PAGE = 1024;
  readonly #pages = new Map<number, Uint32Array>();

  /** The value of entry `index`, 0 when unset. */
  get(index: number): number {
    const page = this.#pages.get(Math.floor(index / PagedTable.PAGE));
    return page === undefined ? 0 : page[index % PagedTable.PAGE];
  }

  /** Sets entry `index` to `value` (a 32-bit unsigned integer). */
  set(index: number, value: number): void {
    const key = Math.floor(index / PagedTable.PAGE);
    let page = this.#pages.get(key);
    if (page === undefined) {
      page = new Uint32Array(PagedTable.PAGE);
      this.#pages.set(key, page);
    }
    page[index % PagedTable.PAGE] = value;
  }

  /** Whether any entry of page `key` may be set. */
  hasPage(key: number): boolean {
    return this.#pages.has(key);
  }

  /** The bytes the pages take. */
  get bytes(): number {
    return this.#pages.size * PagedTable.PAGE * 4;
  }
}

/**
 * Writes a table of `count` 32-bit entries (little- or big-endian) at
 * `position`, in chunks of at most 64 KiB, each entry computed by `entry`.
 */
export async function writeTable32(
  target: PositionedWriter,
  position: number,
  count: number,
  entry: (index: number) => number,
  littleEndian: boolean,
): Promise<void> {
  const CHUNK = 16384;
  const buffer = new Uint8Array(Math.min(CHUNK, count) * 4);
  const view = new DataView(buffer.buffer);
  for (let start = 0; start < count; start += CHUNK) {
    const n = Math.min(CHUNK, count - start);
    for (let i = 0; i < n; i++) view.setUint32(i * 4, entry(start + i), littleEndian);
    await target.write(position + start * 4, buffer.subarray(0, n * 4));
  }
}

/** Rounds `value` up to a multiple of `unit`. */
export function roundUp(value: number, unit: number): number {
  return Math.ceil(value / unit) * unit;
}

/** Checks the arguments of a writer factory; returns the virtual size rounded up to 512 bytes. */
export function checkCreate(
  format: WriterFormatName,
  target: PositionedWriter,
  size: number,
  maxSize: number,
): number {
  if (
    typeof target !== "object" || target === null || typeof target.write !== "function" ||
    typeof target.truncate !== "function"
  ) {
    throw new TypeError(
      `Cannot create a ${format} image: the target is not a PositionedWriter (write and truncate)`,
    );
  }
  if (!Number.isSafeInteger(size) || size < 0) {
    throw new RangeError(`Cannot create a ${format} image: the size ${size} is not a byte count`);
  }
  const rounded = roundUp(size, 512);
  if (rounded > maxSize) {
    throw new RangeError(
      `Cannot create a ${format} image of ${size} bytes: the format holds at most ${maxSize} bytes`,
    );
  }
  return rounded;
}

/** Checks the arguments of a write against the virtual size and the writer's state. */
export function checkWrite(
  format: WriterFormatName,
  size: number,
  closed: boolean,
  offset: number,
  data: Uint8Array,
): void {
  if (closed) throw new TypeError(`Cannot write to the ${format} image: it is closed`);
  if (!(data instanceof Uint8Array)) {
    throw new TypeError(`Cannot write to the ${format} image: the data is not a Uint8Array`);
  }
  if (!Number.isSafeInteger(offset) || offset < 0) {
    throw new RangeError(`Cannot write to the ${format} image: the offset ${offset} is invalid`);
  }
  if (offset + data.length > size) {
    throw new RangeError(
      `Cannot write to the ${format} image: ${data.length} bytes at offset ${offset} end past the virtual size ${size}`,
    );
  }
}

/** Runs operations one at a time and makes the first failure sticky. */
export class Serial {
  #tail: Promise<void> = Promise.resolve();
  #error: unknown = undefined;
  #failed = false;

  /** Runs `operation` after the ones before it; rejects with the first failure from then on. */
  run(operation: () => Promise<void>): Promise<void> {
    const next = this.#tail.then(async () => {
      if (this.#failed) throw this.#error;
      try {
        await operation();
      } catch (error) {
        this.#failed = true;
        this.#error = error;
        throw error;
      }
    });
    this.#tail = next.catch(() => {});
    return next;
  }

  /** Fulfils (never rejects) once every operation run so far has settled. */
  get settled(): Promise<void> {
    return this.#tail;
  }
}

/** What a block-allocating format supplies to {@linkcode BlockWriter}. */
export interface BlockFormat {
  readonly format: WriterFormatName;
  /** Virtual size (a multiple of 512). */
  readonly size: number;
  /** Bytes of virtual disk per block. */
  readonly blockBytes: number;
  /** File offset of the first unit. */
  readonly dataStart: number;
  /** Bytes a unit takes in the file: any prefix, the block, padding. */
  readonly unitBytes: number;
  /** Offset of the block's data inside its unit. */
  readonly prefixBytes: number;
  /** Writes the prefix of a new unit at `position` (VHD: its sector bitmap). */
  allocated?(target: PositionedWriter, position: number): Promise<void>;
  /**
   * Finishes the image: tables, headers, footers. `table` maps block index
   * to unit ordinal + 1 (0: never written); `units` units were allocated.
   */
  finish(target: PositionedWriter, table: PagedTable, units: number): Promise<void>;
}

/** A {@linkcode DiskImageWriter} over a {@linkcode BlockFormat}. */
export class BlockWriter implements DiskImageWriter {
  readonly #layout: BlockFormat;
  readonly #target: PositionedWriter;
  readonly #table = new PagedTable();
  readonly #serial = new Serial();
  #units = 0;
  #closed = false;

  constructor(layout: BlockFormat, target: PositionedWriter) {
    this.#layout = layout;
    this.#target = target;
  }

  /** The format name. */
  get format(): string {
    return this.#layout.format;
  }

  /** The virtual size in bytes. */
  get size(): number {
    return this.#layout.size;
  }

  /** Writes `data` at `offset` of the virtual disk. */
  write(offset: number, data: Uint8Array): Promise<void> {
    try {
      checkWrite(this.#layout.format, this.#layout.size, this.#closed, offset, data);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#serial.run(() => this.#write(offset, data));
  }

  async #write(offset: number, data: Uint8Array): Promise<void> {
    const { blockBytes, dataStart, unitBytes, prefixBytes } = this.#layout;
    let done = 0;
    while (done < data.length) {
      const at = offset + done;
      const block = Math.floor(at / blockBytes);
      const inBlock = at - block * blockBytes;
      const n = Math.min(data.length - done, blockBytes - inBlock);
      let ordinal = this.#table.get(block) - 1;
      if (ordinal < 0) {
        ordinal = this.#units++;
        this.#table.set(block, ordinal + 1);
        await this.#layout.allocated?.(this.#target, dataStart + ordinal * unitBytes);
      }
      const position = dataStart + ordinal * unitBytes + prefixBytes + inBlock;
      await this.#target.write(position, data.subarray(done, done + n));
      done += n;
    }
  }

  /** Writes the tables and headers; no write may follow. */
  close(): Promise<void> {
    if (this.#closed) {
      return Promise.reject(
        new TypeError(`Cannot close the ${this.#layout.format} image: it is already closed`),
      );
    }
    this.#closed = true;
    return this.#serial.run(() => this.#layout.finish(this.#target, this.#table, this.#units));
  }
}

/** 16 random bytes for a UUID/GUID field. */
export function randomUuid(): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(16));
}
