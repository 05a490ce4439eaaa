// Exact-length reads from a byte stream, holding at most one pending chunk.

/** Reads exact byte counts from a stream; `null` at a clean end of stream. */
export class ByteReader {
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #pending: Uint8Array = new Uint8Array(0);

  constructor(readable: ReadableStream<Uint8Array>) {
    this.#reader = readable.getReader();
  }

  /** Reads exactly `n` bytes; null when the stream ends before them. */
  async read(n: number): Promise<Uint8Array | null> {
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      if (this.#pending.length === 0) {
        const { value, done } = await this.#reader.read();
        if (done) return null;
        this.#pending = value;
        continue;
      }
      const take = Math.min(n - filled, this.#pending.length);
      out.set(this.#pending.subarray(0, take), filled);
      this.#pending = this.#pending.subarray(take);
      filled += take;
    }
    return out;
  }

  /** Reads and drops `n` bytes without holding them; false when the stream ends first. */
  async skip(n: number): Promise<boolean> {
    let left = n;
    while (left > 0) {
      if (this.#pending.length === 0) {
        const { value, done } = await this.#reader.read();
        if (done) return false;
        this.#pending = value;
        continue;
      }
      const take = Math.min(left, this.#pending.length);
      this.#pending = this.#pending.subarray(take);
      left -= take;
    }
    return true;
  }

  /** Stops reading and cancels the stream. */
  async cancel(): Promise<void> {
    this.#pending = new Uint8Array(0);
    await this.#reader.cancel().catch(() => {});
  }
}
