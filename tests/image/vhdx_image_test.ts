import assert from "node:assert/strict";
import { join } from "node:path";
import { openVhdxImage } from "../../src/image/vhdx_image.ts";
import { crc32c, crc32cWithZeroField } from "../../src/image/_crc32c.ts";
import {
  guidBytes,
  parseVhdxMetadataTable,
  parseVhdxMetadataValues,
  parseVhdxRegionTable,
  pickVhdxHeader,
} from "../../src/image/_vhdx_header.ts";
import {
  equalBytes,
  knownData,
  qemuMissing,
  qemuSource,
  rejectsWith,
  run,
} from "../_disk_image_helpers.ts";
import { checkForeign, memoryReader, openForeign } from "./_foreign_image.ts";

const ignore = qemuMissing !== undefined;
const MiB = 1024 * 1024;
/** 6 MiB and a bit, zeros from 1 to 3 MiB: whole 1 MiB blocks stay unallocated. */
const SIZE = 6 * MiB + 12345;
const data = knownData(SIZE, 17);
data.fill(0, MiB, 3 * MiB);
const { dir, convert } = await qemuSource("vhdx", data);

Deno.test("crc32c matches the known check values", () => {
  const text = new TextEncoder().encode("123456789");
  assert.equal(crc32c(text), 0xe3069283);
  assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa);
  assert.equal(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43);
  const ascending = Uint8Array.from({ length: 32 }, (_, i) => i);
  assert.equal(crc32c(ascending), 0x46dd794e);
  // Incremental, in any split.
  for (let cut = 0; cut <= text.length; cut++) {
    assert.equal(crc32c(text.subarray(cut), crc32c(text.subarray(0, cut))), 0xe3069283);
  }
  const withField = new Uint8Array([1, 2, 3, 4, 0xaa, 0xbb, 0xcc, 0xdd, 5, 6]);
  assert.equal(
    crc32cWithZeroField(withField, 4),
    crc32c(new Uint8Array([1, 2, 3, 4, 0, 0, 0, 0, 5, 6])),
  );
});

for (
  const [title, args, zeroRegions] of [
    ["dynamic with the default block size", [], false],
    ["dynamic with 1 MiB blocks", ["-o", "block_size=1M"], true],
    ["fixed", ["-o", "subformat=fixed"], false],
    ["dynamic with 1 MiB blocks and a 4 MiB log", ["-o", "block_size=1M,log_size=4M"], true],
  ] as [string, string[], boolean][]
) {
  Deno.test({
    name: `openVhdxImage reads a ${title} VHDX from qemu-img like qemu-img does`,
    ignore,
    async fn() {
      const path = await convert(`${crypto.randomUUID()}.vhdx`, ...args);
      const regions = await checkForeign(path, "vhdx", dir);
      assert.equal(regions.some((r) => r.zero), zeroRegions);
      const { image } = await openForeign(path, "vhdx");
      try {
        assert.equal(image.size, Math.ceil(SIZE / 512) * 512);
        assert.ok(equalBytes(await image.read(0, SIZE), data));
      } finally {
        await image.close();
      }
    },
  });
}

Deno.test({
  name:
    "openVhdxImage skips the sector bitmap entries of the BAT (data past 4 GiB in 1 MiB blocks)",
  ignore,
  async fn() {
    // With 1 MiB blocks and 512-byte sectors, a sector bitmap entry follows
    // every 4096 payload entries: blocks from 4096 on are one entry further.
    const raw = join(dir, "sparse.raw");
    const far = 4 * 1024 * MiB + 3 * MiB + 512;
    const piece = knownData(MiB + 777, 3);
    const file = await Deno.open(raw, { write: true, create: true, truncate: true });
    await file.truncate(5 * 1024 * MiB);
    await file.seek(far, Deno.SeekMode.Start);
    await file.write(piece);
    await file.seek(5, Deno.SeekMode.Start);
    await file.write(piece.subarray(0, 1000));
    file.close();
    const path = join(dir, "sparse.vhdx");
    await run("qemu-img", "convert", "-f", "raw", "-O", "vhdx", "-o", "block_size=1M", raw, path);
    await Deno.remove(raw);
    const { image } = await openForeign(path, "vhdx");
    try {
      assert.equal(image.size, 5 * 1024 * MiB);
      const regions = await Array.fromAsync(image.regions());
      assert.deepEqual(regions.filter((r) => !r.zero).map((r) => [r.offset, r.length]), [
        [0, MiB],
        [4 * 1024 * MiB + 3 * MiB, 2 * MiB],
      ]);
      assert.ok(equalBytes(await image.read(far, piece.length), piece));
      assert.ok(equalBytes(await image.read(5, 1000), piece.subarray(0, 1000)));
      assert.ok((await image.read(far - 512, 512)).every((b) => b === 0));
    } finally {
      await image.close();
    }
  },
});

// ---- Hostile and damaged images, made from a small qemu-img image. ----

const HEADERS = [64 * 1024, 128 * 1024];
const TABLES = [192 * 1024, 256 * 1024];

/** A small dynamic VHDX (1 MiB blocks), as bytes. */
async function small(): Promise<Uint8Array> {
  const path = await convert(`${crypto.randomUUID()}.vhdx`, "-o", "block_size=1M");
  const bytes = await Deno.readFile(path);
  await Deno.remove(path);
  return bytes;
}

function view(bytes: Uint8Array, at = 0): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset + at);
}

/** Recomputes the CRC-32C of the 4 KiB header or 64 KiB region table at `at`. */
function reseal(bytes: Uint8Array, at: number, length: number) {
  view(bytes, at).setUint32(4, crc32cWithZeroField(bytes.subarray(at, at + length), 4), true);
}

/** The offset of the current header (the higher sequence number). */
function current(bytes: Uint8Array): number {
  const [a, b] = HEADERS.map((at) => view(bytes, at).getBigUint64(8, true));
  return a > b ? HEADERS[0] : HEADERS[1];
}

/** Where the BAT and metadata regions and the metadata items are. */
function layout(bytes: Uint8Array) {
  const regions = parseVhdxRegionTable(bytes.subarray(TABLES[0], TABLES[0] + 65536), bytes.length);
  const { offset, length } = regions.metadata;
  const items = parseVhdxMetadataTable(bytes.subarray(offset, offset + 65536), length);
  return {
    bat: regions.bat.offset,
    parameters: offset + items.get("parameters")!.offset,
    size: offset + items.get("size")!.offset,
    sector: offset + items.get("sector")!.offset,
  };
}

const open = (bytes: Uint8Array) => openVhdxImage(memoryReader(bytes));

Deno.test({
  name: "openVhdxImage takes the valid header with the higher sequence number",
  ignore,
  async fn() {
    const bytes = await small();
    const good = await open(bytes.slice());
    const expected = await good.read(0, good.size);
    // The current header damaged: the other one is used.
    const damaged = bytes.slice();
    damaged[current(damaged) + 100] ^= 1;
    const image = await open(damaged);
    assert.ok(equalBytes(await image.read(0, image.size), expected));
    // Both damaged: refused.
    const other = HEADERS.find((at) => at !== current(bytes))!;
    damaged[other + 100] ^= 1;
    await rejectsWith(
      open(damaged),
      SyntaxError,
      "Corrupt vhdx image: no valid header: both have a bad signature, version or checksum",
    );
    // Equal sequence numbers, different headers: refused.
    const same = bytes.slice();
    const seq = view(same, HEADERS[0]).getBigUint64(8, true);
    view(same, HEADERS[1]).setBigUint64(8, seq, true);
    same[HEADERS[1] + 20] ^= 1; // file write GUID
    reseal(same, HEADERS[1], 4096);
    await rejectsWith(
      open(same),
      SyntaxError,
      `Corrupt vhdx image: both headers have the sequence number ${seq} but differ`,
    );
  },
});

Deno.test("pickVhdxHeader picks by sequence number and checks the log fields", () => {
  const make = (sequence: bigint, edit: (v: DataView) => void = () => {}) => {
    const bytes = new Uint8Array(4096);
    bytes.set(new TextEncoder().encode("head"), 0);
    const v = view(bytes);
    v.setBigUint64(8, sequence, true);
    v.setUint16(66, 1, true); // version
    v.setUint32(68, MiB, true); // log length
    v.setBigUint64(72, BigInt(MiB), true); // log offset
    edit(v);
    reseal(bytes, 0, 4096);
    return bytes;
  };
  assert.equal(pickVhdxHeader(make(5n), make(7n)).sequence, 7n);
  assert.equal(pickVhdxHeader(make(9n), make(7n)).sequence, 9n);
  const badVersion = make(9n, (v) => v.setUint16(66, 2, true));
  assert.equal(pickVhdxHeader(badVersion, make(7n)).sequence, 7n);
  assert.throws(() => pickVhdxHeader(make(9n, (v) => v.setBigUint64(72, 12345n, true)), make(1n)), {
    name: "SyntaxError",
    message: "Corrupt vhdx image: the log offset 0x3039 is not a multiple of 1 MiB from 1 MiB",
  });
  assert.throws(() => pickVhdxHeader(make(9n, (v) => v.setUint16(64, 1, true)), make(1n)), {
    name: "TypeError",
    message: "Unsupported vhdx image: log version 1 is not supported",
  });
});

Deno.test({
  name: "openVhdxImage uses the region table copy when the first is damaged, and checks both",
  ignore,
  async fn() {
    const bytes = await small();
    bytes[TABLES[0] + 40] ^= 1;
    const image = await open(bytes);
    assert.equal(image.size, Math.ceil(SIZE / 512) * 512);
    await image.close();
    bytes[TABLES[1] + 40] ^= 1;
    await rejectsWith(
      open(bytes),
      SyntaxError,
      "Corrupt vhdx image: both region tables have a bad signature or checksum",
    );
  },
});

Deno.test({
  name: "openVhdxImage refuses a log to replay, and reads an image whose log GUID has no entries",
  ignore,
  async fn() {
    const bytes = await small();
    const at = current(bytes);
    const guid = guidBytes("01234567-89AB-CDEF-0123-456789ABCDEF");
    bytes.set(guid, at + 48);
    reseal(bytes, at, 4096);
    // A log GUID but no entries of it: nothing to replay.
    const image = await open(bytes.slice());
    await image.close();
    // One entry of that GUID with a good checksum: refused.
    const logOffset = Number(view(bytes, at).getBigUint64(72, true));
    const entry = bytes.subarray(logOffset + 8192, logOffset + 8192 + 4096);
    entry.fill(0);
    entry.set(new TextEncoder().encode("loge"), 0);
    view(entry).setUint32(8, 4096, true); // entry length
    entry.set(guid, 32);
    reseal(entry, 0, 4096);
    await rejectsWith(
      open(bytes.slice()),
      TypeError,
      'Unsupported vhdx image: the log holds entries that must be replayed first; run "qemu-img check -r all" on it',
    );
    // The same entry with a bad checksum is not an entry.
    entry[100] ^= 1;
    await (await open(bytes.slice())).close();
  },
});

Deno.test({
  name: "openVhdxImage refuses differencing images and unknown required metadata",
  ignore,
  async fn() {
    const bytes = await small();
    const { parameters } = layout(bytes);
    const parent = bytes.slice();
    view(parent, parameters).setUint32(4, 2, true); // has_parent
    await rejectsWith(
      open(parent),
      TypeError,
      "Unsupported vhdx image: differencing images (with a parent) are not supported",
    );
    const metadataOffset = parseVhdxRegionTable(
      bytes.subarray(TABLES[0], TABLES[0] + 65536),
      bytes.length,
    ).metadata.offset;
    const unknown = bytes.slice();
    // The first metadata entry gets an unknown GUID and the required flag.
    unknown[metadataOffset + 32] ^= 0xff;
    view(unknown, metadataOffset + 32).setUint32(24, 4, true);
    await rejectsWith(
      open(unknown),
      TypeError,
      "Unsupported vhdx image: required metadata item 0 is of an unknown kind",
    );
  },
});

Deno.test({
  name: "openVhdxImage refuses bad metadata values with one clear error each",
  ignore,
  async fn() {
    const bytes = await small();
    const { parameters, size, sector } = layout(bytes);
    const cases: [(b: Uint8Array) => void, ErrorConstructor, string][] = [
      [
        (b) => view(b, parameters).setUint32(0, 3 * MiB, true),
        SyntaxError,
        "Corrupt vhdx image: the block size 3145728 is not a power of two from 1 MiB to 256 MiB",
      ],
      [
        (b) => view(b, sector).setUint32(0, 1024, true),
        SyntaxError,
        "Corrupt vhdx image: the logical sector size 1024 is neither 512 nor 4096",
      ],
      [
        (b) => view(b, size).setBigUint64(0, 1n << 47n, true),
        RangeError,
        "Oversized vhdx image: the virtual size 140737488355328 is larger than 64 TiB",
      ],
      [
        (b) => view(b, size).setBigUint64(0, 1n << 40n, true),
        SyntaxError,
        "Corrupt vhdx image: the BAT region holds 131072 entries, 1048831 are needed",
      ],
    ];
    for (const [edit, Class, message] of cases) {
      const copy = bytes.slice();
      edit(copy);
      await rejectsWith(open(copy), Class, message);
    }
  },
});

Deno.test({
  name: "openVhdxImage reads BAT states as QEMU does and fails on bad entries when reached",
  ignore,
  async fn() {
    const bytes = await small();
    const { bat } = layout(bytes);
    const entry = (b: Uint8Array, i: number) => view(b, bat + i * 8);
    // Block 0 is stored (state 6); each zero state reads as zeros.
    assert.equal(entry(bytes, 0).getUint32(0, true) & 7, 6);
    for (const state of [0, 1, 2, 3, 5]) {
      const copy = bytes.slice();
      entry(copy, 0).setUint32(0, state, true);
      const image = await open(copy);
      assert.deepEqual((await Array.fromAsync(image.regions()))[0], {
        offset: 0,
        length: 3 * MiB,
        zero: true,
      });
      assert.ok((await image.read(0, MiB)).every((b) => b === 0));
      await image.close();
    }
    const cases: [(b: Uint8Array) => void, string][] = [
      [
        (b) => entry(b, 0).setUint32(0, (entry(b, 0).getUint32(0, true) & ~7) | 7, true),
        "Corrupt vhdx image: block 0 is partially present in an image without a parent",
      ],
      [
        (b) => entry(b, 0).setUint32(0, (entry(b, 0).getUint32(0, true) & ~7) | 4, true),
        "Corrupt vhdx image: block 0 has the unknown state 4",
      ],
      [
        (b) => entry(b, 0).setUint32(4, 0x10, true),
        `Corrupt vhdx image: block 0 is stored at ${
          "0x" + (0x10 * 2 ** 32 + (entry(bytes, 0).getUint32(0, true) & ~0xfffff)).toString(16)
        }, past the end of the file`,
      ],
      [
        (b) => entry(b, 0).setUint32(0, 6, true),
        "Corrupt vhdx image: block 0 is stored at 0x0, in the header section",
      ],
    ];
    for (const [edit, message] of cases) {
      const copy = bytes.slice();
      edit(copy);
      const image = await open(copy);
      await rejectsWith(image.read(0, 512), SyntaxError, message);
      await rejectsWith(Array.fromAsync(image.regions()), SyntaxError, message);
      await image.close();
    }
  },
});

Deno.test("openVhdxImage refuses files that are not VHDX", async () => {
  await rejectsWith(
    openVhdxImage(memoryReader(new Uint8Array(4))),
    SyntaxError,
    'Not a vhdx image: the file does not start with "vhdxfile"',
  );
  const head = new Uint8Array(100);
  head.set(new TextEncoder().encode("vhdxfile"), 0);
  await rejectsWith(
    openVhdxImage(memoryReader(head)),
    SyntaxError,
    "Corrupt vhdx image: the header at 0x10000 is past the end of the file",
  );
});

Deno.test("parseVhdxMetadataValues reads the items and works out the chunk ratio", () => {
  const le = (width: number, value: number) => {
    const bytes = new Uint8Array(width);
    const v = view(bytes);
    if (width === 8) v.setBigUint64(0, BigInt(value), true);
    else v.setUint32(0, value, true);
    return bytes;
  };
  const parameters = (blockSize: number, flags: number) => {
    const bytes = new Uint8Array(8);
    view(bytes).setUint32(0, blockSize, true);
    view(bytes).setUint32(4, flags, true);
    return bytes;
  };
  // 2^23 sectors per sector bitmap block: 4096 blocks of 1 MiB at 512 bytes
  // a sector, 32768 at 4096, 16 blocks of 256 MiB at 512.
  assert.deepEqual(parseVhdxMetadataValues(parameters(MiB, 0), le(8, 3 * MiB + 700), le(4, 512)), {
    blockSize: MiB,
    hasParent: false,
    size: 3 * MiB + 512,
    logicalSectorSize: 512,
    chunkRatio: 4096,
  });
  assert.equal(
    parseVhdxMetadataValues(parameters(MiB, 2), le(8, MiB), le(4, 4096)).chunkRatio,
    32768,
  );
  assert.equal(
    parseVhdxMetadataValues(parameters(256 * MiB, 0), le(8, MiB), le(4, 512)).chunkRatio,
    16,
  );
  assert.equal(parseVhdxMetadataValues(parameters(MiB, 2), le(8, MiB), le(4, 512)).hasParent, true);
});
