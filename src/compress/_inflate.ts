/**
 * A small, synchronous DEFLATE decoder (RFC 1951) with an optional zlib wrapper
 * (RFC 1950), for the compressed clusters of qcow2 and the compressed grains of
 * VMDK.
 *
 * Why not `DecompressionStream`: a qcow2 compressed cluster is stored as the
 * sectors that hold the deflate stream, so the stream is normally followed by
 * the first bytes of the next cluster, and the web-standard stream rejects any
 * input after the end of the deflate data (Deno 2.9: "failed to write whole
 * buffer") while it accepts truncated input without an error. This decoder stops
 * at the end of the final block, writes into a buffer of a fixed size (so a
 * hostile stream cannot allocate more) and tells whether the stream ended.
 *
 * Why not `npm:fflate` (0.8.3, evaluated 2026-12; `tests/compress/inflate_test.ts`
 * pins each point, so it fails when fflate gains the capability):
 * - No bounded output. `inflateSync(data, { out })` keeps decoding past the end
 *   of `out` (typed-array writes past the end are dropped), returns `out` full
 *   whether the stream fitted exactly or overflowed, and a stored block that
 *   does not fit throws the engine's bare `RangeError: offset is out of bounds`.
 *   The streaming `Inflate` grows its buffer to hold everything one `push`
 *   yields: a 16 KB bomb becomes one 16 MiB chunk.
 * - No end of stream and no bytes consumed: the sync API returns only the
 *   output, and `Inflate`'s `final` flag echoes the caller's, not the stream's.
 * - `unzlibSync` takes the Adler-32 from the last 4 bytes of the input and never
 *   checks it: a wrong checksum, or bytes after the stream, pass unnoticed.
 *
 * @module
 */

import { adler32 } from "./_adler32.ts";
import { DIST_BASE, DIST_EXTRA, LENGTH_BASE, LENGTH_EXTRA } from "./_deflate.ts";

/** What {@linkcode inflate} did. */
export interface InflateResult {
  /** Bytes written to the output buffer. */
  written: number;
  /** True when the stream wanted to write past the end of the output buffer. */
  overflow: boolean;
  /** Bytes of input consumed (up to the end of the stream, or where it stopped). */
  consumed: number;
}

const CODE_LENGTH_ORDER = new Uint8Array([
  16,
  17,
  18,
  0,
  8,
  7,
  9,
  6,
  10,
  5,
  11,
  4,
  12,
  3,
  13,
  2,
  14,
  1,
  15,
]);

/** A lookup table indexed by the next `bits` input bits: `symbol << 4 | length`, 0 = invalid. */
interface Huffman {
  table: Int32Array;
  bits: number;
}

function corrupt(what: string): SyntaxError {
  return new SyntaxError(`Invalid deflate data: ${what}`);
}

/** Builds a decoding table from code lengths (canonical Huffman codes, RFC 1951 3.2.2). */
function buildHuffman(lengths: Uint8Array, count: number): Huffman {
  const counts = new Uint16Array(16);
  let maxBits = 0;
  for (let i = 0; i < count; i++) {
    const len = lengths[i];
    counts[len]++;
    if (len > maxBits) maxBits = len;
  }
  counts[0] = 0;
  // Over-subscribed code sets are invalid; incomplete ones are allowed (a single
  // distance code, for example) and their unused entries stay 0 (invalid).
  let left = 1;
  for (let len = 1; len <= 15; len++) {
    left = (left << 1) - counts[len];
    if (left < 0) throw corrupt("over-subscribed Huffman code");
  }
  const bits = Math.max(maxBits, 1);
  const table = new Int32Array(1 << bits);
  const next = new Uint16Array(16);
  let code = 0;
  for (let len = 1; len <= 15; len++) {
    code = (code + counts[len - 1]) << 1;
    next[len] = code;
  }
  for (let symbol = 0; symbol < count; symbol++) {
    const len = lengths[symbol];
    if (len === 0) continue;
    let c = next[len]++;
    let reversed = 0;
    for (let i = 0; i < len; i++) {
      reversed = (reversed << 1) | (c & 1);
      c >>>= 1;
    }
    const entry = (symbol << 4) | len;
    for (let i = reversed; i < table.length; i += 1 << len) table[i] = entry;
  }
  return { table, bits };
}

let fixedLiteral: Huffman | undefined;
let fixedDistance: Huffman | undefined;

function fixedTables(): [Huffman, Huffman] {
  if (fixedLiteral === undefined || fixedDistance === undefined) {
    const lengths = new Uint8Array(288);
    lengths.fill(8, 0, 144);
    lengths.fill(9, 144, 256);
    lengths.fill(7, 256, 280);
    lengths.fill(8, 280, 288);
    fixedLiteral = buildHuffman(lengths, 288);
    fixedDistance = buildHuffman(new Uint8Array(30).fill(5), 30);
  }
  return [fixedLiteral, fixedDistance];
}

/**
 * Decodes one raw DEFLATE stream from `input` into `output`.
 *
 * Stops at the end of the final block (later input is ignored) or, with
 * `overflow: true`, when the stream would write past the end of `output`.
 *
 * @throws {SyntaxError} The data is not a valid deflate stream or ends early.
 */
export function inflateRaw(input: Uint8Array, output: Uint8Array): InflateResult {
  let pos = 0;
  let bitBuf = 0;
  let bitCnt = 0;
  let out = 0;
  const inEnd = input.length;
  const outEnd = output.length;

  /** Makes at least `n` (<= 24) bits available when the input has them. */
  const need = (n: number): void => {
    while (bitCnt < n && pos < inEnd) {
      bitBuf |= input[pos++] << bitCnt;
      bitCnt += 8;
    }
  };
  const take = (n: number): number => {
    need(n);
    if (bitCnt < n) throw corrupt("the stream ends early");
    const value = bitBuf & ((1 << n) - 1);
    bitBuf >>>= n;
    bitCnt -= n;
    return value;
  };
  const decode = (h: Huffman): number => {
    need(h.bits);
    const entry = h.table[bitBuf & ((1 << h.bits) - 1)];
    const len = entry & 15;
    if (len === 0) throw corrupt("invalid Huffman code");
    if (len > bitCnt) throw corrupt("the stream ends early");
    bitBuf >>>= len;
    bitCnt -= len;
    return entry >> 4;
  };

  for (;;) {
    const final = take(1);
    const type = take(2);
    if (type === 0) {
      // Stored block: skip to a byte boundary, then LEN and NLEN.
      bitBuf >>>= bitCnt & 7;
      bitCnt -= bitCnt & 7;
      const len = take(16);
      const nlen = take(16);
      if ((len ^ 0xffff) !== nlen) throw corrupt("stored block length check failed");
      // Whole bytes still in the bit buffer come first (bitCnt is a multiple of 8 here).
      let remaining = len;
      while (remaining > 0 && bitCnt > 0) {
        if (out >= outEnd) return { written: out, overflow: true, consumed: pos };
        output[out++] = take(8);
        remaining--;
      }
      if (pos + remaining > inEnd) throw corrupt("the stream ends early");
      if (out + remaining > outEnd) {
        const room = outEnd - out;
        output.set(input.subarray(pos, pos + room), out);
        return { written: outEnd, overflow: true, consumed: pos + room };
      }
      output.set(input.subarray(pos, pos + remaining), out);
      out += remaining;
      pos += remaining;
    } else if (type === 1 || type === 2) {
      let literal: Huffman;
      let distance: Huffman;
      if (type === 1) {
        [literal, distance] = fixedTables();
      } else {
        const hlit = take(5) + 257;
        const hdist = take(5) + 1;
        const hclen = take(4) + 4;
        if (hlit > 286 || hdist > 30) throw corrupt("too many length or distance codes");
        const codeLengths = new Uint8Array(19);
        for (let i = 0; i < hclen; i++) codeLengths[CODE_LENGTH_ORDER[i]] = take(3);
        const lengthCode = buildHuffman(codeLengths, 19);
        const lengths = new Uint8Array(hlit + hdist);
        let i = 0;
        while (i < hlit + hdist) {
          const symbol = decode(lengthCode);
          if (symbol < 16) {
            lengths[i++] = symbol;
            continue;
          }
          let repeat: number;
          let value = 0;
          if (symbol === 16) {
            if (i === 0) throw corrupt("repeat with no previous length");
            value = lengths[i - 1];
            repeat = 3 + take(2);
          } else if (symbol === 17) {
            repeat = 3 + take(3);
          } else {
            repeat = 11 + take(7);
          }
          if (i + repeat > hlit + hdist) throw corrupt("too many code lengths");
          lengths.fill(value, i, i + repeat);
          i += repeat;
        }
        if (lengths[256] === 0) throw corrupt("no end-of-block code");
        literal = buildHuffman(lengths.subarray(0, hlit), hlit);
        distance = buildHuffman(lengths.subarray(hlit), hdist);
      }
      for (;;) {
        const symbol = decode(literal);
        if (symbol < 256) {
          if (out >= outEnd) return { written: out, overflow: true, consumed: pos };
          output[out++] = symbol;
        } else if (symbol === 256) {
          break;
        } else {
          const li = symbol - 257;
          if (li >= 29) throw corrupt("invalid length code");
          const length = LENGTH_BASE[li] + take(LENGTH_EXTRA[li]);
          const di = decode(distance);
          if (di >= 30) throw corrupt("invalid distance code");
          const dist = DIST_BASE[di] + take(DIST_EXTRA[di]);
          if (dist > out) throw corrupt("distance too far back");
          const n = Math.min(length, outEnd - out);
          if (dist >= n) {
            output.copyWithin(out, out - dist, out - dist + n);
            out += n;
          } else {
            for (let k = 0; k < n; k++, out++) output[out] = output[out - dist];
          }
          if (n < length) return { written: out, overflow: true, consumed: pos };
        }
      }
    } else {
      throw corrupt("invalid block type 3");
    }
    if (final) {
      // Give back whole bytes read ahead into the bit buffer.
      return { written: out, overflow: false, consumed: pos - (bitCnt >> 3) };
    }
  }
}

/**
 * Decodes one zlib stream (RFC 1950: header, deflate data, Adler-32) from
 * `input` into `output`, which must be large enough for all of it.
 *
 * @returns The number of bytes written.
 * @throws {SyntaxError} The data is not a valid zlib stream, does not fit, or fails its checksum.
 */
export function inflateZlib(input: Uint8Array, output: Uint8Array): number {
  if (input.length < 6) throw new SyntaxError("Invalid zlib data: the stream ends early");
  const cmf = input[0];
  const flg = input[1];
  if ((cmf & 15) !== 8 || (cmf >> 4) > 7 || ((cmf << 8) | flg) % 31 !== 0) {
    throw new SyntaxError("Invalid zlib data: bad header");
  }
  if (flg & 0x20) throw new SyntaxError("Invalid zlib data: a preset dictionary is not supported");
  const result = inflateRaw(input.subarray(2), output);
  if (result.overflow) {
    throw new SyntaxError(`Invalid zlib data: more than ${output.length} bytes of output`);
  }
  const end = 2 + result.consumed;
  if (end + 4 > input.length) throw new SyntaxError("Invalid zlib data: the stream ends early");
  const expected = ((input[end] << 24) | (input[end + 1] << 16) | (input[end + 2] << 8) |
    input[end + 3]) >>> 0;
  if (adler32(1, output.subarray(0, result.written)) !== expected) {
    throw new SyntaxError("Invalid zlib data: Adler-32 checksum mismatch");
  }
  return result.written;
}
