// The Adler-32 checksum (RFC 1950) of zlib streams (the deflate coder and
// decoder) and of lzop files. Private to the library.

/**
 * Adler-32 of `data[start..end)`, continuing from `sum` (1 for a fresh sum).
 * Sums are reduced every 3800 bytes so both halves stay within 31 bits.
 */
export function adler32(sum: number, data: Uint8Array, start = 0, end = data.length): number {
  let a = sum & 0xffff;
  let b = sum >>> 16;
  let i = start;
  while (i < end) {
    const stop = Math.min(end, i + 3800);
    const stop8 = stop - 8;
    // Eight bytes at a time: a gains their sum, b gains 8a plus their weighted sum
    // (the values bytewise summing reaches, with fewer dependent additions).
    for (; i <= stop8; i += 8) {
      const x0 = data[i], x1 = data[i + 1], x2 = data[i + 2], x3 = data[i + 3];
      const x4 = data[i + 4], x5 = data[i + 5], x6 = data[i + 6], x7 = data[i + 7];
      b += 8 * a + 8 * x0 + 7 * x1 + 6 * x2 + 5 * x3 + 4 * x4 + 3 * x5 + 2 * x6 + x7;
      a += x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7;
    }
    for (; i < stop; i++) {
      a += data[i];
      b += a;
    }
    a %= 65521;
    b %= 65521;
  }
  return ((b << 16) | a) >>> 0;
}
