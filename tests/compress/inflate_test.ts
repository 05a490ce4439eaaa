import assert from "node:assert/strict";
import { constants, deflateRawSync, deflateSync } from "node:zlib";
import { inflateRaw, inflateZlib } from "../../src/compress/_inflate.ts";
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
