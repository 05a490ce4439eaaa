// Shared helpers of the library tests.
import assert from "node:assert/strict";
import { md5 } from "npm:@noble/hashes@^2.0.1/legacy.js";
import { type VmaDevice, VmaReader, VmaWriter, type VmaWriterOptions } from "../mod.ts";
import { extractVma } from "../src/vma/extract_vma.ts";

export const FIXED_UUID = "0123abcd-4567-4890-8abc-def012345678";
export const FIXED_CTIME = new Date("2026-11-24T14:21:54Z");

/** A disk to put in an archive: name, size, and its bytes (zero-filled when shorter). */
export interface DiskSpec {
  name: string;
  data: Uint8Array;
}

/** Reads a whole stream into one array. */
export async function collect(readable: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(readable).arrayBuffer());
}

/** A stream of `data` cut into chunks of `size` bytes. */
export function chunked(data: Uint8Array, size: number): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream({
    pull(controller) {
      if (at >= data.length) return controller.close();
      controller.enqueue(data.slice(at, at + size));
      at += size;
    },
  });
}

/** Writes an archive of `disks` (fed through their writables) and returns its bytes. */
export async function writeArchive(
  disks: DiskSpec[],
  options: VmaWriterOptions & { chunk?: number; configs?: [string, string | Uint8Array][] } = {},
): Promise<Uint8Array> {
  const writer = new VmaWriter({ uuid: FIXED_UUID, ctime: FIXED_CTIME, ...options });
  for (const [name, data] of options.configs ?? []) writer.addConfig(name, data);
  const devices = disks.map((d) => writer.addDevice(d.name, d.data.length));
  const out = collect(writer.readable);
  await Promise.all(
    devices.map((dev, i) => chunked(disks[i].data, options.chunk ?? 1 << 20).pipeTo(dev.writable)),
  );
  await writer.close();
  return await out;
}

/** Extracts every device of an archive into memory. */
export async function extractAll(
  archive: Uint8Array | ReadableStream<Uint8Array>,
): Promise<
  { devices: VmaDevice[]; disks: Map<string, Uint8Array>; configs: Map<string, Uint8Array> }
> {
  const stream = archive instanceof Uint8Array ? ReadableStream.from([archive]) : archive;
  const reader = new VmaReader(stream);
  const disks = new Map<string, Uint8Array>();
  const configs = new Map<string, Uint8Array>();
  await extractVma(reader, {
    config: (c) => void configs.set(c.name, c.data),
    device: (d) => {
      const disk = new Uint8Array(d.size);
      disks.set(d.name, disk);
      return {
        write(offset, data) {
          if (offset < 0 || offset + data.length > d.size) {
            throw new Error(`write out of bounds: ${offset}+${data.length} > ${d.size}`);
          }
          disk.set(data, offset);
        },
      };
    },
  });
  return { devices: [...(await reader.header()).devices], disks, configs };
}

/** Gunzips bytes. */
export async function gunzip(data: Uint8Array): Promise<Uint8Array> {
  return await collect(
    ReadableStream.from([data]).pipeThrough(
      new DecompressionStream("gzip") as unknown as TransformStream<Uint8Array, Uint8Array>,
    ),
  );
}

/** Reads a file from tests/testdata/. */
export async function testdata(name: string): Promise<Uint8Array> {
  return await Deno.readFile(new URL(`./testdata/${name}`, import.meta.url));
}

/** Hex SHA-256 of bytes. */
export async function sha256(data: Uint8Array): Promise<string> {
  const digest = new Uint8Array(
    await crypto.subtle.digest("SHA-256", data as Uint8Array<ArrayBuffer>),
  );
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** MD5 of bytes with 16 bytes at `hole` zeroed. */
export function md5With(bytes: Uint8Array, hole: number): Uint8Array {
  const copy = bytes.slice();
  copy.fill(0, hole, hole + 16);
  return md5(copy);
}

/** Deterministic pseudo-random bytes. */
export function pseudoRandom(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/**
 * Writes `size` bytes of xorshift32 noise from `seed` into `device`, 1 MiB at
 * a time (incompressible data, cheap to make).
 */
export async function writeNoise(
  device: { write(offset: number, data: Uint8Array): Promise<void> },
  size: number,
  seed: number,
): Promise<void> {
  const words = new Uint32Array(1 << 18);
  let x = seed >>> 0 || 1;
  for (let at = 0; at < size; at += words.byteLength) {
    for (let i = 0; i < words.length; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      words[i] = x;
    }
    await device.write(at, new Uint8Array(words.buffer, 0, Math.min(words.byteLength, size - at)));
  }
}

/**
 * Pipes `readable` through `zstd -1 -q -c` (or `lzop -1 -c`) into a new file
 * at `path` (truncated if it exists); resolves once both sides are done.
 */
export async function compressToFile(
  readable: ReadableStream<Uint8Array>,
  path: string,
  tool: "zstd" | "lzop" = "zstd",
): Promise<void> {
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  const child = new Deno.Command(tool, {
    args: tool === "zstd" ? ["-1", "-q", "-c"] : ["-1", "-c"],
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  await Promise.all([readable.pipeTo(child.stdin), child.stdout.pipeTo(file.writable)]);
  assert.ok((await child.status).success, `${tool} failed`);
}
