// The image writers' bytes at their documented offsets (VHD, VDI, VHDX and
// VMDK specifications), written into memory.
import assert from "node:assert/strict";
import type { PositionedWriter } from "../../src/image/disk_image_writer.ts";
import { createVdiWriter } from "../../src/image/vdi_writer.ts";
import { createVpcWriter } from "../../src/image/vpc_writer.ts";
import { createVhdxWriter } from "../../src/image/vhdx_writer.ts";
import { createVmdkWriter } from "../../src/image/vmdk_writer.ts";
import { crc32c } from "../../src/image/_crc32c.ts";

const MiB = 1024 * 1024;

/** A file in memory. */
function memoryFile(): PositionedWriter & { bytes: () => Uint8Array } {
  let file = new Uint8Array(0);
  const grow = (size: number) => {
    const grown = new Uint8Array(size);
    grown.set(file.subarray(0, size));
    file = grown;
  };
  return {
    bytes: () => file,
    write(position, data) {
      if (position + data.length > file.length) grow(position + data.length);
      file.set(data, position);
      return Promise.resolve();
    },
    truncate(size) {
      grow(size);
      return Promise.resolve();
    },
  };
}

const ascii = (bytes: Uint8Array, at: number, length: number) =>
  new TextDecoder().decode(bytes.subarray(at, at + length));
const view = (bytes: Uint8Array) => new DataView(bytes.buffer, bytes.byteOffset, bytes.length);

Deno.test("crc32c matches the check value of CRC-32C", () => {
  assert.equal(crc32c(new TextEncoder().encode("123456789")), 0xe3069283);
});

Deno.test("createVpcWriter: footer, dynamic header and BAT at their offsets", async () => {
  const target = memoryFile();
  const writer = await createVpcWriter(target, 5 * MiB + 100);
  await writer.write(2 * MiB + 4096, new Uint8Array(512).fill(9));
  await writer.close();
  const file = target.bytes();
  const size = 5 * MiB + 512;
  // BAT (3 entries, padded to 512) ends at 2048; block: bitmap + 2 MiB; footer
  assert.equal(file.length, 2048 + 512 + 2 * MiB + 512);
  const footer = file.subarray(file.length - 512);
  assert.deepEqual(file.subarray(0, 512), footer, "the copy at 0 is the footer");
  const f = view(footer);
  assert.equal(ascii(footer, 0, 8), "conectix");
  assert.equal(f.getUint32(8), 2);
  assert.equal(f.getUint32(12), 0x00010000);
  assert.equal(f.getBigUint64(16), 512n);
  assert.equal(ascii(footer, 28, 4), "win ");
  assert.equal(ascii(footer, 36, 4), "Wi2k");
  assert.equal(f.getBigUint64(40), BigInt(size));
  assert.equal(f.getBigUint64(48), BigInt(size));
  // 10241 sectors: 17 sectors per track, 4 heads, 150 cylinders (VHD specification)
  assert.deepEqual([f.getUint16(56), f.getUint8(58), f.getUint8(59)], [150, 4, 17]);
  assert.equal(f.getUint32(60), 3, "dynamic");
  const sum = (bytes: Uint8Array, at: number) =>
    ~bytes.reduce((s, b, i) => s + (i >= at && i < at + 4 ? 0 : b), 0) >>> 0;
  assert.equal(f.getUint32(64), sum(footer, 64));
  const dynamic = file.subarray(512, 1536);
  const d = view(dynamic);
  assert.equal(ascii(dynamic, 0, 8), "cxsparse");
  assert.equal(d.getBigUint64(8), 0xffffffffffffffffn);
  assert.equal(d.getBigUint64(16), 1536n);
  assert.equal(d.getUint32(24), 0x00010000);
  assert.equal(d.getUint32(28), 3);
  assert.equal(d.getUint32(32), 2 * MiB);
  assert.equal(d.getUint32(36), sum(dynamic, 36));
  const bat = view(file.subarray(1536, 2048));
  assert.deepEqual([bat.getUint32(0), bat.getUint32(4), bat.getUint32(8)], [
    0xffffffff,
    2048 / 512,
    0xffffffff,
  ]);
  assert.ok(file.subarray(2048, 2560).every((b) => b === 0xff), "sector bitmap: all present");
  assert.equal(file[2560 + 4096], 9);
});

Deno.test("createVdiWriter: header and block map at their offsets", async () => {
  const target = memoryFile();
  const writer = await createVdiWriter(target, 5 * MiB + 100);
  await writer.write(3 * MiB, new Uint8Array(100).fill(9));
  await writer.close();
  const file = target.bytes();
  const h = view(file);
  assert.equal(ascii(file, 0, 35), "<<< QEMU VM Virtual Disk Image >>>\n");
  assert.equal(h.getUint32(0x40, true), 0xbeda107f);
  assert.equal(h.getUint32(0x44, true), 0x00010001);
  assert.equal(h.getUint32(0x48, true), 0x180);
  assert.equal(h.getUint32(0x4c, true), 1, "dynamic");
  assert.equal(h.getUint32(0x154, true), 512);
  assert.equal(h.getUint32(0x158, true), 1024);
  assert.equal(h.getUint32(0x168, true), 512);
  assert.equal(h.getBigUint64(0x170, true), BigInt(5 * MiB + 512));
  assert.equal(h.getUint32(0x178, true), MiB);
  assert.equal(h.getUint32(0x180, true), 6);
  assert.equal(h.getUint32(0x184, true), 1);
  const map = Array.from({ length: 6 }, (_, i) => h.getUint32(512 + i * 4, true));
  assert.deepEqual(map, [0xffffffff, 0xffffffff, 0xffffffff, 0, 0xffffffff, 0xffffffff]);
  assert.equal(file.length, 1024 + MiB);
  assert.equal(file[1024], 9);
});

Deno.test("createVhdxWriter: headers, region tables, metadata and BAT at their offsets", async () => {
  const target = memoryFile();
  const writer = await createVhdxWriter(target, 20 * MiB);
  await writer.write(9 * MiB, new Uint8Array(512).fill(9));
  await writer.close();
  const file = target.bytes();
  assert.equal(ascii(file, 0, 8), "vhdxfile");
  for (const [at, sequence] of [[64 * 1024, 1n], [128 * 1024, 2n]] as const) {
    const header = file.slice(at, at + 4096);
    const h = view(header);
    assert.equal(ascii(header, 0, 4), "head");
    const stored = h.getUint32(4, true);
    h.setUint32(4, 0, true);
    assert.equal(crc32c(header), stored, "header checksum");
    assert.equal(h.getBigUint64(8, true), sequence);
    assert.ok(header.subarray(48, 64).every((b) => b === 0), "no log");
    assert.equal(h.getUint16(66, true), 1);
    assert.equal(h.getUint32(68, true), MiB);
    assert.equal(h.getBigUint64(72, true), BigInt(MiB));
  }
  for (const at of [192 * 1024, 256 * 1024]) {
    const table = file.slice(at, at + 65536);
    const t = view(table);
    assert.equal(ascii(table, 0, 4), "regi");
    const stored = t.getUint32(4, true);
    t.setUint32(4, 0, true);
    assert.equal(crc32c(table), stored, "region table checksum");
    assert.equal(t.getUint32(8, true), 2);
    assert.equal(t.getBigUint64(32, true), BigInt(3 * MiB), "BAT");
    assert.equal(t.getBigUint64(64, true), BigInt(2 * MiB), "metadata");
  }
  const metadata = view(file.subarray(2 * MiB));
  assert.equal(ascii(file, 2 * MiB, 8), "metadata");
  assert.equal(metadata.getUint16(10, true), 5);
  assert.equal(metadata.getUint32(65536, true), 8 * MiB, "block size for a 20 MiB disk");
  assert.equal(metadata.getBigUint64(65536 + 8, true), BigInt(20 * MiB));
  assert.equal(metadata.getUint32(65536 + 32, true), 512);
  assert.equal(metadata.getUint32(65536 + 36, true), 4096);
  const bat = view(file.subarray(3 * MiB));
  assert.equal(bat.getBigUint64(0, true), 0n, "block 0 not present");
  assert.equal(bat.getBigUint64(8, true), BigInt(4 * MiB) | 6n, "block 1 fully present at 4 MiB");
  assert.equal(file.length, 4 * MiB + 8 * MiB);
  assert.equal(file[4 * MiB + MiB], 9);
});

Deno.test("createVmdkWriter: sparse extent headers, descriptor, footer at their offsets", async () => {
  for (const subformat of ["monolithicSparse", "streamOptimized"] as const) {
    const target = memoryFile();
    const writer = await createVmdkWriter(target, 3 * MiB + 100, { subformat });
    await writer.write(65536, new Uint8Array(65536).fill(9));
    await writer.close();
    const file = target.bytes();
    const stream = subformat === "streamOptimized";
    const h = view(file);
    assert.equal(ascii(file, 0, 4), "KDMV");
    assert.equal(h.getUint32(4, true), stream ? 3 : 1);
    assert.equal(h.getUint32(8, true), stream ? 0x30001 : 1);
    assert.equal(h.getBigUint64(12, true), BigInt((3 * MiB + 512) / 512));
    assert.equal(h.getBigUint64(20, true), 128n);
    assert.equal(h.getBigUint64(28, true), 1n);
    assert.equal(h.getBigUint64(36, true), 20n);
    assert.equal(h.getUint32(44, true), 512);
    assert.equal(h.getBigUint64(56, true), stream ? 0xffffffffffffffffn : 21n);
    assert.equal(h.getBigUint64(64, true), 128n);
    assert.deepEqual([...file.subarray(73, 77)], [0x0a, 0x20, 0x0d, 0x0a]);
    assert.equal(h.getUint16(77, true), stream ? 1 : 0);
    const descriptor = ascii(file, 512, 20 * 512);
    assert.match(descriptor, new RegExp(`createType="${subformat}"`));
    assert.match(descriptor, new RegExp(`RW ${(3 * MiB + 512) / 512} SPARSE "disk.vmdk"`));
    if (!stream) {
      // grain 1 at the first grain position (128 sectors); its table after it
      assert.equal(file[65536], 9);
      const gt = h.getUint32(21 * 512, true);
      assert.equal(gt, (65536 + 65536) / 512);
      assert.equal(h.getUint32(gt * 512 + 4, true), 128);
      continue;
    }
    assert.ok(file.subarray(file.length - 512).every((b) => b === 0), "end-of-stream marker");
    assert.equal(h.getUint32(file.length - 1536 + 12, true), 3, "footer marker");
    const footer = view(file.subarray(file.length - 1024));
    assert.equal(footer.getUint32(0, true), 0x564d444b);
    const gdSector = Number(footer.getBigUint64(56, true));
    assert.equal(h.getUint32(gdSector * 512 - 512 + 12, true), 2, "grain directory marker");
    const gtSector = h.getUint32(gdSector * 512, true);
    assert.equal(h.getUint32(gtSector * 512 - 512 + 12, true), 1, "grain table marker");
    const grainSector = h.getUint32(gtSector * 512 + 4, true);
    assert.equal(h.getBigUint64(grainSector * 512, true), 128n, "the grain marker's LBA");
  }
});
