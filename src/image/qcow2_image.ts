/**
 * qcow2 disk images (QEMU copy-on-write, versions 2 and 3), read through an
 * injected {@linkcode PositionedReader}.
 *
 * @module
 */

import type { DiskImage, PositionedReader } from "./disk_image.ts";
import { MappedImage, NamedImage, openReferenced } from "./_mapped_image.ts";
import { unsupported } from "./_image_errors.ts";
import {
  parseQcow2Extensions,
  parseQcow2Header,
  QCOW2_HEADER_BYTES,
  type Qcow2Header,
} from "./_qcow2_header.ts";
import { MAX_L2_CACHE_BYTES, Qcow2Map, readAheadWindow, readExact, readL1 } from "./_qcow2_map.ts";
import { available, charge, type MemoryBudget, memoryBudget } from "./_memory_budget.ts";

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
   * Decompresses one zstd frame (`data`, exactly one frame) of a compressed
   * cluster, for images whose compression type is zstd. A cluster is exactly
   * `maxSize` bytes: the decompressor must stop once the frame would produce
   * more (and throw), so that a small hostile frame cannot expand to
   * gigabytes; for example
   * `(data, maxSize) => Promise.resolve(zstdDecompressSync(data, { maxOutputLength: maxSize }))`
   * with `node:zlib`. More than `maxSize` bytes returned is refused as
   * corrupt. Without it, zstd-compressed images are refused.
   *
   * @default {undefined}
   */
  zstd?: (data: Uint8Array, maxSize: number) => Promise<Uint8Array>;
  /**
   * The memory this image may hold for good (its L1 table, L2 table cache and
   * read-ahead buffer), as bytes `used` of `limit`; opening fails with a
   * `RangeError` past it. Pass the same object on to the images opened through
   * `openBacking` so that a whole backing chain shares one limit: an image that
   * names itself 16 levels deep with a 32 MiB L1 table then fails instead of
   * taking 700 MB. Later images of a chain get smaller L2 caches. Charges are
   * never given back.
   *
   * @default {{ limit: 67108864, used: 0 }}
   */
  memoryBudget?: { limit: number; used: number };
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
 * @throws {RangeError} The virtual size or L1 table is larger than supported ("Oversized qcow2 image: ...").
 * @throws {TypeError} The image uses something not supported ("Unsupported qcow2 image: ...": a version other than 2 and 3, a cluster size outside 2^9 to 2^21, encryption, an external data file, zstd without `options.zstd`), or has a backing file and no `options.openBacking`.
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
  const header = parseQcow2Header(
    await reader.read(0, Math.min(fileSize, QCOW2_HEADER_BYTES)),
    fileSize,
  );
  if (header.compressionType === 1 && options.zstd === undefined) {
    throw unsupported(
      "qcow2",
      "the image is zstd-compressed and no zstd decompressor was given (the zstd option)",
    );
  }
  const l2CacheBytes = chargeMemory(memoryBudget(options.memoryBudget, "qcow2"), header, fileSize);
  const backing = await readBackingInfo(reader, header);
  const l1 = await readL1(reader, header);
  const map = new Qcow2Map(reader, header, l1, options.zstd, l2CacheBytes);
  let backingImage: DiskImage | undefined;
  if (backing !== undefined) {
    const { name, format } = backing;
    const open = options.openBacking;
    backingImage = new NamedImage(
      "backing file",
      name,
      await openReferenced("backing file", name, open && (() => open(name, format)), "openBacking"),
    );
  }
  const closers = [() => reader.close()];
  if (backingImage !== undefined) closers.push(() => backingImage.close());
  return new MappedImage("qcow2", header.size, map.map, backingImage, closers);
}

/**
 * Charges what the image holds for good (L1 table, read-ahead window, L2
 * cache) to the budget, before any of it is allocated; returns the L2 cache's
 * size: up to 32 MiB, a quarter of what is left, at least 4 tables, but never
 * more than the image's own L2 tables (a small image in a long backing chain
 * must not take the budget of a large one). The read-ahead window never holds
 * more than the file.
 */
function chargeMemory(budget: MemoryBudget, header: Qcow2Header, fileSize: number): number {
  const l1Bytes = header.l1Needed * 8;
  const window = Math.min(readAheadWindow(header.clusterSize), fileSize);
  const left = available(budget) - l1Bytes - window;
  const l2CacheBytes = Math.min(
    Math.max(1, header.l1Needed) * header.clusterSize,
    MAX_L2_CACHE_BYTES,
    Math.max(4 * header.clusterSize, Math.floor(left / 4)),
  );
  charge(budget, l1Bytes + window + l2CacheBytes, "qcow2");
  return l2CacheBytes;
}

/** The backing file's name and, from the header extensions, its format. */
async function readBackingInfo(
  reader: PositionedReader,
  header: Qcow2Header,
): Promise<{ name: string; format: string | undefined } | undefined> {
  const { backingOffset, backingLength, headerLength } = header;
  if (backingOffset === 0 || backingLength === 0) return undefined;
  const bytes = await readExact(reader, backingOffset, backingLength, "backing file name");
  const name = new TextDecoder().decode(bytes);
  const extensionsEnd = Math.min(header.clusterSize, reader.size, backingOffset);
  if (extensionsEnd <= headerLength) return { name, format: undefined };
  const ext = await readExact(
    reader,
    headerLength,
    extensionsEnd - headerLength,
    "header extensions",
  );
  return { name, format: parseQcow2Extensions(ext).backingFormat };
}
