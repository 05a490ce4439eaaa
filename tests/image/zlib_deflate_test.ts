// The zlib compressor of the streamOptimized VMDK writer, checked against
// vmakit's inflater and the web DecompressionStream.
import assert from "node:assert/strict";
import { ZlibDeflater } from "../../src/image/_zlib_deflate.ts";
import { inflateZlib } from "../../src/compress/_inflate.ts";
import { knownData } from "../_disk_image_helpers.ts";

async function webInflate(data: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([data as Uint8Array<ArrayBuffer>]).stream()
    .pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

const inputs: [string, Uint8Array][] = [
  ["empty", new Uint8Array(0)],
  ["one byte", new Uint8Array([42])],
  ["zeros", new Uint8Array(65536)],
  ["random", crypto.getRandomValues(new Uint8Array(65536))],
  ["text", new TextEncoder().encode("the quick brown fox jumps over the lazy dog. ".repeat(2000))],
  ["long runs and far matches", Uint8Array.from({ length: 70000 }, (_, i) => (i >> 9) & 3 ? 0 : i)],
  ["disk-like", knownData(65536 * 8 + 333, 9)],
];

Deno.test("ZlibDeflater round-trips through inflateZlib and DecompressionStream", async () => {
  const deflater = new ZlibDeflater();
  for (const [name, input] of inputs) {
    for (const size of [input.length, Math.floor(input.length / 3), 65536 + 1]) {
      const part = input.subarray(0, Math.min(size, input.length));
      const compressed = deflater.compress(part).slice();
      const out = new Uint8Array(part.length);
      assert.equal(inflateZlib(compressed, out), part.length, name);
      assert.deepEqual(out, part, name);
      assert.deepEqual(await webInflate(compressed), part, name);
      // stored blocks bound the output: 2 + 5 per 65535 bytes + 4
      assert.ok(
        compressed.length <= part.length + 6 + 5 * Math.max(1, Math.ceil(part.length / 65535)),
      );
    }
  }
});

Deno.test("ZlibDeflater compresses zeros and repeated text far below their size", () => {
  const deflater = new ZlibDeflater();
  assert.ok(deflater.compress(new Uint8Array(65536)).length < 1024);
  assert.ok(deflater.compress(inputs[4][1]).length < inputs[4][1].length / 20);
});
