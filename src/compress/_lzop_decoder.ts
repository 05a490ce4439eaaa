// The incremental lzop parser and LZO1X decompressor behind
// LzopDecompressionStream, and behind the byte stream the archive reader
// decodes `.vma.lzo` into (_decompress.ts). Private to the library.
import { adler32 } from "./_adler32.ts";

const MAGIC = [0x89, 0x4c, 0x5a, 0x4f, 0x00, 0x0d, 0x0a, 0x1a, 0x0a];

/** The largest block `lzop` writes or reads: 64 MiB. */
const MAX_BLOCK_SIZE = 64 * 1024 * 1024;
/** The newest format version this decoder knows (`lzop` 1.04). */
const LZOP_VERSION = 0x1040;

const F_ADLER32_D = 0x1;
const F_ADLER32_C = 0x2;
const F_H_EXTRA_FIELD = 0x40;
const F_CRC32_D = 0x100;
const F_CRC32_C = 0x200;
const F_H_FILTER = 0x800;
const F_H_CRC32 = 0x1000;
/** Flag bits `lzop` 1.04 does not define; a header using them is rejected like `lzop` does. */
const F_RESERVED = ~(0x3fff | 0xff000000 | 0x00f00000) >>> 0;

const METHOD_NAMES: Record<number, string> = { 1: "LZO1X-1", 2: "LZO1X-1(15)", 3: "LZO1X-999" };

// Parser states (plain constants rather than an enum, so the file is erasable TypeScript).
/** Reading a member header (magic included). */
const HEADER = 0;
/** Skipping the optional extra field of a header. */
const EXTRA_FIELD = 1;
/** Reading a block header (lengths and checksums). */
const BLOCK_HEADER = 2;
/** Collecting the compressed bytes of a block. */
const BLOCK_DATA = 3;
/** Between members: after an end marker, before any further magic. */
const BETWEEN = 4;

function hex(value: number, digits = 8): string {
  return "0x" + value.toString(16).padStart(digits, "0");
}

function corrupt(message: string): SyntaxError {
  return new SyntaxError(`Invalid lzop stream: ${message}`);
}

/** The incremental parser behind `LzopDecompressionStream`. */
export class LzopDecoder {
  /**
   * Blocks are decoded into buffers this decoder reuses (grown to the largest
   * block): a yielded block is valid until the generator is resumed. Else
   * every block is a new buffer of its own.
   */
  readonly #reuse: boolean;
  #out: Uint8Array<ArrayBuffer> | undefined;
  #dataBuffer: Uint8Array<ArrayBuffer> | undefined;
  #state = HEADER;
  /** Bytes consumed so far, for messages. */
  #offset = 0;
  /** Header or block-header bytes collected so far. */
  #stage = new Uint8Array(320);
  #staged = 0;
  /** Offset of the structure being collected in `#stage` or `#data`. */
  #start = 0;

  // Current member.
  #member = 0;
  #flags = 0;
  #block = 0;
  #extraLeft = 0;
  #extraSum = 0;
  #extraExpected = 0;

  // Current block.
  #uncompressedLength = 0;
  #compressedLength = 0;
  #sums = new Uint32Array(4);
  #data: Uint8Array<ArrayBuffer> | undefined;
  #dataFilled = 0;

  constructor(options: { reuse?: boolean } = {}) {
    this.#reuse = options.reuse ?? false;
  }

  /** Parses `chunk`, yielding each block it completes as soon as it is decoded and checked. */
  *push(chunk: Uint8Array): Generator<Uint8Array<ArrayBuffer>> {
    let pos = 0;
    const end = chunk.length;
    while (pos < end) {
      switch (this.#state) {
        case BETWEEN: {
          // Anything after an end marker must be the start of another member.
          const byte = chunk[pos];
          if (byte !== MAGIC[0]) {
            throw corrupt(
              `trailing garbage after the end marker (byte ${
                hex(byte, 2)
              } at offset ${this.#offset})`,
            );
          }
          this.#state = HEADER;
          this.#staged = 0;
          this.#start = this.#offset;
          break;
        }
        case HEADER: {
          pos = this.#fill(chunk, pos, this.#headerLength());
          break;
        }
        case EXTRA_FIELD: {
          pos = this.#skipExtra(chunk, pos);
          break;
        }
        case BLOCK_HEADER: {
          if (this.#staged === 0) this.#start = this.#offset;
          pos = this.#fill(chunk, pos, this.#blockHeaderLength());
          break;
        }
        case BLOCK_DATA: {
          const want = this.#compressedLength;
          if (this.#data === undefined && end - pos >= want) {
            // The whole block is in this chunk: no copy.
            const data = chunk.subarray(pos, pos + want);
            pos += want;
            this.#offset += want;
            yield this.#decodeBlock(data, false);
          } else {
            this.#data ??= this.#buffer("data", want);
            const n = Math.min(want - this.#dataFilled, end - pos);
            this.#data.set(chunk.subarray(pos, pos + n), this.#dataFilled);
            this.#dataFilled += n;
            pos += n;
            this.#offset += n;
            if (this.#dataFilled === want) {
              const data = this.#data;
              this.#data = undefined;
              this.#dataFilled = 0;
              yield this.#decodeBlock(data, true);
            }
          }
          break;
        }
      }
    }
  }

  finish(): void {
    switch (this.#state) {
      case BETWEEN:
        return;
      case HEADER:
        if (this.#member === 0 && this.#staged === 0) {
          throw corrupt("unexpected end of stream (the stream is empty)");
        }
        throw corrupt(
          `unexpected end of stream in the header of member ${this.#member} at offset ${this.#offset}`,
        );
      case EXTRA_FIELD:
        throw corrupt(
          `unexpected end of stream in the extra header field of member ${this.#member} at offset ${this.#offset}`,
        );
      case BLOCK_HEADER:
        if (this.#staged === 0) {
          throw corrupt(
            `unexpected end of stream before the end marker of member ${this.#member} (after ${this.#block} blocks, at offset ${this.#offset})`,
          );
        }
        throw corrupt(
          `unexpected end of stream in the header of block ${this.#block} at offset ${this.#offset}`,
        );
      case BLOCK_DATA:
        throw corrupt(
          `unexpected end of stream in block ${this.#block} at offset ${this.#offset} (${this.#dataFilled} of ${this.#compressedLength} compressed bytes)`,
        );
    }
  }

  /**
   * Copies bytes into `#stage` until it holds `need` bytes, then parses what is
   * staged. Returns the new position in `chunk`.
   */
  #fill(chunk: Uint8Array, pos: number, need: number): number {
    const n = Math.min(need - this.#staged, chunk.length - pos);
    if (n > 0) {
      this.#stage.set(chunk.subarray(pos, pos + n), this.#staged);
      this.#staged += n;
      this.#offset += n;
    }
    if (this.#state === HEADER) this.#checkMagic();
    if (this.#staged === need) {
      // The needed length may grow once more fields are known; the caller loops.
      if (this.#state === HEADER && this.#headerLength() === need) this.#parseHeader();
      else if (this.#state === BLOCK_HEADER && this.#blockHeaderLength() === need) {
        this.#parseBlockHeader();
      }
    }
    return pos + n;
  }

  #checkMagic(): void {
    const n = Math.min(this.#staged, MAGIC.length);
    for (let i = 0; i < n; i++) {
      if (this.#stage[i] !== MAGIC[i]) {
        if (this.#member === 0) {
          throw corrupt(`not a lzop file (bad magic at offset ${this.#start})`);
        }
        throw corrupt(
          `trailing garbage after the end marker (no lzop magic at offset ${this.#start})`,
        );
      }
    }
  }

  /** The length of the header as far as the staged bytes tell, checksum included. */
  #headerLength(): number {
    const s = this.#stage;
    let need = 13; // magic, version, library version
    if (this.#staged < need) return need;
    const version = (s[9] << 8) | s[10];
    const newer = version >= 0x0940;
    need += (newer ? 4 : 1) + 4; // [version needed, method, level | method], flags
    if (this.#staged < need) return need;
    const flags = readU32(s, need - 4);
    need += (flags & F_H_FILTER ? 4 : 0) + 8 + (newer ? 4 : 0) + 1; // filter, mode, mtime, name length
    if (this.#staged < need) return need;
    return need + s[need - 1] + 4; // name, checksum
  }

  #parseHeader(): void {
    const s = this.#stage;
    const member = this.#member;
    const at = ` in the header of member ${member} at offset ${this.#start}`;
    const version = (s[9] << 8) | s[10];
    if (version < 0x0900) throw corrupt(`header corrupted (version ${hex(version, 4)})${at}`);
    let p = 13;
    if (version >= 0x0940) {
      const needed = (s[13] << 8) | s[14];
      if (needed > LZOP_VERSION) {
        throw corrupt(
          `this file needs lzop version ${hex(needed, 4)} to extract, newer than ${
            hex(LZOP_VERSION, 4)
          }${at}`,
        );
      }
      if (needed < 0x0900) {
        throw corrupt(`header corrupted (version needed to extract ${hex(needed, 4)})${at}`);
      }
      p += 2;
    }
    const method = s[p];
    p += version >= 0x0940 ? 2 : 1;
    const flags = readU32(s, p);
    const end = this.#staged - 4;
    const expected = readU32(s, end);
    const actual = flags & F_H_CRC32 ? crc32(0, s, 9, end) : adler32(1, s, 9, end);
    if (actual !== expected) {
      throw corrupt(
        `header corrupted (checksum error: ${hex(actual)}, expected ${hex(expected)})${at}`,
      );
    }
    if (!(method in METHOD_NAMES)) throw corrupt(`unknown compression method ${method}${at}`);
    if (flags & F_RESERVED) throw corrupt(`unknown header flags ${hex(flags)}${at}`);
    if (flags & F_H_FILTER) throw corrupt(`filters are not supported (flags ${hex(flags)})${at}`);
    this.#flags = flags;
    this.#block = 0;
    this.#staged = 0;
    if (flags & F_H_EXTRA_FIELD) {
      this.#state = EXTRA_FIELD;
      this.#extraLeft = -1;
      this.#start = this.#offset;
    } else {
      this.#state = BLOCK_HEADER;
    }
  }

  /** Checks the extra header field (length, data, checksum) without keeping it. */
  #skipExtra(chunk: Uint8Array, pos: number): number {
    const end = chunk.length;
    const crc = (this.#flags & F_H_CRC32) !== 0;
    if (this.#extraLeft === -1) {
      // Collect the 4-byte length first.
      pos = this.#stageBytes(chunk, pos, 4);
      if (this.#staged < 4) return pos;
      this.#extraLeft = readU32(this.#stage, 0);
      this.#extraSum = crc ? crc32(0, this.#stage, 0, 4) : adler32(1, this.#stage, 0, 4);
      this.#staged = 0;
    }
    if (this.#extraLeft > 0) {
      const n = Math.min(this.#extraLeft, end - pos);
      this.#extraSum = crc
        ? crc32(this.#extraSum, chunk, pos, pos + n)
        : adler32(this.#extraSum, chunk, pos, pos + n);
      this.#extraLeft -= n;
      this.#offset += n;
      pos += n;
      if (this.#extraLeft > 0) return pos;
    }
    pos = this.#stageBytes(chunk, pos, 4);
    if (this.#staged < 4) return pos;
    this.#extraExpected = readU32(this.#stage, 0);
    if (this.#extraExpected !== this.#extraSum) {
      throw corrupt(
        `header corrupted (extra field checksum error: ${hex(this.#extraSum)}, expected ${
          hex(this.#extraExpected)
        }) in member ${this.#member} at offset ${this.#start}`,
      );
    }
    this.#staged = 0;
    this.#state = BLOCK_HEADER;
    return pos;
  }

  #stageBytes(chunk: Uint8Array, pos: number, need: number): number {
    const n = Math.min(need - this.#staged, chunk.length - pos);
    for (let i = 0; i < n; i++) this.#stage[this.#staged++] = chunk[pos + i];
    this.#offset += n;
    return pos + n;
  }

  /**
   * The length of the block header as far as the staged bytes tell. Checks the
   * lengths as soon as they are staged, so a bad one fails before its checksums arrive.
   */
  #blockHeaderLength(): number {
    if (this.#staged < 4) return 4;
    const s = this.#stage;
    const block = this.#block;
    const at = `at offset ${this.#start}`;
    const uncompressed = readU32(s, 0);
    if (uncompressed === 0) return 4; // end marker
    if (uncompressed === 0xffffffff) {
      throw corrupt(`block ${block} ${at} is a split marker (split lzop files are not supported)`);
    }
    if (uncompressed > MAX_BLOCK_SIZE) {
      throw new RangeError(
        `Invalid lzop stream: block ${block} ${at} has ${uncompressed} uncompressed bytes, more than the ${MAX_BLOCK_SIZE} lzop allows`,
      );
    }
    if (this.#staged < 8) return 8;
    const compressed = readU32(s, 4);
    if (compressed === 0 || compressed > uncompressed) {
      throw corrupt(
        `block ${block} ${at} has ${compressed} compressed bytes for ${uncompressed} uncompressed bytes`,
      );
    }
    const flags = this.#flags;
    let need = 8;
    if (flags & F_ADLER32_D) need += 4;
    if (flags & F_CRC32_D) need += 4;
    if (compressed < uncompressed) {
      if (flags & F_ADLER32_C) need += 4;
      if (flags & F_CRC32_C) need += 4;
    }
    return need;
  }

  /** Takes in a block header whose lengths `#blockHeaderLength` has checked. */
  #parseBlockHeader(): void {
    const s = this.#stage;
    const uncompressed = readU32(s, 0);
    this.#staged = 0;
    if (uncompressed === 0) {
      this.#state = BETWEEN;
      this.#member++;
      return;
    }
    const compressed = readU32(s, 4);
    const flags = this.#flags;
    let p = 8;
    const sums = this.#sums;
    // [adler32 of uncompressed, crc32 of uncompressed, adler32 of compressed, crc32 of compressed]
    if (flags & F_ADLER32_D) sums[0] = readU32(s, (p += 4) - 4);
    if (flags & F_CRC32_D) sums[1] = readU32(s, (p += 4) - 4);
    if (compressed < uncompressed) {
      if (flags & F_ADLER32_C) sums[2] = readU32(s, (p += 4) - 4);
      if (flags & F_CRC32_C) sums[3] = readU32(s, (p += 4) - 4);
    }
    this.#uncompressedLength = uncompressed;
    this.#compressedLength = compressed;
    this.#state = BLOCK_DATA;
  }

  /** Checks and decodes a block's payload; `owned` when `data` is this decoder's own copy. */
  #decodeBlock(data: Uint8Array, owned: boolean): Uint8Array<ArrayBuffer> {
    const flags = this.#flags;
    const sums = this.#sums;
    const block = this.#block;
    const uncompressed = this.#uncompressedLength;
    const stored = data.length === uncompressed;
    if (!stored) {
      if (flags & F_ADLER32_C) this.#verify("adler32", "compressed", sums[2], adler32(1, data));
      if (flags & F_CRC32_C) this.#verify("crc32", "compressed", sums[3], crc32(0, data));
    }
    let out: Uint8Array<ArrayBuffer>;
    if (stored) {
      // Never hand out a view of the caller's chunk, unless blocks are only
      // lent (valid until the caller pushes again).
      out = owned || this.#reuse ? (data as Uint8Array<ArrayBuffer>) : data.slice();
    } else {
      out = this.#buffer("out", uncompressed);
      const result = lzo1xDecompress(data, out);
      if (result !== uncompressed) {
        throw corrupt(
          `compressed data violation in block ${block} at offset ${this.#start} (${
            result < 0
              ? LZO_ERRORS[-result]
              : `decompressed to ${result} bytes, expected ${uncompressed}`
          })`,
        );
      }
    }
    if (flags & F_ADLER32_D) this.#verify("adler32", "uncompressed", sums[0], adler32(1, out));
    if (flags & F_CRC32_D) this.#verify("crc32", "uncompressed", sums[1], crc32(0, out));
    this.#state = BLOCK_HEADER;
    this.#block = block + 1;
    return out;
  }

  /** `length` bytes: a new buffer, or (reusing) a view of the one kept for `which`. */
  #buffer(which: "out" | "data", length: number): Uint8Array<ArrayBuffer> {
    if (!this.#reuse) return new Uint8Array(length);
    let buffer = which === "out" ? this.#out : this.#dataBuffer;
    if (buffer === undefined || buffer.length < length) {
      buffer = new Uint8Array(length);
      if (which === "out") this.#out = buffer;
      else this.#dataBuffer = buffer;
    }
    return buffer.subarray(0, length);
  }

  #verify(kind: string, of: string, expected: number, actual: number): void {
    if (expected !== actual) {
      throw corrupt(
        `checksum mismatch in block ${this.#block} at offset ${this.#start} (${kind} of the ${of} data is ${
          hex(actual)
        }, expected ${hex(expected)})`,
      );
    }
  }
}

function readU32(bytes: Uint8Array, at: number): number {
  return ((bytes[at] << 24) | (bytes[at + 1] << 16) | (bytes[at + 2] << 8) | bytes[at + 3]) >>> 0;
}

// ---------------------------------------------------------------------------
// Checksums

let crcTables: Int32Array | undefined;

/** Slice-by-8 tables for the reflected CRC-32 polynomial 0xEDB88320. */
function makeCrcTables(): Int32Array {
  const tables = new Int32Array(8 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    tables[n] = c;
  }
  for (let n = 0; n < 256; n++) {
    let c = tables[n];
    for (let t = 1; t < 8; t++) {
      c = tables[c & 0xff] ^ (c >>> 8);
      tables[t * 256 + n] = c;
    }
  }
  return tables;
}

/** CRC-32 (as in zlib and `lzop`) of `data[start..end)`, continuing from `crc` (0 for a fresh one). */
function crc32(crc: number, data: Uint8Array, start = 0, end = data.length): number {
  const t = (crcTables ??= makeCrcTables());
  let c = ~crc;
  let i = start;
  for (const stop = end - 8; i <= stop; i += 8) {
    const lo = c ^ (data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24));
    c = t[1792 + (lo & 0xff)] ^ t[1536 + ((lo >>> 8) & 0xff)] ^
      t[1280 + ((lo >>> 16) & 0xff)] ^ t[1024 + (lo >>> 24)] ^
      t[768 + data[i + 4]] ^ t[512 + data[i + 5]] ^ t[256 + data[i + 6]] ^ t[data[i + 7]];
  }
  for (; i < end; i++) c = t[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

// ---------------------------------------------------------------------------
// LZO1X

const LZO_ERRORS = [
  "",
  "input overrun",
  "output overrun",
  "match distance before the start of the block",
  "input not consumed",
];
const E_INPUT_OVERRUN = -1;
const E_OUTPUT_OVERRUN = -2;
const E_LOOKBEHIND_OVERRUN = -3;
const E_INPUT_NOT_CONSUMED = -4;

/** Below this many bytes, a plain loop copies faster than `set`/`copyWithin`. */
const SHORT_COPY = 24;

/**
 * Decompresses one LZO1X block (any of the LZO1X compressors' output) from `src` into
 * `dst`. Returns the number of bytes written when the end-of-stream instruction is
 * reached with all of `src` consumed, or a negative `E_*` code. Every read and write
 * is bounds-checked against `src` and `dst`.
 *
 * The instruction stream alternates literal runs and matches. After each instruction
 * a "state" tells how to read the next opcode below 16: 0 (a match with no trailing
 * literals, or the start) means a literal run; 1 (a match followed by 1-3 literals)
 * means a 2-byte match within 1 KiB; 4 (after a literal run) means a 3-byte match at
 * distance 2049-3072.
 */
function lzo1xDecompress(src: Uint8Array, dst: Uint8Array): number {
  const ipEnd = src.length;
  const opEnd = dst.length;
  let ip = 0;
  let op = 0;
  let state = 0;
  if (ipEnd === 0) return E_INPUT_OVERRUN;
  if (src[0] > 17) {
    // A leading literal run of 1-238 bytes.
    const n = src[0] - 17;
    ip = 1;
    if (ip + n > ipEnd) return E_INPUT_OVERRUN;
    if (n > opEnd) return E_OUTPUT_OVERRUN;
    for (let i = 0; i < n; i++) dst[op++] = src[ip++];
    state = n < 4 ? 1 : 4;
  }
  for (;;) {
    if (ip >= ipEnd) return E_INPUT_OVERRUN;
    let t = src[ip++];
    let len: number;
    let dist: number;
    let trailing: number;
    if (t < 16) {
      if (state === 0) {
        // Literal run of t + 3 bytes; t = 0 extends the length byte by byte.
        if (t === 0) {
          while (ip < ipEnd && src[ip] === 0) {
            t += 255;
            ip++;
            if (t > opEnd) return E_OUTPUT_OVERRUN;
          }
          if (ip >= ipEnd) return E_INPUT_OVERRUN;
          t += 15 + src[ip++];
        }
        len = t + 3;
        if (ip + len > ipEnd) return E_INPUT_OVERRUN;
        if (op + len > opEnd) return E_OUTPUT_OVERRUN;
        if (len < SHORT_COPY) {
          for (const e = ip + len; ip < e;) dst[op++] = src[ip++];
        } else {
          dst.set(src.subarray(ip, ip + len), op);
          ip += len;
          op += len;
        }
        state = 4;
        continue;
      }
      // M1: a short match whose kind depends on what came before.
      if (ip >= ipEnd) return E_INPUT_OVERRUN;
      dist = 1 + (t >> 2) + (src[ip++] << 2);
      if (state === 4) {
        dist += 2048;
        len = 3;
      } else {
        len = 2;
      }
      trailing = t & 3;
    } else if (t >= 64) {
      // M2: 3-8 bytes within 2 KiB.
      if (ip >= ipEnd) return E_INPUT_OVERRUN;
      dist = 1 + ((t >> 2) & 7) + (src[ip++] << 3);
      len = (t >> 5) + 1;
      trailing = t & 3;
    } else {
      let ext: number;
      let lenMask: number;
      if (t >= 32) {
        // M3: within 16 KiB.
        lenMask = 31;
        ext = 31;
      } else {
        // M4: 16 KiB to 48 KiB away, or the end of the stream.
        lenMask = 7;
        ext = 7;
      }
      len = t & lenMask;
      if (len === 0) {
        while (ip < ipEnd && src[ip] === 0) {
          len += 255;
          ip++;
          if (len > opEnd) return E_OUTPUT_OVERRUN;
        }
        if (ip >= ipEnd) return E_INPUT_OVERRUN;
        len += ext + src[ip++];
      }
      len += 2;
      if (ip + 2 > ipEnd) return E_INPUT_OVERRUN;
      const d = src[ip] | (src[ip + 1] << 8);
      ip += 2;
      trailing = d & 3;
      if (t >= 32) {
        dist = 1 + (d >> 2);
      } else {
        dist = ((t & 8) << 11) + (d >> 2);
        if (dist === 0) {
          // End of stream.
          if (ip < ipEnd) return E_INPUT_NOT_CONSUMED;
          return op;
        }
        dist += 0x4000;
      }
    }
    // Copy the match.
    let from = op - dist;
    if (from < 0) return E_LOOKBEHIND_OVERRUN;
    if (op + len > opEnd) return E_OUTPUT_OVERRUN;
    if (len < SHORT_COPY) {
      for (const e = op + len; op < e;) dst[op++] = dst[from++];
    } else if (dist >= len) {
      dst.copyWithin(op, from, from + len);
      op += len;
    } else if (dist === 1) {
      dst.fill(dst[from], op, op + len);
      op += len;
    } else {
      // Overlapping: the `dist` bytes before `op` repeat. Copy the pattern in growing
      // non-overlapping chunks, each a whole number of periods long.
      const e = op + len;
      while (op < e) {
        const n = Math.min(op - from, e - op);
        dst.copyWithin(op, from, from + n);
        op += n;
      }
    }
    // Copy 0-3 trailing literals.
    if (trailing === 0) {
      state = 0;
    } else {
      if (ip + trailing > ipEnd) return E_INPUT_OVERRUN;
      if (op + trailing > opEnd) return E_OUTPUT_OVERRUN;
      dst[op++] = src[ip++];
      if (trailing > 1) {
        dst[op++] = src[ip++];
        if (trailing > 2) dst[op++] = src[ip++];
      }
      state = 1;
    }
  }
}
