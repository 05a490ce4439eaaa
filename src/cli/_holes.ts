// Finding the data and holes of a sparse file with lseek(SEEK_DATA/SEEK_HOLE),
// which neither Deno nor node:fs exposes: called through FFI on Linux. Where
// that is not possible (other systems, no --allow-ffi), callers read the
// whole file instead.
import { cPath, libc } from "./_libc.ts";

const SEEK_DATA = 3;
const SEEK_HOLE = 4;
const O_RDONLY = 0;
const O_CLOEXEC = 0o2000000;
const ENXIO = 6;

/** Data and hole boundaries of one file. */
export interface HoleMap {
  /** Offset of the first data byte at or after `offset`, or undefined when only a hole follows. */
  nextData(offset: number): number | undefined;
  /** Offset of the first hole at or after `offset` (the file end counts as a hole). */
  nextHole(offset: number): number;
  /** Releases the file descriptor. */
  close(): void;
}

/**
 * Opens `path` for SEEK_DATA/SEEK_HOLE queries, or returns undefined where
 * they cannot be made (not Linux, FFI not permitted, or the file system does
 * not answer them).
 */
export function openHoleMap(path: string): HoleMap | undefined {
  const lib = libc();
  if (lib === null) return undefined;
  const fd = lib.open(cPath(path), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return undefined;
  const errno = () => {
    const ptr = lib.__errno_location();
    return ptr === null ? 0 : new Deno.UnsafePointerView(ptr).getInt32();
  };
  const seek = (offset: number, whence: number): number | undefined => {
    const r = Number(lib.lseek(fd, BigInt(offset), whence));
    if (r >= 0) return r;
    if (errno() === ENXIO) return undefined;
    throw new Error(`lseek failed (errno ${errno()})`);
  };
  try {
    // A file system without SEEK_DATA support fails with EINVAL here.
    seek(0, SEEK_HOLE);
  } catch {
    lib.close(fd);
    return undefined;
  }
  let closed = false;
  return {
    nextData: (offset) => seek(offset, SEEK_DATA),
    nextHole: (offset) => {
      const r = seek(offset, SEEK_HOLE);
      if (r === undefined) throw new Error(`lseek(SEEK_HOLE) at ${offset} found no hole`);
      return r;
    },
    close: () => {
      if (!closed) {
        closed = true;
        lib.close(fd);
      }
    },
  };
}
