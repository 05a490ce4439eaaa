// Layout constants and small codecs of the VMA format (docs: vma-format.md,
// sections 0 to 2). Private to the library.
import { md5 } from "./_extent_md5.ts";

/** Bytes in one 4 KiB block, the unit of zero detection. */
export const BLOCK_SIZE = 4096;
/** Bytes in one cluster (16 blocks), the unit of a blockinfo slot. */
export const CLUSTER_SIZE = 65536;
/** Blocks in one cluster. */
export const BLOCKS_PER_CLUSTER = 16;
/** Size of the fixed part of the archive header. */
export const HEADER_FIXED_SIZE = 12288;
/** Size of an extent header. */
export const EXTENT_HEADER_SIZE = 512;
/** Blockinfo slots in an extent header. */
export const SLOTS_PER_EXTENT = 59;
/** Largest possible extent, header included. */
export const MAX_EXTENT_SIZE = EXTENT_HEADER_SIZE + SLOTS_PER_EXTENT * CLUSTER_SIZE;
/** Config slots in the header. */
export const MAX_CONFIGS = 256;
/** Usable device ids are 1..MAX_DEVICES. */
export const MAX_DEVICES = 254;
/** Largest blob payload. */
export const MAX_BLOB_SIZE = 65535;
/** Largest header the reference writer produces. */
export const MAX_HEADER_SIZE = 8 * CLUSTER_SIZE;
/** Cluster numbers are 32-bit. */
export const MAX_CLUSTERS = 2 ** 32;

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

/** "VMA\0" */
export const HEADER_MAGIC: Uint8Array = new Uint8Array([0x56, 0x4d, 0x41, 0x00]);
/** "VMAE" */
export const EXTENT_MAGIC: Uint8Array = new Uint8Array([0x56, 0x4d, 0x41, 0x45]);

/** The reserved device name of the saved-RAM stream. */
export const VMSTATE_NAME = "vmstate";

/** MD5 of `bytes` with the 16 bytes at `md5Offset` taken as zero. */
export function md5WithHole(bytes: Uint8Array, md5Offset: number): Uint8Array {
  const saved = bytes.slice(md5Offset, md5Offset + 16);
  bytes.fill(0, md5Offset, md5Offset + 16);
  const digest = md5(bytes);
  bytes.set(saved, md5Offset);
  return digest;
}

/** Whether `a` and `b` hold the same bytes. */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Formats 16 bytes as a lower-case RFC 4122 string. */
export function uuidToString(bytes: Uint8Array): string {
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${
    hex.slice(20)
  }`;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Parses an RFC 4122 string into 16 bytes, or returns undefined. */
export function uuidFromString(text: string): Uint8Array | undefined {
  if (!UUID_RE.test(text)) return undefined;
  const hex = text.replaceAll("-", "");
  const out = new Uint8Array(16);
  for (let i = 0; i < 16; i++) out[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return out;
}

/** Number of set bits in a 16-bit mask. */
export function popcount16(mask: number): number {
  let m = mask - ((mask >>> 1) & 0x5555);
  m = (m & 0x3333) + ((m >>> 2) & 0x3333);
  m = (m + (m >>> 4)) & 0x0f0f;
  return (m + (m >>> 8)) & 0x1f;
}

/** Number of clusters a device of `size` bytes occupies. */
export function clusterCount(size: number): number {
  return Math.ceil(size / CLUSTER_SIZE);
}

/** Why `name` is not safe as a file name, or undefined when it is. */
export function unsafeNameReason(name: string): string | undefined {
  if (name.length === 0) return "it is empty";
  if (name === "." || name === "..") return `it is "${name}"`;
  if (name.includes("/")) return 'it contains "/"';
  if (name.includes("\\")) return 'it contains "\\"';
  // deno-lint-ignore no-control-regex
  if (/[\u0000-\u001f\u007f-\u009f]/.test(name)) return "it contains a control character";
  if (/[\u2028\u2029]/.test(name)) return "it contains a line separator";
  return undefined;
}

/**
 * `name` JSON-quoted for a message (C0 controls become `\n`, `\u001b`...),
 * with DEL, C1 controls and line separators escaped too, so a name from an
 * archive or a caller never starts a second line or reaches a terminal raw.
 */
export function quoteName(name: unknown): string {
  if (typeof name !== "string") return String(name);
  return JSON.stringify(name).replace(
    /[\u007f-\u009f\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}
