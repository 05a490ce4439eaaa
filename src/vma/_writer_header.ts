// The writer's archive header: checking the options, configs and device names
// it will hold, and encoding it once all are known (docs: vma-format.md,
// section 1). Private to the library.
import {
  DEV_INFO_SIZE,
  HEADER_FIXED_SIZE,
  HEADER_MAGIC,
  MAX_BLOB_SIZE,
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
  quoteName,
  uuidFromString,
} from "./_layout.ts";
import type { VmaWriterOptions } from "./vma_writer.ts";

/** A config file as the header will store it. */
export interface HeaderConfig {
  readonly name: string;
  readonly nameBytes: Uint8Array;
  readonly data: Uint8Array;
}

/** A device as the header will list it. */
export interface HeaderDevice {
  readonly id: number;
  readonly nameBytes: Uint8Array;
  readonly size: number;
}

const encoder = new TextEncoder();
const MAX_NAME_BYTES = MAX_BLOB_SIZE - 1;
/** Room for blobs (the dummy byte included) in the largest header. */
export const BLOB_AREA_LIMIT: number = MAX_HEADER_SIZE - HEADER_FIXED_SIZE;

/** `n` rounded up to a multiple of 512. */
export function roundUp512(n: number): number {
  return Math.ceil(n / 512) * 512;
}

/** Checks the writer options; documented on `VmaWriterOptions`. */
export function parseWriterOptions(
  options: VmaWriterOptions,
): { uuid: Uint8Array; ctime: Date; ordered: boolean } {
  const { uuid, ctime, ordered = false } = options;
  let uuidBytes: Uint8Array;
  if (uuid === undefined) {
    uuidBytes = crypto.getRandomValues(new Uint8Array(16));
    uuidBytes[6] = (uuidBytes[6] & 0x0f) | 0x40;
    uuidBytes[8] = (uuidBytes[8] & 0x3f) | 0x80;
  } else if (typeof uuid === "string") {
    const bytes = uuidFromString(uuid);
    if (bytes === undefined) {
      throw new TypeError(
        `Cannot use uuid "${uuid}": it is not of the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`,
      );
    }
    uuidBytes = bytes;
  } else if (uuid instanceof Uint8Array && uuid.length === 16) {
    uuidBytes = uuid.slice();
  } else {
    throw new TypeError("Cannot use uuid: it must be a string or 16 bytes");
  }
  let ctimeDate: Date;
  if (ctime === undefined) {
    ctimeDate = new Date(Math.floor(Date.now() / 1000) * 1000);
  } else if (ctime instanceof Date && Number.isFinite(ctime.getTime())) {
    ctimeDate = new Date(Math.floor(ctime.getTime() / 1000) * 1000);
  } else {
    throw new TypeError("Cannot use ctime: it must be a valid Date");
  }
  if (typeof ordered !== "boolean") {
    throw new TypeError("Cannot use ordered: it must be a boolean");
  }
  return { uuid: uuidBytes, ctime: ctimeDate, ordered };
}

/** Checks a config or device name; returns its UTF-8 bytes. */
export function checkName(kind: string, name: string, used: boolean): Uint8Array {
  if (typeof name !== "string") {
    throw new TypeError(`Cannot add ${kind}: the name must be a string`);
  }
  const prefix = `Cannot add ${kind} ${quoteName(name)}`;
  if (name.length === 0) throw new TypeError(`${prefix}: the name is empty`);
  if (name.includes("/")) throw new TypeError(`${prefix}: the name contains "/"`);
  if (/\s/.test(name)) throw new TypeError(`${prefix}: the name contains whitespace`);
  // deno-lint-ignore no-control-regex
  if (/[\u0000-\u001f\u007f-\u009f]/.test(name)) {
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

/**
 * Encodes the header: blobs in the reference order (each config's name and
 * data, then the device names by id), padded to a multiple of 512, MD5 last.
 * `blobUsed` is the blob bytes reserved, the dummy byte at position 0 included.
 */
export function encodeHeader(
  uuid: Uint8Array,
  ctime: Date,
  configs: readonly HeaderConfig[],
  devices: readonly HeaderDevice[],
  blobUsed: number,
): Uint8Array {
  const size = HEADER_FIXED_SIZE + Math.max(512, roundUp512(blobUsed));
  const buf = new Uint8Array(size);
  const view = new DataView(buf.buffer);
  buf.set(HEADER_MAGIC, 0);
  view.setUint32(OFF_VERSION, 1);
  buf.set(uuid, OFF_UUID);
  view.setBigInt64(OFF_CTIME, BigInt(Math.floor(ctime.getTime() / 1000)));
  view.setUint32(OFF_BLOB_OFFSET, HEADER_FIXED_SIZE);
  view.setUint32(OFF_BLOB_SIZE, blobUsed);
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
  configs.forEach((config, i) => {
    view.setUint32(OFF_CONFIG_NAMES + 4 * i, blob(config.nameBytes, true));
    view.setUint32(OFF_CONFIG_DATA + 4 * i, blob(config.data, false));
  });
  for (const device of devices) {
    const at = OFF_DEV_INFO + DEV_INFO_SIZE * device.id;
    view.setUint32(at, blob(device.nameBytes, true));
    view.setBigUint64(at + 8, BigInt(device.size));
  }
  buf.set(md5WithHole(buf, OFF_MD5), OFF_MD5);
  return buf;
}
