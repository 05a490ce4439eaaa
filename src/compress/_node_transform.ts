// A node:stream Transform (such as node:zlib's zstd codecs) as a WHATWG
// TransformStream-shaped pair, with backpressure both ways. Private to the
// library (the decoders of compressed archives) and used by the CLI.
import type { Transform } from "node:stream";

// Deno 2.9's node:zlib zstd streams throw a data error (a corrupt .vma.zst)
// from a nextTick callback instead of emitting 'error': an uncaught exception
// that kills the process with a stack trace and skips the cleanup of partial
// output. While transforms are active, such exceptions are routed to them.
const active = new Set<Transform>();

function onUncaught(event: ErrorEvent): void {
  const error: unknown = event.error;
  if (!(error instanceof Error) || !String(error.stack).includes("ext:deno_node/zlib")) return;
  event.preventDefault();
  for (const t of active) t.destroy(error);
}

/** Deno's global error event (Node and Bun have none: their zlib emits 'error'). */
const hasErrorEvent = typeof globalThis.addEventListener === "function";

function track(t: Transform): void {
  if (!hasErrorEvent) return;
  if (active.size === 0) globalThis.addEventListener("error", onUncaught);
  active.add(t);
  const untrack = () => {
    if (active.delete(t) && active.size === 0) {
      globalThis.removeEventListener("error", onUncaught);
    }
  };
  t.once("close", untrack);
  t.once("end", untrack);
}

/** Wraps a Node.js Transform as `{ writable, readable }` for `pipeThrough`. */
export function nodeTransformToWeb(
  t: Transform,
): { writable: WritableStream<Uint8Array>; readable: ReadableStream<Uint8Array> } {
  let failure: unknown;
  let failed = false;
  const waiters = new Set<(e?: unknown) => void>();
  const fail = (e: unknown) => {
    if (failed) return;
    failed = true;
    failure = e;
    for (const w of waiters) w(e);
    waiters.clear();
  };
  t.on("error", fail);
  track(t);

  // Events already queued when the readable is cancelled must not touch it.
  let cancelled = false;
  const readable = new ReadableStream<Uint8Array>({
    start(controller) {
      t.on("data", (chunk: Uint8Array) => {
        if (cancelled) return;
        controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
        if ((controller.desiredSize ?? 0) <= 0) t.pause();
      });
      t.on("end", () => cancelled || controller.close());
      t.on("error", (e: unknown) => cancelled || controller.error(e));
      t.pause();
    },
    pull() {
      t.resume();
    },
    cancel(reason) {
      cancelled = true;
      fail(reason ?? new TypeError("The stream was cancelled"));
      t.destroy();
    },
  }, { highWaterMark: 4 });

  const wait = (event: "drain" | "finish") =>
    new Promise<void>((resolve, reject) => {
      if (failed) return reject(failure);
      const done = (e?: unknown) => {
        t.off(event, ok);
        waiters.delete(done);
        if (e !== undefined) reject(e);
        else resolve();
      };
      const ok = () => done();
      waiters.add(done);
      t.once(event, ok);
    });

  const writable = new WritableStream<Uint8Array>({
    write(chunk) {
      if (failed) return Promise.reject(failure);
      if (!t.write(chunk)) return wait("drain");
      return undefined;
    },
    close() {
      if (failed) return Promise.reject(failure);
      const p = wait("finish");
      t.end();
      return p;
    },
    abort(reason) {
      fail(reason ?? new TypeError("The stream was aborted"));
      t.destroy();
    },
  });
  return { writable, readable };
}
