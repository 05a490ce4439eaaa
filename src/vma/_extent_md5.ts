// MD5 (RFC 1321) specialised for the one message the format hashes most: the
// 512-byte extent header with its 16-byte MD5 field (offset 24) taken as zero.
// `md5` below hashes any message (the archive header); `extentMd5` is
// written for speed, since a sparse archive is mostly extent headers. Both are
// tested against @noble/hashes. Private to the library.

/** The 144 words hashed: 128 from the header, then the padding block. */
const M = new Int32Array(144);
M[128] = 0x80; // the 1 bit after the message
M[142] = 512 * 8; // the message length in bits, low word
const STATE = new Int32Array(4);
/** The working variables a, b, c, d of the block being hashed. */
const V = new Int32Array(4);
/** MD5 reads little-endian words: on such a machine, aligned headers are copied as words. */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * Computes the MD5 of `head[0 .. 512)` with bytes 24..39 (the MD5 field)
 * taken as zero, into `STATE` (four little-endian words).
 */
function digestInto(head: Uint8Array): void {
  if (LITTLE_ENDIAN && (head.byteOffset & 3) === 0) {
    M.set(new Int32Array(head.buffer, head.byteOffset, 128));
  } else {
    for (let w = 0, b = 0; w < 128; w++, b += 4) {
      M[w] = head[b] | (head[b + 1] << 8) | (head[b + 2] << 16) | (head[b + 3] << 24);
    }
  }
  M.fill(0, 6, 10); // the MD5 field
  STATE[0] = 0x67452301;
  STATE[1] = 0xefcdab89 | 0;
  STATE[2] = 0x98badcfe | 0;
  STATE[3] = 0x10325476;
  for (let o = 0; o < 144; o += 16) {
    V.set(STATE);
    roundF(o);
    roundG(o);
    roundH(o);
    roundI(o);
    for (let i = 0; i < 4; i++) STATE[i] = (STATE[i] + V[i]) | 0;
  }
}

// The 64 steps, unrolled, with the constants floor(|sin(i + 1)| · 2^32) and
// the rotations of the RFC.

/**
 * Round 1 of RFC 1321, section 3.4: F(b, c, d) = (b & c) | (~b & d).
 * Steps 0..15 on block `o` of `M`, state in `V`.
 */
function roundF(o: number): void {
  let a = V[0];
  let b = V[1];
  let c = V[2];
  let d = V[3];
  let x: number;
  x = (a + ((b & c) | (~b & d)) + -680876936 + M[o + 0]) | 0;
  a = (b + ((x << 7) | (x >>> 25))) | 0;
  x = (d + ((a & b) | (~a & c)) + -389564586 + M[o + 1]) | 0;
  d = (a + ((x << 12) | (x >>> 20))) | 0;
  x = (c + ((d & a) | (~d & b)) + 606105819 + M[o + 2]) | 0;
  c = (d + ((x << 17) | (x >>> 15))) | 0;
  x = (b + ((c & d) | (~c & a)) + -1044525330 + M[o + 3]) | 0;
  b = (c + ((x << 22) | (x >>> 10))) | 0;
  x = (a + ((b & c) | (~b & d)) + -176418897 + M[o + 4]) | 0;
  a = (b + ((x << 7) | (x >>> 25))) | 0;
  x = (d + ((a & b) | (~a & c)) + 1200080426 + M[o + 5]) | 0;
  d = (a + ((x << 12) | (x >>> 20))) | 0;
  x = (c + ((d & a) | (~d & b)) + -1473231341 + M[o + 6]) | 0;
  c = (d + ((x << 17) | (x >>> 15))) | 0;
  x = (b + ((c & d) | (~c & a)) + -45705983 + M[o + 7]) | 0;
  b = (c + ((x << 22) | (x >>> 10))) | 0;
  x = (a + ((b & c) | (~b & d)) + 1770035416 + M[o + 8]) | 0;
  a = (b + ((x << 7) | (x >>> 25))) | 0;
  x = (d + ((a & b) | (~a & c)) + -1958414417 + M[o + 9]) | 0;
  d = (a + ((x << 12) | (x >>> 20))) | 0;
  x = (c + ((d & a) | (~d & b)) + -42063 + M[o + 10]) | 0;
  c = (d + ((x << 17) | (x >>> 15))) | 0;
  x = (b + ((c & d) | (~c & a)) + -1990404162 + M[o + 11]) | 0;
  b = (c + ((x << 22) | (x >>> 10))) | 0;
  x = (a + ((b & c) | (~b & d)) + 1804603682 + M[o + 12]) | 0;
  a = (b + ((x << 7) | (x >>> 25))) | 0;
  x = (d + ((a & b) | (~a & c)) + -40341101 + M[o + 13]) | 0;
  d = (a + ((x << 12) | (x >>> 20))) | 0;
  x = (c + ((d & a) | (~d & b)) + -1502002290 + M[o + 14]) | 0;
  c = (d + ((x << 17) | (x >>> 15))) | 0;
  x = (b + ((c & d) | (~c & a)) + 1236535329 + M[o + 15]) | 0;
  b = (c + ((x << 22) | (x >>> 10))) | 0;
  V[0] = a;
  V[1] = b;
  V[2] = c;
  V[3] = d;
}

/**
 * Round 2: G(b, c, d) = (b & d) | (c & ~d).
 * Steps 16..31 on block `o` of `M`, state in `V`.
 */
function roundG(o: number): void {
  let a = V[0];
  let b = V[1];
  let c = V[2];
  let d = V[3];
  let x: number;
  x = (a + ((d & b) | (~d & c)) + -165796510 + M[o + 1]) | 0;
  a = (b + ((x << 5) | (x >>> 27))) | 0;
  x = (d + ((c & a) | (~c & b)) + -1069501632 + M[o + 6]) | 0;
  d = (a + ((x << 9) | (x >>> 23))) | 0;
  x = (c + ((b & d) | (~b & a)) + 643717713 + M[o + 11]) | 0;
  c = (d + ((x << 14) | (x >>> 18))) | 0;
  x = (b + ((a & c) | (~a & d)) + -373897302 + M[o + 0]) | 0;
  b = (c + ((x << 20) | (x >>> 12))) | 0;
  x = (a + ((d & b) | (~d & c)) + -701558691 + M[o + 5]) | 0;
  a = (b + ((x << 5) | (x >>> 27))) | 0;
  x = (d + ((c & a) | (~c & b)) + 38016083 + M[o + 10]) | 0;
  d = (a + ((x << 9) | (x >>> 23))) | 0;
  x = (c + ((b & d) | (~b & a)) + -660478335 + M[o + 15]) | 0;
  c = (d + ((x << 14) | (x >>> 18))) | 0;
  x = (b + ((a & c) | (~a & d)) + -405537848 + M[o + 4]) | 0;
  b = (c + ((x << 20) | (x >>> 12))) | 0;
  x = (a + ((d & b) | (~d & c)) + 568446438 + M[o + 9]) | 0;
  a = (b + ((x << 5) | (x >>> 27))) | 0;
  x = (d + ((c & a) | (~c & b)) + -1019803690 + M[o + 14]) | 0;
  d = (a + ((x << 9) | (x >>> 23))) | 0;
  x = (c + ((b & d) | (~b & a)) + -187363961 + M[o + 3]) | 0;
  c = (d + ((x << 14) | (x >>> 18))) | 0;
  x = (b + ((a & c) | (~a & d)) + 1163531501 + M[o + 8]) | 0;
  b = (c + ((x << 20) | (x >>> 12))) | 0;
  x = (a + ((d & b) | (~d & c)) + -1444681467 + M[o + 13]) | 0;
  a = (b + ((x << 5) | (x >>> 27))) | 0;
  x = (d + ((c & a) | (~c & b)) + -51403784 + M[o + 2]) | 0;
  d = (a + ((x << 9) | (x >>> 23))) | 0;
  x = (c + ((b & d) | (~b & a)) + 1735328473 + M[o + 7]) | 0;
  c = (d + ((x << 14) | (x >>> 18))) | 0;
  x = (b + ((a & c) | (~a & d)) + -1926607734 + M[o + 12]) | 0;
  b = (c + ((x << 20) | (x >>> 12))) | 0;
  V[0] = a;
  V[1] = b;
  V[2] = c;
  V[3] = d;
}

/**
 * Round 3: H(b, c, d) = b ^ c ^ d.
 * Steps 32..47 on block `o` of `M`, state in `V`.
 */
function roundH(o: number): void {
  let a = V[0];
  let b = V[1];
  let c = V[2];
  let d = V[3];
  let x: number;
  x = (a + (b ^ c ^ d) + -378558 + M[o + 5]) | 0;
  a = (b + ((x << 4) | (x >>> 28))) | 0;
  x = (d + (a ^ b ^ c) + -2022574463 + M[o + 8]) | 0;
  d = (a + ((x << 11) | (x >>> 21))) | 0;
  x = (c + (d ^ a ^ b) + 1839030562 + M[o + 11]) | 0;
  c = (d + ((x << 16) | (x >>> 16))) | 0;
  x = (b + (c ^ d ^ a) + -35309556 + M[o + 14]) | 0;
  b = (c + ((x << 23) | (x >>> 9))) | 0;
  x = (a + (b ^ c ^ d) + -1530992060 + M[o + 1]) | 0;
  a = (b + ((x << 4) | (x >>> 28))) | 0;
  x = (d + (a ^ b ^ c) + 1272893353 + M[o + 4]) | 0;
  d = (a + ((x << 11) | (x >>> 21))) | 0;
  x = (c + (d ^ a ^ b) + -155497632 + M[o + 7]) | 0;
  c = (d + ((x << 16) | (x >>> 16))) | 0;
  x = (b + (c ^ d ^ a) + -1094730640 + M[o + 10]) | 0;
  b = (c + ((x << 23) | (x >>> 9))) | 0;
  x = (a + (b ^ c ^ d) + 681279174 + M[o + 13]) | 0;
  a = (b + ((x << 4) | (x >>> 28))) | 0;
  x = (d + (a ^ b ^ c) + -358537222 + M[o + 0]) | 0;
  d = (a + ((x << 11) | (x >>> 21))) | 0;
  x = (c + (d ^ a ^ b) + -722521979 + M[o + 3]) | 0;
  c = (d + ((x << 16) | (x >>> 16))) | 0;
  x = (b + (c ^ d ^ a) + 76029189 + M[o + 6]) | 0;
  b = (c + ((x << 23) | (x >>> 9))) | 0;
  x = (a + (b ^ c ^ d) + -640364487 + M[o + 9]) | 0;
  a = (b + ((x << 4) | (x >>> 28))) | 0;
  x = (d + (a ^ b ^ c) + -421815835 + M[o + 12]) | 0;
  d = (a + ((x << 11) | (x >>> 21))) | 0;
  x = (c + (d ^ a ^ b) + 530742520 + M[o + 15]) | 0;
  c = (d + ((x << 16) | (x >>> 16))) | 0;
  x = (b + (c ^ d ^ a) + -995338651 + M[o + 2]) | 0;
  b = (c + ((x << 23) | (x >>> 9))) | 0;
  V[0] = a;
  V[1] = b;
  V[2] = c;
  V[3] = d;
}

/**
 * Round 4: I(b, c, d) = c ^ (b | ~d).
 * Steps 48..63 on block `o` of `M`, state in `V`.
 */
function roundI(o: number): void {
  let a = V[0];
  let b = V[1];
  let c = V[2];
  let d = V[3];
  let x: number;
  x = (a + (c ^ (b | ~d)) + -198630844 + M[o + 0]) | 0;
  a = (b + ((x << 6) | (x >>> 26))) | 0;
  x = (d + (b ^ (a | ~c)) + 1126891415 + M[o + 7]) | 0;
  d = (a + ((x << 10) | (x >>> 22))) | 0;
  x = (c + (a ^ (d | ~b)) + -1416354905 + M[o + 14]) | 0;
  c = (d + ((x << 15) | (x >>> 17))) | 0;
  x = (b + (d ^ (c | ~a)) + -57434055 + M[o + 5]) | 0;
  b = (c + ((x << 21) | (x >>> 11))) | 0;
  x = (a + (c ^ (b | ~d)) + 1700485571 + M[o + 12]) | 0;
  a = (b + ((x << 6) | (x >>> 26))) | 0;
  x = (d + (b ^ (a | ~c)) + -1894986606 + M[o + 3]) | 0;
  d = (a + ((x << 10) | (x >>> 22))) | 0;
  x = (c + (a ^ (d | ~b)) + -1051523 + M[o + 10]) | 0;
  c = (d + ((x << 15) | (x >>> 17))) | 0;
  x = (b + (d ^ (c | ~a)) + -2054922799 + M[o + 1]) | 0;
  b = (c + ((x << 21) | (x >>> 11))) | 0;
  x = (a + (c ^ (b | ~d)) + 1873313359 + M[o + 8]) | 0;
  a = (b + ((x << 6) | (x >>> 26))) | 0;
  x = (d + (b ^ (a | ~c)) + -30611744 + M[o + 15]) | 0;
  d = (a + ((x << 10) | (x >>> 22))) | 0;
  x = (c + (a ^ (d | ~b)) + -1560198380 + M[o + 6]) | 0;
  c = (d + ((x << 15) | (x >>> 17))) | 0;
  x = (b + (d ^ (c | ~a)) + 1309151649 + M[o + 13]) | 0;
  b = (c + ((x << 21) | (x >>> 11))) | 0;
  x = (a + (c ^ (b | ~d)) + -145523070 + M[o + 4]) | 0;
  a = (b + ((x << 6) | (x >>> 26))) | 0;
  x = (d + (b ^ (a | ~c)) + -1120210379 + M[o + 11]) | 0;
  d = (a + ((x << 10) | (x >>> 22))) | 0;
  x = (c + (a ^ (d | ~b)) + 718787259 + M[o + 2]) | 0;
  c = (d + ((x << 15) | (x >>> 17))) | 0;
  x = (b + (d ^ (c | ~a)) + -343485551 + M[o + 9]) | 0;
  b = (c + ((x << 21) | (x >>> 11))) | 0;
  V[0] = a;
  V[1] = b;
  V[2] = c;
  V[3] = d;
}

/** The MD5 of a 512-byte extent header, its MD5 field (bytes 24..39) taken as zero. */
export function extentMd5(head: Uint8Array): Uint8Array {
  digestInto(head);
  const out = new Uint8Array(16);
  for (let i = 0; i < 16; i++) out[i] = STATE[i >>> 2] >>> ((i & 3) * 8);
  return out;
}

/** Whether the MD5 field of a 512-byte extent header (bytes 24..39) holds its MD5. */
export function extentMd5Matches(head: Uint8Array): boolean {
  digestInto(head);
  for (let i = 0; i < 16; i++) {
    if (head[24 + i] !== ((STATE[i >>> 2] >>> ((i & 3) * 8)) & 0xff)) return false;
  }
  return true;
}

/** Loads the 64-byte block of `bytes` at `at` into words 0..15 of `M`. */
function loadBlock(bytes: Uint8Array, at: number): void {
  for (let w = 0, b = at; w < 16; w++, b += 4) {
    M[w] = bytes[b] | (bytes[b + 1] << 8) | (bytes[b + 2] << 16) | (bytes[b + 3] << 24);
  }
}

/** Hashes the block in words 0..15 of `M` into `STATE`. */
function hashBlock(): void {
  V.set(STATE);
  roundF(0);
  roundG(0);
  roundH(0);
  roundI(0);
  for (let i = 0; i < 4; i++) STATE[i] = (STATE[i] + V[i]) | 0;
}

/**
 * The MD5 (RFC 1321) of any message: the archive header, whose MD5 used to
 * come from npm:@noble/hashes. Done here so that the library and the CLI
 * import no npm package at all (a first run then fetches nothing).
 */
export function md5(bytes: Uint8Array): Uint8Array {
  STATE[0] = 0x67452301;
  STATE[1] = 0xefcdab89 | 0;
  STATE[2] = 0x98badcfe | 0;
  STATE[3] = 0x10325476;
  const whole = bytes.length - (bytes.length % 64);
  for (let at = 0; at < whole; at += 64) {
    loadBlock(bytes, at);
    hashBlock();
  }
  // The padding: a 1 bit, zeros, and the length in bits as 64 bits little-endian.
  const tail = new Uint8Array(128);
  tail.set(bytes.subarray(whole));
  const rest = bytes.length - whole;
  tail[rest] = 0x80;
  const end = rest < 56 ? 64 : 128;
  const bits = bytes.length * 8;
  const view = new DataView(tail.buffer);
  view.setUint32(end - 8, bits >>> 0, true);
  view.setUint32(end - 4, Math.floor(bits / 2 ** 32), true);
  for (let at = 0; at < end; at += 64) {
    loadBlock(tail, at);
    hashBlock();
  }
  const out = new Uint8Array(16);
  for (let i = 0; i < 16; i++) out[i] = STATE[i >>> 2] >>> ((i & 3) * 8);
  return out;
}
