// The deflate compressor shared by the qcow2 writer (raw, 4 KiB window) and the
// streamOptimized VMDK writer (zlib, 32 KiB window), checked against vmakit's
// inflater, node:zlib and the web DecompressionStream.
import assert from "node:assert/strict";
import { inflateRawSync, inflateSync } from "node:zlib";
import {
  Deflater,
  deflateRaw,
  DIST_BASE,
  DIST_EXTRA,
  LENGTH_BASE,
  LENGTH_EXTRA,
} from "../../src/compress/_deflate.ts";
import { adler32 } from "../../src/compress/_adler32.ts";
import { inflateRaw, inflateZlib } from "../../src/compress/_inflate.ts";
import { knownData } from "../_disk_image_helpers.ts";
import { pseudoRandom } from "../_helpers.ts";

const CLUSTER = 65536;

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

/**
 * The largest back-reference distance in a raw deflate stream made of one
 * block with the fixed Huffman codes, or -1 for a stored stream.
 */
function largestDistance(data: Uint8Array): number {
  let at = 0;
  const bit = () => (data[at >> 3] >> (at++ & 7)) & 1;
  const bits = (n: number) => {
    let v = 0;
    for (let i = 0; i < n; i++) v |= bit() << i;
    return v;
  };
  const symbol = () => {
    let code = 0;
    for (let length = 1; length <= 9; length++) {
      code = (code << 1) | bit();
      if (length === 7 && code <= 23) return 256 + code;
      if (length === 8 && code >= 0x30 && code <= 0xbf) return code - 0x30;
      if (length === 8 && code >= 0xc0 && code <= 0xc7) return 280 + code - 0xc0;
      if (length === 9 && code >= 0x190) return 144 + code - 0x190;
    }
    throw new Error("bad fixed code");
  };
  const final = bit();
  const type = bits(2);
  if (type === 0) return -1;
  assert.equal(final, 1, "one final block");
  assert.equal(type, 1, "fixed Huffman codes");
  let largest = 0;
  for (let s = symbol(); s !== 256; s = symbol()) {
    if (s < 256) continue;
    bits(LENGTH_EXTRA[s - 257]);
    let d = 0;
    for (let i = 0; i < 5; i++) d = (d << 1) | bit();
    largest = Math.max(largest, DIST_BASE[d] + bits(DIST_EXTRA[d]));
  }
  return largest;
}

/** Data that repeats 5000 bytes apart in its first half and 1 KiB apart in its second. */
function farAndNear(): Uint8Array {
  const data = new Uint8Array(CLUSTER);
  const far = pseudoRandom(5000, 3);
  for (let at = 0; at < CLUSTER / 2; at += far.length) {
    data.set(far.subarray(0, CLUSTER / 2 - at), at);
  }
  const near = pseudoRandom(1024, 4);
  for (let at = CLUSTER / 2; at < CLUSTER; at += near.length) data.set(near, at);
  return data;
}

Deno.test("Deflater zlib/32 KiB round-trips through inflateZlib and DecompressionStream", async () => {
  const deflater = new Deflater({ windowBits: 15, format: "zlib" });
  for (const [name, input] of inputs) {
    for (const size of [input.length, Math.floor(input.length / 3), 65536 + 1]) {
      const part = input.subarray(0, Math.min(size, input.length));
      const compressed = deflater.compress(part).slice();
      assert.deepEqual([...compressed.subarray(0, 2)], [0x78, 0x01], name);
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

Deno.test("Deflater raw/4 KiB round-trips through inflateRaw and a 4 KiB-window inflater", () => {
  const deflater = new Deflater({ windowBits: 12, format: "raw" });
  for (const [name, input] of [...inputs, ["far and near", farAndNear()] as const]) {
    for (const size of [input.length, Math.floor(input.length / 3), 65536 + 1]) {
      const part = input.subarray(0, Math.min(size, input.length));
      const compressed = deflater.compress(part).slice();
      const out = new Uint8Array(part.length);
      const result = inflateRaw(compressed, out);
      assert.deepEqual(result, {
        written: part.length,
        overflow: false,
        consumed: compressed.length,
      }, name);
      assert.deepEqual(out, part, name);
      assert.deepEqual(new Uint8Array(inflateRawSync(compressed, { windowBits: 12 })), part, name);
      assert.ok(largestDistance(compressed) <= 4096, name);
      // stored blocks bound the output: 5 per 65535 bytes
      assert.ok(compressed.length <= part.length + 5 * Math.max(1, Math.ceil(part.length / 65535)));
    }
  }
});

Deno.test("Deflater never refers further back than its window", () => {
  const data = farAndNear();
  const wide = new Deflater({ windowBits: 15, format: "raw" }).compress(data);
  // the check below can see a far reference: the 32 KiB window takes the 5000-byte repeats
  assert.ok(largestDistance(wide) > 4096, `${largestDistance(wide)}`);
  for (const windowBits of [10, 12]) {
    const packed = new Deflater({ windowBits, format: "raw" }).compress(data);
    const largest = largestDistance(packed);
    assert.ok(largest > 0 && largest <= 2 ** windowBits, `${windowBits}: ${largest}`);
  }
});

Deno.test("Deflater writes the zlib header of its window, and the raw stream inside it", () => {
  const data = knownData(65536 * 2, 5);
  for (const windowBits of [8, 12, 15]) {
    const zlib = new Deflater({ windowBits, format: "zlib" }).compress(data).slice();
    const raw = new Deflater({ windowBits, format: "raw" }).compress(data);
    assert.equal(zlib[0], ((windowBits - 8) << 4) | 8);
    assert.equal(((zlib[0] << 8) | zlib[1]) % 31, 0);
    assert.deepEqual(zlib.subarray(2, zlib.length - 4), raw);
    assert.deepEqual(new Uint8Array(inflateSync(zlib)), data);
  }
});

Deno.test("Deflater compresses zeros and repeated text far below their size", () => {
  for (const format of ["raw", "zlib"] as const) {
    for (const windowBits of [12, 15]) {
      const deflater = new Deflater({ windowBits, format });
      assert.ok(deflater.compress(new Uint8Array(65536)).length < 1024);
      assert.ok(deflater.compress(inputs[4][1]).length < inputs[4][1].length / 20);
    }
  }
});

Deno.test("Deflater reuses its output buffer; deflateRaw returns the caller's own copy", async () => {
  const deflater = new Deflater({ windowBits: 15, format: "zlib" });
  const first = deflater.compress(knownData(65536, 2));
  const second = deflater.compress(knownData(65536, 3));
  assert.equal(first.buffer, second.buffer);
  const a = await deflateRaw(new Uint8Array(65536));
  const b = await deflateRaw(knownData(65536, 4));
  assert.notEqual(a.buffer, b.buffer);
  assert.deepEqual(new Uint8Array(inflateRawSync(a, { windowBits: 12 })), new Uint8Array(65536));
});

Deno.test("deflateRaw output inflates with the 4 KiB window QEMU uses", async () => {
  // Repeats 5 KiB apart (too far for QEMU) and 1 KiB apart (near enough).
  const data = farAndNear();
  const packed = await deflateRaw(data);
  assert.ok(packed.length < CLUSTER * 0.6, `${packed.length} bytes`); // the near half compresses
  assert.ok(largestDistance(packed) <= 4096);
  assert.deepEqual(new Uint8Array(inflateRawSync(packed, { windowBits: 12 })), data);
  assert.deepEqual(
    new Uint8Array(inflateRawSync(await deflateRaw(new Uint8Array(0)))),
    new Uint8Array(0),
  );
});

Deno.test("Deflater refuses a bad window or format", () => {
  for (const windowBits of [7, 16, 12.5, NaN]) {
    assert.throws(
      () => new Deflater({ windowBits, format: "raw" }),
      new RangeError(`Invalid deflate window bits ${windowBits}: it must be 8 to 15`),
    );
  }
  assert.throws(
    () => new Deflater({ windowBits: 15, format: "gzip" as "raw" }),
    new TypeError('Invalid deflate format "gzip": it must be "raw" or "zlib"'),
  );
});

Deno.test("the decoder's length and distance tables are the compressor's", () => {
  assert.equal(LENGTH_BASE.length, 29);
  assert.equal(LENGTH_EXTRA.length, 29);
  assert.equal(DIST_BASE.length, 30);
  assert.equal(DIST_EXTRA.length, 30);
  // each code's range ends where the next begins (RFC 1951 3.2.5)
  for (let i = 0; i + 2 < LENGTH_BASE.length; i++) {
    assert.equal(LENGTH_BASE[i] + 2 ** LENGTH_EXTRA[i], LENGTH_BASE[i + 1]);
  }
  assert.equal(LENGTH_BASE[28], 258);
  for (let i = 0; i + 1 < DIST_BASE.length; i++) {
    assert.equal(DIST_BASE[i] + 2 ** DIST_EXTRA[i], DIST_BASE[i + 1]);
  }
  assert.equal(DIST_BASE[29] + 2 ** DIST_EXTRA[29], 32769);
});

Deno.test("adler32 (shared by zlib and lzop) matches RFC 1950 and continues a running sum", () => {
  const text = new TextEncoder().encode("Wikipedia");
  assert.equal(adler32(1, text), 0x11e60398);
  assert.equal(adler32(1, new Uint8Array(0)), 1);
  // 0xff bytes make the largest sums; past the 3800-byte reduction step
  const ones = new Uint8Array(100_000).fill(0xff);
  let a = 1;
  let b = 0;
  for (const byte of ones) {
    a = (a + byte) % 65521;
    b = (b + a) % 65521;
  }
  assert.equal(adler32(1, ones), ((b << 16) | a) >>> 0);
  assert.equal(adler32(adler32(1, ones, 0, 12345), ones, 12345), adler32(1, ones));
});
