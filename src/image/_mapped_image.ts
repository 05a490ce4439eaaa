/**
 * The part of a {@linkcode DiskImage} that every sparse format shares: turning a
 * format's map of the virtual disk (which byte ranges are zeros, stored data,
 * compressed units or left to a backing image) into `regions()` and `read()`.
 *
 * @module
 */

import type { DiskImage, DiskImageRegion, PositionedReader } from "./disk_image.ts";
import { ByteCache } from "./_byte_cache.ts";
import { quote } from "./_image_errors.ts";

/** One piece of the virtual disk, starting at the offset it was asked for. */
export type Extent =
  /** Reads as zeros. */
  | { kind: "zero"; length: number }
  /** Unallocated here: comes from the backing image, or zeros without one. */
  | { kind: "backing"; length: number }
  /** Stored as is at `position` in `reader`. */
  | {
    kind: "data";
    length: number;
    reader: PositionedReader;
    position: number;
    /** The file name for messages, when it is not the image file itself. */
    file?: string | undefined;
  }
  /**
   * Part of a unit that must be loaded whole (a compressed cluster or grain):
   * bytes `skip .. skip + length` of what `load` returns. `key` identifies the
   * unit for the cache; `size` is what `load` returns at most (charged to the cache).
   */
  | {
    kind: "unit";
    length: number;
    key: string;
    size: number;
    skip: number;
    load: () => Promise<Uint8Array>;
  };

/**
 * Describes the virtual disk at `offset`: an extent that starts there and is
 * at least one byte long. It may stop anywhere after `end` (a hint: the caller
 * needs nothing past it) and may reach past the virtual size (it is clipped).
 */
export type ExtentMapper = (offset: number, end: number) => Promise<Extent>;

/** Formats a number for messages: `0x1f0000`. */
export function hex(value: number | bigint): string {
  return `0x${value.toString(16)}`;
}

/** Throws a `RangeError` unless `offset .. offset + length` lies within `0 .. size`. */
export function checkReadRange(offset: number, length: number, size: number): void {
  if (
    !Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 ||
    offset + length > size
  ) {
    throw new RangeError(
      `Cannot read ${length} bytes at offset ${offset}: the disk is ${size} bytes long`,
    );
  }
}

/**
 * Memory for decompressed units kept for later reads. The unit in use always
 * stays, even when larger (a 64 MiB VMDK grain is read in several pieces).
 */
const UNIT_CACHE_BYTES = 8 * 1024 * 1024;
/**
 * How far one `regions()` lookup may scan a table for a run (the `end` hint),
 * and how long a region merged from such runs may grow before it is yielded:
 * a disk of millions of small extents (16 TiB of L2 entries that all point at
 * one cluster) yields its first region at once, not after the whole scan.
 * Longer pieces that cost no scan (an unallocated L1 or grain directory entry,
 * a flat extent) are still merged whole.
 */
export const SCAN_LIMIT = 128 * 1024 * 1024;
export const REGION_LIMIT = 256 * 1024 * 1024;

/** A {@linkcode DiskImage} over an {@linkcode ExtentMapper}. */
export class MappedImage implements DiskImage {
  readonly format: string;
  readonly size: number;
  #map: ExtentMapper;
  #backing: DiskImage | undefined;
  #closers: (() => Promise<void>)[];
  #units = new ByteCache<string, Uint8Array>(UNIT_CACHE_BYTES);
  #closed = false;

  constructor(
    format: string,
    size: number,
    map: ExtentMapper,
    backing: DiskImage | undefined,
    closers: (() => Promise<void>)[],
  ) {
    this.format = format;
    this.size = size;
    this.#map = map;
    this.#backing = backing;
    this.#closers = closers;
  }

  async #extent(offset: number, end: number): Promise<Extent> {
    const extent = await this.#map(offset, end);
    if (!(extent.length > 0)) throw new Error(`Internal error: empty extent at ${offset}`);
    return extent;
  }

  async *regions(): AsyncGenerator<DiskImageRegion> {
    let start = 0;
    let end = 0;
    let zero = false;
    function* push(offset: number, length: number, isZero: boolean): Generator<DiskImageRegion> {
      if (length === 0) return;
      if (
        end > start && isZero === zero && (end - start < REGION_LIMIT || length >= REGION_LIMIT)
      ) {
        end += length;
        return;
      }
      if (end > start) yield { offset: start, length: end - start, zero };
      start = offset;
      end = offset + length;
      zero = isZero;
    }

    const backing = this.#backing;
    let backingIterator: AsyncIterator<DiskImageRegion> | undefined;
    let backingRegion: DiskImageRegion | undefined;
    try {
      let pos = 0;
      while (pos < this.size) {
        const extent = await this.#extent(pos, Math.min(this.size, pos + SCAN_LIMIT));
        const length = Math.min(extent.length, this.size - pos);
        if (extent.kind === "backing" && backing !== undefined) {
          // Take the backing image's own regions for this range.
          backingIterator ??= backing.regions()[Symbol.asyncIterator]();
          const stop = pos + length;
          let at = pos;
          while (at < stop) {
            if (at >= backing.size) {
              yield* push(at, stop - at, true);
              break;
            }
            while (
              backingRegion === undefined ||
              backingRegion.offset + backingRegion.length <= at
            ) {
              const next = await backingIterator.next();
              if (next.done) {
                throw new SyntaxError(
                  `The backing image's regions end at ${at}, before its size ${backing.size}`,
                );
              }
              backingRegion = next.value;
            }
            const upTo = Math.min(stop, backingRegion.offset + backingRegion.length);
            yield* push(at, upTo - at, backingRegion.zero);
            at = upTo;
          }
        } else {
          const isZero = extent.kind === "zero" || extent.kind === "backing";
          yield* push(pos, length, isZero);
        }
        pos += length;
      }
      if (end > start) yield { offset: start, length: end - start, zero };
    } finally {
      await backingIterator?.return?.();
    }
  }

  /**
   * Reads like `DiskImage.read`. Given `into` (at least `length` bytes), the
   * result is built in it rather than in a fresh buffer, unless it is one run
   * of stored data (then the reader's bytes come back as they are).
   */
  async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    checkReadRange(offset, length, this.size);
    const alloc = () =>
      into !== undefined && into.length >= length
        ? into.subarray(0, length).fill(0)
        : new Uint8Array(length);
    // Allocated on first use: a read that is one run of stored data returns
    // the reader's bytes as they are, without a second buffer and a copy.
    let out: Uint8Array | undefined;
    let whole: Uint8Array | undefined;
    const end = offset + length;
    // A run of stored data, contiguous in one file, waiting to be read in one go.
    let pending:
      | {
        reader: PositionedReader;
        position: number;
        at: number;
        length: number;
        file: string | undefined;
      }
      | undefined;
    const flush = async () => {
      if (pending === undefined) return;
      const { reader, position, at, length, file } = pending;
      pending = undefined;
      const bytes = await reader.read(position, length);
      if (bytes.length !== length) {
        const where = file === undefined ? "" : ` in ${quote(file)}`;
        throw new SyntaxError(
          `Corrupt ${this.format} image: the data at ${hex(position)}..${
            hex(position + length)
          }${where} runs past the end of the file`,
        );
      }
      if (at === 0 && length === end - offset && out === undefined) whole = bytes;
      else (out ??= alloc()).set(bytes, at);
    };

    let pos = offset;
    while (pos < end) {
      const extent = await this.#extent(pos, end);
      const n = Math.min(extent.length, end - pos);
      const at = pos - offset;
      if (extent.kind === "data") {
        if (
          pending !== undefined && pending.reader === extent.reader &&
          pending.position + pending.length === extent.position
        ) {
          pending.length += n;
        } else {
          await flush();
          const { reader, position, file } = extent;
          pending = { reader, position, at, length: n, file };
        }
      } else {
        await flush();
        if (extent.kind === "unit") {
          const unit = await this.#units.get(extent.key, extent.size, extent.load);
          (out ??= alloc()).set(unit.subarray(extent.skip, extent.skip + n), at);
        } else if (extent.kind === "backing" && this.#backing !== undefined) {
          const available = Math.min(n, this.#backing.size - pos);
          if (available > 0) {
            (out ??= alloc()).set(await this.#backing.read(pos, available), at);
          }
        }
        // "zero", or "backing" without a backing image: already zeros.
      }
      pos += n;
    }
    await flush();
    return whole ?? out ?? alloc();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#units.clear();
    await closeAll(this.#closers);
  }
}

/** Runs every closer, then rethrows the first failure. */
export async function closeAll(closers: (() => Promise<void>)[]): Promise<void> {
  const results = await Promise.allSettled(closers.map((close) => close()));
  for (const result of results) {
    if (result.status === "rejected") throw result.reason;
  }
}

/** `error` reworded as `<prefix>: <its message>`, keeping its class (for the documented ones). */
function reword(prefix: string, error: unknown): Error {
  const message = error instanceof Error ? error.message : String(error);
  const Class = error instanceof SyntaxError
    ? SyntaxError
    : error instanceof RangeError
    ? RangeError
    : error instanceof TypeError
    ? TypeError
    : Error;
  return new Class(`${prefix}: ${message}`, { cause: error });
}

/**
 * A backing image whose read and region errors name it: `Cannot read the
 * backing file "base.qcow2": Corrupt qcow2 image: ...` (keeping the class).
 */
export class NamedImage implements DiskImage {
  readonly format: string;
  readonly size: number;
  #image: DiskImage;
  #prefix: string;

  constructor(what: string, name: string, image: DiskImage) {
    this.#image = image;
    this.#prefix = `Cannot read the ${what} ${quote(name)}`;
    this.format = image.format;
    this.size = image.size;
  }

  async *regions(): AsyncGenerator<DiskImageRegion> {
    try {
      yield* this.#image.regions();
    } catch (error) {
      throw reword(this.#prefix, error);
    }
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    try {
      return await this.#image.read(offset, length);
    } catch (error) {
      throw reword(this.#prefix, error);
    }
  }

  close(): Promise<void> {
    return this.#image.close();
  }
}

/**
 * Calls a caller-supplied opener for a file the image refers to, and words its
 * failure so that it names the file (keeping the error's class).
 */
export async function openReferenced<T>(
  what: string,
  name: string,
  open: (() => Promise<T>) | undefined,
  option: string,
): Promise<T> {
  if (open === undefined) {
    throw new TypeError(`Cannot open the ${what} ${quote(name)}: no ${option} option was given`);
  }
  try {
    return await open();
  } catch (error) {
    throw reword(`Cannot open the ${what} ${quote(name)}`, error);
  }
}

/**
 * Positioned reads through a read-ahead window: compressed clusters and grains
 * are small and mostly stored one after the other, so one large read serves
 * many of them. Returns fewer bytes only at the end of the file.
 */
export class ReadAhead {
  #reader: PositionedReader;
  #window: number;
  #start = 0;
  #bytes: Uint8Array = new Uint8Array(0);

  constructor(reader: PositionedReader, window = 1024 * 1024) {
    this.#reader = reader;
    this.#window = window;
  }

  async read(position: number, length: number): Promise<Uint8Array> {
    const offset = position - this.#start;
    if (offset < 0 || offset + length > this.#bytes.length) {
      const size = Math.min(Math.max(length, this.#window), this.#reader.size - position);
      this.#bytes = await this.#reader.read(position, Math.max(size, 0));
      this.#start = position;
      return this.#bytes.slice(0, length);
    }
    return this.#bytes.slice(offset, offset + length);
  }
}
