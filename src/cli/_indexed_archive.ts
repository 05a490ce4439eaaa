// An archive opened for random access (cat, repack): indexed in one checked
// pass; a plain archive file is then read where it lies, a compressed one (or
// stdin) is spooled, decompressed, to a sparse temporary file during that same
// pass, removed when closed, on failure or on a signal.
import {
  indexVma,
  openVmaDisk,
  type VmaArchiveReader,
  type VmaDiskImage,
  type VmaIndex,
} from "../vma/vma_index.ts";
import { type VmaHeader, VmaReader } from "../vma/vma_reader.ts";
import { openArchiveInput } from "./_archive_input.ts";
import { toCliError } from "./_archive.ts";
import { onCleanup } from "./_cleanup.ts";
import { CliError, describeError } from "./_errors.ts";
import { dirName } from "./_output.ts";
import { shownQuoted } from "./_quote.ts";
import { writeStderr } from "./_stdio.ts";
import { paceGarbageCollection } from "./_gc_pacer.ts";

const BLOCK = 4096;

/** An indexed archive and the file its devices are read from. */
export interface IndexedArchive {
  readonly index: VmaIndex;
  /** Opens device `name` for positioned reads. */
  openDisk(name: string): Promise<VmaDiskImage>;
  /** Removes the spool file, if any, and stops pacing garbage collection. */
  close(): void;
  /**
   * Stops removing the spool file on a signal, for a caller that handles
   * signals itself (serve); it still removes it with `close()`.
   */
  keepOnSignal(): void;
}

/**
 * Indexes `path` (`-` for stdin). A compressed archive or stdin is spooled to
 * a temporary file in `tmpdir` (default: next to the archive, or the current
 * directory for stdin, pipes and devices), which the caller removes with `close()`.
 */
export async function openIndexedArchive(
  path: string,
  tmpdir: string | undefined,
  command: string,
  check: (header: VmaHeader) => void = () => {},
): Promise<IndexedArchive> {
  const stopPacing = paceGarbageCollection();
  try {
    return await open(path, tmpdir, command, check, stopPacing);
  } catch (e) {
    stopPacing();
    throw e;
  }
}

async function open(
  path: string,
  tmpdir: string | undefined,
  command: string,
  check: (header: VmaHeader) => void,
  stopPacing: () => void,
): Promise<IndexedArchive> {
  const input = await openArchiveInput(path);
  // Pipes, FIFOs and devices cannot be read twice either.
  const spool = input.compression !== "none" || input.inputSize === undefined;
  let readPath = path;
  let removeSpool = () => {};
  let forgetSpool = () => {};
  let readable = input.readable;
  let spoolFile: Deno.FsFile | undefined;
  let notice = () => {};
  if (spool) {
    const dir = tmpdir ?? (input.inputSize === undefined ? "." : dirName(path));
    try {
      readPath = await Deno.makeTempFile({ dir, prefix: ".vma-spool-", suffix: ".vma" });
    } catch (e) {
      await input.readable.cancel().catch(() => {});
      throw new CliError(
        `can't create a temporary file in ${shownQuoted(dir)} (see --tmpdir) - ${describeError(e)}`,
        { cause: e },
      );
    }
    const spoolPath = readPath;
    const forget = onCleanup(() => Deno.removeSync(spoolPath));
    forgetSpool = forget;
    removeSpool = () => {
      forget();
      try {
        Deno.removeSync(spoolPath);
      } catch {
        // already gone
      }
    };
    const what = input.compression !== "none"
      ? `${input.compression} archive`
      : path === "-"
      ? "standard input"
      : "not a regular file";
    notice = () =>
      writeStderr(
        `vma: ${command}: ${what}: spooling it decompressed to ${
          shownQuoted(spoolPath)
        } (removed on exit)\n`,
      );
    spoolFile = await Deno.open(spoolPath, { write: true });
    readable = readable.pipeThrough(spoolTo(spoolFile));
  }
  let index: VmaIndex;
  try {
    const reader = new VmaReader(readable);
    let header: VmaHeader;
    try {
      header = await reader.header();
    } catch (e) {
      await reader.cancel().catch(() => {});
      throw toCliError(e);
    }
    try {
      check(header);
      notice();
    } catch (e) {
      await reader.cancel().catch(() => {});
      throw e;
    }
    index = await indexVma(reader);
    spoolFile?.close();
    spoolFile = undefined;
  } catch (e) {
    try {
      spoolFile?.close();
    } catch {
      // already closed
    }
    removeSpool();
    if (e instanceof CliError) throw e;
    throw toCliError(e, `${command} failed - `);
  }
  return {
    index,
    async openDisk(name) {
      let file: Deno.FsFile;
      try {
        file = await Deno.open(readPath, { read: true });
      } catch (e) {
        throw new CliError(`can't open file ${shownQuoted(readPath)} - ${describeError(e)}`, {
          cause: e,
        });
      }
      const size = (await file.stat()).size;
      try {
        return openVmaDisk(index, fileArchiveReader(file, size), name);
      } catch (e) {
        file.close();
        throw toCliError(e, `${command} failed - `);
      }
    },
    close() {
      removeSpool();
      stopPacing();
    },
    keepOnSignal: () => forgetSpool(),
  };
}

/**
 * A pass-through that also writes every chunk to `file`, skipping 4 KiB
 * blocks (by stream offset) that are all zeros, so the file is sparse there;
 * at the end the file is cut to the stream's length.
 */
function spoolTo(file: Deno.FsFile): TransformStream<Uint8Array, Uint8Array> {
  let position = 0;
  const writeAll = async (bytes: Uint8Array, at: number) => {
    await file.seek(at, Deno.SeekMode.Start);
    let off = 0;
    while (off < bytes.length) off += await file.write(bytes.subarray(off));
  };
  return new TransformStream({
    async transform(chunk, controller) {
      let runStart = -1; // start in chunk of a run of non-zero blocks
      let i = 0;
      while (i < chunk.length) {
        const end = Math.min(chunk.length, i + BLOCK - ((position + i) % BLOCK));
        let zero = true;
        for (let k = i; k < end; k++) {
          if (chunk[k] !== 0) {
            zero = false;
            break;
          }
        }
        if (!zero && runStart < 0) runStart = i;
        if (zero && runStart >= 0) {
          await writeAll(chunk.subarray(runStart, i), position + runStart);
          runStart = -1;
        }
        i = end;
      }
      if (runStart >= 0) await writeAll(chunk.subarray(runStart), position + runStart);
      position += chunk.length;
      controller.enqueue(chunk);
    },
    async flush() {
      await file.truncate(position);
    },
  });
}

/**
 * Positioned reads of an open file, into fresh memory or the caller's. The
 * file has one position: each seek and its reads run alone, in turn, since
 * serve reads one export for several clients at once (NBD multi-conn).
 */
function fileArchiveReader(file: Deno.FsFile, size: number): VmaArchiveReader {
  let turn: Promise<unknown> = Promise.resolve();
  const readAt = async (position: number, target: Uint8Array): Promise<number> => {
    await file.seek(position, Deno.SeekMode.Start);
    let filled = 0;
    while (filled < target.length) {
      const n = await file.read(target.subarray(filled));
      if (n === null) break;
      filled += n;
    }
    return filled;
  };
  const readInto = (position: number, target: Uint8Array): Promise<number> => {
    const result = turn.then(() => readAt(position, target));
    turn = result.catch(() => {});
    return result;
  };
  return {
    size,
    readInto,
    async read(position, length) {
      const buf = new Uint8Array(Math.max(0, Math.min(length, size - position)));
      return buf.subarray(0, await readInto(position, buf));
    },
    close() {
      file.close();
      return Promise.resolve();
    },
  };
}
