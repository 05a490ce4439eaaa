import assert from "node:assert/strict";
import { openVpcImage } from "../../src/image/vpc_image.ts";
import { parseVpcFooter, vpcChecksum } from "../../src/image/_vpc_header.ts";
import {
  equalBytes,
  knownData,
  qemuMissing,
  qemuSource,
  rejectsWith,
} from "../_disk_image_helpers.ts";
import { checkForeign, memoryReader, openForeign, qemuVirtualSize } from "./_foreign_image.ts";

const ignore = qemuMissing !== undefined;
const MiB = 1024 * 1024;
/** 7 MiB and a bit, zeros from 2 to 6 MiB: whole 2 MiB blocks stay unallocated. */
const SIZE = 7 * MiB + 12345;
const data = knownData(SIZE, 11);
data.fill(0, 2 * MiB, 6 * MiB);
const { dir, convert } = await qemuSource("vpc", data);

/** The start of the image reads as the source data (qemu-img may round the size up). */
async function checkSource(path: string) {
  const { image } = await openForeign(path, "vpc");
  try {
    const length = Math.min(SIZE, image.size);
    assert.ok(equalBytes(await image.read(0, length), data.subarray(0, length)));
  } finally {
    await image.close();
  }
}

for (
  const [title, args, zeroRegions] of [
    ["dynamic (CHS size, creator qemu)", [], true],
    ["fixed (CHS size, footer only)", ["-o", "subformat=fixed"], false],
    ["dynamic with force_size (creator qem2)", ["-o", "force_size=on"], true],
    ["fixed with force_size", ["-o", "subformat=fixed,force_size=on"], false],
  ] as [string, string[], boolean][]
) {
  Deno.test({
    name: `openVpcImage reads a ${title} VHD from qemu-img like qemu-img does`,
    ignore,
    async fn() {
      const path = await convert(`${title.split(" ")[0]}-${args.length}.vhd`, ...args);
      const regions = await checkForeign(path, "vpc", dir);
      assert.equal(regions.some((r) => r.zero), zeroRegions);
      await checkSource(path);
    },
  });
}

/** Rewrites the footer at `at` of `bytes`: creator app and current size, new checksum. */
function rewriteFooter(bytes: Uint8Array, at: number, creator: string, currentSize: number) {
  const footer = bytes.subarray(at, at + 512);
  const v = new DataView(footer.buffer, footer.byteOffset, 512);
  footer.set(new TextEncoder().encode(creator), 28);
  v.setBigUint64(48, BigInt(currentSize));
  v.setUint32(64, vpcChecksum(footer, 64));
}

Deno.test({
  name: "openVpcImage takes a Hyper-V style footer's current size, not its CHS geometry",
  ignore,
  async fn() {
    // A fixed and a dynamic image whose footers say "win " and a size that
    // is no CHS multiple: QEMU (and this reader) take the current size.
    const fixed = await convert("hyperv-fixed.vhd", "-o", "subformat=fixed");
    const bytes = await Deno.readFile(fixed);
    const size = SIZE - 12345 + 3 * 512;
    rewriteFooter(bytes, bytes.length - 512, "win ", size);
    await Deno.writeFile(fixed, bytes);
    assert.equal(await qemuVirtualSize(fixed, "vpc"), size);
    await checkForeign(fixed, "vpc", dir);

    const dynamic = await convert("hyperv-dynamic.vhd");
    const dyn = await Deno.readFile(dynamic);
    rewriteFooter(dyn, 0, "win ", size);
    rewriteFooter(dyn, dyn.length - 512, "win ", size);
    await Deno.writeFile(dynamic, dyn);
    assert.equal(await qemuVirtualSize(dynamic, "vpc"), size);
    await checkForeign(dynamic, "vpc", dir);
  },
});

/** A footer (512 bytes) with the fields at their documented offsets, checksummed. */
function footer(edit: (v: DataView, bytes: Uint8Array) => void = () => {}): Uint8Array {
  const bytes = new Uint8Array(512);
  const v = new DataView(bytes.buffer);
  bytes.set(new TextEncoder().encode("conectix"), 0);
  v.setBigUint64(16, 512n); // data offset
  bytes.set(new TextEncoder().encode("qemu"), 28); // creator app
  v.setBigUint64(48, 10n * BigInt(MiB)); // current size
  v.setUint16(56, 20); // cylinders
  bytes[58] = 16; // heads
  bytes[59] = 63; // sectors per track
  v.setUint32(60, 3); // dynamic
  edit(v, bytes);
  v.setUint32(64, vpcChecksum(bytes, 64));
  return bytes;
}

Deno.test("parseVpcFooter reads the type, data offset and size at their documented offsets", () => {
  assert.deepEqual(parseVpcFooter(footer()), {
    type: 3,
    dataOffset: 512,
    size: 20 * 16 * 63 * 512,
  });
  // Other creators: the current size, whole sectors.
  const hyperV = footer((v, b) => {
    b.set(new TextEncoder().encode("win "), 28);
    v.setBigUint64(48, 10n * BigInt(MiB) + 700n);
  });
  assert.equal(parseVpcFooter(hyperV).size, 10 * MiB + 512);
  // The largest geometry: the current size even for QEMU's images.
  const maxChs = footer((v, b) => {
    v.setUint16(56, 65535);
    b[58] = 16;
    b[59] = 255;
  });
  assert.equal(parseVpcFooter(maxChs).size, 10 * MiB);
});

Deno.test("parseVpcFooter refuses a bad checksum, differencing disks and disks over 2040 GiB", () => {
  const bytes = footer();
  bytes[100] ^= 1;
  assert.throws(() => parseVpcFooter(bytes), (e: unknown) => {
    assert.ok(e instanceof SyntaxError);
    assert.match(
      e.message,
      /^Corrupt vpc image: incorrect footer checksum 0x[0-9a-f]+ \(the bytes sum to 0x[0-9a-f]+\)$/,
    );
    return true;
  });
  assert.throws(
    () => parseVpcFooter(footer((v) => v.setUint32(60, 4))),
    TypeError,
    "Unsupported vpc image: differencing disks (with a parent) are not supported",
  );
  assert.throws(
    () => parseVpcFooter(footer((v) => v.setUint32(60, 5))),
    { name: "TypeError", message: "Unsupported vpc image: disk type 5 is not supported" },
  );
  assert.throws(
    () =>
      parseVpcFooter(footer((v, b) => {
        b.set(new TextEncoder().encode("win "), 28);
        v.setBigUint64(48, 2041n << 30n);
      })),
    {
      name: "RangeError",
      message:
        "Oversized vpc image: the disk has 4280287232 sectors, more than 4278190080 (2040 GiB)",
    },
  );
  assert.throws(() => parseVpcFooter(new Uint8Array(512)), {
    name: "SyntaxError",
    message: 'Not a vpc image: the footer cookie "conectix" is missing',
  });
});

/** A dynamic VHD in memory: footer copy, dynamic header at 512, BAT at 1536, blocks of 4 KiB. */
function dynamicVhd(
  bat: number[],
  edit: (header: DataView) => void = () => {},
  blockSize = 4096,
): Uint8Array {
  const head = footer((v, b) => {
    b.set(new TextEncoder().encode("win "), 28);
    v.setBigUint64(48, BigInt(bat.length * blockSize));
  });
  const blockBytes = 512 + blockSize; // QEMU's 512-byte bitmap, then the data
  const file = new Uint8Array(2048 + 4 * blockBytes + 512);
  file.set(head, 0);
  file.set(head, file.length - 512);
  const dynamic = file.subarray(512, 1536);
  const v = new DataView(dynamic.buffer, 512, 1024);
  dynamic.set(new TextEncoder().encode("cxsparse"), 0);
  v.setBigUint64(8, 0xffffffffffffffffn);
  v.setBigUint64(16, 1536n); // table offset
  v.setUint32(24, 0x00010000); // version
  v.setUint32(28, bat.length); // max table entries
  v.setUint32(32, blockSize);
  edit(v);
  v.setUint32(36, vpcChecksum(dynamic, 36));
  const tv = new DataView(file.buffer);
  bat.forEach((entry, i) => tv.setUint32(1536 + i * 4, entry));
  return file;
}

Deno.test("openVpcImage reads a crafted dynamic disk: unallocated blocks are zero regions", async () => {
  const file = dynamicVhd([0xffffffff, 4, 0xffffffff]);
  // Block 1: bitmap at sector 4 (2048), data at 2560.
  file.fill(7, 2560, 2560 + 4096);
  const image = await openVpcImage(memoryReader(file));
  assert.equal(image.size, 3 * 4096);
  assert.deepEqual(await Array.fromAsync(image.regions()), [
    { offset: 0, length: 4096, zero: true },
    { offset: 4096, length: 4096, zero: false },
    { offset: 8192, length: 4096, zero: true },
  ]);
  const bytes = await image.read(4000, 200);
  assert.deepEqual([...bytes.subarray(0, 96)], new Array(96).fill(0));
  assert.deepEqual([...bytes.subarray(96)], new Array(104).fill(7));
  await image.close();
});

Deno.test("openVpcImage refuses hostile dynamic disks with one clear error", async () => {
  await rejectsWith(
    openVpcImage(memoryReader(dynamicVhd([0xffffffff], (v) => v.setUint32(0, 0)))),
    SyntaxError,
    'Corrupt vpc image: the dynamic disk header has no cookie "cxsparse"',
  );
  const badSum = dynamicVhd([0xffffffff]);
  badSum[600] ^= 1;
  await rejectsWith(
    openVpcImage(memoryReader(badSum)),
    SyntaxError,
    /^Corrupt vpc image: incorrect dynamic disk header checksum 0x[0-9a-f]+ \(the bytes sum to 0x[0-9a-f]+\)$/,
  );
  await rejectsWith(
    openVpcImage(memoryReader(dynamicVhd([0xffffffff, 0xffffffff], (v) => v.setUint32(28, 1)))),
    SyntaxError,
    "Corrupt vpc image: the block table has 1 entries, too few for 8192 bytes",
  );
  await rejectsWith(
    openVpcImage(memoryReader(dynamicVhd([0xffffffff], (v) => v.setBigUint64(16, 1n << 40n)))),
    SyntaxError,
    "Corrupt vpc image: the block table at 0x10000000000 is past the end of the file",
  );
  await rejectsWith(
    openVpcImage(memoryReader(dynamicVhd([0xffffffff], (v) => v.setUint32(32, 3000)))),
    SyntaxError,
    "Corrupt vpc image: the block size 3000 is not a power of two of at least 512",
  );
  // A block past the end of the file fails when it is reached, not with wrong data.
  const image = await openVpcImage(memoryReader(dynamicVhd([0x7fffffff])));
  await rejectsWith(
    image.read(0, 512),
    SyntaxError,
    "Corrupt vpc image: block 0 is stored at 0x10000000000, past the end of the file",
  );
  await rejectsWith(
    Array.fromAsync(image.regions()),
    SyntaxError,
    "Corrupt vpc image: block 0 is stored at 0x10000000000, past the end of the file",
  );
  await image.close();
});

Deno.test("openVpcImage bounds the block table by the memory budget", async () => {
  // 2000 GiB of 512-byte blocks: a 16 GiB table, refused before it is read.
  const file = dynamicVhd([0xffffffff], (v) => v.setUint32(28, 0xffffffff), 512);
  const size = 2000n << 30n;
  for (const at of [0, file.length - 512]) {
    const f = file.subarray(at, at + 512);
    const v = new DataView(f.buffer, f.byteOffset, 512);
    v.setBigUint64(48, size);
    v.setUint32(64, vpcChecksum(f, 64));
  }
  await rejectsWith(
    openVpcImage(memoryReader(file)),
    RangeError,
    "Oversized vpc image: the images need more than 67108864 bytes for their tables, caches and buffers",
  );
});

Deno.test("openVpcImage refuses files that are not VHD, and fixed footers out of place", async () => {
  await rejectsWith(
    openVpcImage(memoryReader(new Uint8Array(100))),
    SyntaxError,
    "Not a vpc image: the file is 100 bytes long, too short for a footer",
  );
  await rejectsWith(
    openVpcImage(memoryReader(new Uint8Array(4096))),
    SyntaxError,
    'Not a vpc image: the footer cookie "conectix" is missing',
  );
  // A fixed disk's footer at the end that claims more data than there is.
  const file = new Uint8Array(4096 + 512);
  file.set(
    footer((v, b) => {
      v.setUint32(60, 2);
      b.set(new TextEncoder().encode("win "), 28);
      v.setBigUint64(48, 8192n);
    }),
    4096,
  );
  await rejectsWith(
    openVpcImage(memoryReader(file)),
    SyntaxError,
    "Corrupt vpc image: the 8192-byte disk is longer than the data before the footer",
  );
  // A dynamic footer only at the end.
  file.set(footer(), 4096);
  await rejectsWith(
    openVpcImage(memoryReader(file)),
    SyntaxError,
    "Corrupt vpc image: the footer at the end is not the footer of a fixed disk",
  );
});
