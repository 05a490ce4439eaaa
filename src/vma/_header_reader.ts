// Reading and checking the archive header, in the order of Proxmox's reader
// (docs: vma-format.md, sections 1 and 3). `VmaReader.header` is its public
// face. Private to the library.
import {
  bytesEqual,
  DEV_INFO_SIZE,
  HEADER_FIXED_SIZE,
  HEADER_MAGIC,
  MAX_CONFIGS,
  MAX_DEVICES,
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
  quoteName,
  unsafeNameReason,
  uuidToString,
  VMSTATE_NAME,
} from "./_layout.ts";
import type { ByteSource } from "./_byte_source.ts";
import { VmaFormatError } from "./vma_format_error.ts";
import type { VmaConfig, VmaDevice, VmaHeader } from "./vma_reader.ts";

/** The header, with what the data phase needs to check extents. */
export interface ParsedHeader {
  header: VmaHeader;
  uuid: Uint8Array;
  devices: (VmaDevice | undefined)[]; // by id
}

const decoder = new TextDecoder();
/** Largest header the reader accepts (the reference writer stops at 512 KiB). */
const MAX_READ_HEADER = 64 * 1024 * 1024;

/** Blobs by pointer (relative to the blob buffer), as the reference reader finds them. */
type Blobs = Map<number, Uint8Array>;

/** Reads and checks the header: documented on `VmaReader.header`. */
export async function readHeader(source: ByteSource): Promise<ParsedHeader> {
  const head = await readHeaderBytes(source);
  const view = new DataView(head.buffer);
  const blobs = walkBlobs(head, view);
  const { devices, list } = parseDevices(view, blobs);
  const configs = parseConfigs(view, blobs);
  return {
    header: {
      uuid: uuidToString(head.subarray(OFF_UUID, OFF_UUID + 16)),
      ctime: new Date(Number(view.getBigInt64(OFF_CTIME)) * 1000),
      headerSize: head.length,
      configs,
      devices: list,
    },
    uuid: head.slice(OFF_UUID, OFF_UUID + 16),
    devices,
  };
}

/** Reads the whole header; checks magic, size, MD5 and version. */
async function readHeaderBytes(source: ByteSource): Promise<Uint8Array> {
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
  if (!bytesEqual(md5WithHole(head, OFF_MD5), head.subarray(OFF_MD5, OFF_MD5 + 16))) {
    throw new VmaFormatError("wrong vma header chechsum", OFF_MD5);
  }
  const version = new DataView(head.buffer).getUint32(OFF_VERSION);
  if (version !== 1) throw new VmaFormatError(`wrong vma version ${version | 0}`, OFF_VERSION);
  return head;
}

/** Checks the blob buffer's bounds and walks it as the reference reader does. */
function walkBlobs(head: Uint8Array, view: DataView): Blobs {
  const blobOffset = view.getUint32(OFF_BLOB_OFFSET);
  const blobSize = view.getUint32(OFF_BLOB_SIZE);
  if (((blobOffset + 1) >>> 0) <= HEADER_FIXED_SIZE) {
    throw new VmaFormatError(`wrong vma blob buffer offset ${blobOffset | 0}`, OFF_BLOB_OFFSET);
  }
  const blobEnd = (blobOffset + blobSize) >>> 0;
  if (blobEnd > head.length) {
    throw new VmaFormatError(
      `wrong vma blob buffer size ${blobOffset | 0}/${blobSize | 0}`,
      OFF_BLOB_SIZE,
    );
  }
  // Only positions the walk reaches are valid pointers.
  const blobs: Blobs = new Map();
  for (let at = blobOffset + 1; at + 2 <= blobEnd;) {
    const len = head[at] | (head[at + 1] << 8);
    if (at + 2 + len <= blobEnd) blobs.set(at - blobOffset, head.subarray(at + 2, at + 2 + len));
    at += 2 + len;
  }
  return blobs;
}

/** The NUL-terminated string blob at `ptr`, or undefined when there is none. */
function blobString(blobs: Blobs, ptr: number): string | undefined {
  const blob = blobs.get(ptr);
  if (blob === undefined || blob.length === 0 || blob[blob.length - 1] !== 0) return undefined;
  const body = blob.subarray(0, blob.length - 1);
  if (body.includes(0)) return undefined;
  return decoder.decode(body);
}

/** The devices of the dev_info table, by id and as a list. */
function parseDevices(
  view: DataView,
  blobs: Blobs,
): { devices: (VmaDevice | undefined)[]; list: VmaDevice[] } {
  const devices: (VmaDevice | undefined)[] = [];
  const list: VmaDevice[] = [];
  const names = new Set<string>();
  for (let id = 1; id < 256; id++) {
    const at = OFF_DEV_INFO + DEV_INFO_SIZE * id;
    const namePtr = view.getUint32(at);
    const size = view.getBigUint64(at + 8);
    if (size === 0n) continue;
    const name = blobString(blobs, namePtr);
    if (name === undefined) {
      if (namePtr === 0) continue; // no name: the reference ignores the slot too
      throw new VmaFormatError(`vma contains an invalid device name pointer for dev_id ${id}`, at);
    }
    if (id > MAX_DEVICES) {
      throw new VmaFormatError(`vma contains a device with dev_id ${id}, past ${MAX_DEVICES}`, at);
    }
    if (size > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new VmaFormatError(
        `vma device ${quoteName(name)} has an unsupported size ${size}`,
        at + 8,
      );
    }
    checkSafeName("device", name, at);
    if (names.has(name)) {
      throw new VmaFormatError(`vma contains device name ${quoteName(name)} twice`, at);
    }
    names.add(name);
    const device = { id, name, size: Number(size), vmstate: name === VMSTATE_NAME };
    devices[id] = device;
    list.push(device);
  }
  return { devices, list };
}

/** The configs of the used config slots. */
function parseConfigs(view: DataView, blobs: Blobs): VmaConfig[] {
  const configs: VmaConfig[] = [];
  const names = new Set<string>();
  for (let i = 0; i < MAX_CONFIGS; i++) {
    const at = OFF_CONFIG_NAMES + 4 * i;
    const namePtr = view.getUint32(at);
    const dataPtr = view.getUint32(OFF_CONFIG_DATA + 4 * i);
    if (namePtr === 0 || dataPtr === 0) continue;
    const name = blobString(blobs, namePtr);
    const data = blobs.get(dataPtr);
    if (name === undefined || data === undefined) {
      throw new VmaFormatError("vma contains invalid data pointers", at);
    }
    checkSafeName("config", name, at);
    if (names.has(name)) {
      throw new VmaFormatError(`vma contains config name ${quoteName(name)} twice`, at);
    }
    names.add(name);
    configs.push({ name, data: data.slice() });
  }
  return configs;
}

function checkSafeName(kind: string, name: string, offset: number): void {
  const reason = unsafeNameReason(name);
  if (reason !== undefined) {
    throw new VmaFormatError(
      `vma contains ${kind} name ${quoteName(name)}, unsafe as a file name: ${reason}`,
      offset,
    );
  }
}
