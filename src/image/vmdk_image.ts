/**
 * VMDK disk images (VMware): hosted sparse extents (monolithicSparse and
 * streamOptimized, as in OVAs) and text descriptors with flat, sparse and zero
 * extents (monolithicFlat, twoGbMaxExtentFlat, twoGbMaxExtentSparse), read
 * through injected {@linkcode PositionedReader}s.
 *
 * @module
 */

import type { DiskImage, PositionedReader } from "./disk_image.ts";
import {
  closeAll,
  type Extent,
  type ExtentMapper,
  MappedImage,
  openReferenced,
} from "./_mapped_image.ts";
import { ByteCache } from "./_byte_cache.ts";
import { corrupt, notImage, oversized, quote, unsupported } from "./_image_errors.ts";
import { type DescriptorExtent, parseDescriptor, refuseDelta } from "./_vmdk_descriptor.ts";
import { charge, type MemoryBudget, memoryBudget } from "./_memory_budget.ts";
import {
  EXTENT_OVERHEAD,
  MAX_DESCRIPTOR,
  openSparseExtent,
  SECTOR,
  type SparseContext,
} from "./_vmdk_sparse.ts";

/** Options for {@linkcode openVmdkImage}. */
export interface VmdkImageOptions {
  /**
   * Opens an extent file named by a text descriptor (`RW 4192256 FLAT
   * "disk-flat.vmdk" 0`), by the name written there: usually relative to the
   * descriptor's directory, which the caller resolves. The readers are closed
   * when the image is.
   *
   * Without it, descriptor files are refused.
   *
   * @default {undefined}
   */
  openFile?: (name: string) => Promise<PositionedReader>;
  /**
   * The memory this image may hold for good (grain directories, the grain
   * table cache, read-ahead buffers), as bytes `used` of `limit`; opening
   * fails with a `RangeError` past it. Pass the same object on to the images
   * of a backing chain so that they share one limit: a descriptor that lists
   * one big sparse extent hundreds of times then fails instead of taking
   * gigabytes. Charges are never given back.
   *
   * @default {{ limit: 67108864, used: 0 }}
   */
  memoryBudget?: { limit: number; used: number };
}

const DESCRIPTOR_SIGNATURE = "# Disk DescriptorFile";
/** Memory for cached grain tables, shared by the extents of one image. */
const GRAIN_TABLE_CACHE_BYTES = 1024 * 1024;
/** Extent types that are read like FLAT. */
const FLAT_TYPES = new Set(["FLAT", "VMFS"]);
const UNSUPPORTED_CREATE_TYPES = new Set([
  "fullDevice",
  "partitionedDevice",
  "vmfsRaw",
  "vmfsRawDeviceMap",
  "vmfsPassthroughRawDeviceMap",
  "vmfsSparse",
  "seSparse",
]);

/** The grain table cache of one image (charged to the budget) and the budget. */
function newContext(budget: MemoryBudget): SparseContext {
  charge(budget, GRAIN_TABLE_CACHE_BYTES, "vmdk");
  return { grainTables: new ByteCache(GRAIN_TABLE_CACHE_BYTES), budget };
}

/**
 * Opens a VMDK image for reading its virtual disk.
 *
 * `reader` is either a hosted sparse extent (starts with `KDMV`:
 * monolithicSparse, or streamOptimized with compressed grains and possibly its
 * grain directory in a footer) or a text descriptor (starts with
 * `# Disk DescriptorFile`) whose extents (`FLAT`, `VMFS`, `SPARSE`, `ZERO`)
 * are opened with `options.openFile`. Unallocated and zeroed grains are
 * reported as zero regions without reading data. Refused: delta disks (a
 * parent), the old `COWD` sparse format, raw device mappings, VMFS sparse and
 * seSparse extents, and compression other than deflate.
 *
 * Closing the image closes `reader` and every extent file. If opening fails,
 * `reader` stays open (the caller closes it) and extent files opened so far
 * are closed.
 *
 * @param reader Positioned reads of the `.vmdk` file.
 * @param options The extent file opener, for descriptor files.
 * @returns The disk image, with format `"vmdk"` and the capacity as its size.
 * @throws {SyntaxError} The file is not a VMDK image or is corrupt (a table past the end of the file, for example).
 * @throws {RangeError} A grain, table or descriptor is larger than supported, or the extents together need more than 64 MiB of grain directories and buffers ("Oversized vmdk image: ...").
 * @throws {TypeError} The image uses a feature that is not supported ("Unsupported vmdk image: ..."), or names an extent file and `options.openFile` is missing.
 *
 * @example Reading a monolithicFlat image: a descriptor and a flat extent
 * ```ts
 * import { openVmdkImage, type PositionedReader } from "@vmakit/vma";
 * import assert from "node:assert/strict";
 *
 * function memoryReader(bytes: Uint8Array): PositionedReader {
 *   return {
 *     size: bytes.length,
 *     read: (position, length) => Promise.resolve(bytes.slice(position, position + length)),
 *     close: () => Promise.resolve(),
 *   };
 * }
 * const descriptor = new TextEncoder().encode(
 *   '# Disk DescriptorFile\nversion=1\nparentCID=ffffffff\ncreateType="monolithicFlat"\n' +
 *     'RW 2 FLAT "disk-flat.vmdk" 0\nRW 2 ZERO\n',
 * );
 * const flat = new Uint8Array(1024).fill(7);
 * const image = await openVmdkImage(memoryReader(descriptor), {
 *   openFile: (name) => {
 *     assert.equal(name, "disk-flat.vmdk");
 *     return Promise.resolve(memoryReader(flat));
 *   },
 * });
 * assert.equal(image.size, 2048);
 * assert.deepEqual(await image.read(1020, 8), new Uint8Array([7, 7, 7, 7, 0, 0, 0, 0]));
 * assert.deepEqual(await Array.fromAsync(image.regions()), [
 *   { offset: 0, length: 1024, zero: false },
 *   { offset: 1024, length: 1024, zero: true },
 * ]);
 * await image.close();
 * ```
 */
export async function openVmdkImage(
  reader: PositionedReader,
  options: VmdkImageOptions = {},
): Promise<DiskImage> {
  if (options.openFile !== undefined && typeof options.openFile !== "function") {
    throw new TypeError("Invalid vmdk options: openFile must be a function");
  }
  const fileSize = reader.size;
  if (!Number.isSafeInteger(fileSize) || fileSize < 0) {
    throw new RangeError(`Invalid vmdk image: the file size "${fileSize}" is invalid`);
  }
  const budget = memoryBudget(options.memoryBudget, "vmdk");
  const head = await reader.read(0, Math.min(fileSize, SECTOR));
  const magic = new TextDecoder("latin1").decode(head.subarray(0, 4));
  if (magic === "KDMV") {
    const extent = await openSparseExtent(reader, undefined, 0, newContext(budget));
    return new MappedImage("vmdk", extent.size, extent.map, undefined, [() => reader.close()]);
  }
  if (magic === "COWD") {
    throw unsupported("vmdk", "the COWD sparse format (ESX Server 2) is not supported");
  }
  if (!new TextDecoder("latin1").decode(head).startsWith(DESCRIPTOR_SIGNATURE)) {
    throw notImage(
      "vmdk",
      `the file starts with neither "KDMV" nor "${DESCRIPTOR_SIGNATURE}"`,
    );
  }
  if (fileSize > MAX_DESCRIPTOR) {
    throw oversized(
      "vmdk",
      `the descriptor file is ${fileSize} bytes, more than ${MAX_DESCRIPTOR}`,
    );
  }
  const text = await reader.read(0, fileSize);
  return await openDescriptor(reader, new TextDecoder().decode(text), options, budget);
}

/** One extent of a descriptor, placed in the virtual disk. */
interface PlacedExtent {
  start: number;
  size: number;
  map: ExtentMapper;
}

/** Checks a descriptor's create type and extent lines before any file is opened. */
function checkDescriptor(values: Map<string, string>, extents: DescriptorExtent[]): void {
  const createType = values.get("createType");
  if (createType === undefined) throw corrupt("vmdk", "the descriptor has no createType");
  if (UNSUPPORTED_CREATE_TYPES.has(createType)) {
    throw unsupported("vmdk", `createType ${quote(createType)} is not supported`);
  }
  refuseDelta(values);
  if (extents.length === 0) throw corrupt("vmdk", "the descriptor lists no extents");
  for (const extent of extents) {
    if (extent.access === "NOACCESS") {
      throw unsupported("vmdk", `the extent ${quote(extent.file ?? "")} is NOACCESS`);
    }
    if (!FLAT_TYPES.has(extent.type) && extent.type !== "SPARSE" && extent.type !== "ZERO") {
      throw unsupported("vmdk", `extent type ${quote(extent.type)} is not supported`);
    }
    if (extent.type !== "ZERO" && extent.file === undefined) {
      throw corrupt("vmdk", `a ${extent.type} extent has no file name`);
    }
  }
}

async function openDescriptor(
  reader: PositionedReader,
  text: string,
  options: VmdkImageOptions,
  budget: MemoryBudget,
): Promise<DiskImage> {
  const { values, extents } = parseDescriptor(text);
  checkDescriptor(values, extents);
  const closers: (() => Promise<void>)[] = [];
  const placed: PlacedExtent[] = [];
  const context = newContext(budget);
  try {
    let start = 0;
    for (const [index, extent] of extents.entries()) {
      const size = extent.sectors * SECTOR;
      if (!Number.isSafeInteger(start + size)) throw oversized("vmdk", "the disk is too large");
      const map = extent.type === "ZERO"
        ? () => Promise.resolve<Extent>({ kind: "zero", length: size })
        : await openExtentFile(extent, index, options, context, closers);
      placed.push({ start, size, map });
      start += size;
    }
  } catch (error) {
    await closeAll(closers).catch(() => {});
    throw error;
  }
  const map = new DescriptorMap(placed);
  return new MappedImage("vmdk", map.size, map.map, undefined, [() => reader.close(), ...closers]);
}

/** Opens the file of a FLAT or SPARSE extent and returns its map (offsets within the extent). */
async function openExtentFile(
  extent: DescriptorExtent,
  index: number,
  options: VmdkImageOptions,
  context: SparseContext,
  closers: (() => Promise<void>)[],
): Promise<ExtentMapper> {
  const size = extent.sectors * SECTOR;
  const name = extent.file!;
  const open = options.openFile;
  const file = await openReferenced("extent file", name, open && (() => open(name)), "openFile");
  closers.push(() => file.close());
  if (extent.type === "SPARSE") {
    const sparse = await openSparseExtent(file, name, index, context);
    if (sparse.size !== size) {
      throw corrupt(
        "vmdk",
        `the sparse extent holds ${
          sparse.size / SECTOR
        } sectors, the descriptor says ${extent.sectors}`,
        name,
      );
    }
    return sparse.map;
  }
  charge(context.budget, EXTENT_OVERHEAD, "vmdk", name);
  const base = extent.offset * SECTOR;
  if (base + size > file.size) {
    throw corrupt("vmdk", `the flat extent is ${file.size} bytes, ${base + size} are needed`, name);
  }
  return (offset) =>
    Promise.resolve({
      kind: "data",
      length: size - offset,
      reader: file,
      position: base + offset,
      file: name,
    });
}

/** Maps virtual offsets to the placed extents of a descriptor. */
class DescriptorMap {
  readonly size: number;
  #placed: PlacedExtent[];
  /** Reads are mostly sequential: the extent used last is tried first. */
  #last = 0;

  constructor(placed: PlacedExtent[]) {
    this.#placed = placed;
    const last = placed[placed.length - 1];
    this.size = last.start + last.size;
  }

  #find(offset: number): number {
    const placed = this.#placed;
    const i = this.#last;
    if (placed[i].start <= offset && offset < placed[i].start + placed[i].size) return i;
    let lo = 0;
    let hi = placed.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (placed[mid].start <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  map = async (offset: number, end: number): Promise<Extent> => {
    const i = this.#last = this.#find(offset);
    const extent = this.#placed[i];
    const within = offset - extent.start;
    const found = await extent.map(within, Math.min(end - extent.start, extent.size));
    const limit = extent.size - within;
    return found.length <= limit ? found : { ...found, length: limit };
  };
}
