import assert from "node:assert/strict";
import { constants, deflateRawSync, deflateSync } from "node:zlib";
import { inflateRaw, inflateZlib } from "../../src/compress/_inflate.ts";
import * as fflate from "npm:fflate@^0.8.3";
import { knownData } from "../_disk_image_helpers.ts";

const inputs = [
  new Uint8Array(0),
  new Uint8Array([42]),
  knownData(65536, 1),
  knownData(200000, 2),
  new Uint8Array(1 << 20),
];

Deno.test("inflateRaw decodes node:zlib output of every strategy and level, ignoring what follows", () => {
  for (const data of inputs) {
    for (const level of [0, 1, 6, 9]) {
      for (
        const strategy of [
          constants.Z_DEFAULT_STRATEGY,
          constants.Z_FIXED,
          constants.Z_HUFFMAN_ONLY,
        ]
      ) {
        const compressed = deflateRawSync(data, { level, strategy });
        const input = new Uint8Array(compressed.length + 100).fill(0xff);
        input.set(compressed);
        const out = new Uint8Array(data.length);
        const result = inflateRaw(input, out);
        assert.deepEqual(result, {
          written: data.length,
          overflow: false,
          consumed: compressed.length,
        });
        assert.deepEqual(out, data);
      }
    }
  }
});

Deno.test("inflateRaw stops at the end of the output buffer", () => {
  const data = knownData(100000, 3);
  const out = new Uint8Array(99999);
  const result = inflateRaw(deflateRawSync(data), out);
  assert.equal(result.overflow, true);
  assert.equal(result.written, 99999);
  assert.deepEqual(out, data.subarray(0, 99999));
});

Deno.test("inflateRaw rejects truncated and invalid data", () => {
  const compressed = deflateRawSync(knownData(65536, 4));
  assert.throws(
    () => inflateRaw(compressed.subarray(0, compressed.length - 10), new Uint8Array(65536)),
    SyntaxError,
  );
  assert.throws(
    () => inflateRaw(new Uint8Array([0x07]), new Uint8Array(10)),
    { name: "SyntaxError", message: "Invalid deflate data: invalid block type 3" },
  );
  assert.throws(
    () => inflateRaw(new Uint8Array([0x01, 0x05, 0x00, 0x00, 0x00]), new Uint8Array(10)),
    { name: "SyntaxError", message: "Invalid deflate data: stored block length check failed" },
  );
});

Deno.test("inflateZlib checks the header and the Adler-32 checksum", () => {
  const data = knownData(70000, 5);
  const compressed = deflateSync(data);
  const out = new Uint8Array(70000);
  assert.equal(inflateZlib(compressed, out), 70000);
  assert.deepEqual(out, data);
  const bad = compressed.slice();
  bad[bad.length - 1] ^= 1;
  assert.throws(() => inflateZlib(bad, out), {
    name: "SyntaxError",
    message: "Invalid zlib data: Adler-32 checksum mismatch",
  });
  assert.throws(() => inflateZlib(compressed, new Uint8Array(69999)), {
    name: "SyntaxError",
    message: "Invalid zlib data: more than 69999 bytes of output",
  });
  assert.throws(() => inflateZlib(deflateRawSync(data), out), {
    name: "SyntaxError",
    message: "Invalid zlib data: bad header",
  });
});

// Why src/compress/_inflate.ts does not use npm:fflate (see its module doc).
// Each test shows a capability fflate lacks; it fails once fflate gains it, and
// then the hand-written decoder should be replaced.

Deno.test("fflate inflateSync cannot tell an output that overflowed from one that fitted", () => {
  const data = knownData(100000, 6);
  const overflowed = fflate.inflateSync(deflateRawSync(data), { out: new Uint8Array(99999) });
  const fitted = fflate.inflateSync(deflateRawSync(data.subarray(0, 99999)), {
    out: new Uint8Array(99999),
  });
  // Both come back as 99999 bytes, no error, no flag: the caller cannot know.
  assert.equal(overflowed.length, 99999);
  assert.equal(fitted.length, 99999);
  assert.deepEqual(overflowed, fitted);
  // Ours says so.
  assert.equal(inflateRaw(deflateRawSync(data), new Uint8Array(99999)).overflow, true);
});

Deno.test("fflate inflateSync fails a stored block past its output with a bare engine error", () => {
  const stored = deflateRawSync(knownData(100000, 7), { level: 0 });
  assert.throws(() => fflate.inflateSync(stored, { out: new Uint8Array(99999) }), {
    name: "RangeError",
    message: "offset is out of bounds",
  });
  const result = inflateRaw(stored, new Uint8Array(99999));
  assert.equal(result.overflow, true);
  assert.equal(result.written, 99999);
});

Deno.test("fflate Inflate yields a whole bomb as one chunk and does not see the stream end", () => {
  const bomb = deflateRawSync(new Uint8Array(16 << 20));
  assert.ok(bomb.length < 32768);
  const chunks: [number, boolean][] = [];
  const inflater = new fflate.Inflate((chunk, final) => chunks.push([chunk.length, final]));
  inflater.push(bomb, false);
  // The complete stream went in; out came 16 MiB at once, not marked final.
  assert.deepEqual(chunks, [[16 << 20, false]]);
  // Ours writes only into the buffer it is given and reports what it consumed.
  const result = inflateRaw(bomb, new Uint8Array(65536));
  assert.equal(result.overflow, true);
  assert.equal(result.written, 65536);
});

Deno.test("fflate unzlibSync does not check the Adler-32 checksum", () => {
  const data = knownData(70000, 8);
  const bad = deflateSync(data);
  bad[bad.length - 1] ^= 1;
  assert.deepEqual(fflate.unzlibSync(bad), data);
  assert.throws(() => inflateZlib(bad, new Uint8Array(70000)), {
    name: "SyntaxError",
    message: "Invalid zlib data: Adler-32 checksum mismatch",
  });
});
