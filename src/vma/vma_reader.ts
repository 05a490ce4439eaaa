import {
  BLOCK_SIZE,
  BLOCKS_PER_CLUSTER,
  bytesEqual,
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
  MAX_CONFIGS,
  MAX_DEVICES,
  MAX_EXTENT_SIZE,
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
  popcount16,
  SLOTS_PER_EXTENT,
  unsafeNameReason,
  uuidToString,
  VMSTATE_NAME,
} from "./_layout.ts";
import { ClusterSet } from "./_cluster_set.ts";
import { VmaFormatError } from "./vma_format_error.ts";

/** A config file stored in a VMA archive. */
export interface VmaConfig {
  /** The file name, such as `qemu-server.conf`. */
  readonly name: string;
  /** The file contents. */
  readonly data: Uint8Array;
}

/** A device (disk image) stored in a VMA archive. */
export interface VmaDevice {
  /** The device id, 1 to 254. */
  readonly id: number;
  /** The device name, such as `drive-scsi0`. */
  readonly name: string;
  /** The device size in bytes. */
  readonly size: number;
  /** True for the `vmstate` device (saved VM memory), whose clusters are sequential. */
  readonly vmstate: boolean;
}

/** The header of a VMA archive. */
export interface VmaHeader {
  /** The archive UUID, lower-case. */
  readonly uuid: string;
  /** The creation time (whole seconds). */
  readonly ctime: Date;
  /** Header length in bytes: where the first extent starts. */
  readonly headerSize: number;
  /** The config files, in slot order. */
  readonly configs: readonly VmaConfig[];
  /** The devices, by ascending id. */
  readonly devices: readonly VmaDevice[];
}

/** One cluster (64 KiB) of a device, as stored in the archive. */
export interface VmaCluster {
  /** The device it belongs to. */
  readonly device: VmaDevice;
  /** The cluster number: the cluster starts at byte `cluster * 65536` of the device. */
  readonly cluster: number;
  /** Bit j set when the 4 KiB block j of the cluster is stored; clear bits are zeros. */
  readonly mask: number;
  /**
   * The stored blocks, in increasing j, 4,096 bytes each. For a cluster
   * that ends past the device end, the bytes past the end are to be dropped.
   */
  readonly data: Uint8Array;
}

/** Options of {@linkcode VmaReader.extents}. */
export interface VmaExtentsOptions {
  /**
   * Read every extent into the same memory; each extent's data is then valid
   * only until the next one is requested.
   *
   * @default {false}
   */
  reuseBuffers?: boolean;
}

/** One extent of the archive: up to 59 clusters. */
export interface VmaExtent {
  /** Byte offset of the extent in the archive stream. */
  readonly offset: number;
  /** The clusters it holds, in stream order. */
  readonly clusters: readonly VmaCluster[];
}

const decoder = new TextDecoder();
const EMPTY = new Uint8Array(0);
/** Largest header the reader accepts (the reference writer stops at 512 KiB). */
const MAX_READ_HEADER = 64 * 1024 * 1024;

/**
 * Reads a VMA archive from a stream, without seeking: first the header, then
 * the clusters as they come.
 *
 * It makes every check of Proxmox's reader, in the same order and with the
 * same wording, and some more: every cluster of every device must be present
 * (checked at the end of the stream, where Proxmox's `vma verify` does not
 * check), device and config names must be safe as file names and unique, and
 * bytes after the last extent are an error. Malformed input raises
 * {@linkcode VmaFormatError}; memory stays within one extent plus the header.
 *
 * @example Listing what an archive holds
 * ```ts
 * import { VmaReader, VmaWriter } from "@vmakit/vma";
 * import assert from "node:assert/strict";
 *
 * const writer = new VmaWriter();
 * writer.addConfig("qemu-server.conf", "memory: 512\n");
 * const disk = writer.addDevice("drive-scsi0", 65536);
 * const archive = new Response(writer.readable).bytes();
 * await disk.write(0, new Uint8Array(65536).fill(1));
 * await writer.close();
 *
 * const reader = new VmaReader(ReadableStream.from([await archive]));
 * const header = await reader.header();
 * assert.deepEqual(header.devices.map((d) => d.name), ["drive-scsi0"]);
 * for await (const cluster of reader.clusters()) {
 *   assert.equal(cluster.mask, 0xffff);
 * }
 * ```
 */
export class VmaReader {
  #source: ByteSource;
  #header: Promise<ParsedHeader> | undefined;
  #iterating = false;

  /**
   * Creates a reader over an archive stream (a file, stdin, a `DecompressionStream`).
   *
   * @param readable The archive bytes.
   */
  constructor(readable: ReadableStream<Uint8Array>) {
    this.#source = new ByteSource(readable);
  }

  /** Archive bytes read so far. */
  get bytesRead(): number {
    return this.#source.position;
  }

  /**
   * Reads and checks the header. Later calls return the same result.
   *
   * @returns The archive header.
   * @throws {VmaFormatError} When the header is malformed.
   */
  async header(): Promise<VmaHeader> {
    this.#header ??= readHeader(this.#source);
    return (await this.#header).header;
  }

  /**
   * Reads the extents after the header, checking each. After the last, checks
   * that every cluster of every device was present. Can be called once.
   *
   * @param options `reuseBuffers: true` reads every extent into the same
   *   memory: the clusters' `data` is then valid only until the next extent
   *   is requested (less garbage, for consumers that write data out at once).
   * @returns The extents, in stream order.
   * @throws {VmaFormatError} When an extent is malformed, the stream has
   *   trailing bytes, or a cluster is duplicated or missing.
   * @throws {TypeError} When called a second time.
   */
  async *extents(options: VmaExtentsOptions = {}): AsyncGenerator<VmaExtent> {
    if (this.#iterating) throw new TypeError("Cannot read the extents twice");
    this.#iterating = true;
    this.#header ??= readHeader(this.#source);
    const parsed = await this.#header;
    const state = new DataState(parsed);
    const scratch = options.reuseBuffers ? { buffer: new ArrayBuffer(MAX_EXTENT_SIZE) } : undefined;
    try {
      for (;;) {
        const extent = await readExtent(this.#source, parsed, state, scratch);
        if (extent === undefined) break;
        yield extent;
      }
      state.checkComplete(this.#source.position);
    } finally {
      await this.#source.release();
    }
  }

  /**
   * Reads the clusters after the header, in stream order; see {@linkcode VmaReader.extents}.
   *
   * @returns The clusters.
   * @throws {VmaFormatError} As for `extents`.
   */
  async *clusters(): AsyncGenerator<VmaCluster> {
    for await (const extent of this.extents()) yield* extent.clusters;
  }

  /**
   * Stops reading and cancels the underlying stream.
   *
   * @param reason Passed to the stream's `cancel`.
   * @returns A promise that settles when the stream is cancelled.
   */
  cancel(reason?: unknown): Promise<void> {
    return this.#source.cancel(reason);
  }
}

/**
 * Reads exact byte counts from a stream. From a byte stream it reads straight
 * into a buffer of the wanted size (BYOB: no copy); from another stream it
 * hands out subarrays of its chunks and copies only what straddles chunks.
 */
class ByteSource {
  #reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  #byob: ReadableStreamBYOBReader | undefined;
  #chunks: Uint8Array[] = [];
  #head = 0; // index of the first unread chunk (Array#shift is O(n): tiny chunks went quadratic)
  #buffered = 0;
  #eof = false;
  #released = false;
  position = 0;

  constructor(readable: ReadableStream<Uint8Array>) {
    if (!(readable instanceof ReadableStream)) {
      throw new TypeError("Cannot read the archive: it must be a ReadableStream");
    }
    try {
      this.#byob = readable.getReader({ mode: "byob" });
    } catch {
      this.#reader = readable.getReader();
    }
  }

  /**
   * Reads `n` bytes, or fewer at the end of the stream; into `scratch.buffer`
   * when given and large enough (it is replaced by the same memory after a
   * BYOB read transfers it).
   */
  async read(n: number, scratch?: { buffer: ArrayBuffer }): Promise<Uint8Array> {
    if (this.#byob !== undefined) {
      if (n <= MAX_EXTENT_SIZE) return await this.#readByob(n, scratch);
      // Larger reads (only a header can be that big) go in pieces, so a
      // short hostile stream does not make us allocate what it claims.
      const parts: Uint8Array[] = [];
      let got = 0;
      while (got < n) {
        const part = await this.#readByob(Math.min(MAX_EXTENT_SIZE, n - got));
        parts.push(part);
        got += part.length;
        if (part.length === 0 || this.#eof) break;
      }
      const out = new Uint8Array(got);
      let at = 0;
      for (const part of parts) {
        out.set(part, at);
        at += part.length;
      }
      return out;
    }
    while (this.#buffered < n && !this.#eof) {
      const { done, value } = await this.#reader!.read();
      if (done) {
        this.#eof = true;
        break;
      }
      if (!(value instanceof Uint8Array)) {
        throw new TypeError(
          "Cannot read the archive: the stream gave a chunk that is not a Uint8Array",
        );
      }
      if (value.length === 0) continue;
      this.#chunks.push(value);
      this.#buffered += value.length;
    }
    return this.#take(Math.min(n, this.#buffered), scratch);
  }

  async #readByob(n: number, scratch?: { buffer: ArrayBuffer }): Promise<Uint8Array> {
    const reuse = scratch !== undefined && scratch.buffer.byteLength >= n;
    let buffer = reuse ? scratch.buffer : new ArrayBuffer(n);
    let filled = 0;
    while (filled < n && !this.#eof) {
      const { done, value } = await this.#byob!.read(new Uint8Array(buffer, filled, n - filled));
      if (value !== undefined) {
        buffer = value.buffer as ArrayBuffer; // the view's buffer was transferred
        filled += value.byteLength;
      }
      if (done) this.#eof = true;
    }
    if (reuse) scratch.buffer = buffer;
    this.position += filled;
    return new Uint8Array(buffer, 0, filled);
  }

  #take(n: number, scratch?: { buffer: ArrayBuffer }): Uint8Array {
    this.position += n;
    this.#buffered -= n;
    const first = this.#chunks[this.#head];
    if (first !== undefined && first.length >= n) {
      if (first.length === n) this.#dropFirst();
      else this.#chunks[this.#head] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = scratch !== undefined && scratch.buffer.byteLength >= n
      ? new Uint8Array(scratch.buffer, 0, n)
      : new Uint8Array(n);
    let at = 0;
    while (at < n) {
      const chunk = this.#chunks[this.#head];
      const k = Math.min(chunk.length, n - at);
      out.set(chunk.subarray(0, k), at);
      at += k;
      if (k === chunk.length) this.#dropFirst();
      else this.#chunks[this.#head] = chunk.subarray(k);
    }
    return out;
  }

  #dropFirst(): void {
    this.#chunks[this.#head++] = EMPTY; // let it be collected
    if (this.#head === this.#chunks.length) {
      this.#chunks = [];
      this.#head = 0;
    } else if (this.#head >= 1024 && this.#head * 2 >= this.#chunks.length) {
      this.#chunks = this.#chunks.slice(this.#head);
      this.#head = 0;
    }
  }

  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    const reader = this.#byob ?? this.#reader!;
    if (!this.#eof) await reader.cancel().catch(() => {});
    reader.releaseLock();
  }

  async cancel(reason?: unknown): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    const reader = this.#byob ?? this.#reader!;
    await reader.cancel(reason);
    reader.releaseLock();
  }
}

interface ParsedHeader {
  header: VmaHeader;
  uuid: Uint8Array;
  devices: (VmaDevice | undefined)[]; // by id
}

async function readHeader(source: ByteSource): Promise<ParsedHeader> {
  const fixed = await source.read(HEADER_FIXED_SIZE);
  if (fixed.length < HEADER_FIXED_SIZE) {
    throw new VmaFormatError("can't read vma header - got EOF", fixed.length);
  }
  if (!bytesEqual(fixed.subarray(0, 4), HEADER_MAGIC)) {
    throw new VmaFormatError("not a vma file - wrong magic number", 0);
  }
  const fixedView = new DataView(fixed.buffer, fixed.byteOffset, fixed.byteLength);
  const headerSize = fixedView.getUint32(OFF_HEADER_SIZE);
  if ((headerSize | 0) - HEADER_FIXED_SIZE <= 0 || headerSize > MAX_READ_HEADER) {
    throw new VmaFormatError(`wrong vma header size ${headerSize | 0}`, OFF_HEADER_SIZE);
  }
  const rest = await source.read(headerSize - HEADER_FIXED_SIZE);
  if (rest.length < headerSize - HEADER_FIXED_SIZE) {
    throw new VmaFormatError(
      "can't read vma header data - got EOF",
      HEADER_FIXED_SIZE + rest.length,
    );
  }
  const head = new Uint8Array(headerSize);
  head.set(fixed, 0);
  head.set(rest, HEADER_FIXED_SIZE);
  const view = new DataView(head.buffer);
  if (!bytesEqual(md5WithHole(head, OFF_MD5), head.subarray(OFF_MD5, OFF_MD5 + 16))) {
    throw new VmaFormatError("wrong vma header chechsum", OFF_MD5);
  }
  const version = view.getUint32(OFF_VERSION);
  if (version !== 1) throw new VmaFormatError(`wrong vma version ${version | 0}`, OFF_VERSION);
  const blobOffset = view.getUint32(OFF_BLOB_OFFSET);
  const blobSize = view.getUint32(OFF_BLOB_SIZE);
  if (((blobOffset + 1) >>> 0) <= HEADER_FIXED_SIZE) {
    throw new VmaFormatError(`wrong vma blob buffer offset ${blobOffset | 0}`, OFF_BLOB_OFFSET);
  }
  const blobEnd = (blobOffset + blobSize) >>> 0;
  if (blobEnd > headerSize) {
    throw new VmaFormatError(
      `wrong vma blob buffer size ${blobOffset | 0}/${blobSize | 0}`,
      OFF_BLOB_SIZE,
    );
  }
  // Walk the blobs as the reference reader does: only positions reached are valid.
  const blobs = new Map<number, Uint8Array>();
  for (let at = blobOffset + 1; at + 2 <= blobEnd;) {
    const len = head[at] | (head[at + 1] << 8);
    if (at + 2 + len <= blobEnd) blobs.set(at - blobOffset, head.subarray(at + 2, at + 2 + len));
    at += 2 + len;
  }
  const string = (ptr: number): string | undefined => {
    const blob = blobs.get(ptr);
    if (blob === undefined || blob.length === 0 || blob[blob.length - 1] !== 0) return undefined;
    const body = blob.subarray(0, blob.length - 1);
    if (body.includes(0)) return undefined;
    return decoder.decode(body);
  };

  const devices: (VmaDevice | undefined)[] = [];
  const deviceNames = new Set<string>();
  for (let id = 1; id < 256; id++) {
    const at = OFF_DEV_INFO + DEV_INFO_SIZE * id;
    const namePtr = view.getUint32(at);
    const size = view.getBigUint64(at + 8);
    if (size === 0n) continue;
    const name = string(namePtr);
    if (name === undefined) {
      if (namePtr === 0) continue; // no name: the reference ignores the slot too
      throw new VmaFormatError(`vma contains an invalid device name pointer for dev_id ${id}`, at);
    }
    if (id > MAX_DEVICES) {
      throw new VmaFormatError(`vma contains a device with dev_id ${id}, past ${MAX_DEVICES}`, at);
    }
    if (size > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new VmaFormatError(`vma device "${name}" has an unsupported size ${size}`, at + 8);
    }
    checkSafeName("device", name, at);
    if (deviceNames.has(name)) {
      throw new VmaFormatError(`vma contains device name "${name}" twice`, at);
    }
    deviceNames.add(name);
    devices[id] = { id, name, size: Number(size), vmstate: name === VMSTATE_NAME };
  }
  const configs: VmaConfig[] = [];
  const configNames = new Set<string>();
  for (let i = 0; i < MAX_CONFIGS; i++) {
    const namePtr = view.getUint32(OFF_CONFIG_NAMES + 4 * i);
    const dataPtr = view.getUint32(OFF_CONFIG_DATA + 4 * i);
    if (namePtr === 0 || dataPtr === 0) continue;
    const name = string(namePtr);
    const data = blobs.get(dataPtr);
    if (name === undefined || data === undefined) {
      throw new VmaFormatError("vma contains invalid data pointers", OFF_CONFIG_NAMES + 4 * i);
    }
    checkSafeName("config", name, OFF_CONFIG_NAMES + 4 * i);
    if (configNames.has(name)) {
      throw new VmaFormatError(
        `vma contains config name "${name}" twice`,
        OFF_CONFIG_NAMES + 4 * i,
      );
    }
    configNames.add(name);
    configs.push({ name, data: data.slice() });
  }
  const ctime = view.getBigInt64(OFF_CTIME);
  return {
    header: {
      uuid: uuidToString(head.subarray(OFF_UUID, OFF_UUID + 16)),
      ctime: new Date(Number(ctime) * 1000),
      headerSize,
      configs,
      devices: devices.filter((d): d is VmaDevice => d !== undefined),
    },
    uuid: head.slice(OFF_UUID, OFF_UUID + 16),
    devices,
  };
}

function checkSafeName(kind: string, name: string, offset: number): void {
  const reason = unsafeNameReason(name);
  if (reason !== undefined) {
    throw new VmaFormatError(
      `vma contains ${kind} name ${JSON.stringify(name)}, unsafe as a file name: ${reason}`,
      offset,
    );
  }
}

/** What the data phase tracks across extents. */
class DataState {
  seen: (ClusterSet | undefined)[] = [];
  vmstateClusters = 0;
  constructor(readonly parsed: ParsedHeader) {
    for (const d of parsed.header.devices) this.seen[d.id] = new ClusterSet();
  }

  checkComplete(offset: number): void {
    for (const device of this.parsed.header.devices) {
      if (device.vmstate) continue;
      const missing = this.seen[device.id]!.firstMissing(clusterCount(device.size));
      if (missing !== undefined) {
        throw new VmaFormatError(
          `detected missing cluster ${missing} for stream ${device.name}`,
          offset,
        );
      }
    }
  }
}

async function readExtent(
  source: ByteSource,
  parsed: ParsedHeader,
  state: DataState,
  scratch: { buffer: ArrayBuffer } | undefined,
): Promise<VmaExtent | undefined> {
  const offset = source.position;
  const head = await source.read(EXTENT_HEADER_SIZE);
  if (head.length === 0) return undefined;
  if (head.length < EXTENT_HEADER_SIZE) {
    throw new VmaFormatError(`read short extent (${head.length} bytes)`, offset);
  }
  const md5 = md5WithHole(head.slice(), EXT_OFF_MD5);
  if (!bytesEqual(md5, head.subarray(EXT_OFF_MD5, EXT_OFF_MD5 + 16))) {
    throw new VmaFormatError("wrong vma extent header chechsum", offset);
  }
  if (!bytesEqual(head.subarray(EXT_OFF_UUID, EXT_OFF_UUID + 16), parsed.uuid)) {
    throw new VmaFormatError("wrong vma extent uuid", offset);
  }
  const view = new DataView(head.buffer, head.byteOffset, EXTENT_HEADER_SIZE);
  if (!bytesEqual(head.subarray(0, 4), EXTENT_MAGIC) || view.getUint16(4) !== 0) {
    throw new VmaFormatError("wrong vma extent header magic", offset);
  }
  const blockCount = view.getUint16(EXT_OFF_BLOCK_COUNT);
  const extentSize = EXTENT_HEADER_SIZE + blockCount * BLOCK_SIZE;
  const want = Math.min(extentSize, MAX_EXTENT_SIZE) - EXTENT_HEADER_SIZE;
  const data = await source.read(want, scratch);
  if (EXTENT_HEADER_SIZE + data.length < extentSize) {
    throw new VmaFormatError(
      `short vma extent (${EXTENT_HEADER_SIZE + data.length} < ${extentSize})`,
      offset,
    );
  }
  const clusters: VmaCluster[] = [];
  let start = 0; // into data
  for (let i = 0; i < SLOTS_PER_EXTENT; i++) {
    const at = EXT_OFF_BLOCKINFO + 8 * i;
    const devId = head[at + 3];
    if (devId === 0) continue;
    const mask = view.getUint16(at);
    const cluster = view.getUint32(at + 4);
    const device = parsed.devices[devId];
    if (device === undefined) throw new VmaFormatError(`got wrong dev id ${devId}`, offset + at);
    let maxBytes: number;
    if (device.vmstate) {
      if (cluster !== state.vmstateClusters) {
        throw new VmaFormatError("found out of order vmstate data", offset + at);
      }
      state.vmstateClusters++;
      maxBytes = Infinity;
    } else {
      if (cluster >= clusterCount(device.size)) {
        throw new VmaFormatError("got wrong block address - write beyond end", offset + at);
      }
      if (!state.seen[devId]!.add(cluster)) {
        throw new VmaFormatError(
          `found duplicated cluster ${cluster} for stream ${device.name}`,
          offset + at,
        );
      }
      maxBytes = Math.floor(device.size / 512) * 512;
    }
    const stored = popcount16(mask) * BLOCK_SIZE;
    if (start + stored > data.length) {
      throw new VmaFormatError("short vma extent - too many blocks", offset + at);
    }
    if (mask !== 0xffff && mask !== 0) {
      const base = cluster * CLUSTER_SIZE;
      for (let j = 0; j < BLOCKS_PER_CLUSTER; j++) {
        if ((mask & (1 << j)) !== 0 && base + j * BLOCK_SIZE >= maxBytes) {
          throw new VmaFormatError("got wrong block address - write beyond end", offset + at);
        }
      }
    }
    clusters.push({ device, cluster, mask, data: data.subarray(start, start + stored) });
    start += stored;
  }
  if (start !== data.length) {
    throw new VmaFormatError("vma extent error - missing blocks", offset);
  }
  return { offset, clusters };
}
