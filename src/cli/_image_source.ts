// qcow2 and VMDK (and detected) images as `create` input, through the library's
// openDiskImage: the file as a PositionedReader, backing files and extent files
// resolved against the image's directory, zstd from node:zlib. Errors read like
// Proxmox's: `bdrv_open '<path>' failed - <why>` when opening, `read error on
// '<path>' - <why>` while reading.
//
// Wiring: in openDiskSource, send formats other than "raw" here:
//   if (format !== "raw") return await openDiskImageSource(path, format);
import { dirname, isAbsolute, join, relative, sep } from "node:path";
import { zstdDecompressSync } from "node:zlib";
import type { DiskImage, DiskImageRegion, PositionedReader } from "../image/disk_image.ts";
import {
  detectImageFormat,
  type DiskImageFormat,
  openDiskImage,
  type OpenDiskImageOptions,
} from "../image/open_disk_image.ts";
import { MappedImage } from "../image/_mapped_image.ts";
import { DEFAULT_MEMORY_LIMIT, type MemoryBudget } from "../image/_memory_budget.ts";
import type { VmaDeviceWriter } from "../vma/vma_writer.ts";
import { shownQuoted } from "./_quote.ts";
import { type FileKind, openChecked } from "./_open_checked.ts";
import { CliError, describeError } from "./_errors.ts";
import { type DiskSource, feedDiskImage, filePositionedReader } from "./_raw_source.ts";
import { warn } from "./_stdio.ts";

/** The `-d format=...` values this module opens. */
export const IMAGE_FORMATS: readonly string[] = [
  "auto",
  "raw",
  "qcow2",
  "vmdk",
  "vhdx",
  "vpc",
  "vhd",
  "vdi",
];

/** The size of the pieces feedDiskImage reads (its CHUNK). */
const READ_PIECE = 4 * 1024 * 1024;

/** How deep a backing chain may go (an image can name itself). */
const MAX_BACKING_DEPTH = 16;

/** Options of {@linkcode openDiskImageSource}. */
export interface DiskImageSourceOptions {
  /**
   * Confine backing files and VMDK extent files to the image's own directory
   * (after resolving symlinks): no absolute names, no `..` out of it, regular
   * files only, and no backing file without a recorded format that would be
   * probed as raw. Off by default, as QEMU does not confine them either.
   */
  confine?: boolean;
}

/** What a referenced file may be: the image itself, a backing file, an extent file. */
type FileRole = "image" | "backing" | "extent";

/**
 * Opens a file as a PositionedReader without ever blocking in open
 * ({@linkcode openChecked}): a FIFO, socket or character device is refused.
 * Block devices are allowed for the image itself and for extent files (a raw
 * VMDK extent may be one); their size comes from their end.
 */
async function openReader(
  path: string,
  role: FileRole,
  confine = false,
  identity?: (id: string) => void,
): Promise<PositionedReader> {
  const file = await openChecked(path, (kind) => checkKind(kind, role, confine));
  try {
    const after = await file.stat();
    identity?.(`${after.dev}:${after.ino}`);
    const size = await file.seek(0, Deno.SeekMode.End);
    return filePositionedReader(file, size);
  } catch (e) {
    file.close();
    throw e;
  }
}

/** Refuses what a file of `role` may not be (a FIFO, a socket, a device where only files go). */
function checkKind(info: FileKind, role: FileRole, confine: boolean): void {
  if (info.isDirectory()) throw new Error("Is a directory");
  if (info.isFile()) return;
  if (info.isBlockDevice() && role !== "backing" && !(confine && role === "extent")) return;
  const kind = info.isFIFO()
    ? "a FIFO"
    : info.isSocket()
    ? "a socket"
    : info.isCharacterDevice()
    ? "a character device"
    : info.isBlockDevice()
    ? "a block device"
    : "a special file";
  throw new Error(`it is ${kind}, not a regular file`);
}

/**
 * Decompresses a qcow2 zstd cluster into at most `maxSize` bytes: node:zlib
 * stops producing output at `maxOutputLength`, so a small frame that would
 * expand to gigabytes costs no more than one cluster.
 */
function zstdCluster(data: Uint8Array, maxSize: number): Promise<Uint8Array> {
  try {
    return Promise.resolve(zstdDecompressSync(data, { maxOutputLength: maxSize }));
  } catch (e) {
    if ((e as { code?: unknown }).code === "ERR_BUFFER_TOO_LARGE") {
      return Promise.reject(new RangeError(`the zstd frame holds more than ${maxSize} bytes`));
    }
    return Promise.reject(e);
  }
}

/** Names in images (backing files, extents) are relative to the image's directory. */
function resolveFrom(imagePath: string, name: string): string {
  return isAbsolute(name) ? name : join(dirname(imagePath), name);
}

/**
 * Under `confine`: the path of `name` (named in `imagePath`), checked to stay
 * inside `root` (the top image's real directory) once symlinks are resolved.
 */
async function confinedPath(root: string, imagePath: string, name: string): Promise<string> {
  if (isAbsolute(name)) throw new Error("an absolute name is not allowed (--confine)");
  const path = join(dirname(imagePath), name);
  let real: string;
  try {
    real = await Deno.realPath(path);
  } catch (e) {
    throw new Error(describeError(e), { cause: e });
  }
  const rel = relative(root, real);
  if (rel === "" || rel === ".." || rel.startsWith(`..${sep}`) || isAbsolute(rel)) {
    throw new Error(
      `it resolves to ${shownQuoted(real)}, outside ${shownQuoted(root)} (--confine)`,
    );
  }
  return real;
}

/** What the openers share along one backing chain. */
interface Chain {
  /** The top image's real directory, under `confine`. */
  root: string | undefined;
  depth: number;
  /** The files (`dev:ino`) of the images above: a backing file among them is a loop. */
  above: readonly string[];
  /** The memory all images of the chain share. */
  memory: MemoryBudget;
}

/** The options the library needs to open `path`: zstd, backing and extent openers. */
export function diskImageOptions(
  path: string,
  chain: Chain = {
    root: undefined,
    depth: 0,
    above: [],
    memory: { limit: DEFAULT_MEMORY_LIMIT, used: 0 },
  },
): OpenDiskImageOptions {
  const locate = async (name: string) =>
    chain.root === undefined ? resolveFrom(path, name) : await confinedPath(chain.root, path, name);
  const confine = chain.root !== undefined;
  return {
    memoryBudget: chain.memory,
    zstd: zstdCluster,
    openFile: async (name) => {
      try {
        return await openReader(await locate(name), "extent", confine);
      } catch (e) {
        throw new Error(describeError(e), { cause: e });
      }
    },
    openBacking: async (name, format) => {
      // The image at `depth` is image depth + 1 of the chain; its backing file would be the next.
      if (chain.depth + 1 >= MAX_BACKING_DEPTH) {
        throw new RangeError(`the backing chain is longer than ${MAX_BACKING_DEPTH} images`);
      }
      let backingPath: string;
      let reader: PositionedReader;
      let id = "";
      try {
        backingPath = await locate(name);
        reader = await openReader(backingPath, "backing", confine, (i) => id = i);
      } catch (e) {
        throw new Error(describeError(e), { cause: e });
      }
      if (chain.above.includes(id)) {
        await reader.close();
        throw new TypeError(
          `the backing chain is a loop: ${shownQuoted(backingPath)} is an image above it`,
        );
      }
      try {
        return await openDiskImage(reader, {
          ...diskImageOptions(backingPath, {
            ...chain,
            depth: chain.depth + 1,
            above: [...chain.above, id],
          }),
          format: await backingFormat(reader, path, backingPath, format, confine),
        });
      } catch (e) {
        await reader.close();
        throw e;
      }
    },
  };
}

/**
 * The format to open a backing file with: the one recorded in the image, or
 * detected. A backing file without a recorded format that would be read as
 * raw is the host-file leak QEMU is known for (CVE-2024-32498): warned about,
 * or refused under `confine`.
 */
async function backingFormat(
  reader: PositionedReader,
  imagePath: string,
  backingPath: string,
  format: string | undefined,
  confine: boolean,
): Promise<DiskImageFormat | "auto"> {
  if (format !== undefined && IMAGE_FORMATS.includes(format)) return format as DiskImageFormat;
  const detected = await detectImageFormat(reader);
  if (detected !== "raw") return detected;
  if (confine) {
    throw new TypeError(
      "the backing file has no recorded format and would be probed as raw (--confine)",
    );
  }
  warn(
    `image ${shownQuoted(imagePath)} names the backing file ${
      shownQuoted(backingPath)
    } without a format: it is read as raw`,
  );
  return "raw";
}

/** Opens an image of format `format` (one of {@linkcode IMAGE_FORMATS}) for `create`. */
export async function openDiskImageSource(
  path: string,
  format: string,
  options: DiskImageSourceOptions = {},
): Promise<DiskSource> {
  const where = shownQuoted(path);
  if (!IMAGE_FORMATS.includes(format)) {
    throw new CliError(`bdrv_open ${where} failed - Unknown driver ${shownQuoted(format)}`);
  }
  let reader: PositionedReader;
  let root: string | undefined;
  let id = "";
  try {
    reader = await openReader(path, "image", false, (i) => id = i);
    if (options.confine) root = dirname(await Deno.realPath(path));
  } catch (e) {
    throw new CliError(
      `bdrv_open ${where} failed - Could not open ${where}: ${describeError(e)}`,
      { cause: e },
    );
  }
  let image: DiskImage;
  try {
    image = await openDiskImage(reader, {
      ...diskImageOptions(path, {
        root,
        depth: 0,
        above: [id],
        memory: { limit: DEFAULT_MEMORY_LIMIT, used: 0 },
      }),
      // "vhd" is an alias of QEMU's name for VHD, "vpc".
      format: (format === "vhd" ? "vpc" : format) as DiskImageFormat,
    });
  } catch (e) {
    await reader.close().catch(() => {});
    throw new CliError(`bdrv_open ${where} failed - ${describeError(e)}`, { cause: e });
  }
  return new ImageSource(path, image);
}

/**
 * A DiskImage padded with zeros to a multiple of 512 bytes (the device size),
 * whose read errors name the file.
 */
class PaddedImage implements DiskImage {
  readonly format: string;
  readonly size: number;
  #image: DiskImage;
  #path: string;
  #buffers: Uint8Array[] = [];
  #turn = 0;

  constructor(path: string, image: DiskImage) {
    this.#path = path;
    this.#image = image;
    this.format = image.format;
    this.size = Math.ceil(image.size / 512) * 512;
  }

  #fail(e: unknown): never {
    throw new CliError(`read error on ${shownQuoted(this.#path)} - ${describeError(e)}`, {
      cause: e,
    });
  }

  async *regions(): AsyncGenerator<DiskImageRegion> {
    let last: DiskImageRegion | undefined;
    try {
      for await (const region of this.#image.regions()) {
        if (last) yield last;
        last = region;
      }
    } catch (e) {
      this.#fail(e);
    }
    const tail = this.size - this.#image.size;
    if (tail > 0 && last?.zero) last = { ...last, length: last.length + tail };
    else if (tail > 0) {
      if (last) yield last;
      last = { offset: this.#image.size, length: tail, zero: true };
    }
    if (last) yield last;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    const inside = Math.max(0, Math.min(length, this.#image.size - offset));
    let bytes: Uint8Array;
    try {
      bytes = this.#image instanceof MappedImage
        ? await this.#image.read(offset, inside, this.#buffer(inside))
        : await this.#image.read(offset, inside);
    } catch (e) {
      this.#fail(e);
    }
    if (inside === length) return bytes;
    const out = new Uint8Array(length);
    out.set(bytes);
    return out;
  }

  /**
   * A buffer for the next read of a qcow2 or VMDK image, from two that take
   * turns: feedDiskImage is done with a piece once its write resolved, before
   * it asks for the next one, so a buffer is free again two reads later. Without
   * them each 4 MiB piece of a compressed image would be fresh garbage, and
   * garbage of that size piles up to a few hundred MiB before V8 collects it.
   * Their memory is one byte longer than the piece, so feedDiskImage never
   * takes them into its own pool of read buffers.
   */
  #buffer(length: number): Uint8Array | undefined {
    if (length !== READ_PIECE) return undefined;
    this.#turn ^= 1;
    return this.#buffers[this.#turn] ??= new Uint8Array(
      new ArrayBuffer(READ_PIECE + 1),
      0,
      READ_PIECE,
    );
  }

  close(): Promise<void> {
    return this.#image.close();
  }
}

class ImageSource implements DiskSource {
  readonly path: string;
  readonly format: string;
  readonly size: number;
  readonly imageSize: number;
  #image: PaddedImage;
  #closed = false;

  constructor(path: string, image: DiskImage) {
    this.path = path;
    this.#image = new PaddedImage(path, image);
    this.format = image.format;
    this.imageSize = image.size;
    this.size = this.#image.size;
  }

  feed(device: VmaDeviceWriter, onBytes: (n: number) => void): Promise<void> {
    return feedDiskImage(this.#image, device, onBytes);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#image.close().catch(() => {});
  }
}
