// A small raw deflate compressor (RFC 1951) for qcow2's compressed clusters:
// LZ77 with hash chains over a 4 KiB window (QEMU inflates qcow2 clusters with
// windowBits -12, so the web CompressionStream's 32 KiB window cannot be used),
// coded as one final block with the fixed Huffman codes.

const WINDOW = 4096;
const MIN_MATCH = 3;
const MAX_MATCH = 258;
const HASH_BITS = 13;
const MAX_CHAIN = 48;

const LENGTH_BASE = [
  3,
  4,
  5,
  6,
  7,
  8,
  9,
  10,
  11,
  13,
  15,
  17,
  19,
  23,
  27,
  31,
  35,
  43,
  51,
  59,
  67,
  83,
  99,
  115,
  131,
  163,
  195,
  227,
  258,
];
const LENGTH_EXTRA = [
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  1,
  1,
  1,
  1,
  2,
  2,
  2,
  2,
  3,
  3,
  3,
  3,
  4,
  4,
  4,
  4,
  5,
  5,
  5,
  5,
  0,
];
const DIST_BASE = [
  1,
  2,
  3,
  4,
  5,
  7,
  9,
  13,
  17,
  25,
  33,
  49,
  65,
  97,
  129,
  193,
  257,
  385,
  513,
  769,
  1025,
  1537,
  2049,
  3073,
];
const DIST_EXTRA = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10];

/** The index of the last base not above `value`. */
function codeOf(bases: readonly number[], value: number): number {
  let i = bases.length - 1;
  while (bases[i] > value) i--;
  return i;
}

const LENGTH_CODE = new Uint8Array(MAX_MATCH + 1);
for (let l = MIN_MATCH; l <= MAX_MATCH; l++) LENGTH_CODE[l] = codeOf(LENGTH_BASE, l);
const DIST_CODE = new Uint8Array(WINDOW + 1);
for (let d = 1; d <= WINDOW; d++) DIST_CODE[d] = codeOf(DIST_BASE, d);

class BitWriter {
  out: Uint8Array;
  pos = 0;
  #bits = 0;
  #count = 0;
  constructor(capacity: number) {
    this.out = new Uint8Array(capacity);
  }
  /** Writes the low `n` bits of `value`, least significant first. */
  bits(value: number, n: number): void {
    this.#bits |= value << this.#count;
    this.#count += n;
    while (this.#count >= 8) {
      this.out[this.pos++] = this.#bits & 0xff;
      this.#bits >>>= 8;
      this.#count -= 8;
    }
  }
  /** Writes a Huffman code of `n` bits, most significant first. */
  code(code: number, n: number): void {
    let reversed = 0;
    for (let i = 0; i < n; i++) reversed |= ((code >>> i) & 1) << (n - 1 - i);
    this.bits(reversed, n);
  }
  end(): Uint8Array {
    if (this.#count > 0) this.out[this.pos++] = this.#bits & 0xff;
    return this.out.subarray(0, this.pos);
  }
}

function literal(w: BitWriter, symbol: number): void {
  if (symbol < 144) w.code(0x30 + symbol, 8);
  else if (symbol < 256) w.code(0x190 + symbol - 144, 9);
  else if (symbol < 280) w.code(symbol - 256, 7);
  else w.code(0xc0 + symbol - 280, 8);
}

function match(w: BitWriter, length: number, distance: number): void {
  const lc = LENGTH_CODE[length];
  literal(w, 257 + lc);
  if (LENGTH_EXTRA[lc]) w.bits(length - LENGTH_BASE[lc], LENGTH_EXTRA[lc]);
  const dc = DIST_CODE[distance];
  w.code(dc, 5);
  if (DIST_EXTRA[dc]) w.bits(distance - DIST_BASE[dc], DIST_EXTRA[dc]);
}

const hash3 = (d: Uint8Array, i: number) =>
  (((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]) * 2654435761) >>> (32 - HASH_BITS);

/** Compresses `data` to raw deflate data whose back-references reach at most 4 KiB back. */
export function deflateRaw(data: Uint8Array): Promise<Uint8Array> {
  const n = data.length;
  // Fixed codes take at most 9 bits per byte, plus the block header and end.
  const w = new BitWriter(Math.ceil(n * 9 / 8) + 16);
  w.bits(1, 1); // BFINAL
  w.bits(1, 2); // BTYPE 01: fixed Huffman codes
  const head = new Int32Array(1 << HASH_BITS).fill(-1);
  const prev = new Int32Array(n);
  const insert = (i: number) => {
    if (i + MIN_MATCH > n) return;
    const h = hash3(data, i);
    prev[i] = head[h];
    head[h] = i;
  };
  let i = 0;
  while (i < n) {
    let bestLength = 0;
    let bestDistance = 0;
    if (i + MIN_MATCH <= n) {
      const limit = Math.min(MAX_MATCH, n - i);
      let candidate = head[hash3(data, i)];
      for (let chain = 0; candidate >= 0 && i - candidate <= WINDOW && chain < MAX_CHAIN; chain++) {
        if (data[candidate + bestLength] === data[i + bestLength]) {
          let l = 0;
          while (l < limit && data[candidate + l] === data[i + l]) l++;
          if (l > bestLength) {
            bestLength = l;
            bestDistance = i - candidate;
            if (l === limit) break;
          }
        }
        candidate = prev[candidate];
      }
    }
    if (bestLength >= MIN_MATCH) {
      match(w, bestLength, bestDistance);
      for (let k = 0; k < bestLength; k++) insert(i + k);
      i += bestLength;
    } else {
      literal(w, data[i]);
      insert(i);
      i++;
    }
  }
  literal(w, 256);
  return Promise.resolve(w.end());
}
