// Splits a zstd stream (RFC 8878) into its frames without decoding them, so
// that a decoder which stops after one frame (Deno 2.9's node:zlib zstd
// stream) can be given each frame in turn, as `zstd -dc` decodes them all.
// Skippable frames (pzstd writes one before each frame) are dropped; anything
// else that is not a frame is an error, as it is for `zstd -dc`.
//
// It also bounds what one piece can decode to: a piece ends after
// MAX_BLOCKS_PER_PIECE blocks, and a block decodes to at most 128 KiB, so a
// caller that waits for each piece's output before writing the next holds at
// most a few MiB however well the input compresses.

/** Blocks per piece: 32 blocks decode to at most 4 MiB. */
export const MAX_BLOCKS_PER_PIECE = 32;
/** The largest window `zstd -d` accepts without `--long` (window log 27). */
export const MAX_WINDOW_SIZE = 1 << 27;
/** RFC 8878 3.1.1.2.4: Block_Maximum_Size. */
const MAX_BLOCK_SIZE = 128 * 1024;

const FRAME_MAGIC = 0xfd2fb528;

/** Consecutive bytes of one zstd frame; `end` marks the frame's last piece. */
export interface ZstdFramePiece {
  readonly bytes: Uint8Array;
  readonly end: boolean;
}

// Parser states (plain constants rather than an enum, so the file is erasable TypeScript).
/** Reading the 4-byte magic of the next frame. */
const MAGIC = 0;
/** Reading a skippable frame's 4-byte size. */
const SKIP_SIZE = 1;
/** Skipping a skippable frame's data. */
const SKIP = 2;
/** Reading the frame header (descriptor, window, dictionary id, content size). */
const HEADER = 3;
/** Reading a 3-byte block header. */
const BLOCK_HEADER = 4;
/** Passing a block's content through. */
const BLOCK = 5;
/** Reading the 4-byte content checksum. */
const CHECKSUM = 6;

const hex = (n: number) => `0x${n.toString(16).padStart(8, "0")}`;

const MAGIC_BYTES = new Uint8Array([0x28, 0xb5, 0x2f, 0xfd]);

const u32le = (b: Uint8Array, o: number): number =>
  (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0;

/**
 * A push parser over a zstd stream: {@linkcode push} returns the frame pieces
 * a chunk holds (views into the chunk), {@linkcode finish} checks that the
 * stream did not end inside a frame. Errors are `SyntaxError`s naming the
 * offset in the compressed stream, or a `RangeError` for a window larger than
 * `zstd -d` accepts.
 */
export class ZstdFrameScanner {
  #state: number = MAGIC;
  /** The current small field (magic, size, header, block header) as read so far. */
  #field = new Uint8Array(16);
  #fieldLength = 0;
  /** Bytes the current field needs. */
  #need = 4;
  /** Bytes left to skip (skippable frame) or pass on (block content). */
  #left = 0;
  #lastBlock = false;
  #checksum = false;
  #singleSegment = false;
  /** Blocks in the current piece. */
  #blocks = 0;
  /** Offset of the next byte in the whole compressed stream. */
  #offset = 0;
  /** Offset of the current frame's magic. */
  #frameOffset = 0;
  #frames = 0;

  /** Frames seen so far (skippable ones not counted). */
  get frames(): number {
    return this.#frames;
  }

  /** The frame pieces in `chunk`, in order. */
  push(chunk: Uint8Array): ZstdFramePiece[] {
    const pieces: ZstdFramePiece[] = [];
    const inFrame = this.#state !== MAGIC && this.#state !== SKIP_SIZE &&
      this.#state !== SKIP;
    let start = inFrame ? 0 : -1; // where the piece being gathered starts, -1 for none
    let i = 0;
    const cut = (end: boolean) => {
      if (i > start || end) pieces.push({ bytes: chunk.subarray(start, i), end });
      start = end ? -1 : i;
    };
    while (i < chunk.length) {
      if (this.#state === SKIP || this.#state === BLOCK) {
        const n = Math.min(this.#left, chunk.length - i);
        i += n;
        this.#left -= n;
        this.#offset += n;
        if (this.#left > 0) continue;
        if (this.#state === SKIP) this.#expect(MAGIC, 4);
        else this.#blockDone(cut);
        continue;
      }
      // A small field: gather it byte by byte (it may straddle chunks).
      this.#field[this.#fieldLength++] = chunk[i++];
      this.#offset++;
      if (this.#fieldLength < this.#need) continue;
      if (this.#state === MAGIC) {
        const magic = u32le(this.#field, 0);
        if (magic === FRAME_MAGIC) {
          this.#frames++;
          this.#frameOffset = this.#offset - 4;
          pieces.push({ bytes: MAGIC_BYTES, end: false });
          start = i;
          this.#expect(HEADER, 1);
        } else if ((magic & 0xfffffff0) === 0x184d2a50) {
          this.#expect(SKIP_SIZE, 4);
        } else {
          throw new SyntaxError(
            `unknown frame magic ${hex(magic)} at offset ${this.#offset - 4} (not zstd data)`,
          );
        }
      } else if (this.#state === SKIP_SIZE) {
        this.#left = u32le(this.#field, 0);
        if (this.#left === 0) this.#expect(MAGIC, 4);
        else this.#state = SKIP;
      } else if (this.#state === HEADER) {
        if (this.#fieldLength === 1) {
          // The descriptor says how long the rest of the header is.
          const d = this.#field[0];
          if (d & 0x08) {
            throw new SyntaxError(
              `reserved bit set in the frame header at offset ${this.#offset - 1}`,
            );
          }
          this.#singleSegment = (d & 0x20) !== 0;
          this.#checksum = (d & 0x04) !== 0;
          this.#need = 1 + (this.#singleSegment ? 0 : 1) + [0, 1, 2, 4][d & 3] +
            [this.#singleSegment ? 1 : 0, 2, 4, 8][d >> 6];
          if (this.#fieldLength < this.#need) continue;
        }
        this.#checkWindow();
        this.#blocks = 0;
        this.#expect(BLOCK_HEADER, 3);
      } else if (this.#state === BLOCK_HEADER) {
        const f = this.#field;
        const h = f[0] | (f[1] << 8) | (f[2] << 16);
        const type = (h >> 1) & 3;
        const size = h >>> 3;
        const at = this.#offset - 3;
        if (type === 3) throw new SyntaxError(`reserved block type at offset ${at}`);
        if (size > MAX_BLOCK_SIZE) {
          throw new SyntaxError(
            `block of ${size} bytes at offset ${at} is larger than ${MAX_BLOCK_SIZE}`,
          );
        }
        this.#lastBlock = (h & 1) !== 0;
        this.#left = type === 1 ? 1 : size;
        this.#blocks++;
        if (this.#left > 0) this.#state = BLOCK;
        else this.#blockDone(cut);
      } else {
        // CHECKSUM: the frame is complete.
        this.#expect(MAGIC, 4);
        cut(true);
      }
    }
    if (start >= 0) cut(false);
    return pieces;
  }

  /** Throws when the stream ended inside a frame. */
  finish(): void {
    if (this.#state !== MAGIC || this.#fieldLength !== 0) {
      throw new SyntaxError(
        `the input ends inside a frame: ${this.#offset} bytes, the frame at offset ${this.#frameOffset} is cut short`,
      );
    }
  }

  #expect(state: number, need: number): void {
    this.#state = state;
    this.#need = need;
    this.#fieldLength = 0;
  }

  /** After a block: the next block (in a new piece every MAX_BLOCKS_PER_PIECE), the checksum or the frame's end. */
  #blockDone(cut: (end: boolean) => void): void {
    if (!this.#lastBlock) {
      this.#expect(BLOCK_HEADER, 3);
      if (this.#blocks >= MAX_BLOCKS_PER_PIECE) {
        this.#blocks = 0;
        cut(false);
      }
    } else if (this.#checksum) {
      this.#expect(CHECKSUM, 4);
    } else {
      this.#expect(MAGIC, 4);
      cut(true);
    }
  }

  /** Refuses a window `zstd -d` refuses (without `--long`): field[0] is the descriptor. */
  #checkWindow(): void {
    const f = this.#field;
    const d = f[0];
    let window: number;
    if (this.#singleSegment) {
      // No window descriptor: the window is the content size.
      const fcsSize = [1, 2, 4, 8][d >> 6];
      const at = 1 + [0, 1, 2, 4][d & 3];
      let size = 0;
      for (let k = fcsSize - 1; k >= 0; k--) size = size * 256 + f[at + k];
      window = fcsSize === 2 ? size + 256 : size;
    } else {
      const base = 2 ** (10 + (f[1] >> 3));
      window = base + (base / 8) * (f[1] & 7);
    }
    if (window > MAX_WINDOW_SIZE) {
      throw new RangeError(
        `the frame at offset ${this.#frameOffset} needs a ${window}-byte window, more than ${MAX_WINDOW_SIZE} (zstd's default limit)`,
      );
    }
  }
}
