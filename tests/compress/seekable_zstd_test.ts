import assert from "node:assert/strict";
import { zstdDecompressSync } from "node:zlib";
import {
  SEEK_TABLE_MAGIC,
  SEEKABLE_MAGIC,
  SeekableZstdCompressor,
} from "../../src/compress/_seekable_zstd.ts";
import { have } from "../_cli_run.ts";

/** Deterministic input: random-looking spans, zero spans and text. */
function input(size: number, seed = 7): Uint8Array {
  const out = new Uint8Array(size);
  let x = seed;
  for (let i = 0; i < size; i++) {
    if ((i >>> 14) % 3 === 1) continue; // zero spans
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = (i >>> 14) % 3 === 0 ? x >>> 24 : 97 + (i % 7);
  }
  return out;
}

/** Compresses `data` fed in `chunk`-byte pieces. */
async function compress(
  data: Uint8Array,
  options: { workers: number; frameSize?: number; level?: number; workerUrl?: URL },
  chunk = 100_003,
): Promise<Uint8Array> {
  const c = new SeekableZstdCompressor({ level: 3, ...options });
  const pieces = [];
  for (let i = 0; i < data.length; i += chunk) pieces.push(data.slice(i, i + chunk));
  const out = new Response(ReadableStream.from(pieces).pipeThrough(c)).bytes();
  return await out;
}

interface Frame {
  offset: number;
  compressed: number;
  decompressed: number;
}

/** Parses the seek table at the end of `bytes` (the seekable format). */
function seekTable(bytes: Uint8Array): { frames: Frame[]; tableStart: number } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const end = bytes.length;
  assert.equal(view.getUint32(end - 4, true), SEEKABLE_MAGIC);
  assert.equal(bytes[end - 5], 0, "descriptor: no checksums, reserved bits 0");
  const n = view.getUint32(end - 9, true);
  const tableStart = end - 9 - 8 * n - 8;
  assert.equal(view.getUint32(tableStart, true), SEEK_TABLE_MAGIC);
  assert.equal(view.getUint32(tableStart + 4, true), 8 * n + 9);
  const frames: Frame[] = [];
  let offset = 0;
  for (let i = 0; i < n; i++) {
    const compressed = view.getUint32(tableStart + 8 + 8 * i, true);
    const decompressed = view.getUint32(tableStart + 12 + 8 * i, true);
    frames.push({ offset, compressed, decompressed });
    offset += compressed;
  }
  return { frames, tableStart };
}

Deno.test("SeekableZstdCompressor writes the same bytes with 0, 1, 2 and 3 workers, whatever the chunking", async () => {
  const data = input(1_000_000 + 123);
  const reference = await compress(data, { workers: 0, frameSize: 65536 });
  for (const workers of [0, 1, 2, 3]) {
    for (const chunk of [1_000_000 + 123, 65536, 77_777, 4097]) {
      const out = await compress(data, { workers, frameSize: 65536 }, chunk);
      assert.deepEqual(out, reference, `workers ${workers}, chunks of ${chunk}`);
    }
  }
});

Deno.test("SeekableZstdCompressor frames cover fixed spans and the seek table sums to them", async () => {
  const data = input(1_000_000 + 123);
  const out = await compress(data, { workers: 2, frameSize: 65536 });
  const { frames, tableStart } = seekTable(out);
  assert.equal(frames.length, Math.ceil(data.length / 65536));
  let at = 0;
  for (const [i, f] of frames.entries()) {
    const expected = Math.min(65536, data.length - i * 65536);
    assert.equal(f.decompressed, expected, `frame ${i}`);
    // Each frame is a whole zstd frame on its own, decoding to its span.
    assert.deepEqual(
      out.subarray(f.offset, f.offset + 4),
      new Uint8Array([0x28, 0xb5, 0x2f, 0xfd]),
    );
    const decoded = zstdDecompressSync(out.subarray(f.offset, f.offset + f.compressed));
    assert.deepEqual(new Uint8Array(decoded), data.subarray(at, at + expected), `frame ${i}`);
    at += expected;
  }
  assert.equal(at, data.length);
  const last = frames[frames.length - 1];
  assert.equal(last.offset + last.compressed, tableStart, "the frames end where the table starts");
  // The whole stream decodes as one (concatenated frames, a skippable frame).
  assert.deepEqual(new Uint8Array(zstdDecompressSync(out)), data);
});

Deno.test({
  name: "SeekableZstdCompressor output passes zstd -t and zstd -d gives the input back",
  ignore: !have("zstd"),
  async fn() {
    const data = input(600_000);
    const dir = await Deno.makeTempDir();
    try {
      await Deno.writeFile(
        `${dir}/x.zst`,
        await compress(data, { workers: 1, frameSize: 100_000 }),
      );
      const test = await new Deno.Command("zstd", { args: ["-t", "-q", `${dir}/x.zst`] }).output();
      assert.equal(test.code, 0, new TextDecoder().decode(test.stderr));
      const out = await new Deno.Command("zstd", { args: ["-dc", `${dir}/x.zst`] }).output();
      assert.equal(out.code, 0);
      assert.deepEqual(out.stdout, data);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
if (!have("zstd")) console.log("zstd -t test skipped: the zstd tool is not installed");

Deno.test("SeekableZstdCompressor of an empty stream is only the seek table", async () => {
  const out = await compress(new Uint8Array(0), { workers: 0 });
  assert.deepEqual(
    out,
    new Uint8Array([0x5e, 0x2a, 0x4d, 0x18, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0xb1, 0xea, 0x92, 0x8f]),
  );
});

Deno.test("SeekableZstdCompressor rejects with the worker's error when a worker fails a job", async () => {
  const workerUrl = new URL("./_failing_zstd_worker.ts", import.meta.url);
  await assert.rejects(
    compress(input(300_000), { workers: 2, frameSize: 65536, workerUrl }),
    (e: Error) => e.message === "the zstd worker failed on purpose",
  );
});

Deno.test("SeekableZstdCompressor rejects when its worker module does not load", async () => {
  const workerUrl = new URL("./_failing_zstd_worker.ts#load", import.meta.url);
  await assert.rejects(
    compress(input(300_000), { workers: 1, frameSize: 65536, workerUrl }),
    /^Error: A worker failed: .*this worker module does not load/,
  );
});

Deno.test("SeekableZstdCompressor checks its options", () => {
  assert.throws(
    () => new SeekableZstdCompressor({ level: 0, workers: 0 }),
    RangeError,
    "The zstd level must be an integer from 1 to 22, got 0",
  );
  assert.throws(
    () => new SeekableZstdCompressor({ level: 3, workers: -1 }),
    RangeError,
    "The number of workers must be 0 or more, got -1",
  );
  assert.throws(
    () => new SeekableZstdCompressor({ level: 3, workers: 0, frameSize: 8 * 2 ** 20 + 1 }),
    RangeError,
    "The zstd frame size must be from 1 to 8388608 bytes, got 8388609",
  );
});
