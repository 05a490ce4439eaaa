import assert from "node:assert/strict";
import { openVdiImage } from "../../src/image/vdi_image.ts";
import { parseVdiHeader } from "../../src/image/_vdi_header.ts";
import {
  equalBytes,
  knownData,
  qemuMissing,
  qemuSource,
  rejectsWith,
} from "../_disk_image_helpers.ts";
import { checkForeign, memoryReader, openForeign } from "./_foreign_image.ts";

const ignore = qemuMissing !== undefined;
const MiB = 1024 * 1024;
/** 5 MiB and a bit (no whole sectors), zeros from 1 to 3 MiB: whole 1 MiB blocks stay free. */
const SIZE = 5 * MiB + 12345;
const data = knownData(SIZE, 13);
data.fill(0, MiB, 3 * MiB);
const { dir, convert } = await qemuSource("vdi", data);

for (
  const [title, args, zeroRegions] of [
    ["dynamic", [], true],
    ["static", ["-o", "static=on"], false],
  ] as [string, string[], boolean][]
) {
  Deno.test({
    name: `openVdiImage reads a ${title} VDI from qemu-img like qemu-img does`,
    ignore,
    async fn() {
      const path = await convert(`${title}.vdi`, ...args);
      const regions = await checkForeign(path, "vdi", dir);
      assert.equal(regions.some((r) => r.zero), zeroRegions);
      const { image } = await openForeign(path, "vdi");
      try {
        // The size is rounded up to a sector, as QEMU does.
        assert.equal(image.size, Math.ceil(SIZE / 512) * 512);
        assert.ok(equalBytes(await image.read(0, SIZE), data));
      } finally {
        await image.close();
      }
    },
  });
}

/** A VDI header (512 bytes) with fields at their documented offsets (little-endian). */
function header(edit: (v: DataView) => void = () => {}): Uint8Array {
  const bytes = new Uint8Array(512);
  const v = new DataView(bytes.buffer);
  bytes.set(new TextEncoder().encode("<<< Oracle VM VirtualBox Disk Image >>>\n"), 0);
  v.setUint32(64, 0xbeda107f, true); // signature
  v.setUint32(68, 0x00010001, true); // version 1.1
  v.setUint32(72, 400, true); // header size
  v.setUint32(76, 1, true); // dynamic
  v.setUint32(340, 512, true); // block map offset
  v.setUint32(344, 1024, true); // data offset
  v.setUint32(360, 512, true); // sector size
  v.setBigUint64(368, 3n * 4096n - 100n, true); // disk size
  v.setUint32(376, 4096, true); // block size
  v.setUint32(384, 3, true); // blocks in image
  edit(v);
  return bytes;
}

Deno.test("parseVdiHeader reads each field at its documented offset", () => {
  assert.deepEqual(parseVdiHeader(header(), 4096), {
    type: 1,
    size: 3 * 4096,
    blockSize: 4096,
    blocksNeeded: 3,
    mapOffset: 512,
    dataOffset: 1024,
  });
});

Deno.test("parseVdiHeader refuses what QEMU refuses, with one clear error each", () => {
  const cases: [(v: DataView) => void, ErrorConstructor, string][] = [
    [
      (v) => v.setUint32(64, 0, true),
      SyntaxError,
      "Not a vdi image: the signature 0xbeda107f is missing at offset 64",
    ],
    [
      (v) => v.setUint32(68, 0x00010000, true),
      TypeError,
      "Unsupported vdi image: version 1.0 is not supported",
    ],
    [
      (v) => v.setUint32(76, 3, true),
      TypeError,
      "Unsupported vdi image: image type 3 is not supported",
    ],
    [
      (v) => v.setUint32(340, 100, true),
      SyntaxError,
      "Corrupt vdi image: the block map offset 0x64 is not aligned",
    ],
    [
      (v) => v.setUint32(344, 1000, true),
      SyntaxError,
      "Corrupt vdi image: the data offset 0x3e8 is not aligned",
    ],
    [
      (v) => v.setUint32(360, 4096, true),
      TypeError,
      "Unsupported vdi image: sector size 4096 is not supported",
    ],
    [
      (v) => v.setUint32(376, 3000, true),
      TypeError,
      "Unsupported vdi image: block size 3000 is not supported (2^9 to 2^28 are)",
    ],
    [
      (v) => v.setUint32(380, 512, true),
      TypeError,
      "Unsupported vdi image: 512 extra bytes per block",
    ],
    [
      (v) => v.setUint32(384, 0x20000000, true),
      RangeError,
      "Oversized vdi image: the image has 536870912 blocks, more than 536870784",
    ],
    [
      (v) => v.setUint32(384, 2, true),
      SyntaxError,
      "Corrupt vdi image: the disk size 12188 is larger than its 2 blocks",
    ],
    [
      (v) => v.setUint8(424, 1),
      TypeError,
      "Unsupported vdi image: linked images are not supported",
    ],
    [
      (v) => v.setUint8(455, 1),
      TypeError,
      "Unsupported vdi image: differencing images (with a parent) are not supported",
    ],
    [
      (v) => v.setUint32(340, 4608, true),
      SyntaxError,
      "Corrupt vdi image: the block map at 0x1200 is past the end of the file",
    ],
  ];
  for (const [edit, Class, message] of cases) {
    assert.throws(() => parseVdiHeader(header(edit), 4096), (e: unknown) => {
      assert.ok(e instanceof Class, `${message}: got ${e}`);
      assert.equal((e as Error).message, message);
      return true;
    });
  }
  assert.throws(() => parseVdiHeader(header().subarray(0, 100), 4096), {
    name: "SyntaxError",
    message: "Corrupt vdi image: the header is truncated",
  });
});

/** A VDI file: the header, the block map at 512, blocks of 4 KiB from 1024. */
function vdi(map: number[], edit?: (v: DataView) => void): Uint8Array {
  const file = new Uint8Array(1024 + 3 * 4096);
  file.set(header(edit), 0);
  const v = new DataView(file.buffer);
  map.forEach((entry, i) => v.setUint32(512 + i * 4, entry, true));
  return file;
}

Deno.test("openVdiImage reads free and discarded blocks as zero regions without reading them", async () => {
  const file = vdi([0xffffffff, 0, 0xfffffffe]);
  file.fill(9, 1024, 1024 + 4096);
  let reads = 0;
  const reader = memoryReader(file);
  const counting = { ...reader, read: (p: number, l: number) => (reads++, reader.read(p, l)) };
  const image = await openVdiImage(counting);
  const opened = reads;
  assert.deepEqual(await Array.fromAsync(image.regions()), [
    { offset: 0, length: 4096, zero: true },
    { offset: 4096, length: 4096, zero: false },
    { offset: 8192, length: 4096, zero: true },
  ]);
  assert.equal(reads, opened, "regions() reads nothing");
  const bytes = await image.read(4000, 8192);
  assert.equal(reads, opened + 1, "one read for the stored block");
  assert.ok(bytes.subarray(0, 96).every((b) => b === 0));
  assert.ok(bytes.subarray(96, 96 + 4096).every((b) => b === 9));
  assert.ok(bytes.subarray(96 + 4096).every((b) => b === 0));
  await image.close();
});

Deno.test("openVdiImage fails on a block past the end of the file when it is reached", async () => {
  const image = await openVdiImage(memoryReader(vdi([0xffffffff, 1000, 0xffffffff])));
  await rejectsWith(
    image.read(0, 8192),
    SyntaxError,
    "Corrupt vdi image: block 1 is stored at 0x3e8400, past the end of the file",
  );
  await image.close();
  // A stored block cut short by the end of the file.
  const short = vdi([2, 0xffffffff, 0xffffffff]).subarray(0, 1024 + 2 * 4096 + 100);
  const image2 = await openVdiImage(memoryReader(short));
  await rejectsWith(
    image2.read(0, 4096),
    SyntaxError,
    "Corrupt vdi image: the data at 0x2400..0x3400 runs past the end of the file",
  );
  await image2.close();
});

Deno.test("openVdiImage bounds the block map by the memory budget", async () => {
  // 2^29 - 128 blocks of 1 MiB: a 2 GiB map, refused before it is read.
  const file = vdi([], (v) => {
    v.setUint32(376, MiB, true);
    v.setUint32(384, 0x1fffff80, true);
    v.setBigUint64(368, 0x1fffff80n * BigInt(MiB), true);
    v.setUint32(340, 512, true);
  });
  await rejectsWith(
    openVdiImage(memoryReader(vdi([], (v) => v.setUint32(340, 1024 + 3 * 4096, true)))),
    SyntaxError,
    "Corrupt vdi image: the block map at 0x3400 is past the end of the file",
  );
  await rejectsWith(
    openVdiImage(memoryReader(file)),
    RangeError,
    "Oversized vdi image: the images need more than 67108864 bytes for their tables, caches and buffers",
  );
});
