// The internal handle of a node:zlib stream (Deno and Node have one): it
// compresses or decompresses synchronously between the caller's buffers, so
// a long stream allocates nothing per chunk. Used by the zstd frame encoder
// and the zstd decoder of archives; no import of node:zlib here, so that
// browsers can load the decoder's module. Private to the library.

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
