// FileSink: positioned writes gathered into large ones, background fdatasyncs
// every 32 MiB, holes left sparse, fsync at close.
import assert from "node:assert/strict";
import { FileSink } from "../../src/cli/_file_sink.ts";

const MiB = 1024 * 1024;

function piece(index: number): Uint8Array {
  const data = new Uint8Array(MiB);
  for (let i = 0; i < data.length; i += 4096) data.fill((index * 7 + i / 4096) & 0xff, i, i + 4096);
  return data;
}

Deno.test("FileSink writes 128 MiB with holes across its background syncs, byte for byte", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/disk.raw`;
    const size = 128 * MiB;
    const sink = FileSink.create(path, size);
    const expected = new Uint8Array(size);
    for (let i = 0; i < 128; i++) {
      if (i % 5 === 4) continue; // a hole: never written
      const data = piece(i);
      // Written in pieces of 64 KiB and 1 MiB, in order: gathered into large writes.
      if (i % 2 === 0) {
        for (let at = 0; at < MiB; at += 65536) {
          await sink.write(i * MiB + at, data.subarray(at, at + 65536));
        }
      } else {
        await sink.write(i * MiB, data);
      }
      expected.set(data, i * MiB);
    }
    await sink.close();
    const got = await Deno.readFile(path);
    assert.equal(got.length, size);
    assert.ok(got.every((b, i) => b === expected[i]), "the file differs from what was written");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("FileSink.abandon while a background sync may run closes the file and writes no more", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/disk.raw`;
    const sink = FileSink.create(path, 64 * MiB);
    for (let i = 0; i < 40; i++) await sink.write(i * MiB, piece(i));
    sink.abandon();
    await sink.close(); // a no-op once abandoned
    assert.equal((await Deno.stat(path)).size, 64 * MiB);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
