// Output files: written under a temporary name in the same directory, fsynced
// and renamed at the end; removed on failure or on a signal.
import { CliError, describeError } from "./_errors.ts";
import * as fs from "node:fs";
import { onCleanup } from "./_cleanup.ts";
import { shown } from "./_quote.ts";
import { openWriteback, type Writeback } from "./_writeback.ts";

/** Directory part of a path (`.` when none). */
export function dirName(path: string): string {
  const i = Math.max(
    path.lastIndexOf("/"),
    Deno.build.os === "windows" ? path.lastIndexOf("\\") : -1,
  );
  if (i < 0) return ".";
  if (i === 0) return path[0];
  return path.slice(0, i);
}

/** Last part of a path. */
export function baseName(path: string): string {
  const trimmed = path.replace(Deno.build.os === "windows" ? /[\\/]+$/ : /\/+$/, "");
  const i = Math.max(
    trimmed.lastIndexOf("/"),
    Deno.build.os === "windows" ? trimmed.lastIndexOf("\\") : -1,
  );
  return i < 0 ? trimmed : trimmed.slice(i + 1);
}

/** What is at `path`: undefined when nothing is there. */
export function lstatOrUndefined(path: string): Deno.FileInfo | undefined {
  try {
    return Deno.lstatSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

function randomSuffix(): string {
  return Array.from(
    crypto.getRandomValues(new Uint8Array(4)),
    (b) => b.toString(16).padStart(2, "0"),
  )
    .join("");
}

/** Collects small chunks into large writes (1–4 MiB) to keep syscalls few. */
export class BufferedFileWriter {
  #file: Deno.FsFile;
  #buf = new Uint8Array(4 * 1024 * 1024);
  #used = 0;
  /** Bytes written (or buffered) so far. */
  bytes = 0;
  /** Bytes in the file so far (not buffered). */
  flushed = 0;

  constructor(file: Deno.FsFile) {
    this.#file = file;
  }

  async #writeAll(data: Uint8Array): Promise<void> {
    let off = 0;
    while (off < data.length) off += await this.#file.write(data.subarray(off));
    this.flushed += data.length;
  }

  /** Writes `chunk` (the caller may reuse it once the promise settles). */
  async write(chunk: Uint8Array): Promise<void> {
    this.bytes += chunk.length;
    if (chunk.length >= 1024 * 1024) {
      await this.flush();
      await this.#writeAll(chunk);
      return;
    }
    if (this.#used + chunk.length > this.#buf.length) await this.flush();
    this.#buf.set(chunk, this.#used);
    this.#used += chunk.length;
  }

  /** Writes out what is buffered. */
  async flush(): Promise<void> {
    if (this.#used === 0) return;
    const n = this.#used;
    this.#used = 0;
    await this.#writeAll(this.#buf.subarray(0, n));
  }
}

/**
 * A new file that appears under its final name only when committed:
 * `create` writes `<dir>/.<name>.vma-tmp-<random>` and renames it.
 */
export class AtomicFile {
  readonly path: string;
  readonly tempPath: string;
  #file: Deno.FsFile;
  #writer: BufferedFileWriter;
  #removeCleanup: () => void;
  #writeback: Writeback | undefined;
  #done = false;

  private constructor(
    path: string,
    tempPath: string,
    file: Deno.FsFile,
    removeCleanup: () => void,
    setFile: (file: Deno.FsFile) => void,
  ) {
    this.path = path;
    this.tempPath = tempPath;
    this.#file = file;
    this.#writer = new BufferedFileWriter(file);
    this.#removeCleanup = removeCleanup;
    setFile(file);
    this.#writeback = openWriteback(tempPath);
  }

  /**
   * Creates the temporary file for `path`. Fails with Proxmox's
   * `can't open file <path> - File exists` when `path` exists.
   */
  static async create(path: string): Promise<AtomicFile> {
    if (lstatOrUndefined(path) !== undefined) {
      throw new CliError(`can't open file ${shown(path)} - File exists`);
    }
    const tempPath = `${dirName(path)}/.${baseName(path)}.vma-tmp-${randomSuffix()}`;
    // Registered before the file exists, so a signal during open removes it too.
    let opened: Deno.FsFile | undefined;
    const removeCleanup = onCleanup(() => {
      try {
        opened?.close();
      } catch {
        // closed
      }
      try {
        Deno.removeSync(tempPath);
      } catch {
        // gone
      }
    });
    let file: Deno.FsFile;
    try {
      file = await Deno.open(tempPath, { write: true, createNew: true, mode: 0o644 });
    } catch (e) {
      removeCleanup();
      throw new CliError(`can't open file ${shown(path)} - ${describeError(e)}`, { cause: e });
    }
    return new AtomicFile(path, tempPath, file, removeCleanup, (f) => {
      opened = f;
    });
  }

  /** Bytes written so far. */
  get bytes(): number {
    return this.#writer.bytes;
  }

  /** Writes a chunk. */
  async write(chunk: Uint8Array): Promise<void> {
    await this.#writer.write(chunk);
    this.#writeback?.written(this.#writer.flushed);
  }

  /** A WritableStream onto the file (does not commit on close). */
  get writable(): WritableStream<Uint8Array> {
    return new WritableStream<Uint8Array>({ write: (chunk) => this.write(chunk) });
  }

  /**
   * Flushes, fsyncs and renames the file to its final name. Refuses (and
   * removes the temporary file) if something appeared under the final name.
   */
  async commit(): Promise<void> {
    if (this.#done) return;
    await this.#writer.flush();
    await this.#writeback?.close();
    await this.#file.sync();
    this.#file.close();
    if (lstatOrUndefined(this.path) !== undefined) {
      this.discard();
      throw new CliError(`can't open file ${shown(this.path)} - File exists`);
    }
    try {
      await Deno.rename(this.tempPath, this.path);
    } catch (e) {
      this.discard();
      throw new CliError(
        `rename ${this.tempPath} to ${this.path} failed - ${describeError(e)}`,
        { cause: e },
      );
    }
    this.#done = true;
    this.#removeCleanup();
    // Make the rename durable too (not possible on every platform).
    try {
      const dir = await Deno.open(dirName(this.path), { read: true });
      try {
        await dir.sync();
      } finally {
        dir.close();
      }
    } catch {
      // Best effort.
    }
  }

  /** Closes and removes the temporary file. */
  discard(): void {
    if (this.#done) return;
    this.#done = true;
    this.#writeback?.close().catch(() => {});
    try {
      this.#file.close();
    } catch {
      // closed
    }
    try {
      Deno.removeSync(this.tempPath);
    } catch {
      // gone
    }
    this.#removeCleanup();
  }
}

/**
 * Moves `from` to `to` without ever replacing a file at `to` (a hard link, then
 * unlinking `from`; where hard links fail, a check and a rename).
 */
export function renameNoReplace(from: string, to: string): void {
  try {
    fs.linkSync(from, to);
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === "EEXIST" || code === "ENOENT") throw e;
    // No hard links here (FAT, some network file systems): check, then rename.
    if (fs.existsSync(to)) throw Object.assign(new Error("File exists"), { code: "EEXIST" });
    fs.renameSync(from, to);
    return;
  }
  fs.unlinkSync(from);
}
