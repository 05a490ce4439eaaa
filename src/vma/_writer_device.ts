// The writer-side state of one device: its handle (`VmaDeviceWriter`), the
// serial queue of its writes, the partial cluster being filled and the
// clusters already recorded. Documented on `VmaDeviceWriter` (vma_writer.ts).
// Private to the library.
import { CLUSTER_SIZE, clusterCount, quoteName } from "./_layout.ts";
import { ClusterSet } from "./_cluster_set.ts";
import type { Archive } from "./_writer_archive.ts";
import type { VmaDeviceWriter } from "./vma_writer.ts";

/** One device of an `Archive`; `handle` is what `VmaWriter.addDevice` returns. */
export class Device {
  readonly recorded: ClusterSet = new ClusterSet();
  readonly clusters: number;
  readonly handle: VmaDeviceWriter;
  readonly id: number;
  readonly name: string;
  readonly nameBytes: Uint8Array;
  readonly size: number;
  readonly vmstate: boolean;
  /** Bytes recorded (whole clusters). */
  bytes = 0;
  #archive: Archive;
  #partial: Uint8Array | undefined; // one cluster, while a cluster is being filled
  #partialStart = 0;
  #partialLength = 0;
  #spare: Uint8Array | undefined; // a cluster buffer to reuse for the next partial cluster
  #closed = false;
  #chain: Promise<void> = Promise.resolve();
  #writable: WritableStream<Uint8Array> | undefined;
  #next = 0; // where the next sequential write goes

  constructor(
    archive: Archive,
    id: number,
    name: string,
    nameBytes: Uint8Array,
    size: number,
    vmstate: boolean,
  ) {
    this.#archive = archive;
    this.id = id;
    this.name = name;
    this.nameBytes = nameBytes;
    this.size = size;
    this.vmstate = vmstate;
    this.clusters = clusterCount(size);
    this.handle = this.#makeHandle();
  }

  /** Closes the device after the writes queued before. */
  close(): Promise<void> {
    return this.#serial(() => this.#close());
  }

  #makeHandle(): VmaDeviceWriter {
    // deno-lint-ignore no-this-alias
    const self = this;
    return {
      get id() {
        return self.id;
      },
      get name() {
        return self.name;
      },
      get size() {
        return self.size;
      },
      get bytesWritten() {
        return self.bytes + self.#partialLength;
      },
      get writable() {
        return self.#getWritable();
      },
      write: (offset, data) => this.#serial(() => this.#write(offset, data)),
      writeZeroes: (offset, length) => this.#serial(() => this.#writeZeroes(offset, length)),
      close: () => this.close(),
    };
  }

  /** Runs `op` after every earlier operation; a failure fails the archive. */
  #serial(op: () => Promise<void>): Promise<void> {
    const run = this.#chain.then(async () => {
      this.#archive.throwIfFailed();
      try {
        await op();
      } catch (error) {
        this.#archive.fail(error);
        throw error;
      }
    });
    this.#chain = run.catch(() => {});
    return run;
  }

  #getWritable(): WritableStream<Uint8Array> {
    this.#writable ??= new WritableStream<Uint8Array>({
      write: (chunk) => this.#serial(() => this.#write(this.#next, chunk)),
      close: () => this.close(),
      abort: (reason) => {
        this.#archive.fail(reason ?? new TypeError(`Device ${quoteName(this.name)} was aborted`));
      },
    });
    return this.#writable;
  }

  #checkWrite(what: string, offset: number, length: number): void {
    if (this.#closed) {
      throw new TypeError(`Cannot write to device ${quoteName(this.name)}: it is closed`);
    }
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw new RangeError(
        `Cannot write to device ${
          quoteName(this.name)
        }: offset ${offset} is not a valid byte offset`,
      );
    }
    if (offset + length > this.size) {
      throw new RangeError(
        `Cannot write ${what} at offset ${offset} to device ${
          quoteName(this.name)
        }: it goes past the end of the device (${this.size} bytes)`,
      );
    }
  }

  async #write(offset: number, data: Uint8Array): Promise<void> {
    if (!(data instanceof Uint8Array)) {
      throw new TypeError(
        `Cannot write to device ${quoteName(this.name)}: the data must be a Uint8Array`,
      );
    }
    this.#checkWrite(`${data.length} bytes`, offset, data.length);
    if (data.length === 0) return;
    this.#archive.markStarted();
    let pos = 0;
    if (this.#partial !== undefined) {
      pos = await this.#continuePartial(offset, data);
    } else if (offset % CLUSTER_SIZE !== 0) {
      throw new RangeError(
        `Cannot write at offset ${offset} to device ${
          quoteName(this.name)
        }: the offset is not a multiple of ${CLUSTER_SIZE} and continues no partial cluster`,
      );
    }
    while (pos < data.length) {
      const at = offset + pos;
      const cluster = at / CLUSTER_SIZE;
      if (this.recorded.has(cluster)) {
        throw new RangeError(
          `Cannot write cluster ${cluster} of device ${
            quoteName(this.name)
          }: it was already written`,
        );
      }
      const need = Math.min(CLUSTER_SIZE, this.size - at);
      const avail = data.length - pos;
      if (avail >= need) {
        await this.#archive.recordCluster(this, cluster, data, pos, need);
        pos += need;
      } else {
        const buf = this.#spare ?? new Uint8Array(CLUSTER_SIZE);
        this.#spare = undefined;
        buf.set(data.subarray(pos), 0);
        this.#partial = buf;
        this.#partialStart = at;
        this.#partialLength = avail;
        pos += avail;
      }
    }
    this.#next = offset + data.length;
  }

  /** Adds the start of `data` to the partial cluster; returns the bytes taken. */
  async #continuePartial(offset: number, data: Uint8Array): Promise<number> {
    const partial = this.#partial!;
    const expected = this.#partialStart + this.#partialLength;
    if (offset !== expected) {
      throw new RangeError(
        `Cannot write at offset ${offset} to device ${
          quoteName(this.name)
        }: the partial cluster at offset ${this.#partialStart} continues at offset ${expected}`,
      );
    }
    const clusterEnd = Math.min(this.#partialStart + CLUSTER_SIZE, this.size);
    const n = Math.min(data.length, clusterEnd - expected);
    partial.set(data.subarray(0, n), this.#partialLength);
    this.#partialLength += n;
    if (this.#partialStart + this.#partialLength === clusterEnd) {
      const length = this.#partialLength;
      this.#partial = undefined;
      this.#partialLength = 0;
      const cluster = this.#partialStart / CLUSTER_SIZE;
      await this.#archive.recordCluster(this, cluster, partial, 0, length);
      this.#spare = partial;
    }
    return n;
  }

  async #writeZeroes(offset: number, length: number): Promise<void> {
    if (!Number.isSafeInteger(length) || length < 0) {
      throw new RangeError(
        `Cannot write zeroes to device ${quoteName(this.name)}: length ${length} is not valid`,
      );
    }
    this.#checkWrite(`${length} zero bytes`, offset, length);
    if (length === 0) return;
    if (this.#partial !== undefined) {
      throw new RangeError(
        `Cannot write zeroes at offset ${offset} to device ${
          quoteName(this.name)
        }: the partial cluster at offset ${this.#partialStart} is not complete`,
      );
    }
    if (
      offset % CLUSTER_SIZE !== 0 || (length % CLUSTER_SIZE !== 0 && offset + length !== this.size)
    ) {
      throw new RangeError(
        `Cannot write ${length} zero bytes at offset ${offset} to device ${
          quoteName(this.name)
        }: zeroes are recorded in whole clusters of ${CLUSTER_SIZE} bytes`,
      );
    }
    this.#archive.markStarted();
    await this.#archive.recordZeroClusters(
      this,
      offset / CLUSTER_SIZE,
      Math.ceil((offset + length) / CLUSTER_SIZE),
    );
    this.#next = offset + length;
  }

  #close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    const written = this.bytes + this.#partialLength;
    if (written !== this.size || this.recorded.size !== this.clusters) {
      return Promise.reject(
        new RangeError(
          `Cannot close device ${
            quoteName(this.name)
          }: ${written} of ${this.size} bytes were written, ${this.size - written} missing`,
        ),
      );
    }
    this.#closed = true;
    return Promise.resolve();
  }
}
