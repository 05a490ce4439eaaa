/**
 * Random access into a VMA archive: {@linkcode indexVma} reads the archive
 * once, with every check of {@linkcode VmaReader}, and records where each
 * cluster's stored blocks are; {@linkcode openVmaDisk} then reads any range of
 * a device through positioned reads of the (uncompressed) archive.
 * {@linkcode saveVmaIndex} and {@linkcode loadVmaIndex} keep an index in a
 * file next to the archive, for the next run.
 *
 * @module
 */
import type { DiskImage, DiskImageRegion, PositionedReader } from "../image/disk_image.ts";
import { BLOCK_SIZE, CLUSTER_SIZE, EXTENT_HEADER_SIZE, popcount16, quoteName } from "./_layout.ts";
import { VmaFormatError } from "./vma_format_error.ts";
import type { Compression } from "../compress/compression.ts";
import { type VmaDevice, type VmaHeader, VmaReader, type VmaReaderOptions } from "./vma_reader.ts";

/** Bytes one run of the index takes: start and count (u32), offset (f64), mask (u16). */
const RUN_BYTES = 18;
/** The default {@linkcode IndexVmaOptions.maxBytes}: 256 MiB. */
const DEFAULT_MAX_BYTES = 256 * 1024 * 1024;
/** Largest single positioned read. */
const MAX_READ = 16 * 1024 * 1024;

/**
 * Positioned reads of an uncompressed archive, for {@linkcode openVmaDisk}:
 * a {@linkcode PositionedReader}, optionally with `readInto`, which reads
 * into the caller's memory (no allocation per read).
 */
export interface VmaArchiveReader extends PositionedReader {
  /**
   * Reads up to `target.length` bytes at `position` into `target`.
   *
   * @returns The number of bytes read: fewer only at the end of the file.
   */
  readInto?(position: number, target: Uint8Array): Promise<number>;
}

/** One device of an indexed archive, from {@linkcode openVmaDisk}. */
export interface VmaDiskImage extends DiskImage {
  /**
   * Reads `target.length` bytes of the device at `offset` into `target`
   * (zeros included), for callers that reuse their buffers.
   *
   * @param offset Byte offset in the device.
   * @param target Where the bytes go.
   * @returns A promise that settles when `target` is filled.
   */
  readInto(offset: number, target: Uint8Array): Promise<void>;
}

/** Options of {@linkcode indexVma}. */
export interface IndexVmaOptions extends VmaReaderOptions {
  /**
   * The most memory, in bytes, the index may take (18 bytes per run of
   * clusters stored back to back with the same mask). Over it, the index
   * fails with a `RangeError` rather than grow.
   *
   * @default {268435456}
   */
  maxBytes?: number;
  /** Called after each extent with the archive bytes read so far. */
  onProgress?: (bytesRead: number) => void;
}

/**
 * Where the stored clusters of one device are, as runs: clusters
 * `start .. start + count - 1`, all with the same mask, stored back to back
 * from `offset` of the uncompressed archive. Clusters in no run are zeros.
 */
class RunTable {
  start: Uint32Array = new Uint32Array(0);
  count: Uint32Array = new Uint32Array(0);
  offset: Float64Array = new Float64Array(0);
  mask: Uint16Array = new Uint16Array(0);
  length = 0;

  get capacityBytes(): number {
    return this.start.length * RUN_BYTES;
  }

  /** Records `cluster` (mask non-zero) stored at `offset`; returns the bytes the table grew by. */
  add(cluster: number, mask: number, offset: number, budget: Budget): void {
    const n = this.length;
    if (n > 0) {
      const last = n - 1;
      const c = this.count[last];
      if (
        this.mask[last] === mask && this.start[last] + c === cluster && c < 0xffffffff &&
        this.offset[last] + c * popcount16(mask) * BLOCK_SIZE === offset
      ) {
        this.count[last] = c + 1;
        return;
      }
    }
    if (n === this.start.length) this.#grow(budget);
    this.start[n] = cluster;
    this.count[n] = 1;
    this.offset[n] = offset;
    this.mask[n] = mask;
    this.length = n + 1;
  }

  #grow(budget: Budget): void {
    const capacity = Math.max(16, this.start.length * 2);
    budget.take((capacity - this.start.length) * RUN_BYTES);
    this.start = copyInto(new Uint32Array(capacity), this.start);
    this.count = copyInto(new Uint32Array(capacity), this.count);
    this.offset = copyInto(new Float64Array(capacity), this.offset);
    this.mask = copyInto(new Uint16Array(capacity), this.mask);
  }

  /** Sorts the runs by start cluster and trims the arrays. */
  finish(): void {
    const n = this.length;
    let sorted = true;
    for (let i = 1; i < n && sorted; i++) sorted = this.start[i - 1] < this.start[i];
    if (sorted) {
      this.start = this.start.slice(0, n);
      this.count = this.count.slice(0, n);
      this.offset = this.offset.slice(0, n);
      this.mask = this.mask.slice(0, n);
      return;
    }
    const order = new Uint32Array(n);
    for (let i = 0; i < n; i++) order[i] = i;
    const start = this.start;
    order.sort((a, b) => start[a] - start[b]);
    this.start = permute(new Uint32Array(n), this.start, order);
    this.count = permute(new Uint32Array(n), this.count, order);
    this.offset = permute(new Float64Array(n), this.offset, order);
    this.mask = permute(new Uint16Array(n), this.mask, order);
  }

  /** The index of the last run starting at or before `cluster`, or -1. */
  find(cluster: number): number {
    let lo = 0;
    let hi = this.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (this.start[mid] <= cluster) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    return found;
  }
}

function copyInto<T extends Uint32Array | Float64Array | Uint16Array>(to: T, from: T): T {
  to.set(from as never);
  return to;
}

function permute<T extends Uint32Array | Float64Array | Uint16Array>(
  to: T,
  from: T,
  order: Uint32Array,
): T {
  for (let i = 0; i < order.length; i++) to[i] = from[order[i]];
  return to;
}

/**
 * Reads a run table of `n` runs from `view` at `at`, checking each run
 * against the device's clusters, the runs before it and the archive's size.
 */
function readRuns(
  view: DataView,
  at: number,
  n: number,
  clusters: number,
  archiveSize: number,
  budget: Budget,
): RunTable {
  const runs = new RunTable();
  budget.take(n * RUN_BYTES);
  runs.start = new Uint32Array(n);
  runs.count = new Uint32Array(n);
  runs.offset = new Float64Array(n);
  runs.mask = new Uint16Array(n);
  let next = 0; // first cluster the next run may start at
  for (let i = 0; i < n; i++, at += RUN_BYTES) {
    const start = view.getUint32(at, true);
    const count = view.getUint32(at + 4, true);
    const offset = Number(view.getBigUint64(at + 8, true));
    const mask = view.getUint16(at + 16, true);
    const bytes = count * popcount16(mask) * BLOCK_SIZE;
    if (
      count === 0 || mask === 0 || start < next || start + count > clusters ||
      !Number.isSafeInteger(offset) || offset < EXTENT_HEADER_SIZE ||
      offset + bytes > archiveSize
    ) {
      throw new SyntaxError(`Cannot load the index: run ${i} of a device is out of bounds`);
    }
    runs.start[i] = start;
    runs.count[i] = count;
    runs.offset[i] = offset;
    runs.mask[i] = mask;
    next = start + count;
  }
  runs.length = n;
  return runs;
}

/** The memory left for the index. */
class Budget {
  used = 0;
  readonly max: number;
  constructor(max: number) {
    this.max = max;
  }
  take(bytes: number): void {
    if (this.used + bytes > this.max) {
      throw new RangeError(
        `Cannot index the archive: the index needs more than ${this.max} bytes (maxBytes)`,
      );
    }
    this.used += bytes;
  }
}

/**
 * The index of a VMA archive, from {@linkcode indexVma}: the header and, for
 * each device, where its stored clusters are in the uncompressed archive.
 */
export class VmaIndex {
  readonly #header: VmaHeader;
  readonly #tables: Map<string, { device: VmaDevice; runs: RunTable }>;
  readonly #archiveSize: number;
  readonly #compression: Compression;

  /** @internal Built by {@linkcode indexVma}. */
  constructor(
    header: VmaHeader,
    tables: Map<string, { device: VmaDevice; runs: RunTable }>,
    archiveSize: number,
    compression: Compression,
  ) {
    this.#header = header;
    this.#tables = tables;
    this.#archiveSize = archiveSize;
    this.#compression = compression;
  }

  /** The archive header: uuid, ctime, configs and devices. */
  get header(): VmaHeader {
    return this.#header;
  }

  /** Size in bytes of the uncompressed archive. */
  get archiveSize(): number {
    return this.#archiveSize;
  }

  /** The compression the archive was read through (`"none"` for a plain one). */
  get compression(): Compression {
    return this.#compression;
  }

  /** Memory the index's tables take, in bytes. */
  get byteLength(): number {
    let total = 0;
    for (const { runs } of this.#tables.values()) total += runs.capacityBytes;
    return total;
  }

  /** @internal The device named `name` and its runs. */
  table(name: string): { device: VmaDevice; runs: RunTable } | undefined {
    return this.#tables.get(name);
  }
}

/** First bytes of a saved index; a u32 format version (1) and a u32 zero follow. */
const INDEX_MAGIC = new TextEncoder().encode("VMAKITIX");
const INDEX_VERSION = 2;
/**
 * Fixed part of a saved index: magic, version, zero, stamp (size, mtime),
 * archive size, uuid, device count, the rest of the stamp (inode, device,
 * ctime; -1 when unknown).
 */
const INDEX_FIXED = 16 + 8 + 8 + 8 + 36 + 4 + 8 + 8 + 8;
/** Per device: id, name length, device size, run count (the name follows). */
const INDEX_DEVICE = 4 + 4 + 8 + 4;
/** The SHA-256 at the end of a saved index. */
const INDEX_DIGEST = 32;

/**
 * What a saved index records of the archive file it describes, to tell
 * whether the file changed since: its size and modification time, and where
 * the system gives them its inode, file system and status change time, so
 * that another file given the same size and time (`touch -r`, `cp -p`), or
 * the archive copied or moved, is not taken for it (it is indexed anew).
 */
export interface VmaIndexStamp {
  /** The size of the archive file in bytes. */
  readonly size: number;
  /** Its modification time in milliseconds since the epoch. */
  readonly mtimeMs: number;
  /** Its inode number, where the system gives one. */
  readonly ino?: number | null;
  /** The file system (device) it is on, where the system gives one. */
  readonly dev?: number | null;
  /**
   * Its status change time (ctime) in milliseconds since the epoch, where
   * known (Deno gives it to the second: a file rewritten in place within the
   * second of the archive's last change, keeping its size, modification time
   * and uuid, is not told apart).
   */
  readonly ctimeMs?: number | null;
}

/** The optional parts of `stamp`, -1 for those unknown. */
function stampExtras(stamp: VmaIndexStamp): number[] {
  return [stamp.ino, stamp.dev, stamp.ctimeMs].map((v) => v ?? -1);
}

/** Options of {@linkcode loadVmaIndex}. */
export interface LoadVmaIndexOptions {
  /**
   * The most memory, in bytes, the loaded index may take (as
   * {@linkcode IndexVmaOptions.maxBytes}).
   *
   * @default {268435456}
   */
  maxBytes?: number;
}

async function sha256(bytes: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as BufferSource));
}

/**
 * Encodes `index` as the bytes of an index file (format 1, little-endian,
 * SHA-256 at the end), recording `stamp`, the archive file it was built from;
 * {@linkcode loadVmaIndex} reads it back. Only an index of a plain
 * (uncompressed) archive is worth saving: the offsets are into the
 * uncompressed archive.
 *
 * @example Saving an index and loading it back
 * ```ts
 * import { indexVma, loadVmaIndex, saveVmaIndex, VmaReader, VmaWriter } from "@vmakit/vma";
 * import assert from "node:assert/strict";
 *
 * const writer = new VmaWriter();
 * const disk = writer.addDevice("drive-scsi0", 65536);
 * const done = new Response(writer.readable).bytes();
 * await disk.write(0, new Uint8Array(65536).fill(7));
 * await writer.close();
 * const archive = await done;
 *
 * const index = await indexVma(ReadableStream.from([archive]));
 * const stamp = { size: archive.length, mtimeMs: 1e12 };
 * const saved = await saveVmaIndex(index, stamp);
 * // Later: the header of the archive, and the saved bytes.
 * const header = await new VmaReader(ReadableStream.from([archive])).header();
 * const loaded = await loadVmaIndex(saved, header, stamp);
 * assert.equal(loaded.archiveSize, index.archiveSize);
 * ```
 *
 * @param index The index, from {@linkcode indexVma}.
 * @param stamp The size, times, inode and file system of the archive file.
 * @returns The bytes of the index file.
 * @throws {RangeError} When `stamp` holds no byte count or time.
 */
export async function saveVmaIndex(index: VmaIndex, stamp: VmaIndexStamp): Promise<Uint8Array> {
  checkStamp(stamp);
  const devices = index.header.devices;
  const names = devices.map((d) => new TextEncoder().encode(d.name));
  let length = INDEX_FIXED + INDEX_DIGEST;
  devices.forEach((d, i) => {
    length += INDEX_DEVICE + names[i].length + index.table(d.name)!.runs.length * RUN_BYTES;
  });
  const out = new Uint8Array(length);
  const view = new DataView(out.buffer);
  out.set(INDEX_MAGIC, 0);
  view.setUint32(8, INDEX_VERSION, true);
  view.setBigUint64(16, BigInt(stamp.size), true);
  view.setFloat64(24, stamp.mtimeMs, true);
  view.setBigUint64(32, BigInt(index.archiveSize), true);
  out.set(new TextEncoder().encode(index.header.uuid.padEnd(36, " ").slice(0, 36)), 40);
  view.setUint32(76, devices.length, true);
  stampExtras(stamp).forEach((v, k) => view.setFloat64(80 + 8 * k, v, true));
  let at = INDEX_FIXED;
  devices.forEach((d, i) => {
    const runs = index.table(d.name)!.runs;
    view.setUint32(at, d.id, true);
    view.setUint32(at + 4, names[i].length, true);
    view.setBigUint64(at + 8, BigInt(d.size), true);
    view.setUint32(at + 16, runs.length, true);
    out.set(names[i], at + INDEX_DEVICE);
    at += INDEX_DEVICE + names[i].length;
    for (let r = 0; r < runs.length; r++, at += RUN_BYTES) {
      view.setUint32(at, runs.start[r], true);
      view.setUint32(at + 4, runs.count[r], true);
      view.setBigUint64(at + 8, BigInt(runs.offset[r]), true);
      view.setUint16(at + 16, runs.mask[r], true);
    }
  });
  out.set(await sha256(out.subarray(0, at)), at);
  return out;
}

function checkStamp(stamp: VmaIndexStamp): void {
  if (
    !Number.isSafeInteger(stamp.size) || stamp.size < 0 || !Number.isFinite(stamp.mtimeMs) ||
    !stampExtras(stamp).every(Number.isFinite)
  ) {
    throw new RangeError(
      `Cannot use the index stamp: size ${stamp.size} and time ${stamp.mtimeMs} are not a file's`,
    );
  }
}

/**
 * Reads an index file written by {@linkcode saveVmaIndex}, as outside data:
 * its SHA-256, its format version, every count against its length, every run
 * against its device and the archive size, and the memory it takes against
 * `maxBytes`. It is used only for the archive it was saved for: same file
 * size and modification time, same inode, file system and ctime where known
 * (`stamp`), same header uuid and devices: an archive copied or moved, or
 * another file given its size and times, is indexed anew.
 *
 * A saved index is trusted like the archive itself (whoever can write it can
 * write the archive): its runs are checked against their devices and the
 * archive's size, not against the extents of the archive, so a well-signed
 * index whose runs point at other stored blocks reads those blocks.
 *
 * @param bytes The index file.
 * @param header The header of the archive, as read now.
 * @param stamp The size, times, inode and file system of the archive file now.
 * @param options The memory limit.
 * @returns The index, as {@linkcode indexVma} built it.
 * @throws {SyntaxError} When the file is not an index, is damaged, or holds a
 *   run out of bounds.
 * @throws {RangeError} When the index describes another archive or another
 *   version of it (the file changed), or needs more than `maxBytes`.
 */
export async function loadVmaIndex(
  bytes: Uint8Array,
  header: VmaHeader,
  stamp: VmaIndexStamp,
  options: LoadVmaIndexOptions = {},
): Promise<VmaIndex> {
  checkStamp(stamp);
  const budget = new Budget(options.maxBytes ?? DEFAULT_MAX_BYTES);
  const bad = (why: string) => new SyntaxError(`Cannot load the index: ${why}`);
  for (let i = 0; i < INDEX_MAGIC.length; i++) {
    if (bytes[i] !== INDEX_MAGIC[i]) throw bad("not a vmakit index file");
  }
  if (bytes.length < INDEX_FIXED + INDEX_DIGEST) throw bad(`${bytes.length} bytes is too short`);
  const end = bytes.length - INDEX_DIGEST;
  const version = new DataView(bytes.buffer, bytes.byteOffset).getUint32(8, true);
  if (version !== INDEX_VERSION) throw bad(`format version ${version} is not supported`);
  const digest = await sha256(bytes.subarray(0, end));
  for (let i = 0; i < INDEX_DIGEST; i++) {
    if (digest[i] !== bytes[end + i]) throw bad("the checksum does not match (damaged)");
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, end);
  const size = Number(view.getBigUint64(16, true));
  const mtimeMs = view.getFloat64(24, true);
  if (size !== stamp.size || mtimeMs !== stamp.mtimeMs) {
    throw new RangeError(
      "Cannot load the index: the archive file changed since it was saved (size or time)",
    );
  }
  const extras = stampExtras(stamp);
  if (extras.some((v, k) => view.getFloat64(80 + 8 * k, true) !== v)) {
    throw new RangeError(
      "Cannot load the index: the archive file was replaced, copied or moved since it was " +
        "saved (inode, file system or ctime)",
    );
  }
  const uuid = new TextDecoder().decode(bytes.subarray(40, 76)).trimEnd();
  if (uuid !== header.uuid) {
    throw new RangeError(
      `Cannot load the index: it is for the archive ${JSON.stringify(uuid)}, ` +
        `not ${JSON.stringify(header.uuid)}`,
    );
  }
  const archiveSize = Number(view.getBigUint64(32, true));
  if (!Number.isSafeInteger(archiveSize) || archiveSize > stamp.size) {
    throw bad(`archive size ${archiveSize} is beyond the file's ${stamp.size} bytes`);
  }
  const count = view.getUint32(76, true);
  if (count !== header.devices.length) {
    throw bad(`${count} devices, the archive has ${header.devices.length}`);
  }
  const tables = new Map<string, { device: VmaDevice; runs: RunTable }>();
  let at = INDEX_FIXED;
  for (const device of header.devices) {
    if (at + INDEX_DEVICE > end) throw bad("it ends early");
    const id = view.getUint32(at, true);
    const nameLength = view.getUint32(at + 4, true);
    const deviceSize = Number(view.getBigUint64(at + 8, true));
    const n = view.getUint32(at + 16, true);
    at += INDEX_DEVICE;
    if (nameLength > end - at) throw bad("it ends early");
    const name = new TextDecoder().decode(bytes.subarray(at, at + nameLength));
    at += nameLength;
    if (id !== device.id || name !== device.name || deviceSize !== device.size) {
      throw bad(`device ${quoteName(name)} is not the archive's ${quoteName(device.name)}`);
    }
    if (n > (end - at) / RUN_BYTES) throw bad("it ends early");
    const clusters = Math.ceil(device.size / CLUSTER_SIZE);
    tables.set(device.name, { device, runs: readRuns(view, at, n, clusters, archiveSize, budget) });
    at += n * RUN_BYTES;
  }
  if (at !== end) throw bad(`${end - at} bytes after the last device`);
  return new VmaIndex(header, tables, archiveSize, "none");
}

/**
 * Reads a whole archive once, with every check of {@linkcode VmaReader} (as
 * {@linkcode verifyVma} does), and records for every cluster of every device
 * where its stored blocks are in the uncompressed archive.
 *
 * Memory: the index keeps runs of clusters stored back to back with the same
 * mask, 18 bytes each; all-zero clusters cost nothing. An archive written in
 * device order takes about one run per extent (59 clusters), so a full 16 TiB
 * device needs about 80 MB; the worst case is one run per stored cluster,
 * bounded by `maxBytes` (a `RangeError` beyond it). Reading takes one extent
 * of memory more.
 *
 * @example Indexing an archive and reading a device at random
 * ```ts
 * import { indexVma, openVmaDisk, VmaWriter } from "@vmakit/vma";
 * import assert from "node:assert/strict";
 *
 * const writer = new VmaWriter();
 * const disk = writer.addDevice("drive-scsi0", 4 * 65536);
 * const done = new Response(writer.readable).bytes();
 * await disk.write(131072, new Uint8Array(65536).fill(7));
 * await disk.writeZeroes(0, 131072);
 * await disk.writeZeroes(196608, 65536);
 * await writer.close();
 * const archive = await done;
 *
 * const index = await indexVma(ReadableStream.from([archive]));
 * const image = openVmaDisk(index, {
 *   size: archive.length,
 *   read: (position, length) => Promise.resolve(archive.slice(position, position + length)),
 *   close: () => Promise.resolve(),
 * }, "drive-scsi0");
 * assert.deepEqual(await image.read(131070, 4), new Uint8Array([0, 0, 7, 7]));
 * ```
 *
 * @param input The archive, plain or compressed, or a reader whose extents
 *   have not been read yet.
 * @param options Decompression options, the memory limit, a progress callback.
 * @returns The index.
 * @throws {VmaFormatError} When the archive is malformed or incomplete.
 * @throws {RangeError} When the index would take more than `maxBytes`.
 */
export async function indexVma(
  input: ReadableStream<Uint8Array> | VmaReader,
  options: IndexVmaOptions = {},
): Promise<VmaIndex> {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_BYTES;
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) {
    throw new RangeError(`Cannot index the archive: maxBytes ${maxBytes} is not a byte count`);
  }
  const reader = input instanceof VmaReader ? input : new VmaReader(input, options);
  const header = await reader.header();
  const budget = new Budget(maxBytes);
  const byId: (RunTable | undefined)[] = [];
  const tables = new Map<string, { device: VmaDevice; runs: RunTable }>();
  for (const device of header.devices) {
    const runs = new RunTable();
    byId[device.id] = runs;
    tables.set(device.name, { device, runs });
  }
  try {
    for await (const extent of reader.extents({ reuseBuffers: true })) {
      let at = extent.offset + EXTENT_HEADER_SIZE;
      for (const cluster of extent.clusters) {
        if (cluster.mask === 0) continue;
        byId[cluster.device.id]!.add(cluster.cluster, cluster.mask, at, budget);
        at += cluster.data.length;
      }
      options.onProgress?.(reader.bytesRead);
    }
  } catch (e) {
    await reader.cancel(e).catch(() => {});
    throw e;
  }
  for (const { runs } of tables.values()) runs.finish();
  return new VmaIndex(header, tables, reader.bytesRead, reader.compression ?? "none");
}

/**
 * Opens one device of an indexed archive as a {@linkcode DiskImage}: reads of
 * any range go to the stored blocks through `reader`, positioned reads of the
 * uncompressed archive; zero blocks and clusters read as zeros without I/O,
 * and `regions()` reports them as zero regions. `close()` closes `reader`.
 *
 * @example Reading a device's regions
 * ```ts
 * import { indexVma, openVmaDisk, VmaWriter } from "@vmakit/vma";
 * import assert from "node:assert/strict";
 *
 * const writer = new VmaWriter();
 * const disk = writer.addDevice("drive-scsi0", 2 * 65536);
 * const done = new Response(writer.readable).bytes();
 * await disk.write(0, new Uint8Array(65536).fill(1));
 * await disk.writeZeroes(65536, 65536);
 * await writer.close();
 * const archive = await done;
 *
 * const index = await indexVma(ReadableStream.from([archive]));
 * const image = openVmaDisk(index, {
 *   size: archive.length,
 *   read: (position, length) => Promise.resolve(archive.slice(position, position + length)),
 *   close: () => Promise.resolve(),
 * }, "drive-scsi0");
 * const regions = [];
 * for await (const region of image.regions()) regions.push(region);
 * assert.deepEqual(regions, [
 *   { offset: 0, length: 65536, zero: false },
 *   { offset: 65536, length: 65536, zero: true },
 * ]);
 * ```
 *
 * @param index The archive's index.
 * @param reader Positioned reads of the uncompressed archive the index was built from.
 * @param deviceName The device, such as `drive-scsi0`.
 * @returns The device as a disk image (format `"vma"`).
 * @throws {TypeError} When the archive has no such device, or `reader` is
 *   smaller than the archive the index describes.
 */
export function openVmaDisk(
  index: VmaIndex,
  reader: VmaArchiveReader,
  deviceName: string,
): VmaDiskImage {
  const table = index.table(deviceName);
  if (table === undefined) {
    throw new TypeError(
      `Cannot open device ${quoteName(deviceName)}: the archive has no such device`,
    );
  }
  if (reader.size < index.archiveSize) {
    throw new TypeError(
      `Cannot open device ${quoteName(deviceName)}: the archive file has ${reader.size} bytes, ` +
        `the index describes ${index.archiveSize}`,
    );
  }
  return new VmaDisk(table.device, table.runs, reader);
}

function endedEarly(want: number, position: number, got: number): VmaFormatError {
  return new VmaFormatError(
    `archive ended early: ${want} bytes wanted at ${position}, ${got} read`,
    position + got,
  );
}

/** One device of an indexed archive. */
class VmaDisk implements VmaDiskImage {
  readonly format = "vma";
  readonly size: number;
  readonly #runs: RunTable;
  readonly #reader: VmaArchiveReader;
  readonly #name: string;
  #closed = false;

  constructor(device: VmaDevice, runs: RunTable, reader: VmaArchiveReader) {
    this.size = device.size;
    this.#name = device.name;
    this.#runs = runs;
    this.#reader = reader;
  }

  #check(offset: number, length: number): void {
    if (this.#closed) throw new TypeError(`Cannot read device ${quoteName(this.#name)}: closed`);
    if (
      !Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 ||
      length < 0 || offset + length > this.size
    ) {
      throw new RangeError(
        `Cannot read ${length} bytes at ${offset} of device ${quoteName(this.#name)}: ` +
          `it has ${this.size} bytes`,
      );
    }
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    this.#check(offset, length);
    const runs = this.#runs;
    // Within one run of full clusters: the reader's bytes as they come, no copy.
    const first = runs.find(Math.floor(offset / CLUSTER_SIZE));
    if (
      length > 0 && length <= MAX_READ && first >= 0 && runs.mask[first] === 0xffff &&
      offset + length <= (runs.start[first] + runs.count[first]) * CLUSTER_SIZE
    ) {
      const position = runs.offset[first] + (offset - runs.start[first] * CLUSTER_SIZE);
      const bytes = await this.#reader.read(position, length);
      if (bytes.length < length) throw endedEarly(length, position, bytes.length);
      return bytes;
    }
    const out = new Uint8Array(length);
    await this.#fill(out, offset, true);
    return out;
  }

  async readInto(offset: number, target: Uint8Array): Promise<void> {
    this.#check(offset, target.length);
    await this.#fill(target, offset, false);
  }

  /** Fills `out` with the bytes at `offset`; `zeroed` when `out` holds zeros already. */
  async #fill(out: Uint8Array, offset: number, zeroed: boolean): Promise<void> {
    const runs = this.#runs;
    const end = offset + out.length;
    let pos = offset;
    while (pos < end) {
      const c = Math.floor(pos / CLUSTER_SIZE);
      const r = runs.find(c);
      if (r < 0 || c >= runs.start[r] + runs.count[r]) {
        // Zeros up to the next run.
        const next = r + 1 < runs.length ? runs.start[r + 1] * CLUSTER_SIZE : end;
        const stop = Math.min(end, next);
        if (!zeroed) out.fill(0, pos - offset, stop - offset);
        pos = stop;
        continue;
      }
      const mask = runs.mask[r];
      const runByte = runs.start[r] * CLUSTER_SIZE;
      if (mask === 0xffff) {
        const stop = Math.min(end, (runs.start[r] + runs.count[r]) * CLUSTER_SIZE);
        await this.#copy(out, pos - offset, runs.offset[r] + (pos - runByte), stop - pos);
        pos = stop;
        continue;
      }
      const stored = popcount16(mask) * BLOCK_SIZE;
      const clusterAt = runs.offset[r] + (c - runs.start[r]) * stored;
      const clusterByte = c * CLUSTER_SIZE;
      const clusterEnd = Math.min(end, clusterByte + CLUSTER_SIZE);
      while (pos < clusterEnd) {
        const j = Math.floor((pos - clusterByte) / BLOCK_SIZE);
        const blockByte = clusterByte + j * BLOCK_SIZE;
        const stop = Math.min(clusterEnd, blockByte + BLOCK_SIZE);
        if ((mask & (1 << j)) !== 0) {
          const rank = popcount16(mask & ((1 << j) - 1));
          await this.#copy(
            out,
            pos - offset,
            clusterAt + rank * BLOCK_SIZE + (pos - blockByte),
            stop - pos,
          );
        } else if (!zeroed) {
          out.fill(0, pos - offset, stop - offset);
        }
        pos = stop;
      }
    }
  }

  /** Copies `length` archive bytes at `position` into `out` at `at`. */
  async #copy(out: Uint8Array, at: number, position: number, length: number): Promise<void> {
    const reader = this.#reader;
    for (let done = 0; done < length;) {
      const want = Math.min(MAX_READ, length - done);
      if (reader.readInto) {
        const got = await reader.readInto(
          position + done,
          out.subarray(at + done, at + done + want),
        );
        if (got < want) throw endedEarly(want, position + done, got);
      } else {
        const bytes = await reader.read(position + done, want);
        if (bytes.length < want) throw endedEarly(want, position + done, bytes.length);
        out.set(bytes, at + done);
      }
      done += want;
    }
  }

  async *regions(): AsyncGenerator<DiskImageRegion> {
    const runs = this.#runs;
    const size = this.size;
    let pending: { offset: number; length: number; zero: boolean } | undefined;
    const regions: DiskImageRegion[] = [];
    const push = (offset: number, length: number, zero: boolean) => {
      if (offset >= size || length <= 0) return;
      length = Math.min(length, size - offset);
      if (pending && pending.zero === zero && pending.offset + pending.length === offset) {
        pending.length += length;
        return;
      }
      if (pending) regions.push(pending);
      pending = { offset, length, zero };
    };
    let pos = 0;
    for (let r = 0; r < runs.length; r++) {
      const startByte = runs.start[r] * CLUSTER_SIZE;
      push(pos, startByte - pos, true);
      const mask = runs.mask[r];
      const count = runs.count[r];
      if (mask === 0xffff) {
        push(startByte, count * CLUSTER_SIZE, false);
      } else {
        for (let i = 0; i < count; i++) {
          const clusterByte = startByte + i * CLUSTER_SIZE;
          for (let j = 0; j < 16; j++) {
            push(clusterByte + j * BLOCK_SIZE, BLOCK_SIZE, (mask & (1 << j)) === 0);
          }
          yield* regions.splice(0);
        }
      }
      pos = startByte + count * CLUSTER_SIZE;
      yield* regions.splice(0);
    }
    push(pos, size - pos, true);
    if (pending) regions.push(pending);
    yield* regions;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#reader.close();
  }
}
