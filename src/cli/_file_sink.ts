// Where `vma extract` writes a device: a new sparse file, vmstate.bin, or an
// existing volume (`-r`), through positioned writes gathered into large ones.
import * as fs from "node:fs";
import type { VmaDeviceSink } from "../vma/extract_vma.ts";

const BUFFER = 4 * 1024 * 1024;
/** Pieces of at least this size are written without going through the buffer. */
const DIRECT = 256 * 1024;
const BLOCK = 4096;
/**
 * Bytes written between background `fdatasync`s. The page cache would
 * otherwise hold the whole disk dirty until the final fsync (the kernel starts
 * writeback only at 10 % of RAM or after 30 s), which then waits for all of
 * it; syncing as we go lets the disk write while we read and decode.
 */
const SYNC_EVERY = 32 * 1024 * 1024;

/**
 * A file written with positioned writes; contiguous writes are gathered into
 * large ones. New files are made sparse by ftruncate; with `writeZero`, the
 * blocks never written are zeroed at the end (for existing volumes).
 */
export class FileSink implements VmaDeviceSink {
  #fd: number;
  #buf = new Uint8Array(BUFFER);
  #start = 0;
  #used = 0;
  #closed = false;
  #append: boolean;
  #appendAt = 0;
  #size: number;
  #written: Uint8Array | undefined; // one bit per 4 KiB block, with writeZero
  #unsynced = 0;
  #syncing: Promise<void> | undefined;
  #syncError: unknown;

  private constructor(fd: number, size: number, append: boolean, writeZero: boolean) {
    this.#fd = fd;
    this.#size = size;
    this.#append = append;
    if (writeZero) this.#written = new Uint8Array(Math.ceil(size / BLOCK / 8));
  }

  /** A new sparse file of `size` bytes (fails if it exists). */
  static create(path: string, size: number): FileSink {
    const fd = fs.openSync(path, "wx", 0o644);
    try {
      fs.ftruncateSync(fd, size);
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
    return new FileSink(fd, size, false, false);
  }

  /** A new file written sequentially (vmstate.bin). */
  static sequential(path: string): FileSink {
    return new FileSink(fs.openSync(path, "wx", 0o644), 0, true, false);
  }

  /** An existing file or block device of at least `size` bytes. */
  static existing(fd: number, size: number, writeZero: boolean): FileSink {
    return new FileSink(fd, size, false, writeZero);
  }

  #pwrite(data: Uint8Array, position: number): void {
    if (this.#syncError !== undefined) throw this.#syncError;
    let off = 0;
    while (off < data.length) {
      off += fs.writeSync(this.#fd, data, off, data.length - off, position + off);
    }
    this.#unsynced += data.length;
    if (this.#unsynced >= SYNC_EVERY && this.#syncing === undefined) this.#syncInBackground();
  }

  /** Starts an `fdatasync` on Deno's thread pool; its error is thrown by the next write or close. */
  #syncInBackground(): void {
    this.#unsynced = 0;
    this.#syncing = new Promise((resolve) => {
      fs.fdatasync(this.#fd, (error) => {
        if (error) this.#syncError ??= error;
        this.#syncing = undefined;
        resolve();
      });
    });
  }

  #flush(): void {
    if (this.#used === 0) return;
    this.#pwrite(this.#buf.subarray(0, this.#used), this.#start);
    this.#used = 0;
  }

  #mark(offset: number, length: number): void {
    const bits = this.#written!;
    for (
      let b = Math.floor(offset / BLOCK), end = Math.ceil((offset + length) / BLOCK);
      b < end;
      b++
    ) {
      bits[b >>> 3] |= 1 << (b & 7);
    }
  }

  write(offset: number, data: Uint8Array): void {
    if (this.#append) {
      offset = this.#appendAt;
      this.#appendAt += data.length;
    }
    if (this.#written) this.#mark(offset, data.length);
    // Large pieces (runs of whole clusters) are written where they are:
    // copying them into the buffer costs more than the system call saved.
    if (data.length >= DIRECT) {
      this.#flush();
      this.#pwrite(data, offset);
      return;
    }
    if (
      this.#used > 0 && offset === this.#start + this.#used && this.#used + data.length <= BUFFER
    ) {
      this.#buf.set(data, this.#used);
      this.#used += data.length;
      return;
    }
    this.#flush();
    this.#start = offset;
    this.#buf.set(data, 0);
    this.#used = data.length;
  }

  #zeroUnwritten(): void {
    const bits = this.#written!;
    const zeros = new Uint8Array(BUFFER);
    const blocks = Math.ceil(this.#size / BLOCK);
    for (let b = 0; b < blocks;) {
      if (bits[b >>> 3] & (1 << (b & 7))) {
        b++;
        continue;
      }
      let e = b;
      while (e < blocks && !(bits[e >>> 3] & (1 << (e & 7))) && e - b < BUFFER / BLOCK) e++;
      const from = b * BLOCK;
      const to = Math.min(e * BLOCK, this.#size);
      this.#pwrite(zeros.subarray(0, to - from), from);
      b = e;
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#flush();
    if (this.#written) this.#zeroUnwritten();
    await this.#syncing;
    if (this.#syncError !== undefined) throw this.#syncError;
    fs.fsyncSync(this.#fd);
    this.#closed = true;
    fs.closeSync(this.#fd);
  }

  abandon(): void {
    if (this.#closed) return;
    this.#closed = true;
    // A background sync still using the descriptor fails with EBADF at worst; nobody waits on it.
    try {
      fs.closeSync(this.#fd);
    } catch {
      // closed
    }
  }
}
