import assert from "node:assert/strict";
import { join } from "node:path";
import type { PositionedReader } from "../../src/image/disk_image.ts";
import { detectImageFormat, openDiskImage } from "../../src/image/open_disk_image.ts";
import { openRawImage } from "../../src/image/raw_image.ts";
import {
  checkAgainstQemu,
  knownData,
  openFileReader,
  qemuMissing,
  rejectsWith,
  run,
} from "../_disk_image_helpers.ts";

const ignore = qemuMissing !== undefined;

function memoryReader(bytes: Uint8Array): PositionedReader & { closed: boolean } {
  const reader = {
    size: bytes.length,
    closed: false,
    read: (position: number, length: number) =>
      Promise.resolve(bytes.slice(position, position + length)),
    close: () => {
      reader.closed = true;
      return Promise.resolve();
    },
  };
  return reader;
}

const latin1 = (text: string) => Uint8Array.from(text, (c) => c.charCodeAt(0));

Deno.test("detectImageFormat tells qcow2, VMDK and raw apart by their first bytes", async () => {
  const cases: [string, Uint8Array][] = [
    ["qcow2", latin1("QFI\xfb\0\0\0\x03")],
    ["vmdk", latin1("KDMV\x01\0\0\0")],
    ["vmdk", latin1("COWD\x01\0\0\0")],
    ["vmdk", latin1('# Disk DescriptorFile\nversion=1\ncreateType="monolithicFlat"\n')],
    ["raw", new Uint8Array(0)],
    ["raw", new Uint8Array(3).fill(0x51)],
    ["raw", latin1("QFI")],
    ["raw", new Uint8Array(65536)],
    ["raw", latin1("# Disk Descriptor")],
  ];
  for (const [format, bytes] of cases) {
    assert.equal(await detectImageFormat(memoryReader(bytes)), format, JSON.stringify(bytes));
  }
});

Deno.test("detectImageFormat refuses formats it would otherwise take for raw disks", async () => {
  for (
    const [bytes, name] of [
      [latin1("vhdxfile\0\0\0\0"), "VHDX"],
      [latin1("conectix\0\0\0\x02"), "VHD (dynamic)"],
      [latin1("<<< Oracle VM VirtualBox Disk Image >>>\n"), "VDI"],
      [latin1("QED\0\0\0\x01\0"), "QED"],
    ] as const
  ) {
    await rejectsWith(
      detectImageFormat(memoryReader(bytes)),
      TypeError,
      `Unsupported disk image: the ${name} format is not supported (convert it with "qemu-img convert -O qcow2" first)`,
    );
  }
});

Deno.test("openDiskImage rejects an unknown format option", async () => {
  await rejectsWith(
    openDiskImage(memoryReader(new Uint8Array(512)), { format: "qed" as "raw" }),
    TypeError,
    'Invalid disk image format "qed": expected "auto", "raw", "qcow2", "vmdk", "vhdx", "vpc" or "vdi"',
  );
});

Deno.test("openDiskImage with an explicit format does not guess", async () => {
  const qcow2Magic = latin1("QFI\xfb\0\0\0\x03");
  const raw = await openDiskImage(memoryReader(qcow2Magic), { format: "raw" });
  assert.equal(raw.format, "raw");
  assert.equal(raw.size, 8);
  await rejectsWith(
    openDiskImage(memoryReader(new Uint8Array(4096)), { format: "qcow2" }),
    SyntaxError,
    'Not a qcow2 image: the file does not start with "QFI\\xfb"',
  );
  await rejectsWith(
    openDiskImage(memoryReader(new Uint8Array(4096)), { format: "vmdk" }),
    SyntaxError,
    'Not a vmdk image: the file starts with neither "KDMV" nor "# Disk DescriptorFile"',
  );
});

Deno.test("openRawImage reads the file as the disk and closes the reader", async () => {
  const bytes = knownData(100000, 5);
  const reader = memoryReader(bytes);
  const image = await openRawImage(reader);
  assert.equal(image.format, "raw");
  assert.equal(image.size, 100000);
  assert.deepEqual(await Array.fromAsync(image.regions()), [
    { offset: 0, length: 100000, zero: false },
  ]);
  assert.deepEqual(await image.read(99990, 10), bytes.slice(99990));
  await rejectsWith(
    image.read(99990, 11),
    RangeError,
    "Cannot read 11 bytes at offset 99990: the disk is 100000 bytes long",
  );
  await rejectsWith(
    image.read(-1, 1),
    RangeError,
    "Cannot read 1 bytes at offset -1: the disk is 100000 bytes long",
  );
  await image.close();
  assert.equal(reader.closed, true);

  const empty = await openRawImage(memoryReader(new Uint8Array(0)));
  assert.deepEqual(await Array.fromAsync(empty.regions()), []);
  assert.deepEqual(await empty.read(0, 0), new Uint8Array(0));
});

Deno.test("openRawImage reports a file that shrank under it", async () => {
  const reader = { ...memoryReader(new Uint8Array(10)), size: 20 };
  const image = await openRawImage(reader);
  await rejectsWith(
    image.read(0, 20),
    SyntaxError,
    "Truncated raw image: 20 bytes at offset 0 asked, 10 read",
  );
});

Deno.test({
  name: "openDiskImage detects every format qemu-img writes and reads it like qemu-img",
  ignore,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "vmakit-open-" });
    try {
      const raw = join(dir, "disk.raw");
      await Deno.writeFile(raw, knownData(1024 * 1024 + 4096, 9));
      const qcow2 = join(dir, "disk.qcow2");
      const vmdk = join(dir, "disk.vmdk");
      await run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, qcow2);
      await run("qemu-img", "convert", "-f", "raw", "-O", "vmdk", raw, vmdk);
      // A qcow2 overlay on a VMDK base: the backing opener detects the format.
      const overlay = join(dir, "overlay.qcow2");
      await run("qemu-img", "create", "-f", "qcow2", "-b", "disk.vmdk", "-F", "vmdk", overlay);
      await run("qemu-io", "-c", "write -P 0x99 512k 8k", overlay);
      for (
        const [path, format] of [
          [raw, "raw"],
          [qcow2, "qcow2"],
          [vmdk, "vmdk"],
          [overlay, "qcow2"],
        ]
      ) {
        const reader = await openFileReader(path);
        assert.equal(await detectImageFormat(reader), format);
        await reader.close();
        await checkAgainstQemu(path, dir, format);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
