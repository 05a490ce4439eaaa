import assert from "node:assert/strict";
import { zstdCompressSync, zstdDecompressSync } from "node:zlib";
import {
  MAX_BLOCKS_PER_PIECE,
  type ZstdFramePiece,
  ZstdFrameScanner,
} from "../../src/compress/_zstd_frames.ts";
import { knownData } from "../_disk_image_helpers.ts";
import { concat } from "../_craft.ts";

const zstd = (bytes: Uint8Array) => new Uint8Array(zstdCompressSync(bytes));

function skippable(size: number, nibble: number): Uint8Array {
  const frame = new Uint8Array(8 + size).fill(0x28);
  new DataView(frame.buffer).setUint32(0, 0x184d2a50 + nibble, true);
  new DataView(frame.buffer).setUint32(4, size, true);
  return frame;
}

/** Feeds `stream` in chunks of `chunk` bytes; returns each frame's bytes and the pieces. */
function scan(stream: Uint8Array, chunk: number): { frames: Uint8Array[]; pieces: number } {
  const scanner = new ZstdFrameScanner();
  const frames: Uint8Array[] = [];
  let current: Uint8Array[] = [];
  let pieces = 0;
  const take = (piece: ZstdFramePiece) => {
    pieces++;
    current.push(piece.bytes.slice());
    if (piece.end) {
      frames.push(concat(...current));
      current = [];
    }
  };
  for (let at = 0; at < stream.length; at += chunk) {
    scanner.push(stream.subarray(at, at + chunk)).forEach(take);
  }
  scanner.finish();
  assert.equal(current.length, 0);
  assert.equal(scanner.frames, frames.length);
  return { frames, pieces };
}

Deno.test("ZstdFrameScanner splits frames apart for every chunking, dropping skippable frames", () => {
  const a = zstd(knownData(300000, 1));
  const b = zstd(new Uint8Array(0));
  const c = zstd(new Uint8Array(5 << 20).fill(7)); // RLE blocks
  const stream = concat(skippable(3, 0), a, skippable(0, 15), b, c, skippable(70000, 9));
  for (const chunk of [1, 2, 3, 7, 511, 4096, 65536, stream.length]) {
    const { frames } = scan(stream, chunk);
    assert.deepEqual(frames, [a, b, c], `chunks of ${chunk}`);
  }
  assert.deepEqual(new Uint8Array(zstdDecompressSync(c)), new Uint8Array(5 << 20).fill(7));
});

/** The blocks of a single frame, counted from its block headers (RFC 8878 3.1.1.2). */
function countBlocks(frame: Uint8Array): number {
  const d = frame[4];
  const single = (d & 0x20) !== 0;
  let at = 5 + (single ? 0 : 1) + [0, 1, 2, 4][d & 3] + [single ? 1 : 0, 2, 4, 8][d >> 6];
  for (let blocks = 1;; blocks++) {
    const h = frame[at] | (frame[at + 1] << 8) | (frame[at + 2] << 16);
    at += 3 + (((h >> 1) & 3) === 1 ? 1 : h >>> 3);
    if (h & 1) return blocks;
  }
}

Deno.test("ZstdFrameScanner cuts a frame into pieces of at most MAX_BLOCKS_PER_PIECE blocks", () => {
  // 64 MiB of one byte: 512 RLE blocks of 128 KiB, 4 bytes each.
  const bomb = zstd(new Uint8Array(64 << 20).fill(1));
  assert.ok(bomb.length < 4096, `${bomb.length} bytes`);
  const { frames, pieces } = scan(bomb, bomb.length);
  assert.deepEqual(frames, [bomb]);
  // The magic, then a piece per 32 blocks.
  const blocks = countBlocks(bomb);
  assert.ok(blocks >= 512, `${blocks} blocks`);
  assert.equal(pieces, 1 + Math.ceil(blocks / MAX_BLOCKS_PER_PIECE));
});

Deno.test("ZstdFrameScanner rejects a stream cut inside a frame or a skippable frame", () => {
  const frame = zstd(knownData(1000, 2));
  for (
    const [stream, message] of [
      [
        frame.subarray(0, 3),
        "the input ends inside a frame: 3 bytes, the frame at offset 0 is cut short",
      ],
      [
        frame.subarray(0, frame.length - 1),
        `the input ends inside a frame: ${
          frame.length - 1
        } bytes, the frame at offset 0 is cut short`,
      ],
      [
        skippable(10, 1).subarray(0, 17),
        "the input ends inside a frame: 17 bytes, the frame at offset 0 is cut short",
      ],
    ] as const
  ) {
    const scanner = new ZstdFrameScanner();
    scanner.push(stream);
    assert.throws(() => scanner.finish(), { name: "SyntaxError", message });
  }
});
