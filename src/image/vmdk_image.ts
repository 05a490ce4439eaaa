/**
 * VMDK disk images (VMware): hosted sparse extents (monolithicSparse and
 * streamOptimized, as in OVAs) and text descriptors with flat, sparse and zero
 * extents (monolithicFlat, twoGbMaxExtentFlat, twoGbMaxExtentSparse), read
 * through injected {@linkcode PositionedReader}s.
 *
 * @module
 */

import type { DiskImage, PositionedReader } from "./disk_image.ts";
import { inflateZlib } from "../compress/_inflate.ts";
import {
  closeAll,
  type Extent,
  type ExtentMapper,
  hex,
  MappedImage,
  openReferenced,
  ReadAhead,
} from "./_mapped_image.ts";

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
}

const SECTOR = 512;
const GD_AT_END = 0xffffffffffffffffn;
const FLAG_MARKERS = 1 << 17;
const COMPRESSION_DEFLATE = 1;
const MARKER_EOS = 0;
const MARKER_FOOTER = 3;
/** QEMU's limit on grain table entries. */
const MAX_GTES = 512;
/** Largest grain accepted: 64 MiB (memory for one compressed grain is bounded by it). */
const MAX_GRAIN_SECTORS = 131072;
const MAX_DESCRIPTOR = 1024 * 1024;
const GT_CACHE_ENTRIES = 256;
const DESCRIPTOR_SIGNATURE = "# Disk DescriptorFile";
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

function corrupt(what: string, file?: string): SyntaxError {
  const where = file === undefined ? "" : ` (extent file "${file}")`;
  return new SyntaxError(`Corrupt vmdk image: ${what}${where}`);
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
 * @throws {RangeError} A grain, table or descriptor is larger than supported.
 * @throws {TypeError} The image uses a feature that is not supported, or names an extent file and `options.openFile` is missing.
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
  const head = await reader.read(0, Math.min(fileSize, SECTOR));
  const magic = new TextDecoder("latin1").decode(head.subarray(0, 4));
  if (magic === "KDMV") {
    const extent = await openSparseExtent(reader, undefined, 0);
    return new MappedImage("vmdk", extent.size, extent.map, undefined, [() => reader.close()]);
  }
  if (magic === "COWD") {
    throw new TypeError(
      "Unsupported vmdk image: the COWD sparse format (ESX Server 2) is not supported",
    );
  }
  if (!new TextDecoder("latin1").decode(head).startsWith(DESCRIPTOR_SIGNATURE)) {
    throw new SyntaxError(
      `Not a vmdk image: the file starts with neither "KDMV" nor "${DESCRIPTOR_SIGNATURE}"`,
    );
  }
  if (fileSize > MAX_DESCRIPTOR) {
    throw new RangeError(
      `Unsupported vmdk image: the descriptor file is ${fileSize} bytes, more than ${MAX_DESCRIPTOR}`,
    );
  }
  const text = await reader.read(0, fileSize);
  return await openDescriptor(reader, new TextDecoder().decode(text), options);
}

/** One extent of a descriptor, placed in the virtual disk. */
interface PlacedExtent {
  start: number;
  size: number;
  map: ExtentMapper;
}

interface DescriptorExtent {
  access: string;
  sectors: number;
  type: string;
  file: string | undefined;
  offset: number;
}

/** The key=value lines and extent lines of a descriptor. */
function parseDescriptor(
  text: string,
): { values: Map<string, string>; extents: DescriptorExtent[] } {
  const values = new Map<string, string>();
  const extents: DescriptorExtent[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.replace(/\0+$/, "").trim();
    if (line === "" || line.startsWith("#")) continue;
    const extent = /^(RW|RDONLY|NOACCESS)\s+(\d+)\s+(\w+)(?:\s+"([^"]*)"(?:\s+(\d+))?)?$/i.exec(
      line,
    );
    if (extent !== null) {
      const sectors = Number(extent[2]);
      const offset = Number(extent[5] ?? "0");
      if (!Number.isSafeInteger(sectors * SECTOR) || !Number.isSafeInteger(offset * SECTOR)) {
        throw new RangeError(`Unsupported vmdk image: the extent "${line}" is too large`);
      }
      extents.push({
        access: extent[1].toUpperCase(),
        sectors,
        type: extent[3].toUpperCase(),
        file: extent[4],
        offset,
      });
      continue;
    }
    const value = /^([\w.]+)\s*=\s*"?([^"]*)"?$/.exec(line);
    if (value !== null) values.set(value[1], value[2].trim());
  }
  return { values, extents };
}

/** Refuses a delta disk (one with a parent), judged by its descriptor's values. */
function refuseDelta(values: Map<string, string>): void {
  const parent = values.get("parentCID");
  const hint = values.get("parentFileNameHint");
  if ((parent !== undefined && parent.toLowerCase() !== "ffffffff") || hint !== undefined) {
    const name = hint === undefined ? "" : ` ("${hint}")`;
    throw new TypeError(
      `Unsupported vmdk image: delta disks with a parent${name} are not supported`,
    );
  }
}

async function openDescriptor(
  reader: PositionedReader,
  text: string,
  options: VmdkImageOptions,
): Promise<DiskImage> {
  const { values, extents } = parseDescriptor(text);
  const createType = values.get("createType");
  if (createType === undefined) throw corrupt("the descriptor has no createType");
  if (UNSUPPORTED_CREATE_TYPES.has(createType)) {
    throw new TypeError(`Unsupported vmdk image: createType "${createType}" is not supported`);
  }
  refuseDelta(values);
  if (extents.length === 0) throw corrupt("the descriptor lists no extents");
  for (const extent of extents) {
    if (extent.access === "NOACCESS") {
      throw new TypeError(`Unsupported vmdk image: the extent "${extent.file}" is NOACCESS`);
    }
    if (!FLAT_TYPES.has(extent.type) && extent.type !== "SPARSE" && extent.type !== "ZERO") {
      throw new TypeError(`Unsupported vmdk image: extent type "${extent.type}" is not supported`);
    }
    if (extent.type !== "ZERO" && extent.file === undefined) {
      throw corrupt(`a ${extent.type} extent has no file name`);
    }
  }

  const placed: PlacedExtent[] = [];
  const closers: (() => Promise<void>)[] = [];
  let start = 0;
  try {
    for (const [index, extent] of extents.entries()) {
      const size = extent.sectors * SECTOR;
      if (!Number.isSafeInteger(start + size)) {
        throw new RangeError("Unsupported vmdk image: the disk is too large");
      }
      if (extent.type === "ZERO") {
        placed.push({ start, size, map: () => Promise.resolve({ kind: "zero", length: size }) });
        start += size;
        continue;
      }
      const name = extent.file!;
      const open = options.openFile;
      const file = await openReferenced(
        "extent file",
        name,
        open && (() => open(name)),
        "openFile",
      );
      closers.push(() => file.close());
      if (extent.type === "SPARSE") {
        const sparse = await openSparseExtent(file, name, index);
        if (sparse.size !== size) {
          throw corrupt(
            `the sparse extent holds ${
              sparse.size / SECTOR
            } sectors, the descriptor says ${extent.sectors}`,
            name,
          );
        }
        placed.push({ start, size, map: sparse.map });
      } else {
        const base = extent.offset * SECTOR;
        if (base + size > file.size) {
          throw corrupt(
            `the flat extent is ${file.size} bytes, ${base + size} are needed`,
            name,
          );
        }
        placed.push({
          start,
          size,
          map: (offset) =>
            Promise.resolve({
              kind: "data",
              length: size - offset,
              reader: file,
              position: base + offset,
              file: name,
            }),
        });
      }
      start += size;
    }
  } catch (error) {
    await closeAll(closers).catch(() => {});
    throw error;
  }

  let last = 0;
  const map: ExtentMapper = async (offset, end) => {
    // Reads are mostly sequential: try the extent used last first.
    let i = last;
    if (!(placed[i].start <= offset && offset < placed[i].start + placed[i].size)) {
      let lo = 0;
      let hi = placed.length - 1;
      while (lo < hi) {
        const mid = (lo + hi + 1) >> 1;
        if (placed[mid].start <= offset) lo = mid;
        else hi = mid - 1;
      }
      i = lo;
    }
    last = i;
    const extent = placed[i];
    const within = offset - extent.start;
    const found = await extent.map(within, Math.min(end - extent.start, extent.size));
    return clip(found, extent.size - within);
  };
  return new MappedImage("vmdk", start, map, undefined, [() => reader.close(), ...closers]);
}

function clip(extent: Extent, limit: number): Extent {
  return extent.length <= limit ? extent : { ...extent, length: limit };
}

/** A hosted sparse extent (`KDMV`), mapped from offsets within it. */
async function openSparseExtent(
  reader: PositionedReader,
  file: string | undefined,
  id: number,
): Promise<{ size: number; map: ExtentMapper }> {
  const fileSize = reader.size;
  if (fileSize < SECTOR) throw corrupt("the sparse extent header is truncated", file);
  let header = await readExact(reader, 0, SECTOR, "sparse extent header", file);
  let hv = new DataView(header.buffer, header.byteOffset, header.byteLength);
  if (hv.getUint32(0, true) !== 0x564d444b) {
    throw corrupt('the sparse extent does not start with "KDMV"', file);
  }
  if (hv.getBigUint64(56, true) === GD_AT_END) {
    // streamOptimized: the real header is the footer, 1024 bytes before the end
    // (after a footer marker, before the end-of-stream marker).
    const at = Math.floor(fileSize / SECTOR) * SECTOR - 3 * SECTOR;
    if (at < SECTOR) throw corrupt("the footer is missing (the file is too short)", file);
    const footer = await readExact(reader, at, 3 * SECTOR, "footer", file);
    const fv = new DataView(footer.buffer, footer.byteOffset, footer.byteLength);
    if (
      fv.getUint32(8, true) !== 0 || fv.getUint32(12, true) !== MARKER_FOOTER ||
      fv.getUint32(SECTOR, true) !== 0x564d444b || fv.getBigUint64(2 * SECTOR, true) !== 0n ||
      fv.getUint32(2 * SECTOR + 8, true) !== 0 || fv.getUint32(2 * SECTOR + 12, true) !== MARKER_EOS
    ) {
      throw corrupt("the grain directory is at the end but there is no valid footer", file);
    }
    header = footer.subarray(SECTOR, 2 * SECTOR);
    hv = new DataView(header.buffer, header.byteOffset, header.byteLength);
  }
  const version = hv.getUint32(4, true);
  if (version < 1 || version > 3) {
    throw new RangeError(
      `Unsupported vmdk image: sparse extent version ${version} is not supported`,
    );
  }
  const flags = hv.getUint32(8, true);
  const capacity = hv.getBigUint64(12, true);
  const grainSectors = hv.getBigUint64(20, true);
  const descriptorOffset = hv.getBigUint64(28, true);
  const descriptorSectors = hv.getBigUint64(36, true);
  const gtes = hv.getUint32(44, true);
  const gdOffset = hv.getBigUint64(56, true);
  const compressAlgorithm = hv.getUint16(77, true);
  if (compressAlgorithm > COMPRESSION_DEFLATE) {
    throw new TypeError(
      `Unsupported vmdk image: compression algorithm ${compressAlgorithm} is not supported`,
    );
  }
  const compressed = compressAlgorithm === COMPRESSION_DEFLATE;
  const markers = (flags & FLAG_MARKERS) !== 0;
  if (capacity * BigInt(SECTOR) > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new RangeError(`Unsupported vmdk image: the capacity ${capacity} sectors is too large`);
  }
  const size = Number(capacity) * SECTOR;
  if (grainSectors < 1n || grainSectors > BigInt(MAX_GRAIN_SECTORS)) {
    throw new RangeError(
      `Unsupported vmdk image: the grain size ${grainSectors} sectors is not supported (1 to ${MAX_GRAIN_SECTORS} are)`,
    );
  }
  const grainBytes = Number(grainSectors) * SECTOR;
  if (gtes < 1 || gtes > MAX_GTES) {
    throw new RangeError(
      `Unsupported vmdk image: ${gtes} grain table entries are not supported (1 to ${MAX_GTES} are)`,
    );
  }

  // The embedded descriptor (monolithicSparse, streamOptimized): refuse delta disks.
  if (descriptorOffset !== 0n && descriptorSectors !== 0n) {
    const at = descriptorOffset * BigInt(SECTOR);
    const length = Math.min(Number(descriptorSectors) * SECTOR, MAX_DESCRIPTOR);
    if (at + BigInt(length) > BigInt(fileSize)) {
      throw corrupt(`the embedded descriptor at ${hex(at)} is past the end of the file`, file);
    }
    const text = await readExact(reader, Number(at), length, "embedded descriptor", file);
    refuseDelta(parseDescriptor(new TextDecoder().decode(text)).values);
  }

  const bytesPerGt = gtes * grainBytes;
  const gdEntries = Math.ceil(size / bytesPerGt);
  const gdAt = gdOffset * BigInt(SECTOR);
  if (gdEntries > 0 && gdAt + BigInt(gdEntries * 4) > BigInt(fileSize)) {
    throw corrupt(`the grain directory offset ${hex(gdAt)} is past the end of the file`, file);
  }
  const gdBytes = gdEntries > 0
    ? await readExact(reader, Number(gdAt), gdEntries * 4, "grain directory", file)
    : new Uint8Array(0);
  const gd = new Uint32Array(gdEntries);
  const gdv = new DataView(gdBytes.buffer, gdBytes.byteOffset, gdBytes.byteLength);
  for (let i = 0; i < gdEntries; i++) {
    const sector = gdv.getUint32(i * 4, true);
    if (sector !== 0 && sector * SECTOR + gtes * 4 > fileSize) {
      throw corrupt(`grain table offset ${hex(sector * SECTOR)} is past the end of the file`, file);
    }
    gd[i] = sector;
  }

  const gtCache = new Map<number, Promise<Uint32Array>>();
  const grainTable = (sector: number): Promise<Uint32Array> => {
    let table = gtCache.get(sector);
    if (table !== undefined) {
      gtCache.delete(sector);
    } else {
      table = readExact(reader, sector * SECTOR, gtes * 4, "grain table", file).then((bytes) => {
        const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        return Uint32Array.from({ length: gtes }, (_, i) => view.getUint32(i * 4, true));
      });
      table.catch(() => gtCache.delete(sector));
    }
    gtCache.set(sector, table);
    if (gtCache.size > GT_CACHE_ENTRIES) gtCache.delete(gtCache.keys().next().value!);
    return table;
  };

  const readAhead = new ReadAhead(reader);
  const loadGrain = async (sector: number, grainStart: number): Promise<Uint8Array> => {
    const at = sector * SECTOR;
    let data: Uint8Array;
    if (markers) {
      // The marker (LBA, size) and, usually, the whole compressed grain in one read.
      const guess = Math.min(12 + grainBytes + SECTOR, fileSize - at);
      let bytes = await readAhead.read(at, guess);
      if (bytes.length < 12) {
        throw corrupt(`the grain marker at ${hex(at)} is past the end of the file`, file);
      }
      const length = new DataView(bytes.buffer, bytes.byteOffset, 12).getUint32(8, true);
      if (length === 0 || length > 2 * grainBytes) {
        throw corrupt(`the grain marker at ${hex(at)} gives the invalid size ${length}`, file);
      }
      if (12 + length > bytes.length) bytes = await readAhead.read(at, 12 + length);
      if (12 + length > bytes.length) {
        throw corrupt(`the compressed grain at ${hex(at)} is past the end of the file`, file);
      }
      data = bytes.subarray(12, 12 + length);
    } else {
      data = await readAhead.read(at, Math.min(2 * grainBytes, fileSize - at));
    }
    const grain = new Uint8Array(grainBytes);
    let written: number;
    try {
      written = inflateZlib(data, grain);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      throw corrupt(`the compressed grain at ${hex(at)} cannot be decompressed: ${message}`, file);
    }
    const needed = Math.min(grainBytes, size - grainStart);
    if (written < needed) {
      throw corrupt(
        `the compressed grain at ${hex(at)} decompresses to ${written} bytes, ${needed} are needed`,
        file,
      );
    }
    return grain;
  };

  const map: ExtentMapper = async (offset, end) => {
    const gdIndex = Math.floor(offset / bytesPerGt);
    const gtStart = gdIndex * bytesPerGt;
    const gtEnd = gtStart + bytesPerGt;
    if (gd[gdIndex] === 0) return { kind: "zero", length: gtEnd - offset };
    const table = await grainTable(gd[gdIndex]);
    let index = Math.floor((offset - gtStart) / grainBytes);
    const grainStart = gtStart + index * grainBytes;
    const first = table[index];
    if (first <= 1) {
      // 0: unallocated, 1: a zeroed grain. Both read as zeros here.
      let runEnd = grainStart + grainBytes;
      while (runEnd < end && ++index < gtes && table[index] <= 1) runEnd += grainBytes;
      return { kind: "zero", length: runEnd - offset };
    }
    if (first * SECTOR >= fileSize) {
      throw corrupt(`grain offset ${hex(first * SECTOR)} is past the end of the file`, file);
    }
    if (compressed) {
      return {
        kind: "unit",
        length: grainStart + grainBytes - offset,
        key: `${id}:${first}`,
        skip: offset - grainStart,
        load: () => loadGrain(first, grainStart),
      };
    }
    let runEnd = grainStart + grainBytes;
    let next = first + grainBytes / SECTOR;
    while (runEnd < end && ++index < gtes && table[index] === next) {
      runEnd += grainBytes;
      next += grainBytes / SECTOR;
    }
    return {
      kind: "data",
      length: runEnd - offset,
      reader,
      position: first * SECTOR + (offset - grainStart),
      file,
    };
  };
  return { size, map };
}

async function readExact(
  reader: PositionedReader,
  position: number,
  length: number,
  what: string,
  file: string | undefined,
): Promise<Uint8Array> {
  const bytes = await reader.read(position, length);
  if (bytes.length !== length) {
    throw corrupt(`the ${what} at ${hex(position)} is past the end of the file`, file);
  }
  return bytes;
}
