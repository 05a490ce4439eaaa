// Opening an archive for reading: a file or `-` (stdin), read in large pieces,
// with zstd/gzip/lzop compression detected by magic bytes and undone.
import { CliError, describeError } from "./_errors.ts";
import { nodeTransformToWeb } from "./_node_stream.ts";
import { createGunzip, createZstdDecompress } from "node:zlib";
import { LzopDecompressionStream } from "../compress/lzop_decompression_stream.ts";
import { ZstdFrameScanner } from "../compress/_zstd_frames.ts";

/** Bytes per read from a file: large pieces keep per-chunk overhead small. */
export const READ_CHUNK_SIZE = 4 * 1024 * 1024;
/** The first read, to sniff the compression magic. */
const SNIFF_SIZE = 65536;
/** Pipes return at most a pipe buffer per read; gather at least this much per chunk. */
const PIPE_MIN_CHUNK = 1024 * 1024;

/** The compressions `vzdump` writes, and none. */
export type Compression = "none" | "zstd" | "gzip" | "lzop";

const MAGIC: [Compression, number[]][] = [
  ["zstd", [0x28, 0xb5, 0x2f, 0xfd]],
  // A skippable frame first (pzstd writes one before each frame): magic 0x184d2a5?.
  ...Array.from({ length: 16 }, (_, i): [Compression, number[]] => [
    "zstd",
    [0x50 + i, 0x2a, 0x4d, 0x18],
  ]),
  ["gzip", [0x1f, 0x8b]],
  ["lzop", [0x89, 0x4c, 0x5a, 0x4f, 0x00, 0x0d, 0x0a, 0x1a, 0x0a]],
];

/** The compression whose magic `head` starts with, or "none". */
export function detectCompression(head: Uint8Array): Compression {
  for (const [name, magic] of MAGIC) {
    if (head.length >= magic.length && magic.every((b, i) => head[i] === b)) return name;
  }
  return "none";
}

interface Source {
  read(p: Uint8Array): Promise<number | null>;
  close(): void;
}

/**
 * A byte stream (type "bytes") over `source`: a BYOB reader (VmaReader) reads
 * straight into its own buffers; a default reader gets fresh chunks of up to
 * READ_CHUNK_SIZE (gathered to at least PIPE_MIN_CHUNK from pipes). `first`
 * holds bytes already read for sniffing.
 */
function sourceStream(
  source: Source,
  first: Uint8Array | undefined,
  gather: boolean,
  onBytes?: (n: number) => void,
): ReadableStream<Uint8Array> {
  let pending = first;
  let closed = false;
  const close = () => {
    if (!closed) {
      closed = true;
      try {
        source.close();
      } catch {
        // already closed
      }
    }
  };
  const read = async (view: Uint8Array): Promise<number | null> => {
    try {
      return await source.read(view);
    } catch (e) {
      close();
      throw new CliError(`read failed - ${describeError(e)}`, { cause: e });
    }
  };
  return new ReadableStream({
    type: "bytes",
    async pull(controller) {
      if (pending) {
        const chunk = pending;
        pending = undefined;
        onBytes?.(chunk.length);
        controller.enqueue(chunk);
        return;
      }
      const request = controller.byobRequest;
      if (request?.view) {
        const view = new Uint8Array(
          request.view.buffer,
          request.view.byteOffset,
          request.view.byteLength,
        );
        // Pipes give at most a pipe buffer per read: fill the view.
        let filled = 0;
        let eof = false;
        do {
          const n = await read(view.subarray(filled));
          if (n === null) {
            eof = true;
            break;
          }
          filled += n;
        } while (gather && filled < view.length);
        if (filled > 0) {
          onBytes?.(filled);
          request.respond(filled);
        }
        if (eof) {
          close();
          controller.close();
          if (filled === 0) request.respond(0);
        }
        return;
      }
      const buf = new Uint8Array(READ_CHUNK_SIZE);
      let filled = 0;
      let eof = false;
      while (filled < buf.length) {
        const n = await read(buf.subarray(filled));
        if (n === null) {
          eof = true;
          break;
        }
        filled += n;
        if (!gather || filled >= PIPE_MIN_CHUNK) break;
      }
      if (filled > 0) {
        onBytes?.(filled);
        controller.enqueue(buf.subarray(0, filled));
      }
      if (eof) {
        close();
        controller.close();
      }
    },
    cancel() {
      close();
    },
  });
}

/** An opened archive input. */
export interface ArchiveInput {
  /** The archive bytes, decompressed. */
  readonly readable: ReadableStream<Uint8Array>;
  /** The compression found by magic. */
  readonly compression: Compression;
  /** Size of the input file when known (for progress), else undefined. */
  readonly inputSize: number | undefined;
  /** Bytes read from the input file so far (compressed bytes). */
  readonly inputBytes: () => number;
}

/**
 * Opens `path` (`-` for stdin) for reading, sniffs the first bytes for a
 * compression magic and returns the decompressed archive stream.
 * Errors: `can't open file <path> - <reason>`.
 */
export async function openArchiveInput(path: string): Promise<ArchiveInput> {
  let source: Source;
  let gather = true;
  let inputSize: number | undefined;
  if (path === "-") {
    source = {
      read: (p) => Deno.stdin.read(p),
      close: () => {},
    };
  } else {
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path, { read: true });
    } catch (e) {
      throw new CliError(`can't open file ${path} - ${describeError(e)}`, { cause: e });
    }
    try {
      const info = await file.stat();
      if (info.isDirectory) {
        file.close();
        throw new CliError(`can't open file ${path} - Is a directory`);
      }
      if (info.isFile) {
        gather = false;
        inputSize = info.size;
      }
    } catch (e) {
      if (e instanceof CliError) throw e;
    }
    source = { read: (p) => file.read(p), close: () => file.close() };
  }
  // Read the first piece to sniff the magic.
  const head = new Uint8Array(SNIFF_SIZE);
  let filled = 0;
  let eof = false;
  try {
    while (filled < 16) {
      const n = await source.read(head.subarray(filled));
      if (n === null) {
        eof = true;
        break;
      }
      filled += n;
    }
  } catch (e) {
    source.close();
    throw new CliError(`can't read vma header - ${describeError(e)}`, { cause: e });
  }
  const first = head.subarray(0, filled);
  let inputBytes = 0;
  const counted = (n: number) => {
    inputBytes += n;
  };
  let raw: ReadableStream<Uint8Array>;
  if (eof) {
    source.close();
    raw = new ReadableStream({
      start(c) {
        if (first.length) c.enqueue(first);
        counted(first.length);
        c.close();
      },
    });
  } else {
    raw = sourceStream(source, first.length ? first : undefined, gather, counted);
  }
  const compression = detectCompression(first);
  const readable = decompress(raw, compression);
  return { readable, compression, inputSize, inputBytes: () => inputBytes };
}

/** Wraps a decompressor's failure as one clear message. */
function labelErrors(
  readable: ReadableStream<Uint8Array>,
  label: string,
): ReadableStream<Uint8Array> {
  const reader = readable.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      let r: ReadableStreamReadResult<Uint8Array>;
      try {
        r = await reader.read();
      } catch (e) {
        if (e instanceof CliError) throw e;
        throw new CliError(`${label} decompression failed - ${describeError(e)}`, { cause: e });
      }
      if (r.done) controller.close();
      else controller.enqueue(r.value);
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}

/**
 * `raw` decompressed as `compression` says; a decoder's failure reads
 * `<compression> decompression failed - <why>` (a CliError). Exported for the
 * fuzzer (tests/_fuzz.ts), which feeds it mutated compressed archives.
 */
export function decompress(
  raw: ReadableStream<Uint8Array>,
  compression: Compression,
): ReadableStream<Uint8Array> {
  switch (compression) {
    case "none":
      return raw;
    case "gzip":
      return labelErrors(
        raw.pipeThrough(nodeTransformToWeb(createGunzip({ chunkSize: 256 * 1024 }))),
        "gzip",
      );
    case "zstd":
      return labelErrors(zstdDecompress(raw), "zstd");
    case "lzop":
      return labelErrors(raw.pipeThrough(new LzopDecompressionStream()), "lzop");
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
function zstdDecompress(raw: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
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
    for (;;) {
      const r = await input.read();
      if (r.done) break;
      for (const piece of scanner.push(r.value)) {
        if (writer === undefined) {
          const decoder = nodeTransformToWeb(createZstdDecompress({ chunkSize: 256 * 1024 }));
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
