/**
 * Random access into a zstd file in the seekable format (facebook/zstd
 * `contrib/seekable_format`): independent frames, then a skippable frame
 * (magic `0x184D2A5E`) holding a seek table of one entry per frame
 * (compressed size, decompressed size, optionally a checksum), ended by a
 * 9-byte footer (frame count, descriptor, magic `0x8F92EAB1`).
 * {@linkcode openZstdSeekable} finds and checks the table;
 * {@linkcode ZstdSeekableReader} reads any range of the decompressed bytes,
 * decompressing only the frames it needs. The table's checksums (the low 32
 * bits of each frame's XXH64) are ignored; a frame's own content checksum,
 * when it has one, is checked by the zstd decoder.
 *
 * @module
 */
import type { PositionedReader } from "../image/disk_image.ts";
import type { DecompressionOptions } from "./compression.ts";
import { decodeStream, loadZlib, type Zlib } from "./_decompress.ts";
import { ZstdFrameScanner } from "./_zstd_frames.ts";
import { type ZlibHandle, zlibHandle } from "./_zlib_handle.ts";

const SKIPPABLE_MAGIC = 0x184d2a5e;
const SEEKABLE_MAGIC = 0x8f92eab1;
const FOOTER_SIZE = 9;
/** Bytes the reader keeps per frame: compressed and decompressed offsets. */
const FRAME_BYTES = 16;
/** Seek table bytes read at a time. */
const TABLE_PIECE = 1024 * 1024;

/**
 * The most compressed bytes a frame of `size` bytes needs: zstd's worst case
 * (`ZSTD_COMPRESSBOUND`: incompressible data stored in raw blocks, plus the
 * frame's header and checksum).
 */
function compressBound(size: number): number {
  const small = 128 * 1024;
  return size + Math.floor(size / 256) + (size < small ? Math.floor((small - size) / 2048) : 0);
}

/**
 * One frame decompressed by node:zlib into a single buffer (the output chunk
 * is one byte more than the frame's size: no pieces to gather, no garbage,
 * and a frame that fills it is too large); more output than `size + 1`
 * stops it. `compressed` must be exactly one frame: Deno's zlib stops after
 * the first frame, ignores what follows, and, when the output chunk is full
 * with input left, throws out of reach of any callback. Undefined without
 * node:zlib's zstd.
 */
async function zlibFrame(
  compressed: Uint8Array,
  size: number,
): Promise<{ bytes: Uint8Array } | { error: unknown; over: boolean } | undefined> {
  const zlib = await loadZlib();
  if (zlib === undefined || typeof zlib.zstdDecompress !== "function") return undefined;
  return await new Promise((resolve) => {
    try {
      zlib.zstdDecompress(
        compressed,
        { chunkSize: Math.max(64, size + 1), maxOutputLength: size + 1 },
        (error, result) => {
          if (error) {
            const code = (error as { code?: string }).code;
            resolve({ error, over: code === "ERR_BUFFER_TOO_LARGE" });
          } else {
            resolve({ bytes: new Uint8Array(result.buffer, result.byteOffset, result.length) });
          }
        },
      );
    } catch (error) {
      resolve({ error, over: false });
    }
  });
}

/**
 * Where each zstd frame of `compressed` starts and ends; skippable frames are
 * left out. Throws a `SyntaxError` when anything else is there, or a frame is
 * cut short.
 */
function framesIn(compressed: Uint8Array): [number, number][] {
  const scanner = new ZstdFrameScanner();
  const spans: [number, number][] = [];
  let start = -1;
  for (const piece of scanner.push(compressed)) {
    // The magic comes as a constant of its own; the rest are views of `compressed`.
    if (piece.bytes.buffer !== compressed.buffer) continue;
    const at = piece.bytes.byteOffset - compressed.byteOffset;
    if (start < 0) start = at - 4;
    if (piece.end) {
      spans.push([start, at + piece.bytes.length]);
      start = -1;
    }
  }
  scanner.finish();
  return spans;
}

/** Options of {@linkcode openZstdSeekable}. */
export interface ZstdSeekableOptions extends DecompressionOptions {
  /**
   * The largest decompressed size one frame may declare, in bytes; a table
   * with a larger frame is refused (each frame is decompressed whole), and
   * so is a frame of more compressed bytes than zstd's worst case for this
   * size (each frame is read whole).
   *
   * @default {67108864}
   */
  maxFrameSize?: number;
  /**
   * Decompressed frames kept for later reads, in bytes (the frame being read
   * is always kept, whatever its size).
   *
   * @default {8388608}
   */
  cacheBytes?: number;
  /**
   * Bytes of frames being read and decompressed at once (compressed plus
   * decompressed size of each): more concurrent reads of other frames wait
   * their turn; one frame is always let through, whatever its size.
   *
   * @default {134217728}
   */
  decodingBytes?: number;
  /**
   * The most memory the seek table may take, 16 bytes per frame.
   *
   * @default {67108864}
   */
  maxTableBytes?: number;
}

/** Spare buffers kept for frames, each kind (compressed and decompressed). */
const SPARES = 2;

/** A decompressed frame in the cache, and the reads copying from it now. */
interface CachedFrame {
  readonly bytes: Uint8Array;
  pins: number;
  /** Out of the cache: its buffer is reused once no read holds it. */
  dropped: boolean;
}

/** The compressed file, read into the caller's buffer where it can be. */
type SeekableSource = PositionedReader & {
  readInto?(position: number, target: Uint8Array): Promise<number>;
};

/**
 * Positioned reads of the decompressed bytes of a seekable zstd file, from
 * {@linkcode openZstdSeekable}. Each frame read is decompressed whole,
 * checked against the size the table gives it, and kept in a cache bounded
 * by bytes. Concurrent reads of one frame decompress it once; concurrent
 * reads of different frames are decompressed at once only as far as
 * `decodingBytes` allows. With node:zlib's decoder (Deno, Node), frames are
 * decoded into buffers the reader reuses once a frame has left the cache
 * and no read is copying from it, and, when the file has a `readInto`, read
 * into reused buffers too: a long run of reads allocates next to nothing.
 *
 * Where each frame's bytes are comes from the table alone. A frame is checked
 * against its own entry when it is decompressed, but a table whose sizes are
 * wrong yet add up puts the frames after a wrong entry at other places, where
 * they read without error: read the file through in order once (every entry
 * is then checked), as `vma cat`, `serve` and `repack` do to index it, before
 * trusting reads at random.
 */
export class ZstdSeekableReader implements PositionedReader {
  readonly #file: SeekableSource;
  readonly #compressedAt: Float64Array;
  readonly #decompressedAt: Float64Array;
  readonly #options: ZstdSeekableOptions;
  readonly #cacheBytes: number;
  readonly #cache = new Map<number, CachedFrame>();
  readonly #pending = new Map<number, { promise: Promise<CachedFrame>; waiters: number }>();
  #cached = 0;
  /**
   * node:zlib's zstd decoder handle, which decodes a frame synchronously into
   * a buffer of ours (undefined: not tried yet; null: none here).
   */
  #decoder: ZlibHandle | null | undefined;
  /** Buffers of frames dropped from the cache, for later frames (at most SPARES). */
  readonly #spareOut: Uint8Array[] = [];
  /** Buffers for compressed frames, when the file reads into the caller's buffer. */
  readonly #spareIn: Uint8Array[] = [];
  #closed = false;
  readonly #decodingBytes: number;
  /** Bytes of the frames being decompressed now. */
  #decoding = 0;
  /** Frames waiting for {@linkcode #decoding} to make room, first come first served. */
  readonly #waiting: { cost: number; go: () => void }[] = [];

  /** @internal Built by {@linkcode openZstdSeekable}. */
  constructor(
    file: SeekableSource,
    compressedAt: Float64Array,
    decompressedAt: Float64Array,
    options: ZstdSeekableOptions,
  ) {
    this.#file = file;
    this.#compressedAt = compressedAt;
    this.#decompressedAt = decompressedAt;
    this.#options = options;
    this.#cacheBytes = options.cacheBytes ?? 8 * 1024 * 1024;
    this.#decodingBytes = options.decodingBytes ?? 128 * 1024 * 1024;
  }

  /** Size of the decompressed bytes. */
  get size(): number {
    return this.#decompressedAt[this.#decompressedAt.length - 1];
  }

  /** Number of frames in the table. */
  get frameCount(): number {
    return this.#decompressedAt.length - 1;
  }

  /**
   * Reads up to `length` decompressed bytes at `position`: fewer only at the end.
   *
   * @param position Offset in the decompressed bytes.
   * @param length Bytes wanted.
   * @returns The bytes, the caller's.
   */
  async read(position: number, length: number): Promise<Uint8Array> {
    const out = new Uint8Array(Math.max(0, Math.min(length, this.size - position)));
    return out.subarray(0, await this.readInto(position, out));
  }

  /**
   * Reads up to `target.length` decompressed bytes at `position` into `target`.
   *
   * @param position Offset in the decompressed bytes.
   * @param target Where the bytes go.
   * @returns The number of bytes read: fewer only at the end.
   * @throws {SyntaxError} When a frame is damaged or does not decompress to
   *   the size the table gives it.
   */
  async readInto(position: number, target: Uint8Array): Promise<number> {
    if (this.#closed) throw new TypeError("Cannot read the seekable zstd file: closed");
    if (!Number.isSafeInteger(position) || position < 0) {
      throw new RangeError(`Cannot read the seekable zstd file at ${position}`);
    }
    const end = Math.min(this.size, position + target.length);
    let at = position;
    while (at < end) {
      const i = this.#find(at);
      const frame = await this.#frame(i);
      const start = this.#decompressedAt[i];
      const n = Math.min(end, start + frame.bytes.length) - at;
      target.set(frame.bytes.subarray(at - start, at - start + n), at - position);
      this.#unpin(frame);
      at += n;
    }
    return Math.max(0, end - position);
  }

  /** Releases the file and the cache. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#cache.clear();
    this.#cached = 0;
    this.#spareOut.length = 0;
    this.#spareIn.length = 0;
    this.#decoder?.close();
    this.#decoder = null;
    await this.#file.close();
  }

  /** The last frame starting at or before `position` (below the size). */
  #find(position: number): number {
    const starts = this.#decompressedAt;
    let lo = 0;
    let hi = starts.length - 2;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (starts[mid] <= position) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /**
   * Frame `i`, pinned for the caller, who unpins it once copied from: a
   * pinned frame's buffer is not reused, even once dropped from the cache.
   */
  #frame(i: number): Promise<CachedFrame> {
    const hit = this.#cache.get(i);
    if (hit !== undefined) {
      // Most recently used last.
      this.#cache.delete(i);
      this.#cache.set(i, hit);
      hit.pins++;
      return Promise.resolve(hit);
    }
    let pending = this.#pending.get(i);
    if (pending === undefined) {
      const record = { waiters: 0, promise: this.#decompressInTurn(i) };
      // On success, #keep has already removed the record (see there).
      record.promise.catch(() => {
        if (this.#pending.get(i) === record) this.#pending.delete(i);
      });
      this.#pending.set(i, record);
      pending = record;
    }
    pending.waiters++;
    return pending.promise;
  }

  #unpin(frame: CachedFrame): void {
    frame.pins--;
    if (frame.pins === 0 && frame.dropped) this.#recycle(frame.bytes);
  }

  /** Keeps the buffer of a frame no one reads any more, for a later frame. */
  #recycle(bytes: Uint8Array): void {
    if (!this.#closed && this.#spareOut.length < SPARES) {
      this.#spareOut.push(new Uint8Array(bytes.buffer));
    }
  }

  /** A buffer of at least `length` bytes: a spare one, or a new one of `capacity`. */
  #take(spares: Uint8Array[], length: number, capacity = length): Uint8Array {
    const k = spares.findIndex((b) => b.length >= length);
    return k < 0 ? new Uint8Array(Math.max(length, capacity)) : spares.splice(k, 1)[0];
  }

  /** {@linkcode #decompress} once the frame's bytes fit in `decodingBytes`. */
  async #decompressInTurn(i: number): Promise<CachedFrame> {
    const cost = this.#compressedAt[i + 1] - this.#compressedAt[i] +
      this.#decompressedAt[i + 1] - this.#decompressedAt[i];
    if (
      this.#decoding > 0 &&
      (this.#waiting.length > 0 || this.#decoding + cost > this.#decodingBytes)
    ) {
      await new Promise<void>((go) => this.#waiting.push({ cost, go }));
    } else {
      this.#decoding += cost;
    }
    try {
      return await this.#decompress(i);
    } finally {
      this.#decoding -= cost;
      // Let the waiting frames in, in turn, as long as they fit (at least one).
      while (this.#waiting.length > 0) {
        const next = this.#waiting[0];
        if (this.#decoding > 0 && this.#decoding + next.cost > this.#decodingBytes) break;
        this.#waiting.shift();
        this.#decoding += next.cost;
        next.go();
      }
    }
  }

  async #decompress(i: number): Promise<CachedFrame> {
    const position = this.#compressedAt[i];
    const compressedSize = this.#compressedAt[i + 1] - position;
    const size = this.#decompressedAt[i + 1] - this.#decompressedAt[i];
    const bad = (why: string) =>
      new SyntaxError(`Cannot read the seekable zstd file: frame ${i} at ${position} ${why}`);
    const readInto = this.#file.readInto?.bind(this.#file);
    let compressed: Uint8Array;
    let inBuffer: Uint8Array | undefined;
    if (readInto !== undefined) {
      // Room for any frame of this size, so that frames of one size share buffers.
      inBuffer = this.#take(this.#spareIn, compressedSize, compressBound(size));
      compressed = inBuffer.subarray(
        0,
        await readInto(position, inBuffer.subarray(0, compressedSize)),
      );
    } else {
      compressed = await this.#file.read(position, compressedSize);
    }
    try {
      if (compressed.length !== compressedSize) throw bad("ends early");
      return await this.#decode(i, compressed, size, bad);
    } finally {
      if (inBuffer !== undefined && !this.#closed && this.#spareIn.length < SPARES) {
        this.#spareIn.push(inBuffer);
      }
    }
  }

  /** Decompresses the frame(s) of `compressed` (frame `i`, `size` bytes) into the cache. */
  async #decode(
    i: number,
    compressed: Uint8Array,
    size: number,
    bad: (why: string) => SyntaxError,
  ): Promise<CachedFrame> {
    const over = () => bad(`decompresses to more than the ${size} bytes of the seek table`);
    const fewer = (got: number) =>
      bad(`decompresses to ${got} bytes, not the ${size} of the seek table`);
    const invalid = (e: unknown) =>
      bad(`is not valid zstd (${e instanceof Error ? e.message : String(e)})`);
    // Whole zstd frames (skippable frames aside) and nothing else: node:zlib
    // stops after one frame and ignores what follows, or throws out of reach
    // when it fills its output with input left, so it gets one frame at a time.
    let spans: [number, number][];
    try {
      spans = framesIn(compressed);
      if (spans.length === 0) throw new Error("it holds no frame");
    } catch (e) {
      // The entry's bytes are not whole frames: the table is wrong (or the
      // file), unlike a frame that fails to decode (damaged data).
      throw bad(`does not hold whole zstd frames (${e instanceof Error ? e.message : String(e)})`);
    }
    if (this.#options.zstd === undefined) {
      // Taken after the last await: no other read can close it while this
      // one, synchronous from here, decodes with it.
      const decoder = this.#handle(await loadZlib());
      if (decoder !== null) {
        // Synchronous, into a buffer of ours (one spare byte: a frame that
        // fills it decodes to more than its size): no garbage per frame.
        const out = this.#take(this.#spareOut, size + 1);
        let got = 0;
        for (const [from, to] of spans) {
          const room = size + 1 - got;
          try {
            decoder.reset();
            decoder.writeSync(0, compressed, from, to - from, out, got, room);
          } catch (e) {
            this.#decoder = undefined; // after an error the handle is done
            decoder.close();
            throw invalid(e);
          }
          const [freeOut, leftIn] = decoder.state;
          got += room - freeOut;
          if (got > size || (leftIn > 0 && freeOut === 0)) throw over();
          if (leftIn > 0) throw invalid(new Error("the decoder stopped inside the frame"));
        }
        if (got < size) throw fewer(got);
        return this.#keep(i, out.subarray(0, size));
      }
      const parts: Uint8Array[] = [];
      let got = 0;
      for (const [from, to] of spans) {
        const fast = await zlibFrame(compressed.subarray(from, to), size - got);
        if (fast === undefined) break;
        if ("error" in fast) throw fast.over ? over() : invalid(fast.error);
        if (fast.bytes.length > size - got) throw over();
        parts.push(fast.bytes);
        got += fast.bytes.length;
      }
      if (parts.length === spans.length) {
        if (got < size) throw fewer(got);
        // One frame (the usual case) needs no copy.
        const whole = parts.length === 1 ? parts[0] : new Uint8Array(size);
        if (parts.length > 1) {
          let at = 0;
          for (const part of parts) {
            whole.set(part, at);
            at += part.length;
          }
        }
        return this.#keep(i, whole);
      }
    }
    const out = new Uint8Array(size);
    let got = 0;
    const reader = decodeStream(ReadableStream.from([compressed]), "zstd", this.#options)
      .getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (value.length > size - got) throw over();
        out.set(value, got);
        got += value.length;
      }
    } catch (e) {
      await reader.cancel().catch(() => {});
      if (e instanceof SyntaxError && e.message.startsWith("Cannot read the seekable")) throw e;
      throw invalid(e);
    }
    if (got !== size) throw fewer(got);
    return this.#keep(i, out);
  }

  /**
   * node:zlib's zstd decoder handle (made now if there is none: the first
   * time, or after an error ended the last one), or null where there is none
   * or the reader is closed.
   */
  #handle(zlib: Zlib | undefined): ZlibHandle | null {
    if (this.#closed) return null;
    if (this.#decoder === undefined) {
      this.#decoder = typeof zlib?.createZstdDecompress === "function"
        ? zlibHandle(zlib.createZstdDecompress()) ?? null
        : null;
    }
    return this.#decoder;
  }

  /**
   * Keeps frame `i` in the cache, dropping the least recently used past
   * `cacheBytes`; the frame comes pinned for each reader waiting for it.
   */
  #keep(i: number, out: Uint8Array): CachedFrame {
    // Pinned once for each reader waiting. The waiting ends here: a later
    // read finds the frame in the cache (and pins it), or, once it has been
    // dropped from there, decompresses it anew; never this frame, whose
    // buffer may then hold another one.
    const frame: CachedFrame = {
      bytes: out,
      pins: this.#pending.get(i)?.waiters ?? 0,
      dropped: this.#closed,
    };
    this.#pending.delete(i);
    if (!this.#closed) {
      this.#cache.set(i, frame);
      this.#cached += out.length;
      for (const [k, v] of this.#cache) {
        if (this.#cached <= this.#cacheBytes || k === i) break;
        this.#cache.delete(k);
        this.#cached -= v.bytes.length;
        v.dropped = true;
        if (v.pins === 0) this.#recycle(v.bytes);
      }
    }
    return frame;
  }
}

/**
 * Finds the seek table at the end of `file` and checks it: its framing, the
 * frame count against the file's size, each frame's decompressed size
 * against `maxFrameSize`, and that the frames and the table make up the
 * whole file.
 *
 * @example Reading the middle of a seekable zstd file
 * ```ts
 * import { openZstdSeekable } from "@vmakit/vma";
 * import { zstdCompressSync } from "node:zlib";
 * import assert from "node:assert/strict";
 *
 * const a = zstdCompressSync(new Uint8Array(1000).fill(1));
 * const b = zstdCompressSync(new Uint8Array(1000).fill(2));
 * const table = new DataView(new ArrayBuffer(8 + 2 * 8 + 9));
 * table.setUint32(0, 0x184d2a5e, true);
 * table.setUint32(4, 2 * 8 + 9, true);
 * [a, b].forEach((f, i) => {
 *   table.setUint32(8 + 8 * i, f.length, true);
 *   table.setUint32(12 + 8 * i, 1000, true);
 * });
 * table.setUint32(24, 2, true);
 * table.setUint32(29, 0x8f92eab1, true);
 * const file = new Uint8Array([...a, ...b, ...new Uint8Array(table.buffer)]);
 *
 * const reader = await openZstdSeekable({
 *   size: file.length,
 *   read: (p, n) => Promise.resolve(file.slice(p, p + n)),
 *   close: () => Promise.resolve(),
 * });
 * assert.equal(reader?.size, 2000);
 * assert.deepEqual(await reader!.read(998, 4), new Uint8Array([1, 1, 2, 2]));
 * ```
 *
 * @param file Positioned reads of the compressed file; a `readInto(position,
 *   target)` method returning the bytes read, when it has one, is used to
 *   read frames into reused buffers.
 * @param options Limits and the zstd decoder.
 * @returns A reader of the decompressed bytes, or `undefined` when the file
 *   does not end with a seekable footer.
 * @throws {SyntaxError} When the footer is there but the table is malformed
 *   or does not describe the file.
 * @throws {RangeError} When a frame is larger than `maxFrameSize` (or its
 *   compressed bytes more than zstd's worst case for that size), or the
 *   table would take more than `maxTableBytes`.
 */
export async function openZstdSeekable(
  file: PositionedReader,
  options: ZstdSeekableOptions = {},
): Promise<ZstdSeekableReader | undefined> {
  const maxFrameSize = options.maxFrameSize ?? 64 * 1024 * 1024;
  const maxTableBytes = options.maxTableBytes ?? 64 * 1024 * 1024;
  const maxCompressed = compressBound(maxFrameSize);
  const size = file.size;
  if (size < FOOTER_SIZE + 8) return undefined;
  const footer = await file.read(size - FOOTER_SIZE, FOOTER_SIZE);
  if (footer.length !== FOOTER_SIZE) return undefined;
  const fv = new DataView(footer.buffer, footer.byteOffset, FOOTER_SIZE);
  if (fv.getUint32(5, true) !== SEEKABLE_MAGIC) return undefined;
  const bad = (why: string) =>
    new SyntaxError(`Cannot read the seekable zstd file: the seek table ${why}`);
  const frames = fv.getUint32(0, true);
  const descriptor = fv.getUint8(4);
  if ((descriptor & 0x7c) !== 0) throw bad(`descriptor ${descriptor} has reserved bits set`);
  const entry = (descriptor & 0x80) !== 0 ? 12 : 8;
  if (frames > (size - FOOTER_SIZE - 8) / entry) {
    throw bad(`lists ${frames} frames, more than the ${size}-byte file can hold`);
  }
  if ((frames + 1) * FRAME_BYTES > maxTableBytes) {
    throw new RangeError(
      `Cannot read the seekable zstd file: ${frames} frames need more than ` +
        `${maxTableBytes} bytes (maxTableBytes)`,
    );
  }
  const tableBytes = frames * entry + FOOTER_SIZE;
  const tableStart = size - tableBytes - 8;
  const head = await file.read(tableStart, 8);
  const hv = new DataView(head.buffer, head.byteOffset, head.length);
  if (
    head.length !== 8 || hv.getUint32(0, true) !== SKIPPABLE_MAGIC ||
    hv.getUint32(4, true) !== tableBytes
  ) {
    throw bad("is not framed as a skippable frame of its size");
  }
  const compressedAt = new Float64Array(frames + 1);
  const decompressedAt = new Float64Array(frames + 1);
  let c = 0;
  let d = 0;
  const perPiece = Math.floor(TABLE_PIECE / entry);
  for (let first = 0; first < frames; first += perPiece) {
    const count = Math.min(perPiece, frames - first);
    const piece = await file.read(tableStart + 8 + first * entry, count * entry);
    if (piece.length !== count * entry) throw bad("ends early");
    const pv = new DataView(piece.buffer, piece.byteOffset, piece.length);
    for (let k = 0; k < count; k++) {
      const compressed = pv.getUint32(k * entry, true);
      const decompressed = pv.getUint32(k * entry + 4, true);
      if (compressed === 0) throw bad(`gives frame ${first + k} no bytes`);
      if (compressed > maxCompressed) {
        throw new RangeError(
          `Cannot read the seekable zstd file: frame ${first + k} takes ${compressed} ` +
            `compressed bytes, more than ${maxCompressed} (zstd's worst case for maxFrameSize)`,
        );
      }
      if (decompressed > maxFrameSize) {
        throw new RangeError(
          `Cannot read the seekable zstd file: frame ${first + k} declares ${decompressed} ` +
            `bytes, more than ${maxFrameSize} (maxFrameSize)`,
        );
      }
      compressedAt[first + k] = c;
      decompressedAt[first + k] = d;
      c += compressed;
      d += decompressed;
      if (c > tableStart) throw bad(`has frames past its own start (${tableStart})`);
    }
  }
  if (c !== tableStart) {
    throw bad(`covers ${c} bytes of frames, the file has ${tableStart} before the table`);
  }
  compressedAt[frames] = c;
  decompressedAt[frames] = d;
  return new ZstdSeekableReader(file, compressedAt, decompressedAt, options);
}
