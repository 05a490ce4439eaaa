// A small pool of web-standard module Workers that run one kind of job: each
// job is a message (with transferable buffers) and its answer comes back as a
// promise. Workers start lazily, on the first job, so a caller that never
// sends one pays nothing. No `Deno.*`: the same code runs in Deno, Node
// (with a global Worker), Bun and browsers. Private to the library.
//
// The worker side of the protocol: `self.onmessage` gets `{ id, job }` and
// answers `{ id, result }` or `{ id, error }` (a message string), passing the
// result's buffers as transferables. {@linkcode serveJobs} does that.

/** What a worker module posts back. */
type Answer<R> = { id: number; result: R } | { id: number; error: string };

interface Pending<R> {
  resolve: (value: R) => void;
  reject: (reason: unknown) => void;
}

/** One worker and the jobs it has been given. */
interface Slot<R> {
  worker: Worker;
  pending: Map<number, Pending<R>>;
}

/**
 * Runs jobs on `size` workers of the module at `url`, handing each job to the
 * worker with the fewest jobs in hand. A worker that fails (an uncaught error,
 * a module that does not load) fails the pool: every pending and later job
 * rejects with that error. `terminate()` stops the workers.
 */
export class WorkerPool<J, R> {
  #url: URL;
  #size: number;
  #slots: Slot<R>[] = [];
  #nextId = 0;
  #error: { reason: unknown } | undefined;
  #terminated = false;

  constructor(url: URL, size: number) {
    if (!Number.isSafeInteger(size) || size < 1) {
      throw new RangeError(`A worker pool needs at least 1 worker, got ${size}`);
    }
    this.#url = url;
    this.#size = size;
  }

  /** Jobs sent and not answered yet. */
  get pending(): number {
    let n = 0;
    for (const s of this.#slots) n += s.pending.size;
    return n;
  }

  /**
   * Runs `job` on a worker; `transfer` lists the buffers to move (not copy)
   * to it.
   */
  run(job: J, transfer: Transferable[] = []): Promise<R> {
    if (this.#error) return Promise.reject(this.#error.reason);
    if (this.#terminated) return Promise.reject(new TypeError("The worker pool is terminated"));
    const slot = this.#pick();
    const id = this.#nextId++;
    return new Promise<R>((resolve, reject) => {
      slot.pending.set(id, { resolve, reject });
      try {
        slot.worker.postMessage({ id, job }, transfer);
      } catch (e) {
        slot.pending.delete(id);
        reject(e);
      }
    });
  }

  /** Stops every worker; jobs still pending reject. */
  terminate(): void {
    if (this.#terminated) return;
    this.#terminated = true;
    const reason = this.#error?.reason ?? new TypeError("The worker pool is terminated");
    for (const slot of this.#slots) {
      slot.worker.terminate();
      for (const p of slot.pending.values()) p.reject(reason);
      slot.pending.clear();
    }
  }

  #pick(): Slot<R> {
    let best: Slot<R> | undefined;
    for (const s of this.#slots) {
      if (best === undefined || s.pending.size < best.pending.size) best = s;
    }
    if (this.#slots.length < this.#size && (best === undefined || best.pending.size > 0)) {
      best = this.#start();
    }
    return best!;
  }

  #start(): Slot<R> {
    const worker = new Worker(this.#url, { type: "module" });
    const slot: Slot<R> = { worker, pending: new Map() };
    worker.onmessage = (event: MessageEvent<Answer<R>>) => {
      const answer = event.data;
      const p = slot.pending.get(answer.id);
      if (p === undefined) return;
      slot.pending.delete(answer.id);
      if ("error" in answer) p.reject(new Error(answer.error));
      else p.resolve(answer.result);
    };
    worker.onerror = (event: ErrorEvent) => {
      // Handled here: an unhandled worker error would end the whole process.
      event.preventDefault();
      this.#fail(new Error(`A worker failed: ${event.message || "unknown error"}`));
    };
    worker.onmessageerror = () => {
      this.#fail(new Error("A worker sent a message that could not be read"));
    };
    this.#slots.push(slot);
    return slot;
  }

  #fail(reason: unknown): void {
    this.#error ??= { reason };
    this.terminate();
  }
}

/**
 * The worker side: answers each `{ id, job }` message with `handle(job)`,
 * transferring the buffers `handle` lists, or with the error's message.
 *
 * @param handle Runs one job; returns the result and the buffers to transfer.
 */
export function serveJobs<J, R>(
  handle: (job: J) => { result: R; transfer: Transferable[] },
): void {
  // deno-lint-ignore no-explicit-any
  const scope = globalThis as any;
  scope.onmessage = (event: MessageEvent<{ id: number; job: J }>) => {
    const { id, job } = event.data;
    let answer: { result: R; transfer: Transferable[] };
    try {
      answer = handle(job);
    } catch (e) {
      scope.postMessage({ id, error: e instanceof Error ? e.message : String(e) });
      return;
    }
    scope.postMessage({ id, result: answer.result }, answer.transfer);
  };
}
