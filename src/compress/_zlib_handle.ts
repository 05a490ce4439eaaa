// The internal handle of a node:zlib stream (Deno and Node have one): it
// compresses or decompresses synchronously between the caller's buffers, so
// a long stream allocates nothing per chunk. Used by the piece encoders (zstd
// frames, raw deflate) and the decoders of archives; no import of node:zlib
// here, so that browsers can load the decoders' module. Private to the library.

/** A node:zlib handle: `writeSync(flush, in, inOff, inLen, out, outOff, outLen)`. */
export interface ZlibHandle {
  writeSync(
    flush: number,
    input: Uint8Array,
    inOff: number,
    inLen: number,
    out: Uint8Array,
    outOff: number,
    outLen: number,
  ): void;
  /** Starts a new stream (frame) with the same settings. */
  reset(): void;
  /** After `writeSync`: `[output bytes left free, input bytes left unread]`. */
  readonly state: Uint32Array;
  /** Frees the handle's context. */
  close(): void;
}

/**
 * The handle of `stream`, or undefined (and `stream` closed) where it has
 * none. Its `writeSync` throws the codec's errors; after one, the handle is
 * done.
 */
export function zlibHandle(stream: { close(): void }): ZlibHandle | undefined {
  // deno-lint-ignore no-explicit-any
  const internal = stream as any;
  const handle = internal._handle;
  const state = internal._writeState;
  if (
    typeof handle?.writeSync !== "function" || typeof handle?.reset !== "function" ||
    !(state instanceof Uint32Array)
  ) {
    stream.close();
    return undefined;
  }
  // zlib's errors come through `onerror` (the stream would emit them, out
  // of reach of a try/catch); here `writeSync` throws them.
  let failure: Error | undefined;
  handle.onerror = (message: unknown) => {
    failure ??= new Error(String(message));
  };
  return {
    writeSync: (...args) => {
      handle.writeSync(...args);
      if (failure !== undefined) throw failure;
    },
    reset: () => handle.reset(),
    state,
    close: () => stream.close(),
  };
}

/**
 * Compresses pieces one by one, each a whole stream (a zstd frame, a raw
 * deflate stream), into the caller's buffer: one context for every piece,
 * reset in between, so that a long run allocates nothing per piece. Where
 * the runtime has no handle, `fallback` compresses each piece into a buffer
 * of its own, which is copied.
 */
export class PieceEncoder {
  #handle: ZlibHandle | undefined;
  readonly #end: number;
  readonly #fallback: (input: Uint8Array) => Uint8Array;
  readonly #tooSmall: string;

  /**
   * @param stream A node:zlib stream whose handle does the work.
   * @param end The flush value that ends a piece (`ZSTD_e_end`, `Z_FINISH`).
   * @param fallback Compresses one piece where there is no handle.
   * @param tooSmall The message when a piece does not fit its output buffer.
   */
  constructor(
    stream: { close(): void },
    end: number,
    fallback: (input: Uint8Array) => Uint8Array,
    tooSmall: string,
  ) {
    this.#handle = zlibHandle(stream);
    this.#end = end;
    this.#fallback = fallback;
    this.#tooSmall = tooSmall;
  }

  /** Writes `input`, compressed, into `out`; returns the compressed length. */
  encode(input: Uint8Array, out: Uint8Array): number {
    if (this.#handle === undefined) {
      const data = this.#fallback(input);
      out.set(data);
      return data.length;
    }
    this.#handle.writeSync(this.#end, input, 0, input.length, out, 0, out.length);
    const [availOut, availIn] = this.#handle.state;
    this.#handle.reset();
    // Cannot happen with a buffer of the codec's bound.
    if (availIn !== 0 || availOut === 0) throw new RangeError(this.#tooSmall);
    return out.length - availOut;
  }

  /** Frees the context. */
  close(): void {
    this.#handle?.close();
    this.#handle = undefined;
  }
}
