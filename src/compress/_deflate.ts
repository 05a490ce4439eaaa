/**
 * A small DEFLATE compressor (RFC 1951), raw or zlib-wrapped (RFC 1950), with
 * a window of 256 bytes to 32 KiB: greedy LZ77 with hash chains, coded as one
 * block with the fixed Huffman codes, or as stored blocks when that would not
 * be smaller. Also the length and distance tables that the decoder
 * (`_inflate.ts`) shares.
 *
 * Its two users:
 * - qcow2 compressed clusters: raw deflate with a 4 KiB window, because QEMU
 *   inflates them with windowBits -12 (so the web `CompressionStream`, whose
 *   window is 32 KiB, cannot be used). No back-reference reaches further than
 *   the window.
 * - VMDK streamOptimized grains: zlib with a 32 KiB window. Not the web
 *   `CompressionStream("deflate")` either: in Deno each stream holds its zlib
 *   state (about 300 KiB of native memory) until the garbage collector gets
 *   to the stream object, which the small JavaScript heap rarely prompts:
 *   compressing 2 GiB as 64 KiB grains, one stream each, grew the process to
 *   over 300 MiB. A {@linkcode Deflater} reuses its buffers, so its memory is
 *   fixed (about 300 KiB beyond its largest output), and runs unchanged in
 *   browsers.
 *
 * @module
 */

/** Base length of each length code (symbol 257 + index). */
export const LENGTH_BASE: Uint16Array = Uint16Array.of(
  ...[3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31],
  ...[35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258],
);
/** Extra bits of each length code. */
export const LENGTH_EXTRA: Uint8Array = Uint8Array.of(
  ...[0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2],
  ...[3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0],
);
/** Base distance of each distance code. */
export const DIST_BASE: Uint16Array = Uint16Array.of(
  ...[1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193],
  ...[257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577],
);
/** Extra bits of each distance code. */
export const DIST_EXTRA: Uint8Array = Uint8Array.of(
  ...[0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6],
  ...[7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13],
);

import { adler32 } from "./_adler32.ts";

const MAX_WINDOW = 32768;
const HASH_BITS = 15;
const MAX_MATCH = 258;
const MAX_CHAIN = 32;

function reverse(code: number, length: number): number {
  let out = 0;
  for (let i = 0; i < length; i++) out |= ((code >>> i) & 1) << (length - 1 - i);
  return out;
}

/** The fixed literal/length codes, bit-reversed for LSB-first output, and their lengths. */
const LIT_CODE = new Uint16Array(288);
const LIT_LENGTH = new Uint8Array(288);
for (let s = 0; s < 288; s++) {
  const [base, first, length] = s < 144
    ? [0x30, 0, 8]
    : s < 256
    ? [0x190, 144, 9]
    : s < 280
    ? [0, 256, 7]
    : [0xc0, 280, 8];
  LIT_CODE[s] = reverse(base + s - first, length);
  LIT_LENGTH[s] = length;
}
/** Length 3..258 to the index of its code (symbol 257 + index). */
const LENGTH_INDEX = new Uint8Array(MAX_MATCH + 1);
for (let i = 0; i < LENGTH_BASE.length; i++) {
  const end = i + 1 < LENGTH_BASE.length ? LENGTH_BASE[i + 1] : MAX_MATCH + 1;
  for (let l = LENGTH_BASE[i]; l < end && l <= MAX_MATCH; l++) LENGTH_INDEX[l] = i;
}
LENGTH_INDEX[MAX_MATCH] = 28;
/** Distance 1..32768 to its code. */
const DIST_INDEX = new Uint8Array(MAX_WINDOW + 1);
for (let i = 0; i < DIST_BASE.length; i++) {
  const end = i + 1 < DIST_BASE.length ? DIST_BASE[i + 1] : MAX_WINDOW + 1;
  for (let d = DIST_BASE[i]; d < end; d++) DIST_INDEX[d] = i;
}
const DIST_CODE = Uint8Array.from({ length: 30 }, (_, i) => reverse(i, 5));

/** How a {@linkcode Deflater} compresses. */
export interface DeflaterOptions {
  /** Log2 of the window: back-references reach at most `2 ** windowBits` bytes back (8..15). */
  windowBits: number;
  /** `"raw"`: bare deflate data; `"zlib"`: with the zlib header and Adler-32 trailer. */
  format: "raw" | "zlib";
}

/** A reusable deflate compressor whose memory does not grow past its largest output. */
export class Deflater {
  readonly #window: number;
  readonly #zlib: boolean;
  readonly #head = new Int32Array(1 << HASH_BITS);
  readonly #prev: Int32Array;
  #out = new Uint8Array(0);
  #at = 0;
  #bits = 0;
  #count = 0;

  /** A compressor with the window and wrapper of `options`; RangeError/TypeError when bad. */
  constructor(options: DeflaterOptions) {
    const { windowBits, format } = options;
    if (!Number.isInteger(windowBits) || windowBits < 8 || windowBits > 15) {
      throw new RangeError(`Invalid deflate window bits ${windowBits}: it must be 8 to 15`);
    }
    if (format !== "raw" && format !== "zlib") {
      throw new TypeError(
        `Invalid deflate format ${JSON.stringify(format)}: it must be "raw" or "zlib"`,
      );
    }
    this.#window = 1 << windowBits;
    this.#zlib = format === "zlib";
    this.#prev = new Int32Array(this.#window);
  }

  #put(value: number, length: number): void {
    this.#bits |= value << this.#count;
    this.#count += length;
    while (this.#count >= 8) {
      this.#out[this.#at++] = this.#bits & 0xff;
      this.#bits >>>= 8;
      this.#count -= 8;
    }
  }

  /**
   * Compresses `input`; the result is a view of a buffer that the next call
   * reuses.
   */
  compress(input: Uint8Array): Uint8Array {
    const n = input.length;
    const header = this.#zlib ? 2 : 0;
    const trailer = this.#zlib ? 4 : 0;
    const storedSize = header + n + 5 * Math.max(1, Math.ceil(n / 65535)) + trailer;
    // fixed codes take at most 9 bits per byte, plus header, end code and trailer
    const worst = Math.max(storedSize, header + Math.ceil(n * 9 / 8) + 16);
    if (this.#out.length < worst) this.#out = new Uint8Array(worst);
    this.#at = 0;
    this.#bits = 0;
    this.#count = 0;
    if (this.#zlib) {
      // CM 8 (deflate), CINFO the window, FLEVEL 0, FCHECK making it a multiple of 31
      const cmf = ((Math.log2(this.#window) - 8) << 4) | 8;
      this.#out[this.#at++] = cmf;
      this.#out[this.#at++] = (31 - ((cmf << 8) % 31)) % 31;
    }
    this.#put(1, 1); // final block
    this.#put(1, 2); // fixed Huffman codes
    this.#lz77(input);
    this.#put(LIT_CODE[256], LIT_LENGTH[256]);
    if (this.#count > 0) this.#put(0, 8 - this.#count);
    let out: Uint8Array;
    if (this.#at + trailer <= storedSize) {
      out = this.#out.subarray(0, this.#at + trailer);
    } else {
      out = this.#out.subarray(0, storedSize);
      let at = header;
      let from = 0;
      do {
        const length = Math.min(65535, n - from);
        out[at] = from + length >= n ? 1 : 0;
        out[at + 1] = length & 0xff;
        out[at + 2] = length >>> 8;
        out[at + 3] = ~length & 0xff;
        out[at + 4] = (~length >>> 8) & 0xff;
        out.set(input.subarray(from, from + length), at + 5);
        at += 5 + length;
        from += length;
      } while (from < n);
    }
    if (this.#zlib) {
      new DataView(out.buffer, out.byteOffset, out.length).setUint32(
        out.length - 4,
        adler32(1, input),
      );
    }
    return out;
  }

  #lz77(input: Uint8Array): void {
    const n = input.length;
    const window = this.#window;
    const ring = window - 1;
    const head = this.#head.fill(-1);
    const prev = this.#prev;
    const out = this.#out;
    const MASK = (1 << HASH_BITS) - 1;
    let at = this.#at;
    let bits = this.#bits;
    let count = this.#count;
    let pos = 0;
    let misses = 0;
    while (pos < n) {
      let bestLength = 0;
      let bestDistance = 0;
      if (pos + 3 <= n) {
        const h = ((input[pos] << 10) ^ (input[pos + 1] << 5) ^ input[pos + 2]) & MASK;
        let candidate = head[h];
        if (candidate >= 0) {
          const most = Math.min(MAX_MATCH, n - pos);
          // Every candidate is checked against the window before it is used,
          // so no distance exceeds it.
          for (let chain = MAX_CHAIN; pos - candidate <= window && chain > 0; chain--) {
            if (input[candidate + bestLength] === input[pos + bestLength]) {
              let length = 0;
              while (length < most && input[candidate + length] === input[pos + length]) length++;
              if (length > bestLength) {
                bestLength = length;
                bestDistance = pos - candidate;
                if (length === most) break;
              }
            }
            const next = prev[candidate & ring];
            if (next < 0 || next >= candidate) break;
            candidate = next;
          }
        }
        prev[pos & ring] = head[h];
        head[h] = pos;
      }
      if (bestLength >= 3) {
        const li = LENGTH_INDEX[bestLength];
        const di = DIST_INDEX[bestDistance];
        // length code, its extra bits, distance code, its extra bits: at most 31 bits
        bits |= LIT_CODE[257 + li] << count;
        count += LIT_LENGTH[257 + li];
        bits |= (bestLength - LENGTH_BASE[li]) << count;
        count += LENGTH_EXTRA[li];
        while (count >= 8) {
          out[at++] = bits & 0xff;
          bits >>>= 8;
          count -= 8;
        }
        bits |= DIST_CODE[di] << count;
        count += 5;
        bits |= (bestDistance - DIST_BASE[di]) << count;
        count += DIST_EXTRA[di];
        const end = pos + bestLength;
        for (pos++; pos < end; pos++) {
          if (pos + 3 > n) continue;
          const h = ((input[pos] << 10) ^ (input[pos + 1] << 5) ^ input[pos + 2]) & MASK;
          prev[pos & ring] = head[h];
          head[h] = pos;
        }
        misses = 0;
      } else {
        // After a run of misses, emit more literals per search (as Snappy
        // does), so incompressible data costs little.
        const end = Math.min(n, pos + 1 + (misses++ >> 5));
        for (; pos < end; pos++) {
          const symbol = input[pos];
          bits |= LIT_CODE[symbol] << count;
          count += LIT_LENGTH[symbol];
          if (count >= 16) {
            out[at++] = bits & 0xff;
            out[at++] = (bits >>> 8) & 0xff;
            bits >>>= 16;
            count -= 16;
          }
        }
      }
      while (count >= 8) {
        out[at++] = bits & 0xff;
        bits >>>= 8;
        count -= 8;
      }
    }
    this.#at = at;
    this.#bits = bits;
    this.#count = count;
  }
}

let qcow2Deflater: Deflater | undefined;

/**
 * Compresses `data` to raw deflate data whose back-references reach at most
 * 4 KiB back (a qcow2 compressed cluster); the result is the caller's own copy.
 */
export function deflateRaw(data: Uint8Array): Promise<Uint8Array> {
  qcow2Deflater ??= new Deflater({ windowBits: 12, format: "raw" });
  return Promise.resolve(qcow2Deflater.compress(data).slice());
}
