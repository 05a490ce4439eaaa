// Independent zstd frames from pieces of a stream, through node:zlib (built
// into Deno, Bun and Node 22.15+), written into the caller's buffer so that a
// long stream allocates nothing per frame: the same bytes whichever thread
// runs it, as long as the level and the frame's input are the same. Private to the library.
import { constants, createZstdCompress, zstdCompressSync } from "node:zlib";
import { PieceEncoder } from "./_zlib_handle.ts";

/**
 * The most bytes a frame of `length` bytes compresses to (zstd's
 * ZSTD_COMPRESSBOUND, rounded up; _seekable_zstd.ts has a copy).
 */
export function zstdFrameBound(length: number): number {
  return length + (length >>> 8) + 1024;
}

/** Options of {@linkcode ZstdFrameEncoder} beyond the level. */
export interface ZstdFrameOptions {
  /** log2 of the window; zstd picks it from the level when absent. */
  windowLog?: number;
  /** A checksum at the end of each frame (default true, as the zstd tool writes). */
  checksum?: boolean;
}

const params = (level: number, options: ZstdFrameOptions = {}) => ({
  [constants.ZSTD_c_compressionLevel]: level,
  [constants.ZSTD_c_checksumFlag]: options.checksum === false ? 0 : 1,
  ...(options.windowLog === undefined ? {} : { [constants.ZSTD_c_windowLog]: options.windowLog }),
});

/**
 * Compresses pieces into independent frames (content size and checksum in
 * each, as the zstd tool writes). It reuses one zstd context and writes into
 * the caller's buffer through node:zlib's handle where it has one (Deno,
 * Node); elsewhere it falls back to `zstdCompressSync` (valid frames, not
 * always the same bytes). `encode(input, out)` needs `out` of at least
 * `zstdFrameBound(input.length)` bytes.
 */
export class ZstdFrameEncoder extends PieceEncoder {
  constructor(level: number, options: ZstdFrameOptions = {}) {
    super(
      createZstdCompress({ params: params(level, options) }),
      constants.ZSTD_e_end,
      (input) =>
        zstdCompressSync(input, {
          chunkSize: zstdFrameBound(input.length),
          params: params(level, options),
        }),
      "A zstd frame did not fit its output buffer",
    );
  }
}
