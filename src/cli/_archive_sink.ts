// Where `vma create` writes the archive (a file under a temporary name, stdout,
// a FIFO or character device, or `exec:<command>`), and the compressors.
import { CliError, describeError } from "./_errors.ts";
import { stdoutWritable } from "./_stdio.ts";
import { AtomicFile, lstatOrUndefined } from "./_output.ts";
import { nodeTransformToWeb } from "./_node_stream.ts";
import { createGzip } from "node:zlib";
import { SeekableZstdCompressor } from "../compress/_seekable_zstd.ts";
import { constants as fsConstants, promises as fsp } from "node:fs";
import { shown, shownQuoted } from "./_quote.ts";
import { warn } from "./_stdio.ts";
import { fileURLToPath as fromFileUrl } from "node:url";

/** How the archive is compressed. */
export type Compress = "none" | "zstd" | "gzip";

/** Where the archive goes. */
export interface Sink {
  readonly writable: WritableStream<Uint8Array>;
  /** True when a chunk is no longer referenced once its write has settled. */
  readonly reusesNothing?: boolean;
  commit(): Promise<void>;
  discard(): void;
  readonly description: string;
}

export async function openSink(target: string): Promise<Sink> {
  if (target === "-") {
    if (Deno.stdout.isTerminal()) {
      throw new CliError(
        "refusing to write the archive to a terminal (redirect standard output or give a file name)",
      );
    }
    return {
      writable: stdoutWritable(),
      reusesNothing: true,
      commit: () => Promise.resolve(),
      discard() {},
      description: "standard output",
    };
  }
  if (target.startsWith("exec:")) return openExecSink(target.slice(5));
  const info = lstatOrUndefined(target);
  if (info && (info.isFifo || info.isCharDevice)) {
    let file: Deno.FsFile;
    try {
      file = await openFifoOrDevice(target);
    } catch (e) {
      throw new CliError(`can't open file ${shown(target)} - ${describeError(e)}`, { cause: e });
    }
    return {
      writable: new WritableStream({
        async write(chunk) {
          let off = 0;
          while (off < chunk.length) off += await file.write(chunk.subarray(off));
        },
      }),
      commit() {
        file.close();
        return Promise.resolve();
      },
      discard() {
        try {
          file.close();
        } catch {
          // closed
        }
      },
      description: target,
    };
  }
  const file = await AtomicFile.create(target);
  return {
    writable: file.writable,
    reusesNothing: true,
    commit: () => file.commit(),
    discard: () => file.discard(),
    description: target,
  };
}

/**
 * Opens an existing FIFO or character device for writing as Proxmox's vma
 * does, non-blocking: a FIFO nobody reads fails at once (ENXIO, "No such
 * device or address") instead of waiting forever for a reader. The file is
 * then reopened through `/proc/self/fd` for ordinary blocking writes.
 */
async function openFifoOrDevice(target: string): Promise<Deno.FsFile> {
  const probe = await fsp.open(target, fsConstants.O_WRONLY | fsConstants.O_NONBLOCK);
  try {
    return await Deno.open(`/proc/self/fd/${probe.fd}`, { write: true }).catch(() =>
      Deno.open(target, { write: true })
    );
  } finally {
    await probe.close();
  }
}

function openExecSink(command: string): Sink {
  if (Deno.build.os === "windows") {
    throw new CliError(`can't popen command ${shownQuoted(command)} - not supported on Windows`);
  }
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command("sh", { args: ["-c", command], stdin: "piped" }).spawn();
  } catch (e) {
    throw new CliError(`can't popen command ${shownQuoted(command)} - ${describeError(e)}`, {
      cause: e,
    });
  }
  const stdin = child.stdin.getWriter();
  let closed = false;
  const failed = async (): Promise<CliError | undefined> => {
    const status = await child.status;
    return status.success
      ? undefined
      : new CliError(`command ${shownQuoted(command)} failed with exit status ${status.code}`);
  };
  return {
    writable: new WritableStream({
      async write(chunk) {
        try {
          await stdin.write(chunk);
        } catch (e) {
          throw (await failed()) ??
            new CliError(`command ${shownQuoted(command)} stopped reading - ${describeError(e)}`, {
              cause: e,
            });
        }
      },
    }),
    async commit() {
      closed = true;
      await stdin.close().catch(() => {});
      const error = await failed();
      if (error) throw error;
    },
    discard() {
      if (closed) return;
      closed = true;
      stdin.abort().catch(() => {});
      try {
        child.kill("SIGTERM");
      } catch {
        // exited
      }
    },
    description: `command ${shownQuoted(command)}`,
  };
}

/** zstd level when `--zstd-level` is not given: vzdump's (the zstd tool's default). */
export const DEFAULT_ZSTD_LEVEL = 3;

/** A compressor of the archive stream, and how to stop its workers. */
export interface Compressor {
  readonly writable: WritableStream<Uint8Array>;
  readonly readable: ReadableStream<Uint8Array>;
  /** Stops its workers when the archive is given up (idempotent). */
  terminate(): void;
  /** Takes back a chunk of `readable` the sink is done with (optional). */
  recycle?(chunk: Uint8Array): void;
}

/**
 * The compressor for `kind`, or undefined for none. zstd is written as
 * independent frames with a seek table (the seekable format), compressed on
 * `threads - 1` workers, and in this thread when they are busy (1: all in
 * this thread; also, with a warning, when the workers' modules cannot be
 * read: `usableThreads`); the bytes do not depend on `threads`. gzip and
 * none ignore `threads`.
 */
export function compressor(
  kind: Compress,
  zstdLevel: number,
  threads = 1,
): Compressor | undefined {
  switch (kind) {
    case "none":
      return undefined;
    case "gzip": {
      const gzip = nodeTransformToWeb(createGzip({ chunkSize: 1024 * 1024 })) as TransformStream<
        Uint8Array,
        Uint8Array
      >;
      return { writable: gzip.writable, readable: gzip.readable, terminate() {} };
    }
    case "zstd":
      return new SeekableZstdCompressor({
        level: zstdLevel,
        workers: usableThreads(threads) - 1,
      });
  }
}

/**
 * `threads`, or 1 when the zstd workers' modules cannot be read: a Worker
 * that fails to load makes Deno print its own error before ours, so a run
 * with `--allow-read` that does not cover vmakit's sources compresses on
 * this thread instead, and says so.
 */
function usableThreads(threads: number): number {
  if (threads === 1) return 1;
  const dir = new URL("../compress/", import.meta.url);
  if (dir.protocol !== "file:") return threads;
  const { state } = Deno.permissions.querySync({ name: "read", path: fromFileUrl(dir) });
  if (state === "granted") return threads;
  warn(
    `compressing on one thread: the zstd workers need read access to ${shown(fromFileUrl(dir))}`,
  );
  return 1;
}

/**
 * Copies the writer's archive through `transform` (if any) into `sink`,
 * handing every chunk back to whoever made it once its write has settled:
 * extent buffers to the writer, compressed frames to the compressor. Without
 * this, each extent and each frame would be a fresh buffer for the garbage
 * collector (`vma repack` to .zst peaked at 191 MB instead of about 100).
 */
export function pumpArchive(
  writer: { readonly readable: ReadableStream<Uint8Array>; recycle(chunk: Uint8Array): void },
  transform: Compressor | undefined,
  sink: { readonly writable: WritableStream<Uint8Array>; readonly reusesNothing?: boolean },
): Promise<unknown> {
  if (transform === undefined) {
    return sink.reusesNothing
      ? pumpRecycling(writer, sink.writable)
      : writer.readable.pipeTo(sink.writable);
  }
  // The compressor is done with a chunk once its write settles.
  return Promise.all([
    pumpRecycling(writer, transform.writable),
    transform.recycle && sink.reusesNothing
      ? pump(transform.readable, sink.writable, (chunk) => transform.recycle!(chunk))
      : transform.readable.pipeTo(sink.writable),
  ]);
}

/**
 * Copies the archive into `writable`, handing each chunk back to the writer
 * once written (VmaWriter.recycle), so extent buffers are reused instead of
 * allocated per extent.
 */
export function pumpRecycling(
  writer: { readonly readable: ReadableStream<Uint8Array>; recycle(chunk: Uint8Array): void },
  writable: WritableStream<Uint8Array>,
): Promise<void> {
  return pump(writer.readable, writable, (chunk) => writer.recycle(chunk));
}

/**
 * Copies `readable` into `writable`, handing each chunk to `done` once its
 * write has settled.
 */
export async function pump(
  readable: ReadableStream<Uint8Array>,
  writable: WritableStream<Uint8Array>,
  done: (chunk: Uint8Array) => void,
): Promise<void> {
  const reader = readable.getReader();
  const out = writable.getWriter();
  try {
    for (;;) {
      const { done: end, value } = await reader.read();
      if (end) break;
      await out.write(value);
      done(value);
    }
    await out.close();
  } catch (e) {
    reader.cancel(e).catch(() => {});
    out.abort(e).catch(() => {});
    throw e;
  }
}
