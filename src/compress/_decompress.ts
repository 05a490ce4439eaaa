// Undoing an archive's compression, in any runtime: zstd and gzip through
// node:zlib where it exists (Deno, Node, Bun; loaded by a dynamic import so
// that browsers can load the library), else through `DecompressionStream`
// (gzip everywhere; zstd where a browser has it), else through the caller's
// zstd decoder; lzop through our LzopDecompressionStream. Private to the
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
import { LzopDecompressionStream } from "./lzop_decompression_stream.ts";
import { ZstdFrameScanner } from "./_zstd_frames.ts";
import { nodeTransformToWeb } from "./_node_transform.ts";

type Zlib = typeof import("node:zlib");

/** Output chunk size of the node:zlib decoders. */
const CHUNK = 256 * 1024;

let zlibPromise: Promise<Zlib | undefined> | undefined;

/** node:zlib, or undefined where the runtime has none (browsers). */
function loadZlib(): Promise<Zlib | undefined> {
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

/** A readable whose source is made on the first pull (after an async set-up). */
function deferred(make: () => Promise<ReadableStream<Uint8Array>>): ReadableStream<Uint8Array> {
  let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      reader ??= (await make()).getReader();
      const r = await reader.read();
      if (r.done) controller.close();
      else controller.enqueue(r.value);
    },
    cancel(reason) {
      return reader?.cancel(reason);
    },
  }, { highWaterMark: 0 });
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
      return deferred(async () => {
        // node:zlib's gunzip reads every member (gzip -c a b > c); Deno 2.9's
        // DecompressionStream fails after the first one.
        const zlib = await loadZlib();
        const decoder = zlib !== undefined
          ? nodeTransformToWeb(zlib.createGunzip({ chunkSize: CHUNK }))
          : webDecoder("gzip");
        return raw.pipeThrough(decoder);
      });
    case "zstd":
      return zstdDecompress(raw, options);
    case "lzop":
      return raw.pipeThrough(new LzopDecompressionStream());
  }
}

/**
 * Decodes every frame of a zstd stream, as `zstd -dc` does (Deno's node:zlib
 * decoder stops after the first frame and ignores the rest): the frames are
 * split apart without decoding (`ZstdFrameScanner`, which drops skippable
 * frames and refuses anything else), and each goes through a fresh decoder.
 * One decoder at a time, fed a piece of at most 32 blocks (4 MiB of output)
 * at a time with backpressure, so memory stays bounded.
 */
function zstdDecompress(
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
