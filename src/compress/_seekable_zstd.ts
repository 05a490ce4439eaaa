// zstd compression of a stream as independent frames, in Workers or in this
// thread, with a seek table at the end in the zstd seekable format
// (facebook/zstd contrib/seekable_format/zstd_seekable_compression_format.md).
//
// Each frame covers a fixed span of the input (FRAME_SIZE bytes, the last one
// less), set by byte position and never by the number of workers, so the
// output is the same bytes whatever the thread count. Any zstd decoder reads
// the frames one after the other (`zstd -d` decodes concatenated frames and
// skips skippable ones); a seekable reader finds each frame through the table.
//
// With workers, this thread compresses a frame itself whenever every worker
// is busy, so `n` workers and this thread keep `n + 1` cores busy.
//
// Memory is bounded by bytes: at most `workers + 1` frames are in flight (an
// input buffer and an output buffer each) and one is being filled, whatever
// the stream's length. Buffers are reused: input buffers when their frame is
// done, output buffers when the consumer hands a chunk back (`recycle`).
// The seek table holds 8 bytes per frame (2 KiB per GiB of input at 4 MiB
// frames). Private to the library.
import { WorkerPool } from "../vma/_worker_pool.ts";
import type { ZstdFrameEncoder } from "./_zstd_frame.ts";
import type { ZstdJob, ZstdResult } from "./_zstd_worker.ts";

/** Uncompressed bytes per frame (see the README's figures for the choice). */
export const FRAME_SIZE = 2 * 1024 * 1024;
/** The spec's limits on the number of frames and one frame's size. */
const MAX_FRAMES = 0x8000000;
const MAX_FRAME_SIZE = 8 * 1024 * 1024;

/** The skippable frame magic the seek table uses. */
export const SEEK_TABLE_MAGIC = 0x184d2a5e;
/** The magic at the very end of a seekable zstd stream. */
export const SEEKABLE_MAGIC = 0x8f92eab1;

/** The most bytes a frame of `length` bytes compresses to (as in _zstd_frame.ts). */
function zstdFrameBound(length: number): number {
  return length + (length >>> 8) + 1024;
}

/** Options of {@linkcode SeekableZstdCompressor}. */
export interface SeekableZstdOptions {
  /** zstd level, 1 to 22. */
  level: number;
  /** Workers to compress in; 0 compresses in this thread. */
  workers: number;
  /** Uncompressed bytes per frame (tests use small ones). */
  frameSize?: number;
  /** The worker module (tests give a failing one). */
  workerUrl?: URL;
}

interface InFlight {
  done: boolean;
  promise: Promise<ZstdResult>;
  result?: ZstdResult;
  length: number;
}

/**
 * A TransformStream from bytes to a seekable zstd stream. Call `terminate()`
 * when the stream is given up, so that no worker outlives it (a stream that
 * ends or errors stops its workers itself).
 */
export class SeekableZstdCompressor {
  readonly #level: number;
  readonly #workers: number;
  readonly #frameSize: number;
  readonly #url: URL;
  #pool: WorkerPool<ZstdJob, ZstdResult> | undefined;
  #frame: Uint8Array | undefined;
  #used = 0;
  #spare: ArrayBuffer[] = [];
  /** Output buffers handed back, and those lent out in chunks. */
  #spareOut: ArrayBuffer[] = [];
  #lent = new WeakSet<ArrayBuffer>();
  #encoder: ZstdFrameEncoder | undefined;
  #inFlight: InFlight[] = [];
  /** Seek table entries, 8 bytes each, grown by doubling. */
  #table = new Uint8Array(64 * 8);
  #frames = 0;
  #stream: TransformStream<Uint8Array, Uint8Array>;

  constructor(options: SeekableZstdOptions) {
    const { level, workers, frameSize = FRAME_SIZE } = options;
    if (!Number.isSafeInteger(level) || level < 1 || level > 22) {
      throw new RangeError(`The zstd level must be an integer from 1 to 22, got ${level}`);
    }
    if (!Number.isSafeInteger(workers) || workers < 0) {
      throw new RangeError(`The number of workers must be 0 or more, got ${workers}`);
    }
    if (!Number.isSafeInteger(frameSize) || frameSize < 1 || frameSize > MAX_FRAME_SIZE) {
      throw new RangeError(
        `The zstd frame size must be from 1 to ${MAX_FRAME_SIZE} bytes, got ${frameSize}`,
      );
    }
    this.#level = level;
    this.#workers = workers;
    this.#frameSize = frameSize;
    this.#url = options.workerUrl ?? new URL("./_zstd_worker.ts", import.meta.url);
    this.#stream = new TransformStream<Uint8Array, Uint8Array>({
      transform: (chunk, controller) => this.#transform(chunk, controller),
      flush: (controller) => this.#flush(controller),
      cancel: () => this.terminate(),
    });
  }

  /** The uncompressed stream goes in here. */
  get writable(): WritableStream<Uint8Array> {
    return this.#stream.writable;
  }

  /** The seekable zstd stream comes out here. */
  get readable(): ReadableStream<Uint8Array> {
    return this.#stream.readable;
  }

  /** Stops the workers, if any (pending frames are dropped). */
  terminate(): void {
    this.#pool?.terminate();
    this.#encoder?.close();
    this.#encoder = undefined;
  }

  /**
   * Hands a chunk of `readable` back once the consumer is done with it, so
   * its buffer holds a later frame; optional, and other chunks are ignored.
   */
  recycle(chunk: Uint8Array): void {
    const buffer = chunk.buffer as ArrayBuffer;
    if (!this.#lent.has(buffer)) return;
    this.#lent.delete(buffer);
    if (this.#spareOut.length <= this.#workers + 2) this.#spareOut.push(buffer);
  }

  async #transform(
    chunk: Uint8Array,
    controller: TransformStreamDefaultController<Uint8Array>,
  ): Promise<void> {
    try {
      let pos = 0;
      while (pos < chunk.length) {
        const frame = this.#frame ??= this.#buffer();
        const n = Math.min(this.#frameSize - this.#used, chunk.length - pos);
        frame.set(chunk.subarray(pos, pos + n), this.#used);
        this.#used += n;
        pos += n;
        if (this.#used === this.#frameSize) await this.#dispatch(controller);
      }
      this.#emitDone(controller);
    } catch (e) {
      this.terminate();
      throw e;
    }
  }

  async #flush(controller: TransformStreamDefaultController<Uint8Array>): Promise<void> {
    try {
      if (this.#used > 0) await this.#dispatch(controller);
      while (this.#inFlight.length > 0) await this.#emitFirst(controller);
      controller.enqueue(this.#seekTable());
    } finally {
      this.terminate();
    }
  }

  /** A frame buffer: a spare one, or a new one. */
  #buffer(): Uint8Array {
    return new Uint8Array(this.#spare.pop() ?? new ArrayBuffer(this.#frameSize));
  }

  /** An output buffer for a frame: a spare one, or a new one. */
  #outBuffer(): ArrayBuffer {
    return this.#spareOut.pop() ?? new ArrayBuffer(zstdFrameBound(this.#frameSize));
  }

  /** Compresses the current frame: here, or on a worker (waiting while too many are in flight). */
  async #dispatch(controller: TransformStreamDefaultController<Uint8Array>): Promise<void> {
    const frame = this.#frame!;
    const length = this.#used;
    this.#frame = undefined;
    this.#used = 0;
    if (this.#workers === 0) {
      const output = this.#outBuffer();
      const frameLength = await this.#encodeHere(frame.subarray(0, length), output);
      this.#spare.push(frame.buffer as ArrayBuffer);
      this.#emit(controller, output, frameLength, length);
      return;
    }
    // Bounded by bytes: at most one frame per worker in flight, and one more
    // that this thread compressed while they were busy.
    while (this.#inFlight.length > this.#workers) await this.#emitFirst(controller);
    this.#pool ??= new WorkerPool<ZstdJob, ZstdResult>(this.#url, this.#workers);
    if (this.#pool.pending >= this.#workers) {
      // Every worker is busy: this thread compresses the frame itself.
      const output = this.#outBuffer();
      const frameLength = await this.#encodeHere(frame.subarray(0, length), output);
      const result = { input: frame.buffer as ArrayBuffer, output, frameLength };
      this.#inFlight.push({ done: true, length, result, promise: Promise.resolve(result) });
      return;
    }
    const input = frame.buffer as ArrayBuffer;
    const output = this.#outBuffer();
    const entry: InFlight = {
      done: false,
      length,
      promise: this.#pool.run({ input, length, output, level: this.#level }, [input, output]),
    };
    entry.promise.then((result) => {
      entry.done = true;
      entry.result = result;
    }, () => {});
    this.#inFlight.push(entry);
  }

  /** Compresses `input` into `output` in this thread; returns the frame's length. */
  async #encodeHere(input: Uint8Array, output: ArrayBuffer): Promise<number> {
    // Loaded only when used: a thread whose workers keep up never needs node:zlib.
    this.#encoder ??= new (await import("./_zstd_frame.ts")).ZstdFrameEncoder(this.#level);
    return this.#encoder.encode(input, new Uint8Array(output));
  }

  /** Emits the frames at the head of the queue that are already compressed. */
  #emitDone(controller: TransformStreamDefaultController<Uint8Array>): void {
    while (this.#inFlight.length > 0 && this.#inFlight[0].done) {
      const entry = this.#inFlight.shift()!;
      this.#emitResult(controller, entry.result!, entry.length);
    }
  }

  async #emitFirst(controller: TransformStreamDefaultController<Uint8Array>): Promise<void> {
    const entry = this.#inFlight[0];
    const result = await entry.promise;
    this.#inFlight.shift();
    this.#emitResult(controller, result, entry.length);
    this.#emitDone(controller);
  }

  #emitResult(
    controller: TransformStreamDefaultController<Uint8Array>,
    result: ZstdResult,
    length: number,
  ): void {
    this.#spare.push(result.input);
    this.#emit(controller, result.output, result.frameLength, length);
  }

  /** Enqueues the frame in `output[0 .. frameLength)`, of `length` bytes of input. */
  #emit(
    controller: TransformStreamDefaultController<Uint8Array>,
    output: ArrayBuffer,
    frameLength: number,
    length: number,
  ): void {
    const frame = new Uint8Array(output, 0, frameLength);
    if (this.#frames === MAX_FRAMES) {
      throw new RangeError(`A seekable zstd stream holds at most ${MAX_FRAMES} frames`);
    }
    if ((this.#frames + 1) * 8 > this.#table.length) {
      const table = new Uint8Array(this.#table.length * 2);
      table.set(this.#table);
      this.#table = table;
    }
    const view = new DataView(this.#table.buffer);
    view.setUint32(this.#frames * 8, frame.length, true);
    view.setUint32(this.#frames * 8 + 4, length, true);
    this.#frames++;
    this.#lent.add(output);
    controller.enqueue(frame);
  }

  /** The seek table: a skippable frame of entries and the 9-byte footer. */
  #seekTable(): Uint8Array {
    const entries = this.#frames * 8;
    const out = new Uint8Array(8 + entries + 9);
    const view = new DataView(out.buffer);
    view.setUint32(0, SEEK_TABLE_MAGIC, true);
    view.setUint32(4, entries + 9, true);
    out.set(this.#table.subarray(0, entries), 8);
    view.setUint32(8 + entries, this.#frames, true);
    out[8 + entries + 4] = 0; // descriptor: no checksums
    view.setUint32(8 + entries + 5, SEEKABLE_MAGIC, true);
    return out;
  }
}
