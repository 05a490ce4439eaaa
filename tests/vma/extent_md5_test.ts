import assert from "node:assert/strict";
import { md5 as nobleMd5 } from "npm:@noble/hashes@^2.0.1/legacy.js";
import { extentMd5, extentMd5Matches, md5 } from "../../src/vma/_extent_md5.ts";
import { pseudoRandom } from "../_helpers.ts";

/** @noble/hashes' MD5 of `head` with bytes 24..39 zeroed. */
function reference(head: Uint8Array): Uint8Array {
  const copy = head.slice();
  copy.fill(0, 24, 40);
  return nobleMd5(copy);
}

Deno.test("extentMd5 equals @noble/hashes' MD5 on random 512-byte headers", () => {
  for (let seed = 1; seed <= 2000; seed++) {
    const head = pseudoRandom(512, seed);
    if (seed % 7 === 0) head.fill(0); // all zero
    if (seed % 11 === 0) head.fill(0xff); // all ones
    assert.deepEqual(extentMd5(head), reference(head), `seed ${seed}`);
  }
});

Deno.test("extentMd5 ignores the MD5 field and extentMd5Matches checks it", () => {
  const head = pseudoRandom(512, 42);
  const digest = extentMd5(head);
  head.set(digest, 24);
  assert.deepEqual(extentMd5(head), digest);
  assert.equal(extentMd5Matches(head), true);
  head[24] ^= 1;
  assert.equal(extentMd5Matches(head), false);
  head[24] ^= 1;
  head[511] ^= 0x80;
  assert.equal(extentMd5Matches(head), false);
  // RFC 1321's padding of a 512-byte message, checked on a known digest.
  assert.equal(
    Array.from(extentMd5(new Uint8Array(512)), (b) => b.toString(16).padStart(2, "0")).join(""),
    "bf619eac0cdf3f68d496ea9344137e8b",
  );
});

Deno.test("md5 equals @noble/hashes' MD5 at every length around the block and padding edges", () => {
  const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  // RFC 1321, appendix A.5.
  assert.equal(hex(md5(new Uint8Array(0))), "d41d8cd98f00b204e9800998ecf8427e");
  assert.equal(hex(md5(new TextEncoder().encode("abc"))), "900150983cd24fb0d6963f7d28e17f72");
  for (let n = 0; n <= 300; n++) {
    const bytes = pseudoRandom(n, n + 1);
    assert.deepEqual(md5(bytes), nobleMd5(bytes), `length ${n}`);
  }
  const big = pseudoRandom(1 << 20, 7).subarray(3); // unaligned, 1 MiB - 3
  assert.deepEqual(md5(big), nobleMd5(big));
  // extentMd5 still right after md5 used the shared words.
  const head = pseudoRandom(512, 9);
  assert.deepEqual(extentMd5(head), reference(head));
});
