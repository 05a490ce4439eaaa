// Helpers for the VHD, VHDX and VDI reader tests: images made by qemu-img from
// known raw data, opened with the format named (qemu-img itself only probes
// dynamic VHDs by magic, so the reference conversion names it too), read back
// and compared with `qemu-img convert -f <format> -O raw`.
import assert from "node:assert/strict";
import { join } from "node:path";
import type { DiskImage, DiskImageRegion } from "../../src/image/disk_image.ts";
import { openDiskImage } from "../../src/image/open_disk_image.ts";
import { checkRegions, equalBytes, openFileReader, run } from "../_disk_image_helpers.ts";

export type ForeignFormat = "vhdx" | "vpc" | "vdi";

/** `qemu-img convert -f <format> -O raw` of an image, as bytes. */
export async function qemuReference(
  path: string,
  format: ForeignFormat,
  dir: string,
): Promise<Uint8Array> {
  const out = join(dir, `reference-${crypto.randomUUID()}.raw`);
  await run("qemu-img", "convert", "-f", format, "-O", "raw", path, out);
  try {
    return await Deno.readFile(out);
  } finally {
    await Deno.remove(out);
  }
}

/** The virtual size `qemu-img info -f <format>` reports. */
export async function qemuVirtualSize(path: string, format: ForeignFormat): Promise<number> {
  const { stdout, success } = await new Deno.Command("qemu-img", {
    args: ["info", "-f", format, "--output=json", path],
    stdout: "piped",
    stderr: "null",
  }).output();
  assert.ok(success, `qemu-img info ${path}`);
  return JSON.parse(new TextDecoder().decode(stdout))["virtual-size"];
}

/** Opens `path` in `format` through openDiskImage, with a file reader that counts its reads. */
export async function openForeign(
  path: string,
  format: ForeignFormat,
): Promise<{ image: DiskImage; reads: () => number }> {
  const reader = await openFileReader(path);
  try {
    const image = await openDiskImage(reader, { format });
    return { image, reads: () => reader.reads };
  } catch (error) {
    await reader.close();
    throw error;
  }
}

/**
 * Checks that the image reads exactly like qemu-img's raw conversion (in
 * pieces of several sizes, one of them odd), and that its regions cover the
 * disk in order, merged, with the zero ones really zero, and cost no data
 * reads. Returns the regions.
 */
export async function checkForeign(
  path: string,
  format: ForeignFormat,
  dir: string,
): Promise<DiskImageRegion[]> {
  const expected = await qemuReference(path, format, dir);
  const { image, reads } = await openForeign(path, format);
  try {
    assert.equal(image.format, format);
    assert.equal(image.size, expected.length);
    assert.equal(image.size, await qemuVirtualSize(path, format));
    const before = reads();
    const regions = await Array.fromAsync(image.regions());
    // The maps of VHD and VDI are in memory; a VHDX reads a few BAT pages.
    assert.ok(reads() - before <= 4, `regions() read ${reads() - before} times`);
    checkRegions(regions, expected);
    for (const piece of [image.size, 1024 * 1024 + 4097, 65536 - 1]) {
      for (let at = 0; at < image.size; at += piece) {
        const length = Math.min(piece, image.size - at);
        const got = await image.read(at, length);
        if (!equalBytes(got, expected.subarray(at, at + length))) {
          assert.fail(`${path}: bytes differ in ${length} bytes at ${at} (pieces of ${piece})`);
        }
      }
    }
    return regions;
  } finally {
    await image.close();
  }
}

/** A PositionedReader over bytes in memory. */
export function memoryReader(bytes: Uint8Array) {
  return {
    size: bytes.length,
    read: (position: number, length: number) =>
      Promise.resolve(bytes.slice(position, position + length)),
    close: () => Promise.resolve(),
  };
}
