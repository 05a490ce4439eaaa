import assert from "node:assert/strict";
import { pseudoRandom } from "../_helpers.ts";
import fc from "npm:fast-check@^4.3.0";
import { LzopDecompressionStream } from "../../src/compress/lzop_decompression_stream.ts";
import { concat } from "../_craft.ts";

const testdata = new URL("../testdata/", import.meta.url);

// ---------------------------------------------------------------------------
// Helpers

async function hasLzop(): Promise<boolean> {
  try {
    const { success } = await new Deno.Command("lzop", { args: ["--version"], stdout: "null" })
      .output();
    return success;
  } catch {
    return false;
  }
}

const lzopAvailable = await hasLzop();
if (!lzopAvailable) {
  console.warn(
    "lzop_decompression_stream_test: `lzop` is not installed (apt-get install lzop); " +
      "skipping the tests that compress with it",
  );
}
const needsLzop = { ignore: !lzopAvailable };

/** Compresses `data` with the real `lzop` and the given options. */
async function lzop(data: Uint8Array, ...args: string[]): Promise<Uint8Array<ArrayBuffer>> {
  const child = new Deno.Command("lzop", {
    args: ["-c", ...args],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  const [output] = await Promise.all([
    child.output(),
    writer.write(data).then(() => writer.close()),
  ]);
  assert.ok(output.success, new TextDecoder().decode(output.stderr));
  return output.stdout;
}

/** Feeds `input` through a fresh decoder in chunks of `chunkSize` bytes. */
function decode(input: Uint8Array, chunkSize = input.length || 1): Promise<Uint8Array> {
  return new Response(chunked(input, chunkSize).pipeThrough(new LzopDecompressionStream()))
    .bytes();
}

/** A stream of `input` in chunks of `chunkSize` bytes (copies, so nothing aliases). */
function chunked(input: Uint8Array, chunkSize: number): ReadableStream<Uint8Array> {
  let pos = 0;
  return new ReadableStream({
    pull(controller) {
      if (pos >= input.length) return controller.close();
      controller.enqueue(input.slice(pos, pos + chunkSize));
      pos += chunkSize;
    },
  });
}

/** Asserts that decoding `input` rejects with exactly this class and message. */
async function rejectsWith(
  input: Uint8Array,
  errorClass: ErrorConstructor | SyntaxErrorConstructor | RangeErrorConstructor,
  message: string,
  chunkSize?: number,
): Promise<void> {
  await assert.rejects(decode(input, chunkSize), (error: unknown) => {
    assert.ok(error instanceof errorClass, `expected ${errorClass.name}, got ${error}`);
    assert.equal(error.constructor, errorClass);
    assert.equal((error as Error).message, message);
    return true;
  });
}

function text(s: string): Uint8Array {
  return new TextEncoder().encode(s);
}

/** Deterministic pseudo-random bytes (xorshift32, from the shared test helpers). */
function random(length: number, seed = 1): Uint8Array {
  return pseudoRandom(length, seed);
}

function repeat(pattern: Uint8Array, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = pattern[i % pattern.length];
  return out;
}

// Straightforward checksums, independent of the ones under test.
function adler32(data: Uint8Array): number {
  let a = 1;
  let b = 0;
  for (const byte of data) {
    a = (a + byte) % 65521;
    b = (b + a) % 65521;
  }
  return ((b << 16) | a) >>> 0;
}

function crc32(data: Uint8Array): number {
  let c = 0xffffffff;
  for (const byte of data) {
    c ^= byte;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

function hex(value: number): string {
  return "0x" + value.toString(16).padStart(8, "0");
}

function u32(value: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, value);
  return out;
}

function u16(value: number): Uint8Array {
  return Uint8Array.of(value >> 8, value & 0xff);
}

const MAGIC = Uint8Array.of(0x89, 0x4c, 0x5a, 0x4f, 0x00, 0x0d, 0x0a, 0x1a, 0x0a);
const F_ADLER32_D = 0x1;
const F_ADLER32_C = 0x2;
const F_H_EXTRA_FIELD = 0x40;
const F_CRC32_D = 0x100;
const F_CRC32_C = 0x200;
const F_H_FILTER = 0x800;
const F_H_CRC32 = 0x1000;
const OS_UNIX = 0x03000000;

interface HeaderOptions {
  version?: number;
  needed?: number;
  method?: number;
  flags?: number;
  name?: string;
  checksum?: number;
  extra?: Uint8Array;
  extraChecksum?: number;
}

/** An lzop member header laid out as `lzop` 1.04 writes it (or older, by `version`). */
function header(options: HeaderOptions = {}): Uint8Array<ArrayBuffer> {
  const version = options.version ?? 0x1040;
  const flags = options.flags ?? (OS_UNIX | F_ADLER32_D);
  const name = text(options.name ?? "");
  const newer = version >= 0x0940;
  const fields = concat(
    u16(version),
    u16(0x20a0),
    newer ? u16(options.needed ?? 0x0940) : new Uint8Array(0),
    Uint8Array.of(options.method ?? 1),
    newer ? Uint8Array.of(5) : new Uint8Array(0),
    u32(flags),
    flags & F_H_FILTER ? u32(1) : new Uint8Array(0),
    u32(0o100644),
    u32(0),
    newer ? u32(0) : new Uint8Array(0),
    Uint8Array.of(name.length),
    name,
  );
  const sum = flags & F_H_CRC32 ? crc32(fields) : adler32(fields);
  let extra = new Uint8Array(0);
  if (flags & F_H_EXTRA_FIELD) {
    const field = concat(u32(options.extra?.length ?? 0), options.extra ?? new Uint8Array(0));
    const extraSum = flags & F_H_CRC32 ? crc32(field) : adler32(field);
    extra = concat(field, u32(options.extraChecksum ?? extraSum));
  }
  return concat(MAGIC, fields, u32(options.checksum ?? sum), extra);
}

interface BlockOptions {
  /** The uncompressed bytes. */
  data: Uint8Array;
  /** The LZO1X payload; the block is stored when omitted. */
  lzo?: Uint8Array;
  flags?: number;
  uncompressedLength?: number;
  compressedLength?: number;
  /** Replaces the checksums: [adler32 of data, crc32 of data, adler32 of payload, crc32 of payload]. */
  sums?: (number | undefined)[];
}

/** One lzop block: lengths, the checksums `flags` ask for, payload. */
function block(options: BlockOptions): Uint8Array<ArrayBuffer> {
  const flags = options.flags ?? (OS_UNIX | F_ADLER32_D);
  const payload = options.lzo ?? options.data;
  const sums = options.sums ?? [];
  const parts = [
    u32(options.uncompressedLength ?? options.data.length),
    u32(options.compressedLength ?? payload.length),
  ];
  if (flags & F_ADLER32_D) parts.push(u32(sums[0] ?? adler32(options.data)));
  if (flags & F_CRC32_D) parts.push(u32(sums[1] ?? crc32(options.data)));
  if (payload.length < options.data.length) {
    if (flags & F_ADLER32_C) parts.push(u32(sums[2] ?? adler32(payload)));
    if (flags & F_CRC32_C) parts.push(u32(sums[3] ?? crc32(payload)));
  }
  return concat(...parts, payload);
}

const END = u32(0);

// Hand-written LZO1X streams. "ab" as a leading literal run (17 + 2), then an M3 match
// of 30 bytes at distance 2 (opcode 32 | (30 - 2), distance bytes ((2 - 1) << 2, 0)),
// then the end-of-stream instruction 0x11 0x00 0x00.
const ABAB = repeat(text("ab"), 32);
const ABAB_LZO = Uint8Array.of(19, 0x61, 0x62, 60, 4, 0, 0x11, 0, 0);

// ---------------------------------------------------------------------------
// Round trips against Debian's lzop

const BLOCK = 256 * 1024;
const shapes: [string, Uint8Array][] = [
  ["empty", new Uint8Array(0)],
  ["1 byte", Uint8Array.of(0x2a)],
  ["3 bytes", text("abc")],
  ["a run of zeros (1 MiB)", new Uint8Array(1024 * 1024)],
  ["a run of one letter", repeat(text("a"), 300_000)],
  ["a run of 0xff (the largest adler32 sums)", new Uint8Array(600_000).fill(0xff)],
  ["a 3-byte pattern", repeat(text("xyz"), 100_000)],
  ["random bytes", random(200_000)],
  ["text", repeat(text("Proxmox VE writes VMA backups; vzdump compresses them. "), 150_000)],
  ["one block less a byte", random(BLOCK - 1, 7)],
  ["exactly one block", repeat(random(1000, 3), BLOCK)],
  ["one block and a byte", repeat(random(5000, 4), BLOCK + 1)],
  [
    "random, zeros and text mixed over three blocks",
    concat(random(100_000, 9), new Uint8Array(300_000), repeat(text("disk "), 200_000)),
  ],
];

const variants: string[][] = [
  ["-1"],
  ["-9"],
  ["-3", "-CC"], // adler32 of uncompressed and compressed data
  ["-1", "--crc32"], // crc32 header and uncompressed data
  ["-1", "--crc32", "-CC"], // crc32 of both
  ["-1", "-F"], // no block checksums
  ["-7", "--crc32", "-F"], // LZO1X-999, crc32 header only
  ["-2"],
];

for (const options of variants) {
  Deno.test({
    name: `LzopDecompressionStream round-trips lzop ${options.join(" ")} for every data shape`,
    ...needsLzop,
    async fn() {
      for (const [shape, data] of shapes) {
        if (options.includes("-9") && data.length > 300_000) continue; // -9 is slow
        const compressed = await lzop(data, ...options);
        const output = await decode(compressed);
        assert.equal(output.length, data.length, shape);
        assert.deepEqual(output, data, shape);
      }
    },
  });
}

Deno.test({
  name: "LzopDecompressionStream gives the same output for every input chunking",
  ...needsLzop,
  async fn() {
    const data = concat(random(70_000, 5), new Uint8Array(200_000), repeat(text("ab"), 40_000));
    for (const options of [["-1", "-CC"], ["-9", "--crc32", "-CC"]]) {
      const compressed = await lzop(data, ...options);
      for (const size of [1, 2, 3, 7, 13, 64, 4093, 65536, 100_001, compressed.length]) {
        assert.deepEqual(await decode(compressed, size), data, `${options} in ${size}-byte chunks`);
      }
    }
  },
});

Deno.test({
  name: "LzopDecompressionStream round-trips arbitrary data through lzop in arbitrary chunks",
  ...needsLzop,
  async fn() {
    const piece = fc.oneof(
      fc.uint8Array({ maxLength: 3000 }),
      fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 1, max: 70_000 }))
        .map(([byte, n]) => new Uint8Array(n).fill(byte)),
      fc.tuple(fc.uint8Array({ minLength: 1, maxLength: 40 }), fc.integer({ min: 0, max: 50_000 }))
        .map(([pattern, n]) => repeat(pattern, n)),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.array(piece, { maxLength: 12 }),
        fc.constantFrom(["-1"], ["-5", "-CC"], ["-1", "--crc32", "-CC"], ["-8"]),
        fc.integer({ min: 1, max: 70_000 }),
        async (pieces, options, chunkSize) => {
          const data = concat(...pieces);
          const output = await decode(await lzop(data, ...options), chunkSize);
          assert.deepEqual(output, data);
        },
      ),
      { numRuns: 40 },
    );
  },
});

Deno.test("LzopDecompressionStream decompresses the vzdump fixture to its gzip twin", async () => {
  const lzo = await Deno.readFile(new URL("small.vma.lzo", testdata));
  const gz = await Deno.readFile(new URL("small.vma.gz", testdata));
  const fromGzip = await new Response(
    new Blob([gz]).stream().pipeThrough(new DecompressionStream("gzip")),
  ).bytes();
  assert.equal(fromGzip.length, 2184704);
  for (const size of [65536, 1000, lzo.length]) {
    assert.deepEqual(await decode(lzo, size), fromGzip);
  }
  // The fixture is lzop 1.04 output: LZO1X-1, adler32 of the uncompressed data.
  assert.deepEqual(lzo.subarray(0, 9), MAGIC);
  assert.equal(lzo[15], 1);
});

Deno.test("LzopDecompressionStream decompresses the fixture read from a file stream", async () => {
  using file = await Deno.open(new URL("small.vma.lzo", testdata));
  const output = await new Response(file.readable.pipeThrough(new LzopDecompressionStream()))
    .bytes();
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", output));
  assert.equal(
    Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join(""),
    "b8bfc81d5537b46fb02084aaae94f77e52726f4c8ff5a35ef88918149cf94fa8",
  );
});

Deno.test({
  name: "LzopDecompressionStream emits one chunk per block",
  ...needsLzop,
  async fn() {
    const data = random(2 * BLOCK + 1000, 11);
    const stream = new Blob([await lzop(data, "-1")]).stream()
      .pipeThrough(new LzopDecompressionStream());
    const sizes = [];
    for await (const chunk of stream) sizes.push(chunk.length);
    assert.deepEqual(sizes, [BLOCK, BLOCK, 1000]);
  },
});

Deno.test("LzopDecompressionStream decodes hand-built members and blocks", async () => {
  // A compressed block, a stored block, and an empty member after the first one.
  const first = concat(
    header({ name: "x.vma" }),
    block({ data: ABAB, lzo: ABAB_LZO }),
    block({ data: text("tail") }),
    END,
  );
  const second = concat(header(), END);
  assert.deepEqual(await decode(concat(first, second)), concat(ABAB, text("tail")));
  assert.deepEqual(await decode(concat(first, second), 1), concat(ABAB, text("tail")));
});

Deno.test("LzopDecompressionStream checks adler32 and crc32 together when both are flagged", async () => {
  const flags = OS_UNIX | F_ADLER32_D | F_CRC32_D | F_ADLER32_C | F_CRC32_C;
  const lzo = concat(
    header({ flags }),
    block({ data: ABAB, lzo: ABAB_LZO, flags }),
    block({ data: text("stored"), flags }),
    END,
  );
  assert.deepEqual(await decode(lzo), concat(ABAB, text("stored")));
  await rejectsWith(
    concat(header({ flags }), block({ data: ABAB, lzo: ABAB_LZO, flags, sums: [, , , 7] }), END),
    SyntaxError,
    `Invalid lzop stream: checksum mismatch in block 0 at offset 38 (crc32 of the compressed data is ${
      hex(crc32(ABAB_LZO))
    }, expected 0x00000007)`,
  );
});

Deno.test("LzopDecompressionStream accepts headers of lzop versions before 0.94", async () => {
  const lzo = concat(header({ version: 0x0920 }), block({ data: text("old") }), END);
  assert.deepEqual(await decode(lzo), text("old"));
});

Deno.test("LzopDecompressionStream checks and skips the extra header field", async () => {
  const flags = OS_UNIX | F_ADLER32_D | F_H_EXTRA_FIELD;
  const extra = random(1000, 2);
  const lzo = concat(header({ flags, extra }), block({ data: text("x") }), END);
  assert.deepEqual(await decode(lzo), text("x"));
  assert.deepEqual(await decode(lzo, 1), text("x"));
  const crcFlags = flags | F_H_CRC32;
  assert.deepEqual(
    await decode(concat(header({ flags: crcFlags, extra }), block({ data: text("y") }), END), 3),
    text("y"),
  );
  await rejectsWith(
    concat(header({ flags, extra, extraChecksum: 1 }), block({ data: text("x") }), END),
    SyntaxError,
    `Invalid lzop stream: header corrupted (extra field checksum error: ${
      hex(adler32(concat(u32(1000), extra)))
    }, expected 0x00000001) in member 0 at offset 38`,
  );
});

Deno.test("LzopDecompressionStream reads only as far ahead as the consumer pulls", async () => {
  const data = random(20 * BLOCK, 13);
  const lzo = concat(header({ flags: OS_UNIX }), ...chunks(data, BLOCK), END);
  let pulls = 0;
  let pos = 0;
  let cancelled: unknown;
  const source = new ReadableStream<Uint8Array>({
    pull(controller) {
      pulls++;
      if (pos >= lzo.length) return controller.close();
      controller.enqueue(lzo.slice(pos, pos + 65536));
      pos += 65536;
    },
    cancel(reason) {
      cancelled = reason;
    },
  }, { highWaterMark: 0 });
  const reader = source.pipeThrough(new LzopDecompressionStream()).getReader();
  const first = await reader.read();
  assert.equal(first.value?.length, BLOCK);
  for (let i = 0; i < 20; i++) await new Promise((resolve) => setTimeout(resolve, 0));
  // One block is 4 chunks; the pipe may hold a block or so more, but never the whole input.
  assert.ok(pulls <= 12, `pulled ${pulls} chunks of ${Math.ceil(lzo.length / 65536)}`);
  await reader.cancel("enough");
  for (let i = 0; i < 20 && cancelled === undefined; i++) {
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  assert.equal(cancelled, "enough");

  function* chunks(bytes: Uint8Array, size: number): Generator<Uint8Array> {
    for (let i = 0; i < bytes.length; i += size) {
      yield block({ data: bytes.subarray(i, i + size), flags: OS_UNIX });
    }
  }
});

Deno.test({
  name: "LzopDecompressionStream decodes concatenated lzop files like lzop -dc",
  ...needsLzop,
  async fn() {
    const lzo = concat(await lzop(text("hello\n")), await lzop(text("world\n"), "-9", "--crc32"));
    assert.deepEqual(await decode(lzo), text("hello\nworld\n"));
  },
});

// ---------------------------------------------------------------------------
// Malformed input

const HELLO = concat(header(), block({ data: text("hello\n") }), END);
// header(): 9 magic + 25 fields + 4 checksum = 38 bytes; the block header is 12 bytes.

Deno.test("LzopDecompressionStream rejects a chunk that is not a Uint8Array", async () => {
  const decoder = new LzopDecompressionStream();
  const writer = decoder.writable.getWriter();
  const done = new Response(decoder.readable).bytes();
  await assert.rejects(writer.write("lzop" as unknown as Uint8Array), {
    name: "TypeError",
    message: 'Cannot decompress a chunk of type "string": expected a Uint8Array',
  });
  await assert.rejects(done, TypeError);
  // The error is sticky.
  await assert.rejects(writer.write(HELLO), TypeError);
});

Deno.test("LzopDecompressionStream rejects an empty stream", async () => {
  await rejectsWith(
    new Uint8Array(0),
    SyntaxError,
    "Invalid lzop stream: unexpected end of stream (the stream is empty)",
  );
});

Deno.test("LzopDecompressionStream rejects a bad magic", async () => {
  const gzip = Uint8Array.of(0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 3, 0);
  await rejectsWith(
    gzip,
    SyntaxError,
    "Invalid lzop stream: not a lzop file (bad magic at offset 0)",
  );
  const almost = HELLO.slice();
  almost[8] = 0x0b;
  for (const size of [1, 5, almost.length]) {
    await rejectsWith(
      almost,
      SyntaxError,
      "Invalid lzop stream: not a lzop file (bad magic at offset 0)",
      size,
    );
  }
});

Deno.test("LzopDecompressionStream rejects a bad header checksum", async () => {
  const lzo = HELLO.slice();
  lzo[30] ^= 1; // mtime
  await rejectsWith(
    lzo,
    SyntaxError,
    `Invalid lzop stream: header corrupted (checksum error: ${
      hex(adler32(lzo.subarray(9, 34)))
    }, expected ${hex(adler32(HELLO.subarray(9, 34)))}) in the header of member 0 at offset 0`,
  );
  const crcHeader = header({ flags: OS_UNIX | F_H_CRC32 });
  await rejectsWith(
    concat(header({ flags: OS_UNIX | F_H_CRC32, checksum: 0x12345678 }), END),
    SyntaxError,
    `Invalid lzop stream: header corrupted (checksum error: ${
      hex(crc32(crcHeader.subarray(9, 34)))
    }, expected 0x12345678) in the header of member 0 at offset 0`,
  );
});

Deno.test({
  name: "LzopDecompressionStream rejects a bad header checksum from lzop --crc32",
  ...needsLzop,
  async fn() {
    const lzo = await lzop(text("hello\n"), "--crc32");
    assert.equal(lzo[19], 0x11); // flags 0x03001108: F_H_CRC32 | F_CRC32_D | F_STDOUT
    lzo[20] ^= 0x80; // sets F_H_GMTDIFF
    await assert.rejects(decode(lzo), (error: unknown) => {
      assert.ok(error instanceof SyntaxError);
      assert.match(
        error.message,
        /^Invalid lzop stream: header corrupted \(checksum error: 0x[0-9a-f]{8}, expected 0x[0-9a-f]{8}\) in the header of member 0 at offset 0$/,
      );
      return true;
    });
  },
});

Deno.test("LzopDecompressionStream rejects an unknown method", async () => {
  for (const method of [0, 4, 128]) {
    await rejectsWith(
      concat(header({ method }), END),
      SyntaxError,
      `Invalid lzop stream: unknown compression method ${method} in the header of member 0 at offset 0`,
    );
  }
  for (const method of [1, 2, 3]) {
    assert.deepEqual(
      await decode(concat(header({ method }), block({ data: ABAB, lzo: ABAB_LZO }), END)),
      ABAB,
    );
  }
});

Deno.test("LzopDecompressionStream rejects headers it cannot decode", async () => {
  await rejectsWith(
    concat(header({ flags: OS_UNIX | 0x4000 }), END),
    SyntaxError,
    "Invalid lzop stream: unknown header flags 0x03004000 in the header of member 0 at offset 0",
  );
  await rejectsWith(
    concat(header({ flags: OS_UNIX | F_H_FILTER }), END),
    SyntaxError,
    "Invalid lzop stream: filters are not supported (flags 0x03000800) in the header of member 0 at offset 0",
  );
  await rejectsWith(
    concat(header({ needed: 0x2000 }), END),
    SyntaxError,
    "Invalid lzop stream: this file needs lzop version 0x2000 to extract, newer than 0x1040 in the header of member 0 at offset 0",
  );
  await rejectsWith(
    concat(header({ needed: 0x0800 }), END),
    SyntaxError,
    "Invalid lzop stream: header corrupted (version needed to extract 0x0800) in the header of member 0 at offset 0",
  );
  await rejectsWith(
    concat(header({ version: 0x0800 }), END),
    SyntaxError,
    "Invalid lzop stream: header corrupted (version 0x0800) in the header of member 0 at offset 0",
  );
});

Deno.test("LzopDecompressionStream rejects a block larger than 64 MiB", async () => {
  await rejectsWith(
    concat(header(), u32(64 * 1024 * 1024 + 1), u32(5), u32(0)),
    RangeError,
    "Invalid lzop stream: block 0 at offset 38 has 67108865 uncompressed bytes, more than the 67108864 lzop allows",
  );
  await rejectsWith(
    concat(header(), block({ data: text("a") }), u32(0xfffffffe), u32(1)),
    RangeError,
    "Invalid lzop stream: block 1 at offset 51 has 4294967294 uncompressed bytes, more than the 67108864 lzop allows",
  );
  await rejectsWith(
    concat(header(), u32(0xffffffff), u32(0)),
    SyntaxError,
    "Invalid lzop stream: block 0 at offset 38 is a split marker (split lzop files are not supported)",
  );
});

Deno.test("LzopDecompressionStream rejects impossible compressed lengths", async () => {
  await rejectsWith(
    concat(header(), u32(10), u32(11), u32(0)),
    SyntaxError,
    "Invalid lzop stream: block 0 at offset 38 has 11 compressed bytes for 10 uncompressed bytes",
  );
  await rejectsWith(
    concat(header(), u32(10), u32(0), u32(0)),
    SyntaxError,
    "Invalid lzop stream: block 0 at offset 38 has 0 compressed bytes for 10 uncompressed bytes",
  );
});

Deno.test("LzopDecompressionStream rejects a stream cut anywhere", async () => {
  const lzo = concat(
    header({ flags: OS_UNIX | F_ADLER32_D | F_ADLER32_C }),
    block({ data: ABAB, lzo: ABAB_LZO, flags: OS_UNIX | F_ADLER32_D | F_ADLER32_C }),
    END,
  );
  // 38 header bytes, 16 block header bytes, 9 payload bytes, 4 end marker bytes.
  assert.equal(lzo.length, 67);
  const expected = (cut: number): string => {
    if (cut < 38) return `unexpected end of stream in the header of member 0 at offset ${cut}`;
    if (cut === 38) {
      return "unexpected end of stream before the end marker of member 0 (after 0 blocks, at offset 38)";
    }
    if (cut < 54) return `unexpected end of stream in the header of block 0 at offset ${cut}`;
    if (cut < 63) {
      return `unexpected end of stream in block 0 at offset ${cut} (${
        cut - 54
      } of 9 compressed bytes)`;
    }
    if (cut === 63) {
      return "unexpected end of stream before the end marker of member 0 (after 1 blocks, at offset 63)";
    }
    return `unexpected end of stream in the header of block 1 at offset ${cut}`;
  };
  for (let cut = 1; cut < lzo.length; cut++) {
    for (const size of [1, 4, cut]) {
      await rejectsWith(
        lzo.subarray(0, cut),
        SyntaxError,
        `Invalid lzop stream: ${expected(cut)}`,
        size,
      );
    }
  }
  await rejectsWith(
    concat(
      header({ flags: OS_UNIX | F_H_EXTRA_FIELD, extra: new Uint8Array(100) }).subarray(0, 60),
    ),
    SyntaxError,
    "Invalid lzop stream: unexpected end of stream in the extra header field of member 0 at offset 60",
  );
});

Deno.test("LzopDecompressionStream rejects trailing garbage", async () => {
  await rejectsWith(
    concat(HELLO, text("garbage")),
    SyntaxError,
    "Invalid lzop stream: trailing garbage after the end marker (byte 0x67 at offset 60)",
  );
  // lzop ignores zero padding; this decoder does not.
  await rejectsWith(
    concat(HELLO, new Uint8Array(512)),
    SyntaxError,
    "Invalid lzop stream: trailing garbage after the end marker (byte 0x00 at offset 60)",
  );
  await rejectsWith(
    concat(HELLO, MAGIC.subarray(0, 4), text("?")),
    SyntaxError,
    "Invalid lzop stream: trailing garbage after the end marker (no lzop magic at offset 60)",
    1,
  );
  await rejectsWith(
    concat(HELLO, MAGIC.subarray(0, 4)),
    SyntaxError,
    "Invalid lzop stream: unexpected end of stream in the header of member 1 at offset 64",
  );
});

Deno.test("LzopDecompressionStream rejects checksum mismatches", async () => {
  const cases: [number, number, string][] = [
    [F_ADLER32_D, 0, `adler32 of the uncompressed data is ${hex(adler32(ABAB))}`],
    [F_CRC32_D, 1, `crc32 of the uncompressed data is ${hex(crc32(ABAB))}`],
    [F_ADLER32_C, 2, `adler32 of the compressed data is ${hex(adler32(ABAB_LZO))}`],
    [F_CRC32_C, 3, `crc32 of the compressed data is ${hex(crc32(ABAB_LZO))}`],
  ];
  for (const [flag, index, detail] of cases) {
    const sums = [];
    sums[index] = 0xdeadbeef;
    const flags = OS_UNIX | flag;
    // The first two blocks are stored: they carry only the uncompressed checksums.
    const before = concat(
      header({ flags }),
      block({ data: text("first"), flags }),
      block({ data: text("second"), flags }),
    );
    await rejectsWith(
      concat(before, block({ data: ABAB, lzo: ABAB_LZO, flags, sums }), END),
      SyntaxError,
      `Invalid lzop stream: checksum mismatch in block 2 at offset ${before.length} (${detail}, expected 0xdeadbeef)`,
    );
  }
  // A stored block has no checksum of compressed data; its uncompressed checksum is checked.
  await rejectsWith(
    concat(header(), block({ data: text("stored"), sums: [1] }), END),
    SyntaxError,
    `Invalid lzop stream: checksum mismatch in block 0 at offset 38 (adler32 of the uncompressed data is ${
      hex(adler32(text("stored")))
    }, expected 0x00000001)`,
  );
});

Deno.test("LzopDecompressionStream rejects LZO data that reads or writes out of bounds", async () => {
  const lzoBlock = (lzo: Uint8Array, length = ABAB.length): Uint8Array =>
    concat(
      header({ flags: OS_UNIX }),
      block({ data: new Uint8Array(length), lzo, flags: OS_UNIX }),
      END,
    );
  const prefix = "Invalid lzop stream: compressed data violation in block 0 at offset 38";
  // A match 11 bytes back after 2 bytes of output.
  await rejectsWith(
    lzoBlock(Uint8Array.of(19, 0x61, 0x62, 60, 10 << 2, 0, 0x11, 0, 0)),
    SyntaxError,
    `${prefix} (match distance before the start of the block)`,
  );
  // 32 bytes of output for a 20-byte block.
  await rejectsWith(lzoBlock(ABAB_LZO, 20), SyntaxError, `${prefix} (output overrun)`);
  // 32 bytes of output for a 40-byte block.
  await rejectsWith(
    lzoBlock(ABAB_LZO, 40),
    SyntaxError,
    `${prefix} (decompressed to 32 bytes, expected 40)`,
  );
  // Cut after the match's first distance byte.
  await rejectsWith(
    lzoBlock(ABAB_LZO.subarray(0, 5)),
    SyntaxError,
    `${prefix} (input overrun)`,
  );
  // A literal run longer than the input.
  await rejectsWith(
    lzoBlock(Uint8Array.of(17 + 200, 1, 2, 3), 300),
    SyntaxError,
    `${prefix} (input overrun)`,
  );
  // A zero-extended literal length running off the end.
  await rejectsWith(
    lzoBlock(Uint8Array.of(0, 0, 0, 0, 0), 5000),
    SyntaxError,
    `${prefix} (input overrun)`,
  );
  // Bytes after the end-of-stream instruction.
  await rejectsWith(
    lzoBlock(concat(ABAB_LZO, Uint8Array.of(0))),
    SyntaxError,
    `${prefix} (input not consumed)`,
  );
});

Deno.test({
  name: "LzopDecompressionStream rejects every single-byte change to a checksummed lzop file",
  ...needsLzop,
  async fn() {
    const data = concat(random(3000, 21), repeat(text("vma "), 5000), new Uint8Array(BLOCK));
    const lzo = await lzop(data, "-1", "-CC");
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: lzo.length - 1 }),
        fc.integer({ min: 1, max: 255 }),
        async (at, xor) => {
          const bad = lzo.slice();
          bad[at] ^= xor;
          await assert.rejects(decode(bad, 4096), (error: unknown) => {
            assert.ok(
              error instanceof SyntaxError || error instanceof RangeError,
              `byte ${at} ^ ${xor}: ${error}`,
            );
            assert.match((error as Error).message, /^Invalid lzop stream: /);
            return true;
          });
        },
      ),
      { numRuns: 300 },
    );
  },
});

Deno.test("LzopDecompressionStream survives random LZO payloads with only SyntaxErrors", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.uint8Array({ minLength: 1, maxLength: 400 }),
      fc.integer({ min: 1, max: 5000 }),
      async (payload, extra) => {
        const length = payload.length + extra;
        const lzo = concat(
          header({ flags: OS_UNIX }),
          block({ data: new Uint8Array(length), lzo: payload, flags: OS_UNIX }),
          END,
        );
        try {
          const output = await decode(lzo);
          assert.equal(output.length, length);
        } catch (error) {
          assert.ok(error instanceof SyntaxError, String(error));
          assert.match(error.message, /^Invalid lzop stream: compressed data violation in block 0/);
        }
      },
    ),
    { numRuns: 2000 },
  );
});

Deno.test({
  name: "LzopDecompressionStream survives corrupted unchecked lzop files",
  ...needsLzop,
  async fn() {
    const data = concat(random(2000, 5), repeat(text("abcabcabd"), 20_000), random(500, 6));
    const lzo = await lzop(data, "-9", "-F");
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.nat(lzo.length - 1), fc.integer({ min: 1, max: 255 })), {
          minLength: 1,
          maxLength: 5,
        }),
        async (flips) => {
          const bad = lzo.slice();
          for (const [at, xor] of flips) bad[at] ^= xor;
          try {
            await decode(bad, 777);
          } catch (error) {
            assert.ok(error instanceof SyntaxError || error instanceof RangeError, String(error));
            assert.match((error as Error).message, /^Invalid lzop stream: /);
          }
        },
      ),
      { numRuns: 300 },
    );
  },
});

Deno.test("LzopDecompressionStream hands over one block at a time, however many one chunk holds", async () => {
  const data = random(20 * BLOCK, 14);
  const blocks: Uint8Array[] = [];
  for (let i = 0; i < data.length; i += BLOCK) {
    blocks.push(block({ data: data.subarray(i, i + BLOCK), flags: OS_UNIX }));
  }
  const decoder = new LzopDecompressionStream();
  const writer = decoder.writable.getWriter();
  const reader = decoder.readable.getReader();
  let written = false;
  const write = writer.write(concat(header({ flags: OS_UNIX }), ...blocks, END)).then(() => {
    written = true;
  });
  const ticks = async () => {
    for (let i = 0; i < 20; i++) await new Promise((resolve) => setTimeout(resolve, 0));
  };
  for (let i = 0; i < 19; i++) {
    const r = await reader.read();
    assert.deepEqual(r.value, data.subarray(i * BLOCK, (i + 1) * BLOCK));
    await ticks();
    // The chunk is not taken until its last block is: the other blocks are not decoded yet.
    assert.equal(written, false, `after block ${i}`);
  }
  assert.equal((await reader.read()).value?.length, BLOCK);
  // Asking for more lets the decoder finish the chunk (the end marker).
  const end = reader.read();
  await write;
  assert.equal(written, true);
  await writer.close();
  assert.equal((await end).done, true);
});
