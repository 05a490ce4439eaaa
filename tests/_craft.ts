// Building VMA archives byte by byte, without the library's writer, so tests
// can make archives the writer refuses to make (docs: vma-format.md, sections
// 1 and 2). Also splitting an archive into its header and extents, for the
// fuzzer. Test helper only.
import { md5 } from "npm:@noble/hashes@^2.0.1/legacy.js";

export const HEADER_FIXED_SIZE = 12288;
export const EXTENT_HEADER_SIZE = 512;
export const BLOCK_SIZE = 4096;
export const CLUSTER_SIZE = 65536;
export const OFF_VERSION = 4;
export const OFF_UUID = 8;
export const OFF_CTIME = 24;
export const OFF_MD5 = 32;
export const OFF_BLOB_OFFSET = 48;
export const OFF_BLOB_SIZE = 52;
export const OFF_HEADER_SIZE = 56;
export const OFF_CONFIG_NAMES = 2044;
export const OFF_CONFIG_DATA = 3068;
export const OFF_DEV_INFO = 4096;
export const DEV_INFO_SIZE = 32;
export const EXT_OFF_BLOCK_COUNT = 6;
export const EXT_OFF_UUID = 8;
export const EXT_OFF_MD5 = 24;
export const EXT_OFF_BLOCKINFO = 40;
export const SLOTS_PER_EXTENT = 59;

/** The uuid crafted archives use unless told otherwise. */
export const CRAFT_UUID: Uint8Array = Uint8Array.from({ length: 16 }, (_, i) => 0xa0 + i);

const encoder = new TextEncoder();

/**
 * A blob payload: a string is stored as UTF-8 plus a NUL (a name), bytes are
 * stored exactly as given (so a test can leave out the NUL or give 0 bytes).
 */
export type BlobInput = string | Uint8Array;

function blobBytes(input: BlobInput, nul: boolean): Uint8Array {
  if (input instanceof Uint8Array) return input;
  const text = encoder.encode(input);
  if (!nul) return text;
  const out = new Uint8Array(text.length + 1);
  out.set(text);
  return out;
}

/** A config of a crafted header. */
export interface CraftConfig {
  /** Stored with a NUL when a string. */
  name: BlobInput;
  /** Stored without a NUL when a string. */
  data: BlobInput;
}

/** A device of a crafted header. */
export interface CraftDevice {
  /** The dev_id (slot in the dev_info table). @default {1, 2, ... in order} */
  id?: number;
  /** Stored with a NUL when a string. */
  name: BlobInput;
  /** Declared size in bytes. */
  size: number | bigint;
}

/** Where the blobs of a crafted header went (blob pointers, relative to the blob buffer). */
export interface CraftLayout {
  configNames: number[];
  configData: number[];
  /** By dev_id. */
  deviceNames: Map<number, number>;
  /** Blob bytes used, dummy byte included. */
  blobUsed: number;
}

/** Options of {@linkcode craftHeader}. */
export interface CraftHeaderOptions {
  uuid?: Uint8Array;
  configs?: CraftConfig[];
  devices?: CraftDevice[];
  /** Blob area after the fixed part, before `headerSize` is applied. @default {used bytes rounded up to 512, at least 512} */
  blobArea?: number;
  /**
   * Edits the header after the layout and before the MD5: set odd field
   * values here (`header_size`, blob pointers, version ...).
   */
  edit?: (view: DataView, bytes: Uint8Array, layout: CraftLayout) => void;
  /** Whether to store the right MD5. @default {true} */
  md5?: boolean;
}

/** A crafted header and where its blobs are. */
export interface CraftedHeader {
  bytes: Uint8Array;
  layout: CraftLayout;
}

/**
 * Builds a VMA header as the reference writer lays it out: blobs packed from
 * position 1 in the order config name, config data (per config), then device
 * names by position in `devices`; `blob_buffer_offset` 12288;
 * `blob_buffer_size` = used bytes.
 */
export function craftHeader(options: CraftHeaderOptions = {}): CraftedHeader {
  const configs = options.configs ?? [];
  const devices = options.devices ?? [];
  const blobs: Uint8Array[] = [];
  const layout: CraftLayout = {
    configNames: [],
    configData: [],
    deviceNames: new Map(),
    blobUsed: 1,
  };
  const add = (payload: Uint8Array): number => {
    const at = layout.blobUsed;
    const blob = new Uint8Array(2 + payload.length);
    blob[0] = payload.length & 0xff;
    blob[1] = payload.length >>> 8;
    blob.set(payload, 2);
    blobs.push(blob);
    layout.blobUsed += blob.length;
    return at;
  };
  for (const config of configs) {
    layout.configNames.push(add(blobBytes(config.name, true)));
    layout.configData.push(add(blobBytes(config.data, false)));
  }
  devices.forEach((device, i) => {
    layout.deviceNames.set(device.id ?? i + 1, add(blobBytes(device.name, true)));
  });
  const area = options.blobArea ?? Math.max(512, Math.ceil(layout.blobUsed / 512) * 512);
  const size = HEADER_FIXED_SIZE + area;
  const bytes = new Uint8Array(Math.max(size, HEADER_FIXED_SIZE + layout.blobUsed));
  const view = new DataView(bytes.buffer);
  bytes.set([0x56, 0x4d, 0x41, 0x00], 0);
  view.setUint32(OFF_VERSION, 1);
  bytes.set(options.uuid ?? CRAFT_UUID, OFF_UUID);
  view.setBigInt64(OFF_CTIME, 1_700_000_000n);
  view.setUint32(OFF_BLOB_OFFSET, HEADER_FIXED_SIZE);
  view.setUint32(OFF_BLOB_SIZE, layout.blobUsed);
  view.setUint32(OFF_HEADER_SIZE, size);
  let at = HEADER_FIXED_SIZE + 1;
  for (const blob of blobs) {
    bytes.set(blob, at);
    at += blob.length;
  }
  configs.forEach((_, i) => {
    view.setUint32(OFF_CONFIG_NAMES + 4 * i, layout.configNames[i]);
    view.setUint32(OFF_CONFIG_DATA + 4 * i, layout.configData[i]);
  });
  devices.forEach((device, i) => {
    const id = device.id ?? i + 1;
    const slot = OFF_DEV_INFO + DEV_INFO_SIZE * id;
    view.setUint32(slot, layout.deviceNames.get(id)!);
    view.setBigUint64(slot + 8, BigInt(device.size));
  });
  options.edit?.(view, bytes, layout);
  if (options.md5 ?? true) fixHeaderMd5(bytes);
  return { bytes, layout };
}

/** Stores the right MD5 in a header (over `bytes.length` bytes, or `header_size` when shorter). */
export function fixHeaderMd5(bytes: Uint8Array): Uint8Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const size = Math.min(view.getUint32(OFF_HEADER_SIZE), bytes.length);
  bytes.set(md5WithHole(bytes.subarray(0, size), OFF_MD5), OFF_MD5);
  return bytes;
}

/** One blockinfo slot of a crafted extent. */
export interface CraftSlot {
  devId: number;
  cluster: number;
  /** @default {0xffff} */
  mask?: number;
  /** The reserved byte (ignored by readers). @default {0} */
  reserved?: number;
}

/** Options of {@linkcode craftExtent}. */
export interface CraftExtentOptions {
  uuid?: Uint8Array;
  /** Up to 59 slots, stored from slot 0; a slot may be put at an index with `at`. */
  slots?: (CraftSlot & { at?: number })[];
  /** The data after the header. @default {one 4 KiB block per set mask bit, filled with its slot and block number + 1} */
  data?: Uint8Array;
  /** @default {data.length / 4096} */
  blockCount?: number;
  /** @default {"VMAE"} */
  magic?: Uint8Array;
  /** The reserved u16 at offset 4 (must be 0). @default {0} */
  reserved1?: number;
  /** Whether to store the right MD5. @default {true} */
  md5?: boolean;
}

function popcount(mask: number): number {
  let n = 0;
  for (let m = mask; m !== 0; m &= m - 1) n++;
  return n;
}

/** Builds one extent: a 512-byte header and its data. */
export function craftExtent(options: CraftExtentOptions = {}): Uint8Array {
  const slots = options.slots ?? [];
  let data = options.data;
  if (data === undefined) {
    const blocks = slots.reduce((n, s) => n + popcount(s.mask ?? 0xffff), 0);
    data = new Uint8Array(blocks * BLOCK_SIZE);
    let b = 0;
    slots.forEach((s, i) => {
      for (let j = 0; j < popcount(s.mask ?? 0xffff); j++, b++) {
        data!.fill(((i * 16 + j) % 255) + 1, b * BLOCK_SIZE, (b + 1) * BLOCK_SIZE);
      }
    });
  }
  const out = new Uint8Array(EXTENT_HEADER_SIZE + data.length);
  const view = new DataView(out.buffer);
  out.set(options.magic ?? [0x56, 0x4d, 0x41, 0x45], 0);
  view.setUint16(4, options.reserved1 ?? 0);
  view.setUint16(EXT_OFF_BLOCK_COUNT, options.blockCount ?? Math.floor(data.length / BLOCK_SIZE));
  out.set(options.uuid ?? CRAFT_UUID, EXT_OFF_UUID);
  slots.forEach((s, i) => {
    setSlot(view, s.at ?? i, s);
  });
  out.set(data, EXTENT_HEADER_SIZE);
  if (options.md5 ?? true) fixExtentMd5(out);
  return out;
}

/** Writes blockinfo slot `index` of the extent header in `view`. */
export function setSlot(view: DataView, index: number, slot: CraftSlot): void {
  const at = EXT_OFF_BLOCKINFO + 8 * index;
  view.setUint16(at, slot.mask ?? 0xffff);
  view.setUint8(at + 2, slot.reserved ?? 0);
  view.setUint8(at + 3, slot.devId);
  view.setUint32(at + 4, slot.cluster);
}

/** Reads blockinfo slot `index` of the extent header in `view`. */
export function getSlot(view: DataView, index: number): Required<CraftSlot> {
  const at = EXT_OFF_BLOCKINFO + 8 * index;
  return {
    mask: view.getUint16(at),
    reserved: view.getUint8(at + 2),
    devId: view.getUint8(at + 3),
    cluster: view.getUint32(at + 4),
  };
}

/** Stores the right MD5 in the 512-byte extent header at the start of `bytes`. */
export function fixExtentMd5(bytes: Uint8Array): Uint8Array {
  const head = bytes.subarray(0, EXTENT_HEADER_SIZE);
  head.set(md5WithHole(head, EXT_OFF_MD5), EXT_OFF_MD5);
  return bytes;
}

/** One zero-data extent recording clusters `from .. to-1` (at most 59) of `devId` as zero. */
export function craftZeroExtent(
  devId: number,
  from: number,
  to: number,
  uuid: Uint8Array = CRAFT_UUID,
): Uint8Array {
  const slots: CraftSlot[] = [];
  for (let c = from; c < to; c++) slots.push({ devId, cluster: c, mask: 0 });
  return craftExtent({ uuid, slots });
}

/** Joins byte arrays. */
export function concat(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** An archive split into its header, its extents and what follows them. */
export interface SplitArchive {
  header: Uint8Array;
  extents: Uint8Array[];
  /** Bytes after the last whole extent (a cut extent or garbage). */
  rest: Uint8Array;
}

/** Splits a well-formed (or nearly) archive along `header_size` and each extent's `block_count`. */
export function splitArchive(bytes: Uint8Array): SplitArchive {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < HEADER_FIXED_SIZE) {
    return { header: bytes, extents: [], rest: bytes.subarray(bytes.length) };
  }
  const headerSize = Math.min(view.getUint32(OFF_HEADER_SIZE), bytes.length);
  const extents: Uint8Array[] = [];
  let at = headerSize;
  while (at + EXTENT_HEADER_SIZE <= bytes.length) {
    const size = EXTENT_HEADER_SIZE + view.getUint16(at + EXT_OFF_BLOCK_COUNT) * BLOCK_SIZE;
    if (at + size > bytes.length) break;
    extents.push(bytes.subarray(at, at + size));
    at += size;
  }
  return { header: bytes.subarray(0, headerSize), extents, rest: bytes.subarray(at) };
}

/**
 * A stream of `bytes` in chunks of `chunkSize` bytes (the whole at once by
 * default). With `byteStream`, a `type: "bytes"` stream, which VmaReader reads
 * through a BYOB reader.
 */
export function streamOf(
  bytes: Uint8Array,
  chunkSize = bytes.length || 1,
  byteStream = false,
): ReadableStream<Uint8Array> {
  let at = 0;
  const pull = (
    controller: ReadableStreamDefaultController<Uint8Array> | ReadableByteStreamController,
  ) => {
    if (at >= bytes.length) {
      controller.close();
      // A pending BYOB read ends only when answered (Streams spec).
      if ("byobRequest" in controller) controller.byobRequest?.respond(0);
      return;
    }
    const end = Math.min(bytes.length, at + chunkSize);
    controller.enqueue(bytes.slice(at, end));
    at = end;
  };
  if (byteStream) return new ReadableStream({ type: "bytes", pull });
  return new ReadableStream<Uint8Array>({ pull });
}

/** MD5 of `bytes` with the 16 bytes at `md5Offset` taken as zero (`bytes` is not changed). */
export function md5WithHole(bytes: Uint8Array, md5Offset: number): Uint8Array {
  const copy = bytes.slice();
  copy.fill(0, md5Offset, md5Offset + 16);
  return md5(copy);
}
