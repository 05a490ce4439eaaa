/**
 * qcow2 disk images (QEMU copy-on-write, versions 2 and 3), read through an
 * injected {@linkcode PositionedReader}.
 *
 * @module
 */

import type { DiskImage, PositionedReader } from "./disk_image.ts";
import { inflateRaw } from "../compress/_inflate.ts";
import { type ExtentMapper, hex, MappedImage, openReferenced, ReadAhead } from "./_mapped_image.ts";

/** Options for {@linkcode openQcow2Image}. */
export interface Qcow2ImageOptions {
  /**
   * Opens the image's backing file, by the name stored in the header (often
   * relative to the image's directory; resolving it is the caller's job), with
   * the backing format the header records, if any (`"qcow2"`, `"raw"`, ...).
   * The returned image is closed when this one is.
   *
   * Without it, an image that has a backing file is refused. An opener that
   * follows chains should bound their depth, as an image can name itself.
   *
   * @default {undefined}
   */
  openBacking?: (name: string, format?: string) => Promise<DiskImage>;
  /**
   * Decompresses one zstd frame (`data`, exactly one frame) into at least
   * `expectedSize` bytes, for images whose compression type is zstd, for
   * example `(data) => Promise.resolve(zstdDecompressSync(data))` with
   * `node:zlib`. Without it, zstd-compressed images are refused.
   *
   * @default {undefined}
   */
  zstd?: (data: Uint8Array, expectedSize: number) => Promise<Uint8Array>;
}

const MAGIC = 0x514649fb;
const INCOMPATIBLE_CORRUPT = 2;
const INCOMPATIBLE_DATA_FILE = 4;
const INCOMPATIBLE_COMPRESSION = 8;
const INCOMPATIBLE_EXTENDED_L2 = 16;
const INCOMPATIBLE_KNOWN = 31;
const EXTENSION_BACKING_FORMAT = 0xe2792aca;
/** QEMU's limit on the active L1 table (QCOW_MAX_L1_SIZE). */
const MAX_L1_BYTES = 32 * 1024 * 1024;
/** Memory for cached L2 tables. */
const L2_CACHE_BYTES = 32 * 1024 * 1024;
const TWO_32 = 2 ** 32;

function corrupt(what: string): SyntaxError {
  return new SyntaxError(`Corrupt qcow2 image: ${what}`);
}

/**
 * Opens a qcow2 image (version 2 or 3) for reading its virtual disk.
 *
 * Supported: cluster sizes 512 B to 2 MiB; standard and extended L2 entries
 * (subclusters); zero clusters and subclusters; clusters compressed with zlib
 * or, given `options.zstd`, zstd; backing files through `options.openBacking`.
 * Reference counts, snapshots and bitmaps are never read. Images with the
 * dirty bit (left by lazy refcounts) are read as they are, since only their
 * reference counts may be stale. Refused: encrypted images, external data
 * files, unknown incompatible features, and images marked corrupt (repair
 * them with `qemu-img check -r all` first).
 *
 * `regions()` reports unallocated and zero clusters as zero without reading
 * data, and takes the backing image's regions for clusters left to it.
 * Closing the image closes `reader` and the backing image. If opening fails,
 * `reader` stays open (the caller closes it).
 *
 * @param reader Positioned reads of the qcow2 file.
 * @param options The backing-file opener and zstd decompressor.
 * @returns The disk image, with format `"qcow2"` and the virtual size from the header.
 * @throws {SyntaxError} The file is not a qcow2 image or is corrupt (a table past the end of the file, for example).
 * @throws {RangeError} The version, cluster size or L1 table size is beyond what is supported.
 * @throws {TypeError} The image uses a feature that is not supported (encryption, an external data file, zstd without `options.zstd`, a backing file without `options.openBacking`).
 *
 * @example Reading a tiny qcow2 image built in memory
 * ```ts
 * import { openQcow2Image, type PositionedReader } from "@vmakit/vma";
 * import assert from "node:assert/strict";
 *
 * // Version 3, 512-byte clusters, a 1 KiB disk: cluster 0 holds "hello",
 * // cluster 1 is a zero cluster.
 * const file = new Uint8Array(2048);
 * const view = new DataView(file.buffer);
 * view.setUint32(0, 0x514649fb); // magic "QFI\xfb"
 * view.setUint32(4, 3); // version
 * view.setUint32(20, 9); // cluster_bits
 * view.setBigUint64(24, 1024n); // virtual size
 * view.setUint32(36, 1); // l1_size
 * view.setBigUint64(40, 512n); // l1_table_offset
 * view.setUint32(100, 104); // header_length
 * view.setBigUint64(512, 1024n); // L1[0]: the L2 table is at 1024
 * view.setBigUint64(1024, 1536n); // L2[0]: data at 1536
 * view.setBigUint64(1032, 1n); // L2[1]: reads as zeros
 * file.set(new TextEncoder().encode("hello"), 1536);
 *
 * const reader: PositionedReader = {
 *   size: file.length,
 *   read: (position, length) => Promise.resolve(file.slice(position, position + length)),
 *   close: () => Promise.resolve(),
 * };
 * const image = await openQcow2Image(reader);
 * assert.equal(image.size, 1024);
 * assert.equal(new TextDecoder().decode(await image.read(0, 5)), "hello");
 * assert.deepEqual(await Array.fromAsync(image.regions()), [
 *   { offset: 0, length: 512, zero: false },
 *   { offset: 512, length: 512, zero: true },
 * ]);
 * await image.close();
 * ```
 */
export async function openQcow2Image(
  reader: PositionedReader,
  options: Qcow2ImageOptions = {},
): Promise<DiskImage> {
  if (options.openBacking !== undefined && typeof options.openBacking !== "function") {
    throw new TypeError("Invalid qcow2 options: openBacking must be a function");
  }
  if (options.zstd !== undefined && typeof options.zstd !== "function") {
    throw new TypeError("Invalid qcow2 options: zstd must be a function");
  }
  const fileSize = reader.size;
  if (!Number.isSafeInteger(fileSize) || fileSize < 0) {
    throw new RangeError(`Invalid qcow2 image: the file size "${fileSize}" is invalid`);
  }

  const head = await reader.read(0, Math.min(fileSize, 112));
  const hv = new DataView(head.buffer, head.byteOffset, head.byteLength);
  if (head.length < 4 || hv.getUint32(0) !== MAGIC) {
    throw new SyntaxError('Not a qcow2 image: the file does not start with "QFI\\xfb"');
  }
  if (head.length < 72) throw corrupt("the header is truncated");
  const version = hv.getUint32(4);
  if (version !== 2 && version !== 3) {
    throw new RangeError(`Unsupported qcow2 image: version ${version} is not supported`);
  }
  if (version === 3 && head.length < 104) throw corrupt("the header is truncated");
  const clusterBits = hv.getUint32(20);
  if (clusterBits < 9 || clusterBits > 21) {
    throw new RangeError(
      `Unsupported qcow2 image: cluster size 2^${clusterBits} is not supported (2^9 to 2^21 are)`,
    );
  }
  const clusterSize = 2 ** clusterBits;
  if (hv.getUint32(32) !== 0) {
    throw new TypeError("Unsupported qcow2 image: encrypted images are not supported");
  }

  let incompatible = 0;
  let headerLength = 72;
  let compressionType = 0;
  if (version === 3) {
    const high = hv.getUint32(72);
    incompatible = hv.getUint32(76);
    if (incompatible & INCOMPATIBLE_DATA_FILE) {
      throw new TypeError("Unsupported qcow2 image: external data files are not supported");
    }
    if (high !== 0 || (incompatible & ~INCOMPATIBLE_KNOWN) !== 0) {
      const bits = (BigInt(high) << 32n) | BigInt((incompatible & ~INCOMPATIBLE_KNOWN) >>> 0);
      throw new TypeError(
        `Unsupported qcow2 image: unknown incompatible features ${hex(bits)} are set`,
      );
    }
    if (incompatible & INCOMPATIBLE_CORRUPT) {
      throw corrupt('the image is marked corrupt; repair it with "qemu-img check -r all"');
    }
    headerLength = hv.getUint32(100);
    if (headerLength < 104) throw corrupt(`the header length ${headerLength} is below 104`);
    if (headerLength > clusterSize) {
      throw corrupt(`the header length ${headerLength} exceeds the cluster size`);
    }
    if (headerLength > 104) {
      if (head.length < 105) throw corrupt("the header is truncated");
      compressionType = head[104];
    }
    const flagged = (incompatible & INCOMPATIBLE_COMPRESSION) !== 0;
    if (flagged !== (compressionType !== 0)) {
      throw corrupt(
        `the compression type is ${compressionType} but the compression feature bit is ${
          flagged ? "set" : "not set"
        }`,
      );
    }
    if (compressionType > 1) {
      throw new TypeError(
        `Unsupported qcow2 image: compression type ${compressionType} is not supported`,
      );
    }
    if (compressionType === 1 && options.zstd === undefined) {
      throw new TypeError(
        "Unsupported qcow2 image: the image is zstd-compressed and no zstd decompressor was given (the zstd option)",
      );
    }
  }
  // The dirty bit (0) only means reference counts may be stale: read anyway.
  const extendedL2 = (incompatible & INCOMPATIBLE_EXTENDED_L2) !== 0;
  if (extendedL2 && clusterBits < 14) {
    throw new RangeError(
      "Unsupported qcow2 image: extended L2 entries need clusters of at least 16384 bytes",
    );
  }

  const virtualSize = hv.getBigUint64(24);
  if (virtualSize > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new RangeError(`Unsupported qcow2 image: the virtual size ${virtualSize} is too large`);
  }
  const size = Number(virtualSize);
  const entryBytes = extendedL2 ? 16 : 8;
  const l2Entries = clusterSize / entryBytes;
  const subclusters = extendedL2 ? 32 : 1;
  const unitSize = clusterSize / subclusters;
  const bytesPerL2 = l2Entries * clusterSize;
  const l1Needed = Math.ceil(size / bytesPerL2);
  const l1Size = hv.getUint32(36);
  if (l1Size > MAX_L1_BYTES / 8) {
    throw new RangeError(
      `Unsupported qcow2 image: the L1 table has ${l1Size} entries, more than ${MAX_L1_BYTES / 8}`,
    );
  }
  if (l1Size < l1Needed) {
    throw corrupt(
      `the L1 table has ${l1Size} entries, ${l1Needed} are needed for the virtual size ${size}`,
    );
  }
  const l1OffsetBig = hv.getBigUint64(40);
  if (l1Needed > 0) {
    if (l1OffsetBig % BigInt(clusterSize) !== 0n) {
      throw corrupt(`the L1 table offset ${hex(l1OffsetBig)} is not aligned to a cluster`);
    }
    if (l1OffsetBig + BigInt(l1Needed * 8) > BigInt(fileSize)) {
      throw corrupt(`L1 table offset ${hex(l1OffsetBig)} is past the end of the file`);
    }
  }
  const l1Offset = Number(l1OffsetBig);

  // The backing file name, and its format from the header extensions.
  let backingName: string | undefined;
  let backingFormat: string | undefined;
  const backingOffset = hv.getBigUint64(8);
  const backingLength = hv.getUint32(16);
  let extensionsEnd = Math.min(clusterSize, fileSize);
  if (backingOffset !== 0n) {
    if (backingLength > 1023) throw corrupt("the backing file name is too long");
    if (backingOffset + BigInt(backingLength) > BigInt(Math.min(clusterSize, fileSize))) {
      throw corrupt(`the backing file name at ${hex(backingOffset)} is past the first cluster`);
    }
    extensionsEnd = Math.min(extensionsEnd, Number(backingOffset));
    if (backingLength > 0) {
      const bytes = await readExact(
        reader,
        Number(backingOffset),
        backingLength,
        "backing file name",
      );
      backingName = new TextDecoder().decode(bytes);
    }
  }
  if (backingName !== undefined && extensionsEnd > headerLength) {
    const ext = await readExact(
      reader,
      headerLength,
      extensionsEnd - headerLength,
      "header extensions",
    );
    const ev = new DataView(ext.buffer, ext.byteOffset, ext.byteLength);
    for (let at = 0; at + 8 <= ext.length;) {
      const type = ev.getUint32(at);
      const length = ev.getUint32(at + 4);
      if (type === 0) break;
      if (at + 8 + length > ext.length) {
        throw corrupt(`header extension ${hex(type)} runs past the end of the header`);
      }
      if (type === EXTENSION_BACKING_FORMAT) {
        backingFormat = new TextDecoder().decode(ext.subarray(at + 8, at + 8 + length));
      }
      at += 8 + Math.ceil(length / 8) * 8;
    }
  }

  // The L1 entries that cover the virtual size, checked before any use.
  const l1 = new Float64Array(l1Needed);
  if (l1Needed > 0) {
    const bytes = await readExact(reader, l1Offset, l1Needed * 8, "L1 table");
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let i = 0; i < l1Needed; i++) {
      const offset = (view.getUint32(i * 8) & 0xffffff) * TWO_32 +
        ((view.getUint32(i * 8 + 4) & 0xfffffe00) >>> 0);
      if (offset === 0) continue;
      if (offset % clusterSize !== 0) {
        throw corrupt(`L2 table offset ${hex(offset)} is not aligned to a cluster (L1 index ${i})`);
      }
      if (offset + clusterSize > fileSize) {
        throw corrupt(`L2 table offset ${hex(offset)} is past the end of the file`);
      }
      l1[i] = offset;
    }
  }

  const l2Cache = new Map<number, Promise<DataView>>();
  const l2CacheEntries = Math.max(4, L2_CACHE_BYTES / clusterSize);
  const l2Table = (offset: number): Promise<DataView> => {
    let table = l2Cache.get(offset);
    if (table !== undefined) {
      l2Cache.delete(offset);
    } else {
      table = readExact(reader, offset, clusterSize, "L2 table").then((bytes) =>
        new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
      );
      table.catch(() => l2Cache.delete(offset));
    }
    l2Cache.set(offset, table);
    if (l2Cache.size > l2CacheEntries) l2Cache.delete(l2Cache.keys().next().value!);
    return table;
  };

  const readAhead = new ReadAhead(reader, Math.max(1024 * 1024, clusterSize + 512));
  const loadCompressed = async (high: number, low: number): Promise<Uint8Array> => {
    const entry = (BigInt(high & 0x3fffffff) << 32n) | BigInt(low >>> 0);
    const offsetBits = BigInt(62 - (clusterBits - 8));
    const hostOffset = Number(entry & ((1n << offsetBits) - 1n));
    const sectors = Number((entry >> offsetBits) & ((1n << BigInt(clusterBits - 8)) - 1n)) + 1;
    if (hostOffset >= fileSize) {
      throw corrupt(`compressed cluster offset ${hex(hostOffset)} is past the end of the file`);
    }
    // The stored size is rounded up to whole sectors; the end may lie past a
    // file that was not padded.
    const storedLength = Math.min(sectors * 512 - (hostOffset % 512), fileSize - hostOffset);
    const data = await readAhead.read(hostOffset, storedLength);
    if (data.length !== storedLength) {
      throw corrupt(`the compressed cluster at ${hex(hostOffset)} is past the end of the file`);
    }
    let cluster: Uint8Array;
    try {
      if (compressionType === 1) {
        const frame = data.subarray(0, zstdFrameLength(data));
        cluster = await options.zstd!(frame, clusterSize);
      } else {
        cluster = new Uint8Array(clusterSize);
        cluster = cluster.subarray(0, inflateRaw(data, cluster).written);
      }
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      throw corrupt(`compressed cluster at ${hex(hostOffset)} cannot be decompressed: ${message}`);
    }
    if (cluster.length < clusterSize) {
      throw corrupt(
        `compressed cluster at ${
          hex(hostOffset)
        } decompresses to ${cluster.length} bytes, not ${clusterSize}`,
      );
    }
    return cluster.length === clusterSize ? cluster : cluster.subarray(0, clusterSize);
  };

  // Classification of one unit (a subcluster, or a cluster without subclusters).
  const ZERO = 0, BACKING = 1, DATA = 2, COMPRESSED = 3;
  let unitKind = ZERO;
  let unitHost = 0;
  let entryHigh = 0;
  let entryLow = 0;
  const classify = (table: DataView, index: number, sub: number): void => {
    const at = index * entryBytes;
    entryHigh = table.getUint32(at);
    entryLow = table.getUint32(at + 4);
    if (entryHigh & 0x40000000) {
      unitKind = COMPRESSED;
      return;
    }
    const host = (entryHigh & 0xffffff) * TWO_32 + ((entryLow & 0xfffffe00) >>> 0);
    if (host !== 0) {
      if (host % clusterSize !== 0) {
        throw corrupt(`data cluster offset ${hex(host)} is not aligned to a cluster`);
      }
      if (host >= fileSize) {
        throw corrupt(`data cluster offset ${hex(host)} is past the end of the file`);
      }
    }
    if (!extendedL2) {
      unitKind = entryLow & 1 ? ZERO : host === 0 ? BACKING : DATA;
      unitHost = host;
      return;
    }
    const zeroBits = table.getUint32(at + 8);
    const allocBits = table.getUint32(at + 12);
    const allocated = (allocBits >>> sub) & 1;
    const zero = (zeroBits >>> sub) & 1;
    if (host === 0) {
      if (allocBits !== 0) {
        throw corrupt(`unallocated cluster with allocated subclusters (${hex(allocBits)})`);
      }
      unitKind = zero ? ZERO : BACKING;
    } else if (allocated && zero) {
      throw corrupt(`subcluster ${sub} of cluster ${hex(host)} is both allocated and zero`);
    } else {
      unitKind = allocated ? DATA : zero ? ZERO : BACKING;
      unitHost = host + sub * unitSize;
    }
  };

  const map: ExtentMapper = async (offset, end) => {
    const l1Index = Math.floor(offset / bytesPerL2);
    const tableStart = l1Index * bytesPerL2;
    const tableEnd = tableStart + bytesPerL2;
    const l2Offset = l1[l1Index];
    if (l2Offset === 0) return { kind: "backing", length: tableEnd - offset };
    const table = await l2Table(l2Offset);
    let unit = Math.floor((offset - tableStart) / unitSize);
    classify(table, Math.floor(unit / subclusters), unit % subclusters);
    const kind = unitKind;
    const unitStart = tableStart + unit * unitSize;
    if (kind === COMPRESSED) {
      const high = entryHigh;
      const low = entryLow;
      const clusterStart = tableStart + Math.floor(unit / subclusters) * clusterSize;
      return {
        kind: "unit",
        length: clusterStart + clusterSize - offset,
        key: `${high}:${low}`,
        skip: offset - clusterStart,
        load: () => loadCompressed(high, low),
      };
    }
    const host = unitHost;
    let runEnd = unitStart + unitSize;
    let nextHost = host + unitSize;
    const units = l2Entries * subclusters;
    while (runEnd < end && ++unit < units) {
      classify(table, Math.floor(unit / subclusters), unit % subclusters);
      if (unitKind !== kind || (kind === DATA && unitHost !== nextHost)) break;
      runEnd += unitSize;
      nextHost += unitSize;
    }
    const length = runEnd - offset;
    if (kind === DATA) {
      return { kind: "data", length, reader, position: host + (offset - unitStart) };
    }
    return { kind: kind === ZERO ? "zero" : "backing", length };
  };

  let backing: DiskImage | undefined;
  if (backingName !== undefined) {
    const name = backingName;
    const open = options.openBacking;
    backing = await openReferenced(
      "backing file",
      name,
      open && (() => open(name, backingFormat)),
      "openBacking",
    );
  }
  const closers = [() => reader.close()];
  if (backing !== undefined) closers.push(() => backing.close());
  return new MappedImage("qcow2", size, map, backing, closers);
}

async function readExact(
  reader: PositionedReader,
  position: number,
  length: number,
  what: string,
): Promise<Uint8Array> {
  const bytes = await reader.read(position, length);
  if (bytes.length !== length) {
    throw corrupt(`the ${what} at ${hex(position)} is past the end of the file`);
  }
  return bytes;
}

/** The length of the zstd frame at the start of `data` (RFC 8878), without decoding it. */
function zstdFrameLength(data: Uint8Array): number {
  if (data.length < 6) throw new SyntaxError("the zstd frame is truncated");
  const magic = (data[0] | (data[1] << 8) | (data[2] << 16) | (data[3] << 24)) >>> 0;
  if (magic !== 0xfd2fb528) throw new SyntaxError(`bad zstd frame magic ${hex(magic)}`);
  const descriptor = data[4];
  if (descriptor & 0x08) throw new SyntaxError("reserved zstd frame header bit set");
  const singleSegment = (descriptor >> 5) & 1;
  const contentSizeBytes = [singleSegment, 2, 4, 8][descriptor >> 6];
  const dictionaryBytes = [0, 1, 2, 4][descriptor & 3];
  let at = 5 + (singleSegment ? 0 : 1) + dictionaryBytes + contentSizeBytes;
  for (;;) {
    if (at + 3 > data.length) throw new SyntaxError("the zstd frame is truncated");
    const header = data[at] | (data[at + 1] << 8) | (data[at + 2] << 16);
    const type = (header >> 1) & 3;
    if (type === 3) throw new SyntaxError("reserved zstd block type");
    at += 3 + (type === 1 ? 1 : header >>> 3);
    if (header & 1) break;
  }
  if (descriptor & 0x04) at += 4;
  if (at > data.length) throw new SyntaxError("the zstd frame is truncated");
  return at;
}
