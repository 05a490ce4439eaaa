// Exact-size reads from an archive stream, for the reader. Private to the library.
import { MAX_EXTENT_SIZE } from "./_layout.ts";
import {
  type Compression,
  COMPRESSION_MAGIC_SIZE,
  type DecompressionOptions,
  detectCompression,
} from "../compress/compression.ts";
import { decodeStream } from "../compress/_decompress.ts";
import { forwardByob } from "../compress/_byte_stream.ts";

const EMPTY = new Uint8Array(0);
/** Size of the read-ahead window (byte streams, once `readAhead` is set). */
const AHEAD = 256 * 1024;
/**
 * The ring (byte streams, once `useRing` is called): windows larger than an
 * extent, so that one extent spans at most two of them, all but the one being
 * parsed waiting on a stream read. The stream's source fills them one after
 * the other while the reader parses, so reading the file (on another thread,
 * for a Deno file) overlaps the parsing.
 */
const RING_WINDOW = 4 * 1024 * 1024;
// One stream read at a time, started as soon as a window is free: a source
// may answer its last read and close without answering reads queued behind it.
const RING_SLOTS = 3;

/** One window of the ring: bytes `start .. end` of `buffer` are unread. */
interface Slot {
  buffer: ArrayBuffer;
  start: number;
  end: number;
  /** False for the bytes read ahead before the ring started: not read into again. */
  readonly recycle: boolean;
}

/**
 * Reads exact byte counts from a stream. From a byte stream it reads straight
 * into a buffer of the wanted size (BYOB: no copy); from another stream it
 * hands out subarrays of its chunks and copies only what straddles chunks.
 * With `readAhead` set (the extents, after the header), a byte stream is read
 * in windows of 256 KiB, so small reads (512-byte extents without data) are
 * not one stream read each; large reads still go straight to their buffer.
 */
export class ByteSource {
  #reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  #byob: ReadableStreamBYOBReader | undefined;
  #chunks: Uint8Array[] = [];
  #head = 0; // index of the first unread chunk (Array#shift is O(n): tiny chunks went quadratic)
  #buffered = 0;
  #eof = false;
  #released = false;
  /** The read-ahead window: bytes `#winStart .. #winEnd` of `#win` are unread. */
  #win: ArrayBuffer | undefined;
  #winStart = 0;
  #winEnd = 0;
  /** Bytes consumed so far. */
  position = 0;
  /** Read byte streams ahead in windows (set once the header is read). */
  readAhead = false;
  /** The compression found at the start of the stream (undefined before the first read). */
  compression: Compression | undefined;
  #options: DecompressionOptions;
  /** The caller's reader, while a decoder reads from it. */
  #outer: ReadableStreamDefaultReader<Uint8Array> | ReadableStreamBYOBReader | undefined;
  /** Whether to read through the ring (set by `useRing`). */
  #ringWanted = false;
  /** The ring's filled windows in stream order, once started. */
  #ring: Slot[] | undefined;
  /** Windows waiting to be read into. */
  #free: Slot[] = [];
  /** The stream read filling a window, until it settles. */
  #inflight: Promise<void> | undefined;
  /** Why that read failed (thrown once the filled windows before it are read). */
  #ringError: unknown;

  constructor(readable: ReadableStream<Uint8Array>, options: DecompressionOptions = {}) {
    if (!(readable instanceof ReadableStream)) {
      throw new TypeError("Cannot read the archive: it must be a ReadableStream");
    }
    this.#options = options;
    try {
      this.#byob = readable.getReader({ mode: "byob" });
    } catch {
      this.#reader = readable.getReader();
    }
  }

  /**
   * Reads `n` bytes, or fewer at the end of the stream; into `scratch.buffer`
   * when given and large enough (it is replaced by the same memory after a
   * BYOB read transfers it).
   */
  async read(n: number, scratch?: { buffer: ArrayBuffer }): Promise<Uint8Array> {
    if (this.compression === undefined) await this.#sniff();
    if (this.#byob !== undefined && this.#ringWanted && n <= MAX_EXTENT_SIZE) {
      return await this.#ringRead(n, scratch);
    }
    if (this.#byob !== undefined) {
      if (this.readAhead || this.#winEnd > this.#winStart) {
        if (n <= MAX_EXTENT_SIZE) return await this.#readAhead(n, scratch);
      }
      if (n <= MAX_EXTENT_SIZE) return await this.#readByob(n, scratch);
      // Larger reads (only a header can be that big) go in pieces, so a
      // short hostile stream does not make us allocate what it claims.
      const parts: Uint8Array[] = [];
      let got = 0;
      while (got < n) {
        const k = Math.min(MAX_EXTENT_SIZE, n - got);
        const part = this.#winEnd > this.#winStart
          ? await this.#readAhead(k)
          : await this.#readByob(k);
        parts.push(part);
        got += part.length;
        if (part.length === 0 || this.#eof) break;
      }
      const out = new Uint8Array(got);
      let at = 0;
      for (const part of parts) {
        out.set(part, at);
        at += part.length;
      }
      return out;
    }
    while (this.#buffered < n && !this.#eof) await this.#pullChunk();
    return this.#take(Math.min(n, this.#buffered), scratch);
  }

  /** Reads one chunk of the stream into the chunk list (unless empty); sets `#eof` at its end. */
  async #pullChunk(): Promise<void> {
    const { done, value } = await this.#reader!.read();
    if (done) {
      this.#eof = true;
      return;
    }
    if (!(value instanceof Uint8Array)) {
      throw new TypeError(
        "Cannot read the archive: the stream gave a chunk that is not a Uint8Array",
      );
    }
    if (value.length === 0) return;
    this.#chunks.push(value);
    this.#buffered += value.length;
  }

  /**
   * Reads `n` bytes without waiting when they are already buffered (in the
   * window or in chunks); undefined, reading nothing, when they are not.
   */
  readBuffered(n: number, scratch?: { buffer: ArrayBuffer }): Uint8Array | undefined {
    if (this.#byob === undefined) return this.#buffered >= n ? this.#take(n, scratch) : undefined;
    if (this.#ring !== undefined) {
      const slot = this.#ring[0];
      if (slot === undefined || slot.end - slot.start < n) {
        return undefined;
      }
      const view = new Uint8Array(slot.buffer, slot.start, n);
      slot.start += n;
      this.position += n;
      return view;
    }
    if (this.#winEnd - this.#winStart < n) return undefined;
    const out = scratch !== undefined && scratch.buffer.byteLength >= n
      ? new Uint8Array(scratch.buffer, 0, n)
      : new Uint8Array(n);
    out.set(new Uint8Array(this.#win!, this.#winStart, n));
    this.#winStart += n;
    this.position += n;
    return out;
  }

  /**
   * Looks at the first bytes for a compression magic. Uncompressed, they stay
   * buffered (in the window or the chunks) and the stream is read as before;
   * compressed, the stream (those bytes first) goes through its decoder and
   * the decoded bytes are read instead.
   */
  async #sniff(): Promise<void> {
    let head: Uint8Array;
    if (this.#byob !== undefined) {
      while (this.#winEnd - this.#winStart < COMPRESSION_MAGIC_SIZE && !this.#eof) {
        await this.#fillWindow();
      }
      head = new Uint8Array(
        this.#win ?? new ArrayBuffer(0),
        this.#winStart,
        this.#winEnd - this.#winStart,
      );
    } else {
      while (this.#buffered < COMPRESSION_MAGIC_SIZE && !this.#eof) await this.#pullChunk();
      head = new Uint8Array(Math.min(COMPRESSION_MAGIC_SIZE, this.#buffered));
      let at = 0;
      for (let i = this.#head; at < head.length; i++) {
        const k = Math.min(this.#chunks[i].length, head.length - at);
        head.set(this.#chunks[i].subarray(0, k), at);
        at += k;
      }
    }
    const compression = detectCompression(head);
    this.compression = compression;
    if (compression === "none") return;
    // The bytes already read, then the rest of the caller's stream.
    const first: Uint8Array[] = this.#byob !== undefined
      ? [head.slice()]
      : this.#chunks.slice(this.#head);
    const outer = this.#byob ?? this.#reader!;
    const byob = this.#byob;
    const reader = this.#reader;
    let eof = this.#eof;
    const raw = new ReadableStream<Uint8Array>({
      async pull(controller) {
        const next = first.shift();
        if (next !== undefined) return controller.enqueue(next);
        if (eof) return controller.close();
        const { done, value } = byob !== undefined
          ? await byob.read(new Uint8Array(256 * 1024))
          : await reader!.read();
        if (value !== undefined && value.length > 0) controller.enqueue(value);
        if (done) {
          eof = true;
          controller.close();
        }
      },
      cancel(reason) {
        return outer.cancel(reason);
      },
    }, { highWaterMark: 0 });
    this.#outer = outer;
    this.#byob = undefined;
    this.#reader = labelled(decodeStream(raw, compression, this.#options), compression)
      .getReader();
    this.#chunks = [];
    this.#head = 0;
    this.#buffered = 0;
    this.#win = undefined;
    this.#winStart = this.#winEnd = 0;
    this.#eof = false;
  }

  async #readByob(n: number, scratch?: { buffer: ArrayBuffer }): Promise<Uint8Array> {
    const reuse = scratch !== undefined && scratch.buffer.byteLength >= n;
    const { buffer, filled } = await this.#byobInto(
      reuse ? scratch.buffer : new ArrayBuffer(n),
      0,
      n,
    );
    if (reuse) scratch.buffer = buffer;
    this.position += filled;
    return new Uint8Array(buffer, 0, filled);
  }

  /** Reads bytes `from .. to` of `buffer` (or to the end of the stream); returns its new self. */
  async #byobInto(
    buffer: ArrayBuffer,
    from: number,
    to: number,
  ): Promise<{ buffer: ArrayBuffer; filled: number }> {
    let filled = from;
    while (filled < to && !this.#eof) {
      const { done, value } = await this.#byob!.read(new Uint8Array(buffer, filled, to - filled));
      if (value !== undefined) {
        buffer = value.buffer as ArrayBuffer; // the view's buffer was transferred
        filled += value.byteLength;
      }
      if (done) this.#eof = true;
    }
    return { buffer, filled };
  }

  /** `#readByob` through the read-ahead window. */
  async #readAhead(n: number, scratch?: { buffer: ArrayBuffer }): Promise<Uint8Array> {
    const reuse = scratch !== undefined && scratch.buffer.byteLength >= n;
    let buffer = reuse ? scratch.buffer : new ArrayBuffer(n);
    let filled = 0;
    for (;;) {
      const k = Math.min(n - filled, this.#winEnd - this.#winStart);
      if (k > 0) {
        new Uint8Array(buffer, filled, k).set(new Uint8Array(this.#win!, this.#winStart, k));
        this.#winStart += k;
        filled += k;
      }
      if (filled === n || this.#eof) break;
      if (n - filled >= AHEAD / 2) {
        // The rest is large: read it straight into place.
        ({ buffer, filled } = await this.#byobInto(buffer, filled, n));
        break;
      }
      await this.#fillWindow();
    }
    if (reuse) scratch.buffer = buffer;
    this.position += filled;
    return new Uint8Array(buffer, 0, filled);
  }

  /** Reads more of the stream into the window (one read). */
  async #fillWindow(): Promise<void> {
    let win = this.#win ?? new ArrayBuffer(AHEAD);
    if (this.#winStart > 0) {
      new Uint8Array(win).copyWithin(0, this.#winStart, this.#winEnd);
      this.#winEnd -= this.#winStart;
      this.#winStart = 0;
    }
    const { done, value } = await this.#byob!.read(
      new Uint8Array(win, this.#winEnd, AHEAD - this.#winEnd),
    );
    if (value !== undefined) {
      win = value.buffer as ArrayBuffer;
      this.#winEnd += value.byteLength;
    }
    this.#win = win;
    if (done) this.#eof = true;
  }

  /**
   * From now on, read a byte stream through the ring: the bytes `read` and
   * `readSplit` return are then valid only until the next call (their window
   * is read into again). Other streams are read as before.
   */
  useRing(): void {
    this.#ringWanted = true;
  }

  /** Whether reads go through the ring (a byte stream after `useRing`). */
  get ringActive(): boolean {
    return this.#ringWanted && this.#byob !== undefined && this.compression !== undefined;
  }

  /** Starts a stream read into a free window, unless one is running or the stream ended. */
  #pump(): void {
    if (this.#inflight !== undefined || this.#eof || this.#ringError !== undefined) return;
    const slot = this.#free.pop();
    if (slot === undefined) return;
    slot.start = slot.end = 0;
    const view = new Uint8Array(slot.buffer, 0, slot.buffer.byteLength);
    this.#inflight = this.#byob!.read(view).then(({ done, value }) => {
      this.#inflight = undefined;
      if (value !== undefined) {
        slot.buffer = value.buffer as ArrayBuffer; // the view's buffer was transferred
        slot.end = value.byteLength;
      }
      if (slot.end > 0) this.#ring!.push(slot);
      else this.#free.push(slot);
      if (done) this.#eof = true;
      this.#pump();
    }, (error) => {
      // Kept until the reader gets there, so that a read failing after the
      // consumer stopped is no unhandled rejection.
      this.#inflight = undefined;
      this.#ringError = error;
    });
  }

  /** Starts the ring: the window's unread bytes first, then the stream. */
  #startRing(): Slot[] {
    const ring: Slot[] = [];
    if (this.#winEnd > this.#winStart) {
      ring.push({ buffer: this.#win!, start: this.#winStart, end: this.#winEnd, recycle: false });
    }
    this.#win = undefined;
    this.#winStart = this.#winEnd = 0;
    this.#ring = ring;
    for (let i = 0; i < RING_SLOTS; i++) {
      this.#free.push({ buffer: new ArrayBuffer(RING_WINDOW), start: 0, end: 0, recycle: true });
    }
    this.#pump();
    return ring;
  }

  /**
   * Waits until the ring holds more than `count` filled windows, or the
   * stream ended; throws the stream's error once the windows before it are read.
   */
  async #await(count: number): Promise<void> {
    const ring = this.#ring!;
    while (ring.length <= count) {
      if (this.#inflight !== undefined) await this.#inflight;
      else if (this.#ringError !== undefined) {
        if (ring.length === 0) throw this.#ringError;
        return;
      } else if (this.#eof) return;
      else this.#pump();
    }
  }

  /** The first window with unread bytes, recycling those read; undefined at the end. */
  async #front(): Promise<Slot | undefined> {
    const ring = this.#ring ?? this.#startRing();
    for (;;) {
      const slot = ring[0];
      if (slot !== undefined && slot.start < slot.end) return slot;
      if (slot !== undefined) {
        ring.shift();
        if (slot.recycle) {
          this.#free.push(slot);
          this.#pump();
        }
        continue;
      }
      await this.#await(0);
      if (ring.length === 0) return undefined;
    }
  }

  /** `read` through the ring: a view of a window, or a copy when the bytes straddle windows. */
  async #ringRead(n: number, scratch?: { buffer: ArrayBuffer }): Promise<Uint8Array> {
    let slot = await this.#front();
    if (slot === undefined) return EMPTY;
    if (slot.end - slot.start >= n) {
      const view = new Uint8Array(slot.buffer, slot.start, n);
      slot.start += n;
      this.position += n;
      return view;
    }
    const out = scratch !== undefined && scratch.buffer.byteLength >= n
      ? new Uint8Array(scratch.buffer, 0, n)
      : new Uint8Array(n);
    let filled = 0;
    while (slot !== undefined) {
      const k = Math.min(n - filled, slot.end - slot.start);
      out.set(new Uint8Array(slot.buffer, slot.start, k), filled);
      slot.start += k;
      filled += k;
      if (filled === n) break;
      slot = await this.#front();
    }
    this.position += filled;
    return out.subarray(0, filled);
  }

  /**
   * Reads `n` bytes (fewer at the end) as two pieces, to be taken in order:
   * views of two windows of the ring when the bytes straddle them, so nothing
   * is copied; else the bytes and an empty piece. Valid until the next call.
   */
  async readSplit(
    n: number,
    scratch?: { buffer: ArrayBuffer },
  ): Promise<[Uint8Array, Uint8Array]> {
    if (!this.ringActive || n > MAX_EXTENT_SIZE) return [await this.read(n, scratch), EMPTY];
    return await this.#ringSplit(n, scratch);
  }

  /**
   * Reads `n` bytes (fewer at the end) as pieces to be taken in order, copying
   * nothing: views of the ring's windows, or of the chunks of a stream that
   * is not a byte stream (a decoder's output); else one piece read as `read`
   * does. Valid until the next call.
   */
  async readPieces(n: number, scratch?: { buffer: ArrayBuffer }): Promise<Uint8Array[]> {
    if (this.compression === undefined) await this.#sniff();
    if (this.ringActive && n <= MAX_EXTENT_SIZE) {
      const [a, b] = await this.#ringSplit(n, scratch);
      return b.length === 0 ? [a] : [a, b];
    }
    if (this.#byob !== undefined) return [await this.read(n, scratch)];
    while (this.#buffered < n && !this.#eof) await this.#pullChunk();
    let left = Math.min(n, this.#buffered);
    this.position += left;
    this.#buffered -= left;
    const pieces: Uint8Array[] = [];
    while (left > 0) {
      const chunk = this.#chunks[this.#head];
      const k = Math.min(chunk.length, left);
      pieces.push(chunk.subarray(0, k));
      if (k === chunk.length) this.#dropFirst();
      else this.#chunks[this.#head] = chunk.subarray(k);
      left -= k;
    }
    return pieces;
  }

  async #ringSplit(
    n: number,
    scratch?: { buffer: ArrayBuffer },
  ): Promise<[Uint8Array, Uint8Array]> {
    const slot = await this.#front();
    if (slot === undefined) return [EMPTY, EMPTY];
    const have = slot.end - slot.start;
    if (have >= n) return [await this.#ringRead(n, scratch), EMPTY];
    // The next window, without recycling this one (its bytes are handed out).
    await this.#await(1);
    const next = this.#ring![1];
    if (next !== undefined) {
      if (next.end - next.start >= n - have) {
        const first = new Uint8Array(slot.buffer, slot.start, have);
        const second = new Uint8Array(next.buffer, next.start, n - have);
        slot.start = slot.end;
        next.start += n - have;
        this.position += n;
        return [first, second];
      }
    }
    return [await this.#ringRead(n, scratch), EMPTY];
  }

  #take(n: number, scratch?: { buffer: ArrayBuffer }): Uint8Array {
    this.position += n;
    this.#buffered -= n;
    const first = this.#chunks[this.#head];
    if (first !== undefined && first.length >= n) {
      if (first.length === n) this.#dropFirst();
      else this.#chunks[this.#head] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = scratch !== undefined && scratch.buffer.byteLength >= n
      ? new Uint8Array(scratch.buffer, 0, n)
      : new Uint8Array(n);
    let at = 0;
    while (at < n) {
      const chunk = this.#chunks[this.#head];
      const k = Math.min(chunk.length, n - at);
      out.set(chunk.subarray(0, k), at);
      at += k;
      if (k === chunk.length) this.#dropFirst();
      else this.#chunks[this.#head] = chunk.subarray(k);
    }
    return out;
  }

  #dropFirst(): void {
    this.#chunks[this.#head++] = EMPTY; // let it be collected
    if (this.#head === this.#chunks.length) {
      this.#chunks = [];
      this.#head = 0;
    } else if (this.#head >= 1024 && this.#head * 2 >= this.#chunks.length) {
      this.#chunks = this.#chunks.slice(this.#head);
      this.#head = 0;
    }
  }

  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    const reader = this.#byob ?? this.#reader!;
    if (!this.#eof) await reader.cancel().catch(() => {});
    reader.releaseLock();
    this.#outer?.releaseLock();
  }

  async cancel(reason?: unknown): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    const reader = this.#byob ?? this.#reader!;
    try {
      await reader.cancel(reason);
    } finally {
      reader.releaseLock();
      this.#outer?.releaseLock();
    }
  }
}

/**
 * A decoder's failure as `<compression> decompression failed - <why>`: a
 * SyntaxError (corrupt data); TypeErrors (no decoder) and RangeErrors (a
 * limit, such as a zstd window too large) keep their class and message.
 */
function labelled(
  readable: ReadableStream<Uint8Array>,
  compression: Compression,
): ReadableStream<Uint8Array> {
  return mapStreamErrors(readable, (e) => {
    if (e instanceof TypeError || e instanceof RangeError) return e;
    const why = e instanceof Error ? e.message : String(e);
    return new SyntaxError(`${compression} decompression failed - ${why}`, { cause: e });
  });
}

/**
 * `readable` read one chunk per pull (nothing read ahead), with each error
 * it raises replaced by what `map` returns; cancelling cancels `readable`.
 * Shared with the CLI's archive input (`src/cli/_archive_input.ts`).
 */
export function mapStreamErrors(
  readable: ReadableStream<Uint8Array>,
  map: (error: unknown) => unknown,
): ReadableStream<Uint8Array> {
  let byob: ReadableStreamBYOBReader | undefined;
  try {
    byob = readable.getReader({ mode: "byob" });
  } catch {
    // Not a byte stream.
  }
  if (byob !== undefined) {
    // A byte stream stays one, so that its reader's buffers are filled in
    // place (a decoder writing into them allocates nothing per chunk).
    const source = byob;
    return new ReadableStream({
      type: "bytes",
      autoAllocateChunkSize: 256 * 1024,
      async pull(controller) {
        try {
          await forwardByob(controller, source);
        } catch (e) {
          throw map(e);
        }
      },
      cancel(reason) {
        return source.cancel(reason);
      },
    });
  }
  const reader = readable.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      let r: ReadableStreamReadResult<Uint8Array>;
      try {
        r = await reader.read();
      } catch (e) {
        throw map(e);
      }
      if (r.done) controller.close();
      else controller.enqueue(r.value);
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}
