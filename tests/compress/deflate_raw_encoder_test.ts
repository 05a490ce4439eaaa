import assert from "node:assert/strict";
import { deflateRawSync, inflateRawSync } from "node:zlib";
import { deflateRawBound, DeflateRawEncoder } from "../../src/compress/_deflate_raw_encoder.ts";
import { pseudoRandom } from "../_helpers.ts";

const CLUSTER = 65536;

/** Pieces of every kind a disk has: random, zeros, text, a run, short and empty. */
function pieces(): Uint8Array[] {
  const text = new TextEncoder().encode(
    "vma extract --format qcow2 --compress zlib\n".repeat(1600),
  );
  const mixed = pseudoRandom(CLUSTER, 3);
  mixed.fill(0, 4096, 40000);
  return [
    pseudoRandom(CLUSTER, 1),
    new Uint8Array(CLUSTER),
    text.subarray(0, CLUSTER),
    mixed,
    new Uint8Array(CLUSTER).fill(0xa5),
    pseudoRandom(513, 2),
    new Uint8Array(0),
  ];
}

Deno.test("DeflateRawEncoder: each piece a whole raw deflate stream in QEMU's 4 KiB window, one context for all", () => {
  // (Not always the bytes deflateRawSync writes: it deflates in 16 KiB output
  // steps, which can end a block elsewhere; both inflate to the same bytes.)
  const encoder = new DeflateRawEncoder(12);
  const out = new Uint8Array(deflateRawBound(CLUSTER));
  try {
    // Twice over: the context is reset between pieces, so order does not matter.
    for (const piece of [...pieces(), ...pieces().reverse()]) {
      const length = encoder.encode(piece, out);
      // QEMU inflates qcow2 clusters with windowBits -12.
      assert.deepEqual(
        new Uint8Array(inflateRawSync(out.subarray(0, length), { windowBits: 12 })),
        piece,
      );
      // As small as deflateRawSync's, give or take a few bytes.
      assert.ok(length <= deflateRawSync(piece, { windowBits: 12 }).length + 8);
    }
  } finally {
    encoder.close();
  }
});

Deno.test("DeflateRawEncoder refuses an output buffer too small and stays usable", () => {
  const encoder = new DeflateRawEncoder(12);
  try {
    const random = pseudoRandom(CLUSTER, 4);
    assert.throws(
      () => encoder.encode(random, new Uint8Array(1000)),
      RangeError,
      "A deflated piece did not fit its output buffer",
    );
    const out = new Uint8Array(deflateRawBound(CLUSTER));
    const length = encoder.encode(random, out);
    assert.deepEqual(
      new Uint8Array(inflateRawSync(out.subarray(0, length), { windowBits: 12 })),
      random,
    );
  } finally {
    encoder.close();
  }
});
