/// <reference no-default-lib="true" />
/// <reference lib="dom" />
/// <reference lib="esnext" />
// The page's Worker: runs the engine off the page's thread.
import { Engine, type Reply, type Request } from "./_engine.ts";

/** The worker's global scope, as much of it as is used here. */
const scope = globalThis as unknown as {
  onmessage: ((event: MessageEvent<Request>) => void) | null;
  postMessage(reply: Reply): void;
};

const engine = new Engine((reply) => scope.postMessage(reply));
scope.onmessage = (event) => void engine.handle(event.data);
