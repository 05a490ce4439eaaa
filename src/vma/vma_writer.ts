import {
  BLOCK_SIZE,
  BLOCKS_PER_CLUSTER,
  CLUSTER_SIZE,
  clusterCount,
  DEV_INFO_SIZE,
  EXT_OFF_BLOCK_COUNT,
  EXT_OFF_BLOCKINFO,
  EXT_OFF_MD5,
  EXT_OFF_UUID,
  EXTENT_HEADER_SIZE,
  EXTENT_MAGIC,
  HEADER_FIXED_SIZE,
  HEADER_MAGIC,
  MAX_BLOB_SIZE,
  MAX_CLUSTERS,
  MAX_CONFIGS,
  MAX_DEVICES,
  MAX_EXTENT_SIZE,
  MAX_HEADER_SIZE,
  md5WithHole,
  OFF_BLOB_OFFSET,
  OFF_BLOB_SIZE,
  OFF_CONFIG_DATA,
  OFF_CONFIG_NAMES,
  OFF_CTIME,
  OFF_DEV_INFO,
  OFF_HEADER_SIZE,
  OFF_MD5,
  OFF_UUID,
  OFF_VERSION,
  SLOTS_PER_EXTENT,
  uuidFromString,
  uuidToString,
  VMSTATE_NAME,
} from "./_layout.ts";
import { ClusterSet } from "./_cluster_set.ts";
import { nonZeroMask } from "./_zero.ts";

/** Options of {@linkcode VmaWriter}. */
export interface VmaWriterOptions {
  /**
   * The archive UUID, as an RFC 4122 string or 16 bytes. Give it (with
   * `ctime` and `ordered`) to make archives reproducible.
   *
   * @default {a random version 4 UUID}
   */
  uuid?: string | Uint8Array;
  /**
   * The creation time stored in the header (whole seconds are kept).
   *
   * @default {the time the writer was made}
   */
  ctime?: Date;
  /**
   * Emit clusters ordered by device, then by cluster number, whatever order
   * the data arrives in, so two archives of the same disks are byte-identical
   * (given the same `uuid` and `ctime`) and deduplicate well. In this mode a
   * device's data waits until every device added before it is complete, so
   * feed all devices at once (or one after the other, in order), and each
   * device's clusters in increasing order.
   *
   * @default {false}
   */
  ordered?: boolean;
}

/** Counters of a {@linkcode VmaWriter}. */
export interface VmaWriterStats {
  /** Device bytes recorded so far (zero clusters included). */
  readonly bytes: number;
  /** Of `bytes`, those in all-zero 4 KiB blocks, which the archive leaves out. */
  readonly zeroBytes: number;
  /** Archive bytes handed to `readable` so far. */
  readonly archiveBytes: number;
}

/**
 * One device (disk image) of a {@linkcode VmaWriter}, as returned by
 * {@linkcode VmaWriter.addDevice}. Its data goes in either through
 * `writable` (the device's bytes in order) or through `write` and
 * `writeZeroes` at cluster-aligned offsets, in any order.
 */
export interface VmaDeviceWriter {
  /** The device id in the archive (1, 2, ... in the order devices were added). */
  readonly id: number;
  /** The device name, such as `drive-scsi0`. */
  readonly name: string;
  /** The device size in bytes. */
  readonly size: number;
  /** Device bytes recorded so far, zero clusters and a buffered partial cluster included. */
  readonly bytesWritten: number;
  /**
   * The device's bytes in order, in chunks of any size, from offset 0 (or from
   * where earlier `write` calls left off). Closing it closes the device;
   * aborting it aborts the whole archive.
   */
  readonly writable: WritableStream<Uint8Array>;
  /**
   * Records `data` at byte `offset`. The offset is a multiple of 65,536, or
   * continues a partial cluster left by the previous write. Each cluster may
   * be written once.
   *
   * @param offset Byte offset in the device.
   * @param data The bytes; the caller may reuse the buffer once the promise settles.
   * @returns A promise that settles when the data is taken (backpressure).
   */
  write(offset: number, data: Uint8Array): Promise<void>;
  /**
   * Records `length` bytes of zeros at `offset` without data (zero clusters).
   * The offset is a multiple of 65,536; the length is too, or reaches the end
   * of the device.
   *
   * @param offset Byte offset in the device.
   * @param length Number of bytes.
   * @returns A promise that settles when the clusters are recorded.
   */
  writeZeroes(offset: number, length: number): Promise<void>;
  /**
   * Closes the device. Fails (and fails the archive) when the device still owes bytes.
   *
   * @returns A promise that settles when every write before it is done.
   */
  close(): Promise<void>;
}

interface Config {
  name: string;
  nameBytes: Uint8Array;
  data: Uint8Array;
}

const encoder = new TextEncoder();
const MAX_NAME_BYTES = MAX_BLOB_SIZE - 1;
const BLOB_AREA_LIMIT = MAX_HEADER_SIZE - HEADER_FIXED_SIZE;
/** Extent buffers kept for reuse (see `VmaWriter.recycle`). */
const POOL_SIZE = 4;
/** Data-less extent headers are handed out in batches of this many bytes. */
const SMALL_BATCH = 128 * EXTENT_HEADER_SIZE;

/** The state of one archive being written; {@linkcode VmaWriter} is its public face. */
class Archive {
  #uuid: Uint8Array;
  #ctime: Date;
  #ordered: boolean;
  #configs: Config[] = [];
  #devices: Device[] = [];
  #blobUsed = 1; // the dummy byte at blob position 0
  #started = false; // device data was written
  #headerWritten = false;
  #error: { reason: unknown } | undefined;
  #closing: Promise<void> | undefined;
  #controller!: ReadableStreamDefaultController<Uint8Array>;
  #readable: ReadableStream<Uint8Array>;
  #waiters: { resolve: () => void; reject: (reason: unknown) => void }[] = [];
  // The extent being built.
  #extHead = new Uint8Array(EXTENT_HEADER_SIZE);
  #extHeadView = new DataView(this.#extHead.buffer);
  #extData: Uint8Array | undefined; // MAX_EXTENT_SIZE bytes, data from offset 512
  #slots = 0;
  #dataEnd = EXTENT_HEADER_SIZE;
  #bytes = 0;
  #zeroBytes = 0;
  #archiveBytes = 0;

  /**
   * Creates a writer.
   *
   * @param options Archive UUID, creation time and cluster order.
   * @throws {TypeError} When `uuid` or `ctime` is not of a valid form.
   */
  constructor(options: VmaWriterOptions = {}) {
    const { uuid, ctime, ordered = false } = options;
    if (uuid === undefined) {
      this.#uuid = crypto.getRandomValues(new Uint8Array(16));
      this.#uuid[6] = (this.#uuid[6] & 0x0f) | 0x40;
      this.#uuid[8] = (this.#uuid[8] & 0x3f) | 0x80;
    } else if (typeof uuid === "string") {
      const bytes = uuidFromString(uuid);
      if (bytes === undefined) {
        throw new TypeError(
          `Cannot use uuid "${uuid}": it is not of the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`,
        );
      }
      this.#uuid = bytes;
    } else if (uuid instanceof Uint8Array && uuid.length === 16) {
      this.#uuid = uuid.slice();
    } else {
      throw new TypeError("Cannot use uuid: it must be a string or 16 bytes");
    }
    if (ctime === undefined) {
      this.#ctime = new Date(Math.floor(Date.now() / 1000) * 1000);
    } else if (ctime instanceof Date && Number.isFinite(ctime.getTime())) {
      this.#ctime = new Date(Math.floor(ctime.getTime() / 1000) * 1000);
    } else {
      throw new TypeError("Cannot use ctime: it must be a valid Date");
    }
    if (typeof ordered !== "boolean") {
      throw new TypeError("Cannot use ordered: it must be a boolean");
    }
    this.#ordered = ordered;
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

  /** The archive, to be read by the consumer. */
  get readable(): ReadableStream<Uint8Array> {
    return this.#readable;
  }

  /** The archive UUID, lower-case. */
  get uuid(): string {
    return uuidToString(this.#uuid);
  }

  /** The creation time stored in the header (whole seconds). */
  get ctime(): Date {
    return new Date(this.#ctime.getTime());
  }

  /** Bytes recorded and emitted so far. */
  get stats(): VmaWriterStats {
    return { bytes: this.#bytes, zeroBytes: this.#zeroBytes, archiveBytes: this.#archiveBytes };
  }

  /**
   * Adds a config file, such as `qemu-server.conf`. Configs are stored in the
   * order they are added, before any device data is written.
   *
   * @param name The file name: non-empty, no `/`, whitespace, NUL or control
   *   characters, unique, at most 65,534 bytes of UTF-8.
   * @param data The contents (a string is stored as UTF-8), at most 65,535 bytes.
   * @throws {TypeError} When the name is not valid or already used, the data is
   *   not a string or bytes, or device data was already written.
   * @throws {RangeError} When a limit is exceeded (256 configs, sizes, header size).
   */
  addConfig(name: string, data: Uint8Array | string): void {
    this.#checkOpen(`Cannot add config "${name}"`);
    const nameBytes = checkName("config", name, this.#configs.some((c) => c.name === name));
    let bytes: Uint8Array;
    if (typeof data === "string") bytes = encoder.encode(data);
    else if (data instanceof Uint8Array) bytes = data.slice();
    else {throw new TypeError(
        `Cannot add config "${name}": the data must be a string or a Uint8Array`,
      );}
    if (bytes.length > MAX_BLOB_SIZE) {
      throw new RangeError(
        `Cannot add config "${name}": the data is ${bytes.length} bytes, more than ${MAX_BLOB_SIZE}`,
      );
    }
    if (this.#configs.length >= MAX_CONFIGS) {
      throw new RangeError(
        `Cannot add config "${name}": an archive holds at most ${MAX_CONFIGS} configs`,
      );
    }
    this.#reserveBlobs(`Cannot add config "${name}"`, 2 + nameBytes.length + 1 + 2 + bytes.length);
    this.#configs.push({ name, nameBytes, data: bytes });
  }

  /**
   * Adds a device (disk image) of `size` bytes. Devices get ids 1, 2, ... in
   * the order they are added, before any device data is written.
   *
   * @param name The device name, such as `drive-scsi0` (Proxmox restores
   *   devices named `drive-<bus><n>` that `qemu-server.conf` maps): non-empty,
   *   no `/`, whitespace, NUL or control characters, unique, at most 65,534 bytes.
   * @param size The size in bytes: a positive safe integer, a multiple of 512
   *   (except for a device named `vmstate`).
   * @returns The device, to feed with data.
   * @throws {TypeError} When the name is not valid or already used, or device
   *   data was already written.
   * @throws {RangeError} When the size is not valid or a limit is exceeded
   *   (254 devices, header size).
   */
  addDevice(name: string, size: number): VmaDeviceWriter {
    this.#checkOpen(`Cannot add device "${name}"`);
    const nameBytes = checkName("device", name, this.#devices.some((d) => d.name === name));
    if (typeof size !== "number" || !Number.isSafeInteger(size) || size <= 0) {
      throw new RangeError(
        `Cannot add device "${name}": the size must be a positive safe integer, got ${size}`,
      );
    }
    const vmstate = name === VMSTATE_NAME;
    if (!vmstate && size % 512 !== 0) {
      throw new RangeError(
        `Cannot add device "${name}": the size ${size} is not a multiple of 512`,
      );
    }
    if (clusterCount(size) > MAX_CLUSTERS) {
      throw new RangeError(
        `Cannot add device "${name}": the size ${size} is more than 2^32 clusters`,
      );
    }
    if (this.#devices.length >= MAX_DEVICES) {
      throw new RangeError(
        `Cannot add device "${name}": an archive holds at most ${MAX_DEVICES} devices`,
      );
    }
    this.#reserveBlobs(`Cannot add device "${name}"`, 2 + nameBytes.length + 1);
    const device = new Device(this, this.#devices.length + 1, name, nameBytes, size, vmstate);
    this.#devices.push(device);
    return device.handle;
  }

  /**
   * Finishes the archive: closes every device that is still open (each must
   * be complete), writes the last extent and closes `readable`. An archive
   * without devices gets its header and one empty extent.
   *
   * @returns A promise that settles when the archive is complete.
   * @throws {RangeError} When a device is not complete (with both byte counts).
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  /**
   * Aborts the archive: `readable` errors with `reason` and every pending or
   * later call rejects with it.
   *
   * @param reason Why the archive was aborted.
   * @returns A promise that settles once the writer is in the error state.
   */
  abort(reason?: unknown): Promise<void> {
    this.fail(reason ?? new TypeError("The archive was aborted"));
    return Promise.resolve();
  }

  async #close(): Promise<void> {
    this.throwIfFailed();
    for (const device of this.#devices) await device.close();
    this.throwIfFailed();
    if (this.#slots > 0 || !this.#headerWritten) this.#flushExtent();
    this.#flushSmall();
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

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w.resolve();
  }

  #waitChange(): Promise<void> {
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
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
    for (;;) {
      this.throwIfFailed();
      if (this.#ordered && this.#currentOrdered() !== device) {
        await this.#waitChange();
        continue;
      }
      if ((this.#controller.desiredSize ?? 0) <= 0) {
        await this.#waitChange();
        continue;
      }
      break;
    }
    if (this.#ordered && cluster !== device.recorded.size) {
      throw new RangeError(
        `Cannot write cluster ${cluster} of device "${device.name}": ordered mode expects cluster ${device.recorded.size} next`,
      );
    }
    if (!device.recorded.add(cluster)) {
      throw new RangeError(
        `Cannot write cluster ${cluster} of device "${device.name}": it was already written`,
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
        this.#error || (this.#ordered && this.#currentOrdered() !== device) ||
        (this.#controller.desiredSize ?? 0) <= 0 || (this.#ordered && c !== device.recorded.size) ||
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
      if (device.vmstate) {
        mask = (1 << Math.ceil(length / BLOCK_SIZE)) - 1;
      } else {
        mask = nonZeroMask(data, start, length);
      }
    }
    const slot = EXT_OFF_BLOCKINFO + 8 * this.#slots;
    this.#extHeadView.setUint16(slot, mask);
    this.#extHead[slot + 2] = 0;
    this.#extHead[slot + 3] = device.id;
    this.#extHeadView.setUint32(slot + 4, cluster);
    this.#slots++;
    let stored = 0;
    if (mask !== 0) {
      const ext = this.#extData ??= this.#newExtentBuffer();
      for (let j = 0; j < BLOCKS_PER_CLUSTER; j++) {
        if ((mask & (1 << j)) === 0) continue;
        // Copy runs of consecutive stored blocks at once.
        let k = j;
        while (k + 1 < BLOCKS_PER_CLUSTER && (mask & (1 << (k + 1))) !== 0) k++;
        const from = j * BLOCK_SIZE;
        const to = Math.min((k + 1) * BLOCK_SIZE, length);
        ext.set(data!.subarray(start + from, start + to), this.#dataEnd);
        const runBytes = (k - j + 1) * BLOCK_SIZE;
        // A block cut by the device end is zero-filled (the buffer may be reused).
        if (to - from < runBytes) {
          ext.fill(0, this.#dataEnd + (to - from), this.#dataEnd + runBytes);
        }
        this.#dataEnd += runBytes;
        stored += Math.min(runBytes, length - from);
        j = k;
      }
    }
    this.#bytes += length;
    this.#zeroBytes += length - stored;
    device.bytes += length;
    if (this.#slots === SLOTS_PER_EXTENT) this.#flushExtent();
  }

  #flushExtent(): void {
    if (!this.#headerWritten) {
      this.#headerWritten = true;
      this.#enqueue(this.#encodeHeader());
    }
    const head = this.#extHead;
    const view = this.#extHeadView;
    head.set(EXTENT_MAGIC, 0);
    view.setUint16(4, 0);
    view.setUint16(EXT_OFF_BLOCK_COUNT, (this.#dataEnd - EXTENT_HEADER_SIZE) / BLOCK_SIZE);
    head.set(this.#uuid, EXT_OFF_UUID);
    head.set(md5WithHole(head, EXT_OFF_MD5), EXT_OFF_MD5);
    if (this.#extData !== undefined) {
      const chunk = this.#extData.subarray(0, this.#dataEnd);
      chunk.set(head, 0);
      this.#extData = undefined;
      this.#flushSmall();
      this.#enqueue(chunk);
    } else {
      // Extents without data (zero clusters only) are 512 bytes: batch them,
      // so a huge sparse disk does not become millions of tiny chunks.
      this.#small ??= new Uint8Array(SMALL_BATCH);
      this.#small.set(head, this.#smallEnd);
      this.#smallEnd += EXTENT_HEADER_SIZE;
      if (this.#smallEnd === SMALL_BATCH) this.#flushSmall();
    }
    head.fill(0);
    this.#slots = 0;
    this.#dataEnd = EXTENT_HEADER_SIZE;
  }

  #small: Uint8Array | undefined;
  #smallEnd = 0;
  /** Extent buffers handed back through `recycle`, ready for reuse. */
  #pool: ArrayBuffer[] = [];
  /** Extent buffers out in `readable` chunks that may come back. */
  #lent = new WeakSet<ArrayBuffer>();

  #newExtentBuffer(): Uint8Array {
    const buffer = this.#pool.pop() ?? new ArrayBuffer(MAX_EXTENT_SIZE);
    this.#lent.add(buffer);
    return new Uint8Array(buffer);
  }

  recycle(chunk: Uint8Array): void {
    const buffer = chunk.buffer as ArrayBuffer;
    // Each lent buffer comes back at most once; anything else is ignored.
    if (!this.#lent.has(buffer)) return;
    this.#lent.delete(buffer);
    if (this.#pool.length < POOL_SIZE) this.#pool.push(buffer);
  }

  #flushSmall(): void {
    if (this.#small === undefined || this.#smallEnd === 0) return;
    this.#enqueue(this.#small.subarray(0, this.#smallEnd));
    this.#small = undefined;
    this.#smallEnd = 0;
  }

  #enqueue(chunk: Uint8Array): void {
    this.#archiveBytes += chunk.length;
    this.#controller.enqueue(chunk);
  }

  #encodeHeader(): Uint8Array {
    const used = this.#blobUsed;
    const size = HEADER_FIXED_SIZE + Math.max(512, roundUp512(used));
    const buf = new Uint8Array(size);
    const view = new DataView(buf.buffer);
    buf.set(HEADER_MAGIC, 0);
    view.setUint32(OFF_VERSION, 1);
    buf.set(this.#uuid, OFF_UUID);
    view.setBigInt64(OFF_CTIME, BigInt(Math.floor(this.#ctime.getTime() / 1000)));
    view.setUint32(OFF_BLOB_OFFSET, HEADER_FIXED_SIZE);
    view.setUint32(OFF_BLOB_SIZE, used);
    view.setUint32(OFF_HEADER_SIZE, size);
    let pos = 1;
    const blob = (bytes: Uint8Array, nul: boolean): number => {
      const at = pos;
      const len = bytes.length + (nul ? 1 : 0);
      const abs = HEADER_FIXED_SIZE + at;
      buf[abs] = len & 0xff; // little-endian length
      buf[abs + 1] = len >>> 8;
      buf.set(bytes, abs + 2);
      pos += 2 + len;
      return at;
    };
    this.#configs.forEach((config, i) => {
      view.setUint32(OFF_CONFIG_NAMES + 4 * i, blob(config.nameBytes, true));
      view.setUint32(OFF_CONFIG_DATA + 4 * i, blob(config.data, false));
    });
    for (const device of this.#devices) {
      const at = OFF_DEV_INFO + DEV_INFO_SIZE * device.id;
      view.setUint32(at, blob(device.nameBytes, true));
      view.setBigUint64(at + 8, BigInt(device.size));
    }
    buf.set(md5WithHole(buf, OFF_MD5), OFF_MD5);
    return buf;
  }
}

/**
 * Writes a VMA archive as a stream.
 *
 * Declare the configs and devices first (the header lists them all), start
 * pulling `readable` (pipe it to a file, stdout or a `CompressionStream`),
 * then feed every device and call `close()`. Backpressure holds end to end:
 * device writes wait while the archive is not being read. Memory stays about
 * one extent (3.7 MiB) plus one cluster per device, whatever the disk sizes.
 *
 * All-zero 4 KiB blocks are left out of the archive, all-zero clusters are
 * recorded without data, and extents hold at most 59 clusters, as the format
 * describes. Errors are sticky: after the first failure every call rejects
 * with the same error and `readable` errors too.
 *
 * @example Writing an archive with one config and one disk
 * ```ts
 * import { VmaReader, VmaWriter } from "@vmakit/vma";
 * import assert from "node:assert/strict";
 *
 * const writer = new VmaWriter();
 * writer.addConfig("qemu-server.conf", "memory: 512\n#qmdump#map:scsi0:drive-scsi0:local:raw:\n");
 * const disk = writer.addDevice("drive-scsi0", 1024 * 1024);
 * const archive = new Response(writer.readable).bytes(); // start consuming first
 *
 * const image = new Uint8Array(1024 * 1024);
 * image.fill(7, 0, 5000);
 * await ReadableStream.from([image]).pipeTo(disk.writable);
 * await writer.close();
 *
 * const header = await new VmaReader(ReadableStream.from([await archive])).header();
 * assert.equal(header.devices[0].name, "drive-scsi0");
 * ```
 */
export class VmaWriter {
  #archive: Archive;

  /**
   * Creates a writer.
   *
   * @param options Archive UUID, creation time and cluster order.
   * @throws {TypeError} When `uuid`, `ctime` or `ordered` is not of a valid form.
   */
  constructor(options: VmaWriterOptions = {}) {
    this.#archive = new Archive(options);
  }

  /** The archive, to be read by the consumer. */
  get readable(): ReadableStream<Uint8Array> {
    return this.#archive.readable;
  }

  /** The archive UUID, lower-case. */
  get uuid(): string {
    return this.#archive.uuid;
  }

  /** The creation time stored in the header (whole seconds). */
  get ctime(): Date {
    return this.#archive.ctime;
  }

  /** Bytes recorded and emitted so far. */
  get stats(): VmaWriterStats {
    return this.#archive.stats;
  }

  /**
   * Adds a config file, such as `qemu-server.conf`. Configs are stored in the
   * order they are added, before any device data is written.
   *
   * @param name The file name: non-empty, no `/`, whitespace, NUL or control
   *   characters, unique, at most 65,534 bytes of UTF-8.
   * @param data The contents (a string is stored as UTF-8), at most 65,535 bytes.
   * @throws {TypeError} When the name is not valid or already used, the data is
   *   not a string or bytes, or device data was already written.
   * @throws {RangeError} When a limit is exceeded (256 configs, sizes, header size).
   */
  addConfig(name: string, data: Uint8Array | string): void {
    this.#archive.addConfig(name, data);
  }

  /**
   * Adds a device (disk image) of `size` bytes. Devices get ids 1, 2, ... in
   * the order they are added, before any device data is written.
   *
   * @param name The device name, such as `drive-scsi0` (Proxmox restores
   *   devices named `drive-<bus><n>` that `qemu-server.conf` maps): non-empty,
   *   no `/`, whitespace, NUL or control characters, unique, at most 65,534 bytes.
   * @param size The size in bytes: a positive safe integer, a multiple of 512
   *   (except for a device named `vmstate`).
   * @returns The device, to feed with data.
   * @throws {TypeError} When the name is not valid or already used, or device
   *   data was already written.
   * @throws {RangeError} When the size is not valid or a limit is exceeded
   *   (254 devices, header size).
   */
  addDevice(name: string, size: number): VmaDeviceWriter {
    return this.#archive.addDevice(name, size);
  }

  /**
   * Finishes the archive: closes every device that is still open (each must
   * be complete), writes the last extent and closes `readable`. An archive
   * without devices gets its header and one empty extent.
   *
   * @returns A promise that settles when the archive is complete.
   * @throws {RangeError} When a device is not complete (with both byte counts).
   */
  close(): Promise<void> {
    return this.#archive.close();
  }

  /**
   * Aborts the archive: `readable` errors with `reason` and every pending or
   * later call rejects with it.
   *
   * @param reason Why the archive was aborted.
   * @returns A promise that settles once the writer is in the error state.
   */
  abort(reason?: unknown): Promise<void> {
    return this.#archive.abort(reason);
  }

  /**
   * Hands a chunk of `readable` back once the consumer is completely done
   * with it (written out, not referenced any more), so its memory is reused
   * for a later extent instead of being allocated anew. Optional: a consumer
   * that never calls it only makes more garbage. Chunks that are not
   * reusable extent buffers, and second calls, are ignored.
   *
   * @example Writing to a sink and recycling each chunk
   * ```ts
   * import { VmaWriter } from "@vmakit/vma";
   * import assert from "node:assert/strict";
   *
   * const writer = new VmaWriter();
   * const disk = writer.addDevice("drive-scsi0", 8 * 1024 * 1024);
   * let bytes = 0;
   * const done = writer.readable.pipeTo(new WritableStream({
   *   write(chunk) {
   *     bytes += chunk.length; // ... a real sink writes the chunk out here
   *     writer.recycle(chunk);
   *   },
   * }));
   * await disk.write(0, new Uint8Array(8 * 1024 * 1024).fill(1));
   * await writer.close();
   * await done;
   * assert.equal(bytes, writer.stats.archiveBytes);
   * ```
   *
   * @param chunk A chunk read from `readable`.
   */
  recycle(chunk: Uint8Array): void {
    this.#archive.recycle(chunk);
  }
}

/** The writer-side state of one device. */
class Device {
  readonly recorded: ClusterSet = new ClusterSet();
  readonly clusters: number;
  readonly handle: VmaDeviceWriter;
  bytes = 0;
  #writer: Archive;
  #partial: Uint8Array | undefined; // one cluster, while a cluster is being filled
  #partialStart = 0;
  #partialLength = 0;
  #closed = false;
  #chain: Promise<void> = Promise.resolve();
  #writable: WritableStream<Uint8Array> | undefined;
  #next = 0; // where the next sequential write goes

  constructor(
    writer: Archive,
    readonly id: number,
    readonly name: string,
    readonly nameBytes: Uint8Array,
    readonly size: number,
    readonly vmstate: boolean,
  ) {
    this.#writer = writer;
    this.clusters = clusterCount(size);
    // deno-lint-ignore no-this-alias
    const self = this;
    this.handle = {
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

  close(): Promise<void> {
    return this.#serial(() => this.#close());
  }

  #serial(op: () => Promise<void>): Promise<void> {
    const run = this.#chain.then(async () => {
      this.#writer.throwIfFailed();
      try {
        await op();
      } catch (error) {
        this.#writer.fail(error);
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
        this.#writer.fail(reason ?? new TypeError(`Device "${this.name}" was aborted`));
      },
    });
    return this.#writable;
  }

  #checkWrite(what: string, offset: number, length: number): void {
    if (this.#closed) throw new TypeError(`Cannot write to device "${this.name}": it is closed`);
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw new RangeError(
        `Cannot write to device "${this.name}": offset ${offset} is not a valid byte offset`,
      );
    }
    if (offset + length > this.size) {
      throw new RangeError(
        `Cannot write ${what} at offset ${offset} to device "${this.name}": it goes past the end of the device (${this.size} bytes)`,
      );
    }
  }

  async #write(offset: number, data: Uint8Array): Promise<void> {
    if (!(data instanceof Uint8Array)) {
      throw new TypeError(`Cannot write to device "${this.name}": the data must be a Uint8Array`);
    }
    this.#checkWrite(`${data.length} bytes`, offset, data.length);
    if (data.length === 0) return;
    this.#writer.markStarted();
    let pos = 0;
    if (this.#partial !== undefined) {
      const expected = this.#partialStart + this.#partialLength;
      if (offset !== expected) {
        throw new RangeError(
          `Cannot write at offset ${offset} to device "${this.name}": the partial cluster at offset ${this.#partialStart} continues at offset ${expected}`,
        );
      }
      const clusterEnd = Math.min(this.#partialStart + CLUSTER_SIZE, this.size);
      const n = Math.min(data.length, clusterEnd - expected);
      this.#partial.set(data.subarray(0, n), this.#partialLength);
      this.#partialLength += n;
      pos = n;
      if (this.#partialStart + this.#partialLength === clusterEnd) {
        const buf = this.#partial;
        const length = this.#partialLength;
        this.#partial = undefined;
        this.#partialLength = 0;
        await this.#writer.recordCluster(this, this.#partialStart / CLUSTER_SIZE, buf, 0, length);
        this.#spare = buf;
      }
    } else if (offset % CLUSTER_SIZE !== 0) {
      throw new RangeError(
        `Cannot write at offset ${offset} to device "${this.name}": the offset is not a multiple of ${CLUSTER_SIZE} and continues no partial cluster`,
      );
    }
    while (pos < data.length) {
      const at = offset + pos;
      const cluster = at / CLUSTER_SIZE;
      if (this.recorded.has(cluster)) {
        throw new RangeError(
          `Cannot write cluster ${cluster} of device "${this.name}": it was already written`,
        );
      }
      const need = Math.min(CLUSTER_SIZE, this.size - at);
      const avail = data.length - pos;
      if (avail >= need) {
        await this.#writer.recordCluster(this, cluster, data, pos, need);
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

  #spare: Uint8Array | undefined;

  async #writeZeroes(offset: number, length: number): Promise<void> {
    if (!Number.isSafeInteger(length) || length < 0) {
      throw new RangeError(
        `Cannot write zeroes to device "${this.name}": length ${length} is not valid`,
      );
    }
    this.#checkWrite(`${length} zero bytes`, offset, length);
    if (length === 0) return;
    if (this.#partial !== undefined) {
      throw new RangeError(
        `Cannot write zeroes at offset ${offset} to device "${this.name}": the partial cluster at offset ${this.#partialStart} is not complete`,
      );
    }
    if (
      offset % CLUSTER_SIZE !== 0 || (length % CLUSTER_SIZE !== 0 && offset + length !== this.size)
    ) {
      throw new RangeError(
        `Cannot write ${length} zero bytes at offset ${offset} to device "${this.name}": zeroes are recorded in whole clusters of ${CLUSTER_SIZE} bytes`,
      );
    }
    this.#writer.markStarted();
    await this.#writer.recordZeroClusters(
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
          `Cannot close device "${this.name}": ${written} of ${this.size} bytes were written, ${
            this.size - written
          } missing`,
        ),
      );
    }
    this.#closed = true;
    return Promise.resolve();
  }
}

function roundUp512(n: number): number {
  return Math.ceil(n / 512) * 512;
}

function checkName(kind: string, name: string, used: boolean): Uint8Array {
  if (typeof name !== "string") {
    throw new TypeError(`Cannot add ${kind}: the name must be a string`);
  }
  const prefix = `Cannot add ${kind} "${name}"`;
  if (name.length === 0) throw new TypeError(`${prefix}: the name is empty`);
  if (name.includes("/")) throw new TypeError(`${prefix}: the name contains "/"`);
  if (/\s/.test(name)) throw new TypeError(`${prefix}: the name contains whitespace`);
  // deno-lint-ignore no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(name)) {
    throw new TypeError(`${prefix}: the name contains a NUL or control character`);
  }
  if (name === "." || name === "..") throw new TypeError(`${prefix}: the name is not a file name`);
  const bytes = encoder.encode(name);
  if (bytes.length > MAX_NAME_BYTES) {
    throw new RangeError(
      `${prefix}: the name is ${bytes.length} bytes long, more than ${MAX_NAME_BYTES}`,
    );
  }
  if (used) throw new TypeError(`${prefix}: the name is already used`);
  return bytes;
}
