// The state of one archive being written: its configs and devices, the
// sticky error, backpressure and ordered mode, and the clusters going into
// extents. `VmaWriter` (vma_writer.ts) is its public face and carries the
// docs. Private to the library.
import {
  BLOCK_SIZE,
  CLUSTER_SIZE,
  clusterCount,
  MAX_BLOB_SIZE,
  MAX_CLUSTERS,
  MAX_CONFIGS,
  MAX_DEVICES,
  MAX_HEADER_SIZE,
  popcount16,
  quoteName,
  uuidToString,
  VMSTATE_NAME,
} from "./_layout.ts";
import { ExtentBuilder } from "./_extent_builder.ts";
import {
  BLOB_AREA_LIMIT,
  checkName,
  encodeHeader,
  type HeaderConfig,
  parseWriterOptions,
  roundUp512,
} from "./_writer_header.ts";
import { Device } from "./_writer_device.ts";
import { nonZeroMask } from "./_zero.ts";
import type { VmaDeviceWriter, VmaWriterOptions, VmaWriterStats } from "./vma_writer.ts";

const encoder = new TextEncoder();

/** The archive behind a `VmaWriter`; see there for the public behaviour. */
export class Archive {
  #uuid: Uint8Array;
  #ctime: Date;
  #ordered: boolean;
  #configs: HeaderConfig[] = [];
  #devices: Device[] = [];
  #blobUsed = 1; // the dummy byte at blob position 0
  #started = false; // device data was written
  #headerWritten = false;
  #error: { reason: unknown } | undefined;
  #closing: Promise<void> | undefined;
  #controller!: ReadableStreamDefaultController<Uint8Array>;
  #readable: ReadableStream<Uint8Array>;
  #waiters: { resolve: () => void; reject: (reason: unknown) => void }[] = [];
  #extent: ExtentBuilder;
  #bytes = 0;
  #zeroBytes = 0;
  #archiveBytes = 0;

  constructor(options: VmaWriterOptions) {
    const { uuid, ctime, ordered } = parseWriterOptions(options);
    this.#uuid = uuid;
    this.#ctime = ctime;
    this.#ordered = ordered;
    this.#extent = new ExtentBuilder(uuid, (chunk) => this.#enqueue(chunk));
    this.#readable = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#controller = controller;
      },
      pull: () => this.#wake(),
      cancel: (reason) => {
        this.fail(reason ?? new TypeError("The archive stream was cancelled"));
      },
    }, new CountQueuingStrategy({ highWaterMark: 1 }));
  }

  get readable(): ReadableStream<Uint8Array> {
    return this.#readable;
  }

  get uuid(): string {
    return uuidToString(this.#uuid);
  }

  get ctime(): Date {
    return new Date(this.#ctime.getTime());
  }

  get stats(): VmaWriterStats {
    return { bytes: this.#bytes, zeroBytes: this.#zeroBytes, archiveBytes: this.#archiveBytes };
  }

  addConfig(name: string, data: Uint8Array | string): void {
    this.#checkOpen(`Cannot add config ${quoteName(name)}`);
    const nameBytes = checkName("config", name, this.#configs.some((c) => c.name === name));
    let bytes: Uint8Array;
    if (typeof data === "string") bytes = encoder.encode(data);
    else if (data instanceof Uint8Array) bytes = data.slice();
    else {
      throw new TypeError(
        `Cannot add config ${quoteName(name)}: the data must be a string or a Uint8Array`,
      );
    }
    if (bytes.length > MAX_BLOB_SIZE) {
      throw new RangeError(
        `Cannot add config ${
          quoteName(name)
        }: the data is ${bytes.length} bytes, more than ${MAX_BLOB_SIZE}`,
      );
    }
    if (this.#configs.length >= MAX_CONFIGS) {
      throw new RangeError(
        `Cannot add config ${quoteName(name)}: an archive holds at most ${MAX_CONFIGS} configs`,
      );
    }
    this.#reserveBlobs(
      `Cannot add config ${quoteName(name)}`,
      2 + nameBytes.length + 1 + 2 + bytes.length,
    );
    this.#configs.push({ name, nameBytes, data: bytes });
  }

  addDevice(name: string, size: number): VmaDeviceWriter {
    this.#checkOpen(`Cannot add device ${quoteName(name)}`);
    const nameBytes = checkName("device", name, this.#devices.some((d) => d.name === name));
    if (typeof size !== "number" || !Number.isSafeInteger(size) || size <= 0) {
      throw new RangeError(
        `Cannot add device ${
          quoteName(name)
        }: the size must be a positive safe integer, got ${size}`,
      );
    }
    const vmstate = name === VMSTATE_NAME;
    if (!vmstate && size % 512 !== 0) {
      throw new RangeError(
        `Cannot add device ${quoteName(name)}: the size ${size} is not a multiple of 512`,
      );
    }
    if (clusterCount(size) > MAX_CLUSTERS) {
      throw new RangeError(
        `Cannot add device ${quoteName(name)}: the size ${size} is more than 2^32 clusters`,
      );
    }
    if (this.#devices.length >= MAX_DEVICES) {
      throw new RangeError(
        `Cannot add device ${quoteName(name)}: an archive holds at most ${MAX_DEVICES} devices`,
      );
    }
    this.#reserveBlobs(`Cannot add device ${quoteName(name)}`, 2 + nameBytes.length + 1);
    const device = new Device(this, this.#devices.length + 1, name, nameBytes, size, vmstate);
    this.#devices.push(device);
    return device.handle;
  }

  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  abort(reason?: unknown): Promise<void> {
    this.fail(reason ?? new TypeError("The archive was aborted"));
    return Promise.resolve();
  }

  recycle(chunk: Uint8Array): void {
    this.#extent.recycle(chunk);
  }

  /** Throws the sticky error, if any. */
  throwIfFailed(): void {
    if (this.#error) throw this.#error.reason;
  }

  /** Puts the writer in the error state (the first reason sticks). */
  fail(reason: unknown): void {
    if (this.#error) return;
    this.#error = { reason };
    try {
      this.#controller.error(reason);
    } catch {
      // Already closed.
    }
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w.reject(reason);
  }

  /** Marks that device data arrived (no more configs or devices). */
  markStarted(): void {
    this.#started = true;
  }

  /** Wakes writers waiting for their turn in ordered mode. */
  deviceDone(): void {
    if (this.#ordered) this.#wake();
  }

  /**
   * Records one cluster of `device`: `data[start .. start+length)`
   * holds its valid bytes, or `data` is undefined for a zero cluster.
   */
  async recordCluster(
    device: Device,
    cluster: number,
    data: Uint8Array | undefined,
    start: number,
    length: number,
  ): Promise<void> {
    // Wait for our turn (ordered mode) and for the consumer (backpressure).
    while (this.#mustWait(device)) await this.#waitChange();
    if (this.#ordered && cluster !== device.recorded.size) {
      throw new RangeError(
        `Cannot write cluster ${cluster} of device ${
          quoteName(device.name)
        }: ordered mode expects cluster ${device.recorded.size} next`,
      );
    }
    if (!device.recorded.add(cluster)) {
      throw new RangeError(
        `Cannot write cluster ${cluster} of device ${
          quoteName(device.name)
        }: it was already written`,
      );
    }
    this.#append(device, cluster, data, start, length);
    if (device.recorded.size === device.clusters) this.deviceDone();
  }

  /**
   * Records zero clusters `from .. to-1` of `device`, waiting only
   * when the consumer is behind.
   */
  async recordZeroClusters(device: Device, from: number, to: number): Promise<void> {
    for (let c = from; c < to; c++) {
      const length = Math.min(CLUSTER_SIZE, device.size - c * CLUSTER_SIZE);
      if (
        this.#error || (this.#controller.desiredSize ?? 0) <= 0 ||
        (this.#ordered && (this.#currentOrdered() !== device || c !== device.recorded.size)) ||
        device.recorded.has(c)
      ) {
        await this.recordCluster(device, c, undefined, 0, length);
        continue;
      }
      device.recorded.add(c);
      this.#append(device, c, undefined, 0, length);
    }
    if (device.recorded.size === device.clusters) this.deviceDone();
  }

  /** Throws the sticky error; true while `device` must wait for its turn or the consumer. */
  #mustWait(device: Device): boolean {
    this.throwIfFailed();
    if (this.#ordered && this.#currentOrdered() !== device) return true;
    return (this.#controller.desiredSize ?? 0) <= 0;
  }

  async #close(): Promise<void> {
    this.throwIfFailed();
    for (const device of this.#devices) await device.close();
    this.throwIfFailed();
    if (this.#extent.slots > 0 || !this.#headerWritten) this.#finishExtent();
    this.#extent.flushSmall();
    this.#controller.close();
  }

  #checkOpen(prefix: string): void {
    this.throwIfFailed();
    if (this.#closing) throw new TypeError(`${prefix}: the archive is closed`);
    if (this.#started) throw new TypeError(`${prefix}: device data was already written`);
  }

  #reserveBlobs(prefix: string, bytes: number): void {
    const used = this.#blobUsed + bytes;
    if (roundUp512(used) > BLOB_AREA_LIMIT) {
      throw new RangeError(`${prefix}: the header would be larger than ${MAX_HEADER_SIZE} bytes`);
    }
    this.#blobUsed = used;
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w.resolve();
  }

  #waitChange(): Promise<void> {
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  #currentOrdered(): Device | undefined {
    return this.#devices.find((d) => d.recorded.size < d.clusters);
  }

  #append(
    device: Device,
    cluster: number,
    data: Uint8Array | undefined,
    start: number,
    length: number,
  ): void {
    let mask = 0;
    if (data !== undefined) {
      mask = device.vmstate
        ? (1 << Math.ceil(length / BLOCK_SIZE)) - 1
        : nonZeroMask(data, start, length);
    }
    this.#extent.add(device.id, cluster, mask, data, start, length);
    this.#bytes += length;
    // As Proxmox's writer counts zeros: every block not stored, padding past the end included.
    this.#zeroBytes += CLUSTER_SIZE - popcount16(mask) * BLOCK_SIZE;
    device.bytes += length;
    if (this.#extent.full) this.#finishExtent();
  }

  #finishExtent(): void {
    if (!this.#headerWritten) {
      this.#headerWritten = true;
      this.#enqueue(
        encodeHeader(this.#uuid, this.#ctime, this.#configs, this.#devices, this.#blobUsed),
      );
    }
    this.#extent.finish();
  }

  #enqueue(chunk: Uint8Array): void {
    this.#archiveBytes += chunk.length;
    this.#controller.enqueue(chunk);
  }
}
