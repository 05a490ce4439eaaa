// One step of a byte stream that passes another byte stream's bytes through:
// the consumer's buffer goes to the source's BYOB reader, so that nothing is
// copied or allocated per chunk. Private to the library.

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
