// qcow2 and VMDK (and detected) images as `create` input, through the library's
// openDiskImage: the file as a PositionedReader, backing files and extent files
// resolved against the image's directory, zstd from node:zlib. Errors read like
// Proxmox's: `bdrv_open '<path>' failed - <why>` when opening, `read error on
// '<path>' - <why>` while reading.
//
// Wiring: in openDiskSource, send formats other than "raw" here:
//   if (format !== "raw") return await openDiskImageSource(path, format);
import { dirname, isAbsolute, join } from "node:path";
import { zstdDecompressSync } from "node:zlib";
import type { DiskImage, DiskImageRegion, PositionedReader } from "../image/disk_image.ts";
import {
  type DiskImageFormat,
  openDiskImage,
  type OpenDiskImageOptions,
} from "../image/open_disk_image.ts";
import type { VmaDeviceWriter } from "../vma/vma_writer.ts";
import { CliError, describeError } from "./_errors.ts";
import { type DiskSource, feedDiskImage, filePositionedReader } from "./_raw_source.ts";

/** The `-d format=...` values this module opens. */
export const IMAGE_FORMATS: readonly string[] = ["auto", "raw", "qcow2", "vmdk"];

/** How deep a backing chain may go (an image can name itself). */
const MAX_BACKING_DEPTH = 16;

/** Opens a file as a PositionedReader; block devices get their size from their end. */
async function openReader(path: string): Promise<PositionedReader> {
  const file = await Deno.open(path, { read: true });
  try {
    if ((await file.stat()).isDirectory) throw new Error("Is a directory");
    const size = await file.seek(0, Deno.SeekMode.End);
    return filePositionedReader(file, size);
  } catch (e) {
    file.close();
    throw e;
  }
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

/** The options the library needs to open `path`: zstd, backing and extent openers. */
export function diskImageOptions(path: string, depth = 0): OpenDiskImageOptions {
  return {
    zstd: zstdCluster,
    openFile: async (name) => {
      try {
        return await openReader(resolveFrom(path, name));
      } catch (e) {
        throw new Error(describeError(e), { cause: e });
      }
    },
    openBacking: async (name, format) => {
      if (depth >= MAX_BACKING_DEPTH) {
        throw new RangeError(`the backing chain is longer than ${MAX_BACKING_DEPTH} images`);
      }
      const backingPath = resolveFrom(path, name);
      let reader: PositionedReader;
      try {
        reader = await openReader(backingPath);
      } catch (e) {
        throw new Error(describeError(e), { cause: e });
      }
      const known = format !== undefined && IMAGE_FORMATS.includes(format);
      try {
        return await openDiskImage(reader, {
          ...diskImageOptions(backingPath, depth + 1),
          format: known ? format as DiskImageFormat : "auto",
        });
      } catch (e) {
        await reader.close();
        throw e;
      }
    },
  };
}

/** Opens an image of format `format` ("auto", "raw", "qcow2" or "vmdk") for `create`. */
export async function openDiskImageSource(path: string, format: string): Promise<DiskSource> {
  if (!IMAGE_FORMATS.includes(format)) {
    throw new CliError(`bdrv_open '${path}' failed - Unknown driver '${format}'`);
  }
  let reader: PositionedReader;
  try {
    reader = await openReader(path);
  } catch (e) {
    throw new CliError(
      `bdrv_open '${path}' failed - Could not open '${path}': ${describeError(e)}`,
      { cause: e },
    );
  }
  let image: DiskImage;
  try {
    image = await openDiskImage(reader, {
      ...diskImageOptions(path),
      format: format as DiskImageFormat,
    });
  } catch (e) {
    await reader.close().catch(() => {});
    throw new CliError(`bdrv_open '${path}' failed - ${describeError(e)}`, { cause: e });
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

  constructor(path: string, image: DiskImage) {
    this.#path = path;
    this.#image = image;
    this.format = image.format;
    this.size = Math.ceil(image.size / 512) * 512;
  }

  #fail(e: unknown): never {
    throw new CliError(`read error on '${this.#path}' - ${describeError(e)}`, { cause: e });
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
      bytes = await this.#image.read(offset, inside);
    } catch (e) {
      this.#fail(e);
    }
    if (inside === length) return bytes;
    const out = new Uint8Array(length);
    out.set(bytes);
    return out;
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
