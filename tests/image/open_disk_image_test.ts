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
import { vma } from "../_cli_run.ts";

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

/** The message detection refuses a foreign `format` with. */
const refusal = (format: string) =>
  `Unsupported image format: this is a ${format} image; convert it with "qemu-img convert -O qcow2" (or -O raw) first, or give the format "raw" if it really is a raw disk`;

/** `data` with `header` written over its start. */
function withHead(data: Uint8Array, header: Uint8Array): Uint8Array {
  const bytes = data.slice();
  bytes.set(header);
  return bytes;
}

/** A VHD footer whose checksum is right (or off by one). */
function vhdFooter(validChecksum = true): Uint8Array {
  const footer = new Uint8Array(512);
  footer.set(latin1("conectix\0\0\0\x02\0\x01\0\0\xff\xff\xff\xff\xff\xff\xff\xff"));
  footer.set(latin1("\0\0\0\x02"), 60); // disk type: fixed
  let sum = 0;
  for (const b of footer) sum += b;
  new DataView(footer.buffer).setUint32(64, (~sum + (validChecksum ? 0 : 1)) >>> 0);
  return footer;
}

/** A UDIF trailer: "koly", version 4, header size 512. */
function kolyTrailer(version = 4): Uint8Array {
  const trailer = new Uint8Array(512);
  trailer.set(latin1("koly"));
  new DataView(trailer.buffer).setUint32(4, version);
  new DataView(trailer.buffer).setUint32(8, 512);
  return trailer;
}

/** Formats qemu-img cannot write, crafted from their documented headers over known data. */
function craftedForeignImages(): [string, Uint8Array][] {
  const data = knownData(65536, 11);
  const bochs = new Uint8Array(512);
  bochs.set(latin1("Bochs Virtual HD Image\0"));
  bochs.set(latin1("Redolog\0"), 32);
  bochs.set(latin1("Growing\0"), 48);
  new DataView(bochs.buffer).setUint32(64, 0x00020000, true);
  const cloop = latin1(
    "#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n",
  );
  const dmg = new Uint8Array(data.length + 512);
  dmg.set(data);
  dmg.set(kolyTrailer(), data.length);
  const fixedVhd = new Uint8Array(data.length + 512);
  fixedVhd.set(data);
  fixedVhd.set(vhdFooter(), data.length);
  const vdi = new Uint8Array(512);
  vdi.set(latin1("<<< Oracle VM VirtualBox Disk Image >>>\n"));
  vdi.set([0x7f, 0x10, 0xda, 0xbe, 0x01, 0x00, 0x01, 0x00], 0x40);
  return [
    ["Bochs", withHead(data, bochs)],
    ["cloop", withHead(data, cloop)],
    ["DMG", dmg],
    ["VHD (fixed)", fixedVhd],
    ["VHD", withHead(data, latin1("conectix\0\0\0\x02"))],
    ["VHDX", withHead(data, latin1("vhdxfile"))],
    ["VDI", withHead(data, vdi)],
    ["QED", withHead(data, latin1("QED\0\x00\x00\x01\x00"))],
    ["Parallels", withHead(data, latin1("WithoutFreeSpace\x02\0\0\0"))],
    ["Parallels", withHead(data, latin1("WithouFreSpacExt\x02\0\0\0"))],
    ["LUKS", withHead(data, latin1("LUKS\xba\xbe\0\x02"))],
    ["qcow (version 1)", withHead(data, latin1("QFI\xfb\0\0\0\x01"))],
  ];
}

/** The foreign formats this library reads, by the name detection gives them. */
const READ: Record<string, string> = { VDI: "vdi", VHD: "vpc", "VHD (fixed)": "vpc", VHDX: "vhdx" };

Deno.test("detectImageFormat refuses by name every format it would otherwise take for a raw disk", async () => {
  for (const [format, bytes] of craftedForeignImages()) {
    if (READ[format] !== undefined) {
      assert.equal(await detectImageFormat(memoryReader(bytes)), READ[format], format);
      continue;
    }
    await rejectsWith(detectImageFormat(memoryReader(bytes)), TypeError, refusal(format));
    await rejectsWith(
      openDiskImage(memoryReader(bytes), { format: "auto" }),
      TypeError,
      refusal(format),
    );
    // An explicit "raw" is the caller's choice: the container is read as it is.
    const raw = await openDiskImage(memoryReader(bytes), { format: "raw" });
    assert.equal(raw.format, "raw");
    assert.equal(raw.size, bytes.length);
  }
});

Deno.test("detectImageFormat takes near-misses of trailer signatures for raw disks", async () => {
  const data = knownData(65536, 12);
  for (const trailer of [vhdFooter(false), kolyTrailer(5)]) {
    const bytes = new Uint8Array(data.length + 512);
    bytes.set(data);
    bytes.set(trailer, data.length);
    assert.equal(await detectImageFormat(memoryReader(bytes)), "raw");
  }
  // Small files: a signature cut short is no signature.
  for (const text of ["connecti", "conecti", "WithoutFreeSpac", "LUKS\xba", "vhdxfil"]) {
    assert.equal(await detectImageFormat(memoryReader(latin1(text))), "raw", text);
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

Deno.test({
  name:
    "detectImageFormat and vma create -d format=auto: read VHDX, VHD and VDI, refuse every other foreign format by name",
  ignore,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "vmakit-foreign-" });
    try {
      const raw = join(dir, "disk.raw");
      await Deno.writeFile(raw, knownData(1024 * 1024, 13));
      const made: [string, string][] = [];
      const convert = async (file: string, format: string, ...args: string[]) => {
        await run("qemu-img", "convert", ...args, "-f", "raw", raw, join(dir, file));
        made.push([file, format]);
      };
      await convert("disk.vdi", "VDI", "-O", "vdi");
      await convert("disk.vhd", "VHD", "-O", "vpc");
      await convert("fixed.vhd", "VHD (fixed)", "-O", "vpc", "-o", "subformat=fixed");
      await convert("disk.vhdx", "VHDX", "-O", "vhdx");
      await convert("disk.qed", "QED", "-O", "qed");
      await convert("disk.hdd", "Parallels", "-O", "parallels");
      await convert("disk.qcow", "qcow (version 1)", "-O", "qcow");
      await convert(
        "disk.luks",
        "LUKS",
        "--object",
        "secret,id=sec0,data=vmakit",
        "-O",
        "luks",
        "-o",
        "key-secret=sec0",
      );
      for (const [format, bytes] of craftedForeignImages()) {
        const file = `crafted-${made.length}.img`;
        await Deno.writeFile(join(dir, file), bytes);
        made.push([file, format]);
      }
      const inputs = new Set(await Array.fromAsync(Deno.readDir(dir), (e) => e.name));
      for (const [file, format] of made) {
        const reader = await openFileReader(join(dir, file));
        if (READ[format] !== undefined && !file.startsWith("crafted-")) {
          // Made by qemu-img and read by this library: detected and archived.
          assert.equal(await detectImageFormat(reader), READ[format], file);
          await reader.close();
          const r = await vma(["create", `${file}.vma`, "-d", `format=auto:drive-scsi0=${file}`], {
            cwd: dir,
          });
          assert.equal(r.code, 0, `${file}: ${r.stderr}`);
          await Deno.remove(join(dir, `${file}.vma`));
          continue;
        }
        if (READ[format] !== undefined) {
          await reader.close();
          continue;
        }
        await rejectsWith(detectImageFormat(reader), TypeError, refusal(format));
        await reader.close();
        const r = await vma(["create", "out.vma", "-d", `format=auto:drive-scsi0=${file}`], {
          cwd: dir,
        });
        assert.equal(r.code, 1, file);
        assert.equal(r.stderr, `vma: bdrv_open '${file}' failed - ${refusal(format)}\n`);
        const left = new Set(await Array.fromAsync(Deno.readDir(dir), (e) => e.name));
        assert.deepEqual(left, inputs, `files left behind by ${file}`);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
