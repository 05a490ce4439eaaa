/**
 * The compressions `vzdump` writes around an archive (zstd, its default,
 * gzip and lzop), found by their magic bytes: {@linkcode detectCompression}.
 * {@linkcode VmaReader} uses it to undo them itself.
 *
 * @module
 */

/** The compressions `vzdump` writes, and none. */
export type Compression = "none" | "zstd" | "gzip" | "lzop";

/**
 * A decoder of one whole zstd frame, for runtimes without one built in: each
 * frame of the archive goes through a fresh stream from this factory. Deno,
 * Bun and Node 22.15+ need none (node:zlib has zstd).
 */
export type ZstdFrameDecoder = () => TransformStream<Uint8Array, Uint8Array>;

/** Options of {@linkcode VmaReader} about compressed archives. */
export interface DecompressionOptions {
  /** How to decode zstd frames where neither node:zlib nor `DecompressionStream` can. */
  zstd?: ZstdFrameDecoder;
}

const MAGIC: [Compression, number[]][] = [
  ["zstd", [0x28, 0xb5, 0x2f, 0xfd]],
  // A skippable frame first (pzstd writes one before each frame): magic 0x184d2a5?.
  ...Array.from({ length: 16 }, (_, i): [Compression, number[]] => [
    "zstd",
    [0x50 + i, 0x2a, 0x4d, 0x18],
  ]),
  ["gzip", [0x1f, 0x8b]],
  ["lzop", [0x89, 0x4c, 0x5a, 0x4f, 0x00, 0x0d, 0x0a, 0x1a, 0x0a]],
];

/** The most bytes {@linkcode detectCompression} looks at (lzop's magic). */
export const COMPRESSION_MAGIC_SIZE = 9;

/**
 * The compression whose magic `head` (the first bytes of a stream; 9 are
 * enough) starts with, or `"none"` (an uncompressed archive starts `VMA\0`).
 *
 * @example
 * ```ts
 * import { detectCompression } from "@vmakit/vma";
 * import assert from "node:assert/strict";
 *
 * assert.equal(detectCompression(new Uint8Array([0x28, 0xb5, 0x2f, 0xfd, 0])), "zstd");
 * assert.equal(detectCompression(new TextEncoder().encode("VMA\0")), "none");
 * ```
 */
export function detectCompression(head: Uint8Array): Compression {
  for (const [name, magic] of MAGIC) {
    if (head.length >= magic.length && magic.every((b, i) => head[i] === b)) return name;
  }
  return "none";
}
