// Where `vma create` writes the archive (a file under a temporary name, stdout,
// a FIFO or character device, or `exec:<command>`), and the compressors.
import type { VmaWriter } from "../vma/vma_writer.ts";
import { CliError, describeError } from "./_errors.ts";
import { stdoutWritable } from "./_stdio.ts";
import { AtomicFile, lstatOrUndefined } from "./_output.ts";
import { nodeTransformToWeb } from "./_node_stream.ts";
import { constants as zlibConstants, createGzip, createZstdCompress } from "node:zlib";
import { constants as fsConstants, promises as fsp } from "node:fs";
import { shown, shownQuoted } from "./_quote.ts";

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

export function compressor(
  kind: Compress,
  zstdLevel: number,
): TransformStream<Uint8Array, Uint8Array> | undefined {
  switch (kind) {
    case "none":
      return undefined;
    case "gzip":
      return nodeTransformToWeb(createGzip({ chunkSize: 1024 * 1024 })) as TransformStream<
        Uint8Array,
        Uint8Array
      >;
    case "zstd":
      return nodeTransformToWeb(
        createZstdCompress({
          chunkSize: 1024 * 1024,
          params: { [zlibConstants.ZSTD_c_compressionLevel]: zstdLevel },
        }),
      ) as TransformStream<Uint8Array, Uint8Array>;
  }
}

/**
 * Copies the archive into `writable`, handing each chunk back to the writer
 * once written (VmaWriter.recycle), so extent buffers are reused instead of
 * allocated per extent.
 */
export async function pumpRecycling(
  writer: VmaWriter,
  writable: WritableStream<Uint8Array>,
): Promise<void> {
  const reader = writer.readable.getReader();
  const out = writable.getWriter();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      await out.write(value);
      writer.recycle(value);
    }
    await out.close();
  } catch (e) {
    reader.cancel(e).catch(() => {});
    out.abort(e).catch(() => {});
    throw e;
  }
}
