// Raw deflate (no zlib header) of independent pieces through node:zlib's
// handle, written into the caller's buffer: one zlib context for every piece,
// reset in between, so that a long run allocates nothing per piece
// (`deflateRawSync` makes a context and an output buffer per call). Used for
// qcow2's compressed clusters. Private to the library.
import { constants, createDeflateRaw, deflateRawSync } from "node:zlib";
import { type ZlibHandle, zlibHandle } from "./_zlib_handle.ts";

/**
 * The most bytes `length` bytes deflate to, with room to spare (zlib's
 * deflateBound is about length + length/4096 + 13).
 */
export function deflateRawBound(length: number): number {
  return length + (length >>> 8) + 1024;
}

/** Deflates pieces one by one, each a complete raw deflate stream. */
export class DeflateRawEncoder {
  readonly #windowBits: number;
  #handle: ZlibHandle | undefined;

  /** @param windowBits log2 of the window, 9 to 15 (qcow2: 12). */
  constructor(windowBits: number) {
    this.#windowBits = windowBits;
    this.#handle = zlibHandle(createDeflateRaw({ windowBits }));
  }

  /**
   * Writes `input`, deflated, into `out` (at least `deflateRawBound(input.length)`
   * bytes); returns the deflated length.
   */
  encode(input: Uint8Array, out: Uint8Array): number {
    if (this.#handle === undefined) {
      const data = deflateRawSync(input, { windowBits: this.#windowBits });
      out.set(data);
      return data.length;
    }
    this.#handle.writeSync(constants.Z_FINISH, input, 0, input.length, out, 0, out.length);
    const [availOut, availIn] = this.#handle.state;
    this.#handle.reset();
    if (availIn !== 0 || availOut === 0) {
      // Cannot happen with a buffer of deflateRawBound bytes.
      throw new RangeError("A deflated piece did not fit its output buffer");
    }
    return out.length - availOut;
  }

  /** Frees the zlib context. */
  close(): void {
    this.#handle?.close();
    this.#handle = undefined;
  }
}
