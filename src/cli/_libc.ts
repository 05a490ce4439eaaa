// The C library's calls that neither Deno nor node:fs expose, through FFI:
// lseek(SEEK_DATA/SEEK_HOLE) for sparse input (_holes.ts) and
// sync_file_range for early writeback of output (_writeback.ts). Linux with
// glibc only, and only with --allow-ffi; elsewhere `libc()` is null and the
// callers do without.

const SYMBOLS = {
  open: { parameters: ["buffer", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  lseek: { parameters: ["i32", "i64", "i32"], result: "i64" },
  __errno_location: { parameters: [], result: "pointer" },
  sync_file_range: {
    parameters: ["i32", "i64", "i64", "u32"],
    result: "i32",
    // On a thread of its own: it may wait for the disk's queue.
    nonblocking: true,
  },
} as const;

/** The C library's calls. */
export type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let loaded: Libc | null | undefined;

/** The C library, or null where it cannot be called (not Linux, no --allow-ffi, no glibc). */
export function libc(): Libc | null {
  if (loaded !== undefined) return loaded;
  loaded = null;
  if (Deno.build.os !== "linux") return loaded;
  try {
    // Asked first: without --allow-ffi, dlopen would prompt on a terminal.
    if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return loaded;
    loaded = Deno.dlopen("libc.so.6", SYMBOLS).symbols;
  } catch {
    // No permission (--allow-ffi) or no glibc.
  }
  return loaded;
}

/** `path` as the NUL-terminated bytes `open` takes. */
export function cPath(path: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(path + "\0");
}
