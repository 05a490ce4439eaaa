// Helpers for the disk image tests: a PositionedReader over a file, known raw
// data, qemu-img, and a check that an image reads back exactly like
// `qemu-img convert -O raw` of it.

import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { zstdDecompressSync } from "node:zlib";
import type { DiskImage, PositionedReader } from "../src/image/disk_image.ts";
import { openDiskImage, type OpenDiskImageOptions } from "../src/image/open_disk_image.ts";

/** Why the qemu-based tests skip, or undefined when qemu-img and qemu-io work. */
export const qemuMissing: string | undefined = await (async () => {
  for (const tool of ["qemu-img", "qemu-io"]) {
    try {
      const { success } = await new Deno.Command(tool, { args: ["--version"], stdout: "null" })
        .output();
      if (!success) return `${tool} --version failed`;
    } catch (error) {
      return `${tool} is not installed (${(error as Error).message}); apt-get install qemu-utils`;
    }
  }
  return undefined;
})();
if (qemuMissing !== undefined) console.error(`Skipping the qemu-img image tests: ${qemuMissing}`);

/** A PositionedReader over a file, with Deno.open + seek/read. Counts the reads. */
export async function openFileReader(path: string): Promise<PositionedReader & { reads: number }> {
  const file = await Deno.open(path, { read: true });
  const size = (await file.stat()).size;
  let closed = false;
  const reader = {
    size,
    reads: 0,
    async read(position: number, length: number): Promise<Uint8Array> {
      reader.reads++;
      const buffer = new Uint8Array(Math.max(0, Math.min(length, size - position)));
      await file.seek(position, Deno.SeekMode.Start);
      let filled = 0;
      while (filled < buffer.length) {
        const n = await file.read(buffer.subarray(filled));
        if (n === null) break;
        filled += n;
      }
      return buffer.subarray(0, filled);
    },
    close(): Promise<void> {
      if (!closed) file.close();
      closed = true;
      return Promise.resolve();
    },
  };
  return reader;
}

/** Runs a command; throws with its stderr when it fails. */
export async function run(command: string, ...args: string[]): Promise<void> {
  const { success, stderr } = await new Deno.Command(command, { args, stdout: "null" }).output();
  if (!success) {
    throw new Error(`${command} ${args.join(" ")}: ${new TextDecoder().decode(stderr)}`);
  }
}

/**
 * Known raw data: 64 KiB blocks of random bytes, zeros, a repeated pattern,
 * and random bytes with zero holes of 512 B to 8 KiB; the size is not a
 * multiple of any cluster size.
 */
export function knownData(size: number, seed = 1): Uint8Array {
  const data = new Uint8Array(size);
  let s = seed >>> 0 || 1;
  const next = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
  const block = 65536;
  for (let at = 0, i = 0; at < size; at += block, i++) {
    const end = Math.min(at + block, size);
    const kind = next() % 4;
    if (kind === 1) continue; // zeros
    if (kind === 2) {
      data.fill((i * 37) & 0xff || 1, at, end);
      continue;
    }
    const words = new Uint32Array((end - at + 3) >> 2);
    for (let w = 0; w < words.length; w++) words[w] = next();
    data.set(new Uint8Array(words.buffer, 0, end - at), at);
    if (kind === 3) {
      for (let h = 0; h < 4; h++) {
        const length = 512 << (next() % 5);
        const start = at + (next() % block) & ~511;
        data.fill(0, Math.min(start, end), Math.min(start + length, end));
      }
    }
  }
  return data;
}

/** The options the CLI would pass: zstd from node:zlib and a backing opener relative to `path`. */
export function cliOptions(path: string, depth = 0): OpenDiskImageOptions {
  return {
    zstd: (data) => Promise.resolve(zstdDecompressSync(data)),
    openFile: (name) => openFileReader(join(dirname(path), name)),
    openBacking: async (name, format) => {
      if (depth >= 16) throw new RangeError("the backing chain is longer than 16 images");
      const backingPath = join(dirname(path), name);
      const reader = await openFileReader(backingPath);
      try {
        return await openDiskImage(reader, {
          ...cliOptions(backingPath, depth + 1),
          format: (format ?? "auto") as "auto",
        });
      } catch (error) {
        await reader.close();
        throw error;
      }
    },
  };
}

/** Opens `path` with {@linkcode openDiskImage} and the CLI's options. */
export async function openPath(
  path: string,
  options: OpenDiskImageOptions = cliOptions(path),
): Promise<DiskImage> {
  const reader = await openFileReader(path);
  try {
    return await openDiskImage(reader, options);
  } catch (error) {
    await reader.close();
    throw error;
  }
}

/** `qemu-img convert -O raw` of an image, as bytes. */
export async function qemuRaw(path: string, dir: string): Promise<Uint8Array> {
  const out = join(dir, `reference-${crypto.randomUUID()}.raw`);
  await run("qemu-img", "convert", "-O", "raw", path, out);
  const bytes = await Deno.readFile(out);
  await Deno.remove(out);
  return bytes;
}

/** A raw source disk on file, and conversions of it by qemu-img (see {@linkcode qemuSource}). */
export interface QemuSource {
  /** The temporary directory ("" when qemu-img is missing); removed when the test file unloads. */
  dir: string;
  /** Converts the source to `format` as `dir/name` with more qemu-img options; returns the path. */
  convert(name: string, ...args: string[]): Promise<string>;
}

/**
 * Writes `data` as `source.raw` in a new temporary directory (nothing when
 * qemu-img is missing, the tests then being skipped) for conversions to
 * `format`.
 */
export async function qemuSource(format: string, data: Uint8Array): Promise<QemuSource> {
  const ignore = qemuMissing !== undefined;
  const dir = ignore ? "" : await Deno.makeTempDir({ prefix: `vmakit-${format}-` });
  const rawPath = join(dir, "source.raw");
  if (!ignore) await Deno.writeFile(rawPath, data);
  addEventListener("unload", () => {
    if (!ignore) Deno.removeSync(dir, { recursive: true });
  });
  return {
    dir,
    async convert(name: string, ...args: string[]): Promise<string> {
      const path = join(dir, name);
      await run("qemu-img", "convert", "-f", "raw", "-O", format, ...args, rawPath, path);
      return path;
    },
  };
}

/**
 * Checks that `regions` cover a disk whose bytes are `expected` in order,
 * without gaps, each non-empty, adjacent ones of one kind merged, and the zero
 * ones really zero.
 */
export function checkRegions(
  regions: readonly { offset: number; length: number; zero: boolean }[],
  expected: Uint8Array,
): void {
  let at = 0;
  let previousZero: boolean | undefined;
  for (const region of regions) {
    assert.equal(region.offset, at, "regions are in order without gaps");
    assert.ok(region.length > 0);
    assert.notEqual(region.zero, previousZero, "adjacent regions of one kind are merged");
    previousZero = region.zero;
    if (region.zero) {
      const bytes = expected.subarray(region.offset, region.offset + region.length);
      assert.ok(bytes.every((b) => b === 0), `zero region at ${region.offset} is zero`);
    }
    at += region.length;
  }
  assert.equal(at, expected.length, "regions cover the disk");
}

/**
 * Checks that the image at `path` reads exactly like qemu-img's raw conversion,
 * read in pieces of several sizes, and that its regions cover the disk in
 * order, merged, with the zero ones really zero. Returns the regions.
 */
export async function checkAgainstQemu(
  path: string,
  dir: string,
  format: string,
): Promise<{ offset: number; length: number; zero: boolean }[]> {
  const expected = await qemuRaw(path, dir);
  const image = await openPath(path);
  try {
    assert.equal(image.format, format);
    assert.equal(image.size, expected.length);
    for (const piece of [4 * 1024 * 1024, 1024 * 1024 + 4097]) {
      for (let at = 0; at < image.size; at += piece) {
        const length = Math.min(piece, image.size - at);
        const got = await image.read(at, length);
        assert.equal(got.length, length);
        if (!equalBytes(got, expected.subarray(at, at + length))) {
          assert.fail(`${path}: bytes differ in ${length} bytes at ${at} (pieces of ${piece})`);
        }
      }
    }
    const regions = await Array.fromAsync(image.regions());
    checkRegions(regions, expected);
    return regions;
  } finally {
    await image.close();
  }
}

/** Byte equality that is fast on large arrays. */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  if (a.length % 4 === 0 && a.byteOffset % 4 === 0 && b.byteOffset % 4 === 0) {
    const x = new Uint32Array(a.buffer, a.byteOffset, a.length / 4);
    const y = new Uint32Array(b.buffer, b.byteOffset, b.length / 4);
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
    return true;
  }
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Bytes of all zero regions. */
export function zeroBytes(regions: { length: number; zero: boolean }[]): number {
  return regions.filter((r) => r.zero).reduce((sum, r) => sum + r.length, 0);
}

/** Asserts that `promise` rejects with an instance of `Class` whose message is (or matches) `message`. */
export async function rejectsWith(
  promise: Promise<unknown>,
  // deno-lint-ignore no-explicit-any
  Class: new (...args: any[]) => Error,
  message: string | RegExp,
): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof Class, `expected a ${Class.name}, got ${error}`);
    if (typeof message === "string") assert.equal(error.message, message);
    else assert.match(error.message, message);
    return true;
  });
}
