// An archive opened for random access (cat, repack, serve): indexed in one
// checked pass; a plain archive file is then read where it lies, a .vma.zst
// with a seek table (zstd's seekable format) frame by frame through it, any
// other compressed one (or stdin) is spooled, decompressed, to a sparse
// temporary file during that same pass, removed when closed, on failure or on
// a signal. The index of a plain archive file can be saved next to it.
import {
  indexVma,
  loadVmaIndex,
  openVmaDisk,
  saveVmaIndex,
  type VmaArchiveReader,
  type VmaDiskImage,
  type VmaIndex,
  type VmaIndexStamp,
} from "../vma/vma_index.ts";
import { type VmaHeader, VmaReader } from "../vma/vma_reader.ts";
import { openArchiveInput } from "./_archive_input.ts";
import { toCliError } from "./_archive.ts";
import { onCleanup } from "./_cleanup.ts";
import { CliError, describeError } from "./_errors.ts";
import { dirName } from "./_output.ts";
import { quote, shownQuoted } from "./_quote.ts";
import { writeStderr } from "./_stdio.ts";
import { openZstdSeekable, type ZstdSeekableReader } from "../compress/zstd_seekable.ts";
import { paceGarbageCollection } from "./_gc_pacer.ts";
import { fillingByteStream } from "../compress/_byte_stream.ts";

const BLOCK = 4096;
/** Largest saved index file read: the index's own memory limit, and its framing. */
const MAX_INDEX_FILE = 256 * 1024 * 1024 + 64 * 1024;
/** The first bytes of a saved index file. */
const INDEX_MAGIC = "VMAKITIX";

/**
 * The largest index an archive of `archiveSize` bytes can need: a run (18
 * bytes) per stored cluster at most, each stored cluster at least one 4 KiB
 * block of the archive, and 1 MiB for the fixed part and the devices (at
 * most 255, names of at most 255 bytes); never more than {@linkcode MAX_INDEX_FILE}.
 */
function maxIndexFile(archiveSize: number): number {
  return Math.min(MAX_INDEX_FILE, 1024 * 1024 + 18 * Math.ceil(archiveSize / BLOCK));
}

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

/** Options of {@linkcode openIndexedArchive}. */
export interface IndexedArchiveOptions {
  /** Where to spool a compressed archive (default: next to it). */
  tmpdir?: string;
  /** Save the index as `<archive>.vmaidx` (`--save-index`). */
  saveIndex?: boolean;
  /** Checks the header before the archive is read further (throws a CliError). */
  check?: (header: VmaHeader) => void;
}

/**
 * Indexes `path` (`-` for stdin). A compressed archive or stdin is spooled to
 * a temporary file in `tmpdir` (default: next to the archive, or the current
 * directory for stdin, pipes and devices), which the caller removes with `close()`.
 *
 * A plain archive file with a saved index next to it (`<archive>.vmaidx`,
 * written with `saveIndex`) is not read whole again when the index is for
 * it as it is now: same size, modification time and header uuid. A saved
 * index that is stale, damaged or not an index is ignored (and replaced with
 * `saveIndex`), with a note on stderr.
 */
export async function openIndexedArchive(
  path: string,
  command: string,
  options: IndexedArchiveOptions = {},
): Promise<IndexedArchive> {
  const stopPacing = paceGarbageCollection();
  try {
    return await open(path, command, options, stopPacing);
  } catch (e) {
    stopPacing();
    throw e;
  }
}

async function open(
  path: string,
  command: string,
  options: IndexedArchiveOptions,
  stopPacing: () => void,
  useSeekTable = true,
): Promise<IndexedArchive> {
  const { tmpdir, check = () => {} } = options;
  let before = path === "-" ? undefined : stampOf(path);
  // The ctime is known to the second: an index saved within the second of
  // the archive's last change could not tell a change later in that second.
  // So wait for the next second (at most 1 s, and only then) before reading.
  if (options.saveIndex && before?.ctimeMs != null) {
    const wait = Math.min(1000, (Math.floor(before.ctimeMs / 1000) + 1) * 1000 - Date.now());
    if (wait > 0) {
      await new Promise((r) => setTimeout(r, wait));
      before = stampOf(path);
    }
  }
  const input = await openArchiveInput(path);
  // A zstd file with a seek table is read in place, frame by frame.
  const seekable = useSeekTable && input.compression === "zstd" && input.inputSize !== undefined
    ? await openSeekable(path, command)
    : undefined;
  // Pipes, FIFOs and devices cannot be read twice either.
  const spool = seekable === undefined &&
    (input.compression !== "none" || input.inputSize === undefined);
  const plain = input.compression === "none" && input.inputSize !== undefined;
  let readPath = path;
  let removeSpool = () => {};
  let forgetSpool = () => {};
  let readable = input.readable;
  if (seekable !== undefined) {
    // Indexed through the table, as it will be read: each frame is checked
    // against its entry on the way. (Indexed from the plain stream, a table
    // whose sizes were wrong yet added up would shift the frames after a
    // wrong entry, and reads of them would give other bytes, without error.)
    await input.readable.cancel().catch(() => {});
    readable = tableStream(seekable);
  }
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
    const indexPath = `${path}.vmaidx`;
    const saved = !plain || before === undefined
      ? undefined
      : await loadSavedIndex(indexPath, header, before, command);
    if (saved !== undefined) {
      await reader.cancel().catch(() => {});
      index = saved;
    } else {
      index = await indexVma(reader);
      if (options.saveIndex) await saveIndex(indexPath, index, plain, before, command);
    }
    spoolFile?.close();
    spoolFile = undefined;
  } catch (e) {
    try {
      spoolFile?.close();
    } catch {
      // already closed
    }
    removeSpool();
    await seekable?.close().catch(() => {});
    const mismatch = seekable === undefined ? undefined : seekTableError(e);
    if (mismatch !== undefined) {
      // The frames may still be sound: read them as any zstd file.
      writeStderr(`vma: ${command}: ignoring the seek table of ${quote(path)}: ${mismatch}\n`);
      return await open(path, command, options, stopPacing, false);
    }
    if (e instanceof CliError) throw e;
    throw toCliError(e, `${command} failed - `);
  }
  // Reads from a plain file make no garbage worth pacing (and an idle `serve`
  // should not wake up); only a seek table's frames are decompressed later.
  if (seekable === undefined) stopPacing();
  return {
    index,
    async openDisk(name) {
      if (seekable !== undefined) {
        // One reader (and its cache of frames) for every device, closed with the archive.
        const shared: VmaArchiveReader = {
          size: seekable.size,
          read: (position, length) => seekable.read(position, length),
          readInto: (position, target) => seekable.readInto(position, target),
          close: () => Promise.resolve(),
        };
        try {
          return openVmaDisk(index, shared, name);
        } catch (e) {
          throw toCliError(e, `${command} failed - `);
        }
      }
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
      seekable?.close().catch(() => {});
      stopPacing();
    },
    keepOnSignal: () => forgetSpool(),
  };
}

/**
 * A reader of the decompressed bytes of the zstd file at `path` through its
 * seek table, or undefined when it has none (or a bad one: noted, then the
 * file is spooled as any zstd file).
 */
async function openSeekable(
  path: string,
  command: string,
): Promise<ZstdSeekableReader | undefined> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch {
    return undefined;
  }
  try {
    const size = (await file.stat()).size;
    // Two frames of cache: reads of a device go mostly in order.
    const reader = await openZstdSeekable(fileArchiveReader(file, size), {
      cacheBytes: 4 * 1024 * 1024,
    });
    if (reader === undefined) file.close();
    return reader;
  } catch (e) {
    file.close();
    if (!(e instanceof SyntaxError || e instanceof RangeError)) throw e;
    writeStderr(`vma: ${command}: ignoring the seek table of ${quote(path)}: ${e.message}\n`);
    return undefined;
  }
}

/**
 * The decompressed bytes of `seekable` in order, read through its table
 * (the frames decompressed one by one, each checked against its entry).
 */
function tableStream(seekable: ZstdSeekableReader): ReadableStream<Uint8Array> {
  let at = 0;
  return fillingByteStream({
    chunkSize: 4 * 1024 * 1024,
    async fill(view) {
      const n = await seekable.readInto(at, view);
      at += n;
      return n;
    },
  });
}

/**
 * The message of the seekable reader's error in `e` (or its causes) when it
 * says the table does not describe the frames (a wrong size, bytes that are
 * not whole frames, a frame past the end), if it does. A frame that fails to
 * decode where the table puts it is damaged data, not a wrong table: that
 * error stands (spooling would only decode the whole file to fail there too).
 */
function seekTableError(e: unknown): string | undefined {
  for (let cause = e, depth = 0; cause instanceof Error && depth < 8; depth++) {
    if (
      cause instanceof SyntaxError &&
      cause.message.startsWith("Cannot read the seekable zstd file") &&
      /decompresses to|ends early|does not hold whole zstd frames/.test(cause.message)
    ) {
      return cause.message;
    }
    cause = cause.cause;
  }
  return undefined;
}

/** Whether `e` says a file name is too long for the file system. */
function nameTooLong(e: unknown): boolean {
  return (e as { code?: unknown } | null)?.code === "ENAMETOOLONG";
}

/**
 * The size, times, inode and file system of the file at `path`, if it is a
 * regular file.
 */
function stampOf(path: string): VmaIndexStamp | undefined {
  try {
    const info = Deno.statSync(path);
    if (!info.isFile || info.mtime === null) return undefined;
    return {
      size: info.size,
      mtimeMs: info.mtime.getTime(),
      ino: info.ino,
      dev: info.dev,
      ctimeMs: info.ctime?.getTime() ?? null,
    };
  } catch {
    return undefined;
  }
}

/**
 * The index saved at `indexPath` if there is one and it is for the archive
 * as it is now (`stamp`, `header`); otherwise undefined, with a note when a
 * file was there but could not be used.
 */
async function loadSavedIndex(
  indexPath: string,
  header: VmaHeader,
  stamp: VmaIndexStamp,
  command: string,
): Promise<VmaIndex | undefined> {
  const ignore = (why: string) => {
    writeStderr(
      `vma: ${command}: ignoring the saved index ${quote(indexPath)}: ${why}; indexing anew\n`,
    );
    return undefined;
  };
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(indexPath);
  } catch (e) {
    // A name too long for `<archive>.vmaidx` has no saved index.
    if (e instanceof Deno.errors.NotFound || nameTooLong(e)) return undefined;
    return ignore(describeError(e));
  }
  if (!info.isFile) return ignore("not a regular file");
  let bytes: Uint8Array;
  try {
    // The magic first: a large file of anything else is not read whole.
    const head = await readAtMost(indexPath, INDEX_MAGIC.length, true);
    if (new TextDecoder().decode(head) !== INDEX_MAGIC) return ignore("not a vmakit index file");
    const max = maxIndexFile(stamp.size);
    if (info.size > max) {
      return ignore(`${info.size} bytes is more than an index of this archive can need (${max})`);
    }
    bytes = await readAtMost(indexPath, max);
  } catch (e) {
    return ignore(describeError(e));
  }
  try {
    const index = await loadVmaIndex(bytes, header, stamp);
    writeStderr(`vma: ${command}: using the saved index ${quote(indexPath)}\n`);
    return index;
  } catch (e) {
    if (!(e instanceof SyntaxError || e instanceof RangeError)) throw e;
    return ignore(e.message.replace(/^Cannot load the index: /, ""));
  }
}

/**
 * The bytes of the file at `path`, refused past `max` (it may grow while
 * read), read into one buffer; with `prefix`, only its first `max` bytes.
 */
async function readAtMost(path: string, max: number, prefix = false): Promise<Uint8Array> {
  const file = await Deno.open(path, { read: true });
  try {
    const size = (await file.stat()).size;
    if (!prefix && size > max) throw new RangeError(`more than ${max} bytes`);
    // One byte more than wanted, to tell a file that grew.
    const out = new Uint8Array(Math.min(size, max) + 1);
    let total = 0;
    while (total < out.length) {
      const n = await file.read(out.subarray(total));
      if (n === null) break;
      total += n;
    }
    if (prefix) return out.subarray(0, Math.min(total, max));
    if (total > max) throw new RangeError(`more than ${max} bytes`);
    return out.subarray(0, total);
  } finally {
    file.close();
  }
}

/**
 * Writes `index` to `indexPath` (a temporary file renamed over it), unless
 * the archive is compressed or changed while it was read; a failure is a
 * warning, not the command's.
 */
async function saveIndex(
  indexPath: string,
  index: VmaIndex,
  plain: boolean,
  before: VmaIndexStamp | undefined,
  command: string,
): Promise<void> {
  const warn = (why: string) =>
    writeStderr(`vma: ${command}: warning: index not saved to ${quote(indexPath)}: ${why}\n`);
  if (!plain || before === undefined) {
    warn("only the index of a plain (uncompressed) archive file is saved");
    return;
  }
  const after = stampOf(indexPath.slice(0, -".vmaidx".length));
  if (
    after === undefined ||
    (["size", "mtimeMs", "ino", "dev", "ctimeMs"] as const).some((k) => after[k] !== before[k])
  ) {
    warn("the archive changed while it was read");
    return;
  }
  const suffix = crypto.getRandomValues(new Uint32Array(2)).join("");
  // Not named after the archive, so that it is no longer than the index's name.
  const temp = `${dirName(indexPath)}/.vmaidx-${suffix}`;
  const forget = onCleanup(() => Deno.removeSync(temp));
  try {
    const bytes = await saveVmaIndex(index, before);
    await Deno.writeFile(temp, bytes, { createNew: true, mode: 0o644 });
    await Deno.rename(temp, indexPath);
    writeStderr(`vma: ${command}: saved the index to ${quote(indexPath)}\n`);
  } catch (e) {
    try {
      Deno.removeSync(temp);
    } catch {
      // not created
    }
    warn(
      nameTooLong(e)
        ? "the archive's name is too long for the file system with .vmaidx added"
        : describeError(e),
    );
  } finally {
    forget();
  }
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
