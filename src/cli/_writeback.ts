// Early writeback of a file being written: sync_file_range(SYNC_FILE_RANGE_WRITE)
// through FFI on Linux starts writing the file's dirty pages to disk without
// waiting for them, so that the final fsync has little left to do.
// Without it, the kernel starts writeback only past the dirty thresholds (10 %
// of RAM), so a 1 GiB archive on a big host is all flushed by the fsync at the
// end, after everything else. Where FFI is not permitted or not Linux,
// nothing is done.

import { cPath, libc } from "./_libc.ts";

const O_WRONLY = 1;
const O_CLOEXEC = 0o2000000;
const SYNC_FILE_RANGE_WRITE = 2;

/** Early writeback of one file. */
export interface Writeback {
  /**
   * `total` bytes have been written to the file so far (anywhere in it):
   * once `STEP` more have come since the last request, asks for the file's
   * dirty pages to be written back.
   */
  written(total: number): void;
  /** Waits for the request in progress, if any, and releases the descriptor. */
  close(): Promise<void>;
}

/** Bytes written between two writeback requests. */
const STEP = 32 * 1024 * 1024;

/** Early writeback for the file at `path`, or undefined where it cannot be done. */
export function openWriteback(path: string): Writeback | undefined {
  const lib = libc();
  if (lib === null) return undefined;
  const fd = lib.open(cPath(path), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return undefined;
  /** Bytes written when writeback was last asked for, and so far. */
  let requested = 0;
  let total = 0;
  /** The request in progress: one at a time, the next covers all that came meanwhile. */
  let running: Promise<void> | undefined;
  let closed = false;
  const kick = () => {
    if (running !== undefined || closed || total - requested < STEP) return;
    requested = total;
    // The whole file (offset 0, length 0): pages already being written
    // back are passed over, so only what is new costs anything.
    running = lib.sync_file_range(fd, 0n, 0n, SYNC_FILE_RANGE_WRITE)
      // A failure only means no early writeback (the final fsync still runs).
      .then(() => {}, () => {})
      .finally(() => {
        running = undefined;
        kick();
      });
  };
  return {
    written(bytes) {
      total = bytes;
      kick();
    },
    async close() {
      if (closed) return;
      closed = true;
      while (running !== undefined) await running;
      lib.close(fd);
    },
  };
}
