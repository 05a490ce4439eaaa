// Raw deflate (no zlib header) of independent pieces through node:zlib's
// handle, written into the caller's buffer: one zlib context for every piece,
// reset in between, so that a long run allocates nothing per piece
// (`deflateRawSync` makes a context and an output buffer per call). Used for
// qcow2's compressed clusters. Private to the library.
import { constants, createDeflateRaw, deflateRawSync } from "node:zlib";
import { PieceEncoder } from "./_zlib_handle.ts";

/**
 * The most bytes `length` bytes deflate to, with room to spare (zlib's
 * deflateBound is about length + length/4096 + 13).
 */
export function deflateRawBound(length: number): number {
  return length + (length >>> 8) + 1024;
}

/**
 * Deflates pieces one by one, each a complete raw deflate stream;
 * `encode(input, out)` needs `out` of at least `deflateRawBound(input.length)`
 * bytes.
 */
export class DeflateRawEncoder extends PieceEncoder {
  /** @param windowBits log2 of the window, 9 to 15 (qcow2: 12). */
  constructor(windowBits: number) {
    super(
      createDeflateRaw({ windowBits }),
      constants.Z_FINISH,
      (input) => deflateRawSync(input, { windowBits }),
      "A deflated piece did not fit its output buffer",
    );
  }
}
