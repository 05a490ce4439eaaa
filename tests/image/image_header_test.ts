import assert from "node:assert/strict";
import { parseQcow2Extensions, parseQcow2Header } from "../../src/image/_qcow2_header.ts";
import { parseSparseHeader } from "../../src/image/_vmdk_sparse.ts";
import { equalBytes, knownData, rejectsWith } from "../_disk_image_helpers.ts";
import { openVmdkImage } from "../../src/image/vmdk_image.ts";
import { deflateSync } from "node:zlib";
import { qcow2, vmdkHeader } from "./_hostile.ts";
import { openQcow2Image } from "../../src/image/qcow2_image.ts";

/** A version 3 qcow2 header (112 bytes) with fields set at their documented offsets. */
function header(edit: (v: DataView) => void = () => {}): Uint8Array {
  const bytes = new Uint8Array(112);
  const v = new DataView(bytes.buffer);
  v.setUint32(0, 0x514649fb); // magic
  v.setUint32(4, 3); // version
  v.setBigUint64(8, 4096n); // backing_file_offset
  v.setUint32(16, 7); // backing_file_size
  v.setUint32(20, 16); // cluster_bits
  v.setBigUint64(24, 1n << 30n); // size
  v.setUint32(36, 2); // l1_size
  v.setBigUint64(40, 65536n); // l1_table_offset
  v.setUint32(100, 112); // header_length
  edit(v);
  return bytes;
}

Deno.test("parseQcow2Header reads each field at its documented offset", () => {
  assert.deepEqual(parseQcow2Header(header(), 1 << 20), {
    version: 3,
    clusterBits: 16,
    clusterSize: 65536,
    size: 1 << 30,
    extendedL2: false,
    compressionType: 0,
    headerLength: 112,
    l1Needed: 2,
    l1Offset: 65536,
    backingOffset: 4096,
    backingLength: 7,
  });
  const zstd = header((v) => {
    v.setUint32(76, 8 | 16); // compression type and extended L2 bits
    v.setUint8(104, 1);
    v.setUint32(36, 4);
  });
  const parsed = parseQcow2Header(zstd, 1 << 20);
  assert.equal(parsed.compressionType, 1);
  assert.equal(parsed.extendedL2, true);
  assert.equal(parsed.l1Needed, 4, "extended L2: one table covers 4096 clusters, 256 MiB");
});

Deno.test("parseQcow2Header fixes the error class per category", () => {
  const cases: [Uint8Array, typeof Error, string][] = [
    [new Uint8Array(4), SyntaxError, 'Not a qcow2 image: the file does not start with "QFI\\xfb"'],
    [header().subarray(0, 80), SyntaxError, "Corrupt qcow2 image: the header is truncated"],
    [
      header((v) => v.setUint32(4, 4)),
      TypeError,
      "Unsupported qcow2 image: version 4 is not supported",
    ],
    [
      header((v) => v.setUint32(20, 22)),
      TypeError,
      "Unsupported qcow2 image: cluster size 2^22 is not supported (2^9 to 2^21 are)",
    ],
    [
      header((v) => v.setUint32(36, 0xffffffff)),
      RangeError,
      "Oversized qcow2 image: the L1 table has 4294967295 entries, more than 4194304",
    ],
    [
      header((v) => v.setBigUint64(24, 1n << 60n)),
      RangeError,
      "Oversized qcow2 image: the virtual size 1152921504606846976 is too large",
    ],
    [
      header((v) => v.setBigUint64(40, 65536n * 100n)),
      SyntaxError,
      "Corrupt qcow2 image: L1 table offset 0x640000 is past the end of the file",
    ],
  ];
  for (const [bytes, Class, message] of cases) {
    assert.throws(() => parseQcow2Header(bytes, 1 << 20), (error: unknown) => {
      assert.ok(error instanceof Class, `expected a ${Class.name}, got ${error}`);
      assert.equal(error.message, message);
      return true;
    });
  }
});

Deno.test("parseQcow2Extensions finds the backing format and rejects an overrunning extension", () => {
  const ext = new Uint8Array(32);
  const v = new DataView(ext.buffer);
  v.setUint32(0, 0xe2792aca);
  v.setUint32(4, 5);
  ext.set(new TextEncoder().encode("qcow2"), 8);
  assert.deepEqual(parseQcow2Extensions(ext), { backingFormat: "qcow2" });
  v.setUint32(4, 100);
  assert.throws(() => parseQcow2Extensions(ext), {
    name: "SyntaxError",
    message: "Corrupt qcow2 image: header extension 0xe2792aca runs past the end of the header",
  });
});

Deno.test("parseSparseHeader reads a KDMV header and names the extent file in errors", () => {
  const bytes = vmdkHeader({ capacitySectors: 4096, grainSectors: 128, gtes: 512, gdSector: 1 });
  const parsed = parseSparseHeader(bytes, 1 << 20, "x.vmdk");
  assert.equal(parsed.size, 4096 * 512);
  assert.equal(parsed.grainBytes, 65536);
  assert.equal(parsed.gdOffset, 512);
  assert.equal(parsed.gdEntries, 1);
  assert.equal(parsed.compressed, false);
  const grain = bytes.slice();
  new DataView(grain.buffer).setBigUint64(20, 1n << 20n, true);
  assert.throws(() => parseSparseHeader(grain, 1 << 20, "a\nb.vmdk"), {
    name: "RangeError",
    message:
      'Oversized vmdk image: the grain size 1048576 sectors is not supported (1 to 131072 are) (extent file "a\\nb.vmdk")',
  });
});

Deno.test("openQcow2Image charges its tables to a shared memoryBudget and refuses past its limit", async () => {
  const bytes = qcow2({ size: 65536, l1: [0], clusters: [] });
  const reader = () => ({
    size: bytes.length,
    read: (p: number, l: number) => Promise.resolve(bytes.slice(p, p + l)),
    close: () => Promise.resolve(),
  });
  const budget = { limit: 4 * 1024 * 1024, used: 0 };
  const image = await openQcow2Image(reader(), { memoryBudget: budget });
  await image.close();
  // One L1 entry, a read-ahead window no larger than the file, an L2 cache of
  // the image's one L2 table (not a quarter of the rest).
  assert.equal(budget.used, 8 + bytes.length + 65536);
  budget.used = budget.limit - 1024;
  await rejectsWith(
    openQcow2Image(reader(), { memoryBudget: budget }),
    RangeError,
    "Oversized qcow2 image: the images need more than 4194304 bytes for their tables, caches and buffers",
  );
  await rejectsWith(
    // @ts-expect-error: a wrong shape on purpose
    openQcow2Image(reader(), { memoryBudget: { limit: "big" } }),
    TypeError,
    "Invalid qcow2 options: memoryBudget must be { limit, used } in whole bytes",
  );
});

Deno.test("openVmdkImage inflates unmarked compressed grains larger than the first read", async () => {
  const grainSectors = 4096; // 2 MiB grains: a compressed grain is well over 256 KiB
  const grain = knownData(grainSectors * 512, 3);
  const stream = deflateSync(grain, { level: 1 });
  assert.ok(stream.length > 256 * 1024, `compressed to ${stream.length} bytes`);
  const first = 8;
  const file = new Uint8Array(first * 512 + stream.length + 512);
  file.set(vmdkHeader({ capacitySectors: grainSectors, grainSectors, gtes: 512, gdSector: 1 }));
  const v = new DataView(file.buffer);
  v.setUint16(77, 1, true); // deflate, without markers (flags keep bit 17 clear)
  v.setUint32(512, 2, true); // GD[0]: the grain table at sector 2
  v.setUint32(1024, first, true); // GT[0]: the grain at sector 8
  file.set(stream, first * 512);
  const image = await openVmdkImage({
    size: file.length,
    read: (p, l) => Promise.resolve(file.slice(p, p + l)),
    close: () => Promise.resolve(),
  });
  try {
    assert.ok(equalBytes(await image.read(0, grain.length), grain));
  } finally {
    await image.close();
  }
});
