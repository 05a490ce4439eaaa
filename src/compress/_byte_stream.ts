// Byte streams that fill the consumer's buffers: one step of a stream that
// passes another byte stream's bytes through (the consumer's buffer goes to
// the source's BYOB reader, so that nothing is copied or allocated per
// chunk), and a stream whose reads a function answers. Private to the
// library.

/**
 * Answers `controller`'s pending read with one read of `source` into the
 * consumer's view (its buffer is transferred there and back), and closes
 * `controller` when `source` ends. The stream must be a byte stream with
 * `autoAllocateChunkSize`, so that every read has a view. Errors of `source`
 * are thrown as they are.
 */
export async function forwardByob(
  controller: ReadableByteStreamController,
  source: ReadableStreamBYOBReader,
): Promise<void> {
  const request = controller.byobRequest!;
  const view = request.view!;
  const r = await source.read(new Uint8Array(view.buffer, view.byteOffset, view.byteLength));
  if (r.done) {
    controller.close();
    request.respondWithNewView(new Uint8Array(r.value!.buffer, r.value!.byteOffset, 0));
    return;
  }
  request.respondWithNewView(r.value);
}

/**
 * A byte stream whose every read is answered by `fill(view)`: the number of
 * bytes it put in `view`, 0 at the end. When `fill` throws, `fail` is told
 * before the stream errors; `cancel` when the reader cancels. The stream
 * allocates only for reads without a buffer, `chunkSize` bytes each.
 */
export function fillingByteStream(source: {
  fill(view: Uint8Array): Promise<number>;
  fail?(error: unknown): void;
  cancel?(reason: unknown): void | Promise<void>;
  /** The buffer size of reads without one of their own. */
  chunkSize: number;
}): ReadableStream<Uint8Array> {
  return new ReadableStream({
    type: "bytes",
    autoAllocateChunkSize: source.chunkSize,
    async pull(controller) {
      const request = controller.byobRequest!;
      let filled: number;
      try {
        filled = await source.fill(request.view as Uint8Array);
      } catch (e) {
        source.fail?.(e);
        throw e;
      }
      if (filled === 0) {
        controller.close();
        request.respond(0);
        return;
      }
      request.respond(filled);
    },
    cancel: (reason) => source.cancel?.(reason),
  });
}
