/**
 * A streaming decoder for `lzop` files (such as vzdump's `.vma.lzo` backups), with an
 * LZO1X decompressor written in plain TypeScript.
 *
 * @module
 */

import { LzopDecoder } from "./_lzop_decoder.ts";

/**
 * Decompresses an `lzop` stream, the format vzdump uses for `.vma.lzo` backups, like
 * the web's `DecompressionStream` does for gzip.
 *
 * Blocks compressed with LZO1X-1, LZO1X-1(15) and LZO1X-999 (every method `lzop` 1.04
 * writes) are decoded, and stored blocks are passed through. The header checksum and
 * every block checksum the header's flags announce (Adler-32 or CRC-32, of the
 * uncompressed and of the compressed data) are verified; a block is emitted only after
 * its checks pass. One chunk is emitted per block (at most 64 MiB, 256 KiB as `lzop`
 * writes them), and only the block being read is held in memory.
 *
 * Several concatenated `lzop` files (members) are decoded one after the other, like
 * `cat a.lzo b.lzo | lzop -dc` does. Anything after an end marker that is not the magic
 * of a further member is rejected as trailing garbage, zero padding included (which
 * `lzop` ignores). Headers with a filter (`F_H_FILTER`) or with flags `lzop` 1.04 does
 * not define are rejected. Original file names, modes and times are not reported.
 *
 * Malformed input errors both sides of the stream with a `SyntaxError` whose message
 * starts with `Invalid lzop stream:`, or a `RangeError` for a block larger than 64 MiB;
 * writing anything but a `Uint8Array` errors it with a `TypeError`. Messages keep
 * `lzop`'s wording where it has one ("header corrupted", "compressed data violation")
 * and name the member and block (counted from 0) and the byte offset in the input of
 * the structure at fault. Errors are sticky, and cancelling or aborting either side
 * propagates to the other, as with any `TransformStream`.
 *
 * Blocks are decoded one at a time as the reader asks for them: however many blocks
 * one written chunk holds, at most one decoded block waits in the stream, so a small
 * input that decodes to gigabytes (a block of zeros compresses ~1000:1) needs no more
 * memory than one block.
 *
 * @example Decompressing a `.vma.lzo` file
 * ```ts ignore
 * import { LzopDecompressionStream } from "@vmakit/vma";
 *
 * using file = await Deno.open("vzdump-qemu-100.vma.lzo");
 * const vma = file.readable.pipeThrough(new LzopDecompressionStream());
 * ```
 *
 * @example Decoding the output of `lzop -c`
 * ```ts
 * import { LzopDecompressionStream } from "@vmakit/vma";
 * import assert from "node:assert/strict";
 *
 * // `printf 'hello\n' | lzop -c -F`: a header, one stored block and the end marker.
 * const lzo = Uint8Array.from([
 *   0x89, 0x4c, 0x5a, 0x4f, 0x00, 0x0d, 0x0a, 0x1a, 0x0a, 0x10, 0x40, 0x20, 0xa0, 0x09,
 *   0x40, 0x01, 0x05, 0x03, 0x00, 0x00, 0x0c, 0x00, 0x00, 0x00, 0x00, 0x6b, 0x05, 0xaf,
 *   0xef, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2d, 0x9c, 0x03, 0x7d, 0x00, 0x00, 0x00, 0x06,
 *   0x00, 0x00, 0x00, 0x06, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x0a, 0x00, 0x00, 0x00, 0x00,
 * ]);
 * const text = await new Response(
 *   new Blob([lzo]).stream().pipeThrough(new LzopDecompressionStream()),
 * ).text();
 * assert.equal(text, "hello\n");
 * ```
 */
export class LzopDecompressionStream implements TransformStream<Uint8Array, Uint8Array> {
  #readable: ReadableStream<Uint8Array<ArrayBuffer>>;
  #writable: WritableStream<Uint8Array>;

  /**
   * Creates a decoder for one `lzop` stream (one or more concatenated members).
   *
   * @returns A stream pair: write `lzop` bytes to `writable`, read the original bytes
   *   from `readable`.
   * @throws Nothing itself; malformed input errors the stream (`SyntaxError`, or
   *   `RangeError` for a block over 64 MiB), and so does a chunk that is not a
   *   `Uint8Array` (`TypeError`).
   *
   * @example Piping a stream through the decoder
   * ```ts
   * import { LzopDecompressionStream } from "@vmakit/vma";
   * import assert from "node:assert/strict";
   *
   * const notLzop = new Blob(["not an lzop file"]).stream();
   * await assert.rejects(
   *   new Response(notLzop.pipeThrough(new LzopDecompressionStream())).bytes(),
   *   { name: "SyntaxError", message: "Invalid lzop stream: not a lzop file (bad magic at offset 0)" },
   * );
   * ```
   */
  constructor() {
    const decoder = new LzopDecoder();
    // A TransformStream would enqueue every block one written chunk completes
    // at once (a 4 MiB chunk of lzop'd zeros is ~900 MiB of blocks); this pair
    // hands over one block at a time and waits for the reader to want more.
    let output!: ReadableStreamDefaultController<Uint8Array<ArrayBuffer>>;
    let input!: WritableStreamDefaultController;
    let wake: (() => void) | undefined;
    /** The reader asked for more since the last block was handed over. */
    let pulled = false;
    let cancelled = false;
    const readable = new ReadableStream<Uint8Array<ArrayBuffer>>({
      start(controller) {
        output = controller;
      },
      pull() {
        pulled = true;
        wake?.();
      },
      cancel(reason) {
        cancelled = true;
        input.error(reason);
        wake?.();
      },
    }, { highWaterMark: 0 });
    const writable = new WritableStream<Uint8Array>({
      start(controller) {
        input = controller;
      },
      async write(chunk) {
        try {
          if (!(chunk instanceof Uint8Array)) {
            throw new TypeError(
              `Cannot decompress a chunk of type "${describe(chunk)}": expected a Uint8Array`,
            );
          }
          for (const block of decoder.push(chunk)) {
            if (cancelled) return;
            pulled = false;
            output.enqueue(block);
            while (!cancelled && !pulled && (output.desiredSize ?? 0) <= 0) {
              await new Promise<void>((resolve) => (wake = resolve));
              wake = undefined;
            }
          }
        } catch (e) {
          output.error(e);
          throw e;
        }
      },
      close() {
        try {
          decoder.finish();
        } catch (e) {
          output.error(e);
          throw e;
        }
        output.close();
      },
      abort(reason) {
        if (!cancelled) output.error(reason);
      },
    });
    this.#readable = readable;
    this.#writable = writable;
  }

  /**
   * The decompressed bytes, one chunk per `lzop` block.
   *
   * @returns The readable side of the decoder.
   *
   * @example Reading the decompressed chunks
   * ```ts
   * import { LzopDecompressionStream } from "@vmakit/vma";
   * import assert from "node:assert/strict";
   *
   * const decoder = new LzopDecompressionStream();
   * assert.ok(decoder.readable instanceof ReadableStream);
   * ```
   */
  get readable(): ReadableStream<Uint8Array<ArrayBuffer>> {
    return this.#readable;
  }

  /**
   * The `lzop` bytes to decompress, in chunks of any size.
   *
   * @returns The writable side of the decoder.
   *
   * @example Writing `lzop` bytes
   * ```ts
   * import { LzopDecompressionStream } from "@vmakit/vma";
   * import assert from "node:assert/strict";
   *
   * const decoder = new LzopDecompressionStream();
   * assert.ok(decoder.writable instanceof WritableStream);
   * ```
   */
  get writable(): WritableStream<Uint8Array> {
    return this.#writable;
  }
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (typeof value === "object") return value.constructor?.name ?? "Object";
  return typeof value;
}
