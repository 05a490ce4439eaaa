// Opening an archive for reading: a file or `-` (stdin), read in large pieces,
// with zstd/gzip/lzop compression detected by magic bytes and undone.
import { CliError, describeError } from "./_errors.ts";
import { type Compression, detectCompression } from "../compress/compression.ts";
import { decodeStream } from "../compress/_decompress.ts";
import { mapStreamErrors } from "../vma/_byte_source.ts";

/** Bytes per read from a file: large pieces keep per-chunk overhead small. */
export const READ_CHUNK_SIZE = 4 * 1024 * 1024;
/** The first read, to sniff the compression magic. */
const SNIFF_SIZE = 65536;
/** Pipes return at most a pipe buffer per read; gather at least this much per chunk. */
const PIPE_MIN_CHUNK = 1024 * 1024;

export { type Compression, detectCompression };

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
    const regular = inputSize !== undefined;
    source = {
      read: regular ? (p) => Promise.resolve(file.readSync(p)) : (p) => file.read(p),
      close: () => file.close(),
    };
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
  return mapStreamErrors(
    readable,
    (e) =>
      e instanceof CliError
        ? e
        : new CliError(`${label} decompression failed - ${describeError(e)}`, { cause: e }),
  );
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
  if (compression === "none") return raw;
  return labelErrors(decodeStream(raw, compression), compression);
}
