// Undoing an archive's compression, in any runtime: zstd and gzip through
// node:zlib where it exists (Deno, Node, Bun; loaded by a dynamic import so
// that browsers can load the library), else through `DecompressionStream`
// (gzip everywhere; zstd where a browser has it), else through the caller's
// zstd decoder; lzop through our own decoder (_lzop_decoder.ts). Private to the
// library; the CLI labels its errors itself.
//
// Why no npm zstd decoder (such as fzstd) for every runtime: it would be the
// library's only npm import, and Deno installs every npm package of the
// lockfile as soon as the graph needs one (fast-check and fflate, test-only,
// included), so a first run would fetch them. It would also be slower:
// measured 2026-12 in Deno 2.9.6 on a 247 MiB .vma.zst (half random, half
// text, 128 MiB compressed), fzstd 0.1.1 (last release 2024-12) decoded at
// 73-106 MiB/s, node:zlib at 320-596 MiB/s (the machine is shared: ranges of
// two runs). Browsers without a zstd DecompressionStream take a decoder
// through the `zstd` option instead.
import type { Compression, DecompressionOptions } from "./compression.ts";
import { LzopDecoder } from "./_lzop_decoder.ts";
import { type ZstdFramePiece, ZstdFrameScanner } from "./_zstd_frames.ts";
import { nodeTransformToWeb } from "./_node_transform.ts";
import { type ZlibHandle, zlibHandle } from "./_zlib_handle.ts";
import { fillingByteStream, forwardByob } from "./_byte_stream.ts";

/** The node:zlib module's type. */
export type Zlib = typeof import("node:zlib");

/** Output chunk size of the node:zlib decoders. */
const CHUNK = 256 * 1024;

let zlibPromise: Promise<Zlib | undefined> | undefined;

/** node:zlib, or undefined where the runtime has none (browsers); loaded once. */
export function loadZlib(): Promise<Zlib | undefined> {
  // A variable specifier: browser bundlers (webpack, Vite) leave it alone
  // instead of failing to resolve node:zlib. `deno publish` warns that it
  // cannot analyze it; a node: built-in needs no rewriting.
  const name = "node:zlib";
  // Browsers have no `process`: importing would only log a failed fetch of
  // "node:zlib" on the page's console.
  const runtime = (globalThis as { process?: { versions?: { node?: unknown } } }).process;
  if (typeof runtime?.versions?.node !== "string") return Promise.resolve(undefined);
  zlibPromise ??= import(name).then((m: Zlib) => m, () => undefined);
  return zlibPromise;
}

/** Whether `DecompressionStream` takes `format` here. */
function hasDecompressionStream(format: string): boolean {
  try {
    new DecompressionStream(format as CompressionFormat);
    return true;
  } catch {
    return false;
  }
}

type Pair = { writable: WritableStream<Uint8Array>; readable: ReadableStream<Uint8Array> };

/** A web DecompressionStream typed as the byte pair the pipes take. */
function webDecoder(format: string): Pair {
  return new DecompressionStream(format as CompressionFormat) as unknown as Pair;
}

/** The zstd frame decoder factory this runtime offers, or a TypeError. */
async function zstdDecoder(options: DecompressionOptions): Promise<() => Pair> {
  const custom = options.zstd;
  if (custom !== undefined) return () => custom() as Pair;
  const zlib = await loadZlib();
  if (zlib !== undefined && typeof zlib.createZstdDecompress === "function") {
    return () => nodeTransformToWeb(zlib.createZstdDecompress({ chunkSize: CHUNK }));
  }
  if (hasDecompressionStream("zstd")) {
    return () => webDecoder("zstd");
  }
  throw new TypeError(
    "Cannot read a zstd-compressed archive: this runtime has no zstd decoder " +
      "(neither node:zlib's nor DecompressionStream's); pass one as the zstd option",
  );
}

/** `raw` decompressed as `compression` says; the decoders' own errors. */
export function decodeStream(
  raw: ReadableStream<Uint8Array>,
  compression: Compression,
  options: DecompressionOptions = {},
): ReadableStream<Uint8Array> {
  switch (compression) {
    case "none":
      return raw;
    case "gzip":
      return gunzip(raw);
    case "zstd":
      return zstdDecompress(raw, options);
    case "lzop":
      return lzopBytes(raw);
  }
}

/**
 * Every gzip member of `raw`, as `gzip -dc` reads them, as a byte stream:
 * node:zlib's gunzip handle writes into the reader's buffers where it is
 * reachable (it reads member after member itself); elsewhere node:zlib's
 * decoder stream, or the runtime's DecompressionStream (one member).
 */
function gunzip(raw: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
  return byteStream(raw, async () => {
    const zlib = await loadZlib();
    const handle = zlib === undefined ? undefined : zlibHandle(zlib.createGunzip());
    if (handle !== undefined) return { stream: decodeInto(raw, handle, undefined), byob: true };
    const decoder = zlib !== undefined
      ? nodeTransformToWeb(zlib.createGunzip({ chunkSize: CHUNK }))
      : webDecoder("gzip");
    return { stream: raw.pipeThrough(decoder), byob: false };
  });
}

/**
 * Decodes every frame of a zstd stream, as `zstd -dc` does (Deno's node:zlib
 * decoder stream stops after the first frame and ignores the rest), as a
 * byte stream.
 */
function zstdDecompress(
  raw: ReadableStream<Uint8Array>,
  options: DecompressionOptions,
): ReadableStream<Uint8Array> {
  if (options.zstd !== undefined) return zstdDecompressStreams(raw, options);
  return byteStream(raw, async () => {
    const zlib = await loadZlib();
    const handle = typeof zlib?.createZstdDecompress === "function"
      ? zlibHandle(zlib.createZstdDecompress())
      : undefined;
    if (handle !== undefined) {
      return { stream: decodeInto(raw, handle, new ZstdFrameScanner()), byob: true };
    }
    return { stream: zstdDecompressStreams(raw, options), byob: false };
  });
}

/**
 * A byte stream over the stream `open` makes on the first read: read with
 * the caller's buffers when that stream is `byob` (a decoder writing into
 * them allocates nothing per chunk), else its chunks copied into them.
 */
function byteStream(
  raw: ReadableStream<Uint8Array>,
  open: () => Promise<{ stream: ReadableStream<Uint8Array>; byob: boolean }>,
): ReadableStream<Uint8Array> {
  let inner: ReadableStreamDefaultReader<Uint8Array> | ReadableStreamBYOBReader | undefined;
  let byob = false;
  return new ReadableStream({
    type: "bytes",
    autoAllocateChunkSize: CHUNK,
    async pull(controller) {
      if (inner === undefined) {
        const opened = await open();
        byob = opened.byob;
        inner = byob ? opened.stream.getReader({ mode: "byob" }) : opened.stream.getReader();
      }
      if (byob) return forwardByob(controller, inner as ReadableStreamBYOBReader);
      const request = controller.byobRequest!;
      const view = request.view as Uint8Array;
      const r = await (inner as ReadableStreamDefaultReader<Uint8Array>).read();
      if (r.done) {
        controller.close();
        request.respond(0);
        return;
      }
      // The rest of a chunk larger than the view waits in the queue.
      const n = Math.min(r.value.length, view.byteLength);
      view.set(r.value.subarray(0, n));
      request.respond(n);
      if (n < r.value.length) controller.enqueue(r.value.slice(n));
    },
    cancel(reason) {
      return inner?.cancel(reason) ?? raw.cancel(reason);
    },
  });
}

/**
 * Reads `raw` into one buffer, reused: each chunk is valid until the next
 * read. A stream that is not a byte stream is read chunk by chunk as it
 * comes.
 */
function reusingReader(raw: ReadableStream<Uint8Array>): {
  read(): Promise<Uint8Array | undefined>;
  cancel(reason: unknown): Promise<void>;
} {
  let byob: ReadableStreamBYOBReader | undefined;
  try {
    byob = raw.getReader({ mode: "byob" });
  } catch {
    // Not a byte stream: its chunks are taken as they come.
  }
  const input = byob ?? raw.getReader();
  let buffer = new ArrayBuffer(CHUNK);
  return {
    async read() {
      if (byob === undefined) {
        const r = await (input as ReadableStreamDefaultReader<Uint8Array>).read();
        return r.done ? undefined : r.value;
      }
      const r = await byob.read(new Uint8Array(buffer));
      if (r.done) return undefined;
      buffer = r.value.buffer as ArrayBuffer;
      return r.value;
    },
    cancel: (reason) => input.cancel(reason),
  };
}

/**
 * An lzop stream decoded into the reader's buffers (a byte stream): each block
 * is decoded into a buffer the decoder reuses, then copied out, so that memory
 * is the largest block (256 KiB as `lzop` writes them, at most 64 MiB)
 * whatever the stream's length. LzopDecompressionStream, which hands every
 * block out as a chunk of its own, allocated one per block: `vma verify` of a
 * 1 GiB `.vma.lzo` peaked at 178 MB, waiting for the garbage collector.
 */
function lzopBytes(raw: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
  const decoder = new LzopDecoder({ reuse: true });
  // The decoder holds no view of a chunk once its blocks are all out.
  const input = reusingReader(raw);
  /** The blocks of the last chunk read; each is valid until the next is asked for. */
  let blocks: Iterator<Uint8Array> | undefined;
  let block: Uint8Array | undefined;
  let used = 0;
  let ended = false;
  return fillingByteStream({
    chunkSize: CHUNK,
    async fill(view) {
      let filled = 0;
      while (filled < view.length) {
        if (block !== undefined) {
          const n = Math.min(block.length - used, view.length - filled);
          view.set(block.subarray(used, used + n), filled);
          filled += n;
          used += n;
          if (used === block.length) block = undefined;
          continue;
        }
        const next = blocks?.next();
        if (next !== undefined && !next.done) {
          block = next.value;
          used = 0;
          continue;
        }
        blocks = undefined;
        if (ended) break;
        const chunk = await input.read();
        if (chunk === undefined) {
          decoder.finish();
          ended = true;
        } else if (!(chunk instanceof Uint8Array)) {
          throw new TypeError("Cannot decompress a chunk that is not a Uint8Array");
        } else {
          blocks = decoder.push(chunk);
        }
      }
      return filled;
    },
    fail(error) {
      input.cancel(error).catch(() => {});
    },
    cancel: (reason) => input.cancel(reason),
  });
}

/** zlib's Z_FINISH: with no input left, it reports a stream cut short. */
const Z_FINISH = 4;

/**
 * `raw` decoded by `handle` straight into the reader's buffers (a byte
 * stream: BYOB reads, or chunks of CHUNK bytes), the compressed bytes read
 * into one reused buffer. With a zstd `scanner`, the frames are split apart
 * (skippable frames dropped, anything else refused) and the decoder is reset
 * at each one, as `zstd -dc` decodes them all; without (gzip), the handle
 * reads member after member and is told the input's end, so that a member
 * cut short fails. Memory: the decoder's window, whatever the stream's length.
 */
function decodeInto(
  raw: ReadableStream<Uint8Array>,
  handle: ZlibHandle,
  scanner: ZstdFrameScanner | undefined,
): ReadableStream<Uint8Array> {
  const input = reusingReader(raw);
  let pieces: ZstdFramePiece[] = [];
  let used = 0;
  let inFrame = false;
  /** gzip: the handle's stream has ended; only padding may follow. */
  let trailing = false;
  /** 0: reading, 1: the input ended, 2: the decoder was told so (and had no more). */
  let ended = 0;
  const done = (error?: unknown) => {
    handle.close();
    if (error !== undefined) input.cancel(error).catch(() => {});
  };
  return fillingByteStream({
    chunkSize: CHUNK,
    async fill(view) {
      let filled = 0;
      while (filled < view.length) {
        if (pieces.length === 0) {
          if (ended === 2) break;
          if (ended === 1 && trailing) {
            ended = 2;
            continue;
          }
          if (ended === 1) {
            // gzip: Z_FINISH with no input fails a member cut short.
            const outLength = view.length - filled;
            handle.writeSync(Z_FINISH, view, 0, 0, view, filled, outLength);
            filled += outLength - handle.state[0];
            if (handle.state[0] > 0) ended = 2;
            continue;
          }
          const chunk = await input.read();
          if (chunk === undefined) {
            scanner?.finish();
            ended = scanner === undefined ? 1 : 2;
            continue;
          }
          pieces = scanner?.push(chunk) ?? [{ bytes: chunk, end: false }];
          used = 0;
          continue;
        }
        const piece = pieces[0];
        if (trailing) {
          // After the last gzip member only zeros may follow (padding).
          if (piece.bytes.subarray(used).some((b) => b !== 0)) {
            throw new Error("unexpected data after the end of the compressed stream");
          }
          pieces.shift();
          used = 0;
          continue;
        }
        if (scanner !== undefined && !inFrame) {
          handle.reset();
          inFrame = true;
        }
        const inLength = piece.bytes.length - used;
        const outLength = view.length - filled;
        handle.writeSync(0, piece.bytes, used, inLength, view, filled, outLength);
        const [freeOut, leftIn] = handle.state;
        if (leftIn > 0 && leftIn === inLength && freeOut === outLength) {
          // Nothing read, nothing written: the decoder's stream has ended.
          if (scanner !== undefined) {
            throw new Error("the zstd decoder stopped before the end of its frame");
          }
          trailing = true;
          continue;
        }
        filled += outLength - freeOut;
        used += inLength - leftIn;
        // The piece is read and the decoder has nothing more to give.
        if (leftIn === 0 && freeOut > 0) {
          if (piece.end) inFrame = false;
          pieces.shift();
          used = 0;
        }
      }
      if (filled === 0) done();
      return filled;
    },
    fail: (error) => done(error),
    cancel(reason) {
      done(reason ?? new TypeError("The stream was cancelled"));
    },
  });
}

/**
 * Decodes every frame of a zstd stream through decoder streams (the
 * caller's, a browser's DecompressionStream, or node:zlib's stream where its
 * handle is out of reach): the frames are split apart without decoding
 * (`ZstdFrameScanner`, which drops skippable frames and refuses anything
 * else), and each goes through a fresh decoder. One decoder at a time, fed a
 * piece of at most 32 blocks (4 MiB of output) at a time with backpressure,
 * so memory stays bounded.
 */
function zstdDecompressStreams(
  raw: ReadableStream<Uint8Array>,
  options: DecompressionOptions,
): ReadableStream<Uint8Array> {
  const scanner = new ZstdFrameScanner();
  const input = raw.getReader();
  /** The decoders' outputs, in frame order; the first is being read. */
  const outputs: ReadableStreamDefaultReader<Uint8Array>[] = [];
  let writer: WritableStreamDefaultWriter<Uint8Array> | undefined;
  let fed = false;
  let failure: { error: unknown } | undefined;
  let wake: (() => void) | undefined;
  const notify = () => {
    wake?.();
    wake = undefined;
  };
  const stop = (error: unknown) => {
    if (failure === undefined) failure = { error };
    writer?.abort(error).catch(() => {});
    writer = undefined;
    input.cancel(error).catch(() => {});
    // A destroyed decoder's output never ends: end the reads waiting on it.
    for (const output of outputs) output.cancel(error).catch(() => {});
    notify();
  };

  const feed = async () => {
    const decoderFor = await zstdDecoder(options);
    for (;;) {
      const r = await input.read();
      if (r.done) break;
      for (const piece of scanner.push(r.value)) {
        if (writer === undefined) {
          const decoder = decoderFor();
          writer = decoder.writable.getWriter();
          outputs.push(decoder.readable.getReader());
          notify();
        }
        if (piece.bytes.length > 0) await writer.write(piece.bytes);
        if (piece.end) {
          await writer.close();
          writer = undefined;
        }
      }
    }
    scanner.finish();
  };
  feed().then(() => {
    fed = true;
    notify();
  }, stop);

  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      for (;;) {
        if (failure !== undefined) throw failure.error;
        const output = outputs[0];
        if (output !== undefined) {
          let r: ReadableStreamReadResult<Uint8Array>;
          try {
            r = await output.read();
          } catch (e) {
            stop(e);
            throw e;
          }
          if (!r.done) {
            controller.enqueue(r.value);
            return;
          }
          outputs.shift();
          continue;
        }
        if (fed) {
          controller.close();
          return;
        }
        await new Promise<void>((resolve) => (wake = resolve));
      }
    },
    cancel(reason) {
      stop(reason ?? new TypeError("The stream was cancelled"));
    },
  }, { highWaterMark: 0 });
}
