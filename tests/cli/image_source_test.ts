import assert from "node:assert/strict";
import { join } from "node:path";
import { openDiskImageSource } from "../../src/cli/_image_source.ts";
import { CliError } from "../../src/cli/_errors.ts";
import { qcow2 } from "../image/_hostile.ts";
import type { VmaDeviceWriter } from "../../src/vma/vma_writer.ts";
import {
  equalBytes,
  knownData,
  qemuMissing,
  qemuRaw,
  rejectsWith,
  run,
} from "../_disk_image_helpers.ts";

const ignore = qemuMissing !== undefined;

/** A device that records what create would write into the archive. */
function memoryDevice(size: number) {
  const bytes = new Uint8Array(size);
  let zeroBytes = 0;
  let closed = false;
  const device = {
    id: 1,
    name: "drive-scsi0",
    size,
    write: (offset: number, data: Uint8Array) => {
      assert.ok(offset + data.length <= size);
      bytes.set(data, offset);
      return Promise.resolve();
    },
    writeZeroes: (offset: number, length: number) => {
      assert.ok(offset + length <= size);
      bytes.fill(0, offset, offset + length);
      zeroBytes += length;
      return Promise.resolve();
    },
    close: () => {
      closed = true;
      return Promise.resolve();
    },
  };
  return {
    device: device as unknown as VmaDeviceWriter,
    bytes,
    zeroBytes: () => zeroBytes,
    closed: () => closed,
  };
}

Deno.test({
  name: "openDiskImageSource feeds a zstd qcow2 over a relative VMDK backing file into a device",
  ignore,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "vmakit-cli-image-" });
    try {
      await Deno.mkdir(join(dir, "base"));
      const raw = join(dir, "base", "disk.raw");
      await Deno.writeFile(raw, knownData(2 * 1024 * 1024 + 1000, 21));
      await run("qemu-img", "convert", "-O", "vmdk", raw, join(dir, "base", "disk.vmdk"));
      const overlay = join(dir, "overlay.qcow2");
      await run(
        "qemu-img",
        "create",
        "-f",
        "qcow2",
        "-o",
        "compression_type=zstd",
        "-b",
        "base/disk.vmdk",
        "-F",
        "vmdk",
        overlay,
      );
      await run("qemu-io", "-c", "write -c -P 0x5a 1M 64k", overlay);
      const expected = await qemuRaw(overlay, dir);
      for (const format of ["qcow2", "auto"]) {
        const source = await openDiskImageSource(overlay, format);
        try {
          assert.equal(source.format, "qcow2");
          assert.equal(source.size, expected.length);
          const { device, bytes, zeroBytes, closed } = memoryDevice(source.size);
          let fed = 0;
          await source.feed(device, (n) => fed += n);
          assert.ok(equalBytes(bytes, expected));
          assert.equal(fed, source.size);
          assert.ok(closed());
          assert.ok(zeroBytes() > 0, "unallocated parts go in as zero clusters");
        } finally {
          source.close();
        }
      }
      await Deno.remove(join(dir, "base", "disk.vmdk"));
      await rejectsWith(
        openDiskImageSource(overlay, "qcow2"),
        CliError,
        `bdrv_open '${overlay}' failed - Cannot open the backing file "base/disk.vmdk": No such file or directory`,
      );
      await rejectsWith(
        openDiskImageSource(raw, "qcow2"),
        CliError,
        `bdrv_open '${raw}' failed - Not a qcow2 image: the file does not start with "QFI\\xfb"`,
      );
      await rejectsWith(
        openDiskImageSource(join(dir, "nope.qcow2"), "qcow2"),
        CliError,
        `bdrv_open '${join(dir, "nope.qcow2")}' failed - Could not open '${
          join(dir, "nope.qcow2")
        }': No such file or directory`,
      );
      await rejectsWith(
        openDiskImageSource(raw, "qed"),
        CliError,
        `bdrv_open '${raw}' failed - Unknown driver 'qed'`,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "openDiskImageSource pads an image whose size is not a multiple of 512",
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "vmakit-cli-image-" });
    try {
      const path = join(dir, "odd.img");
      const data = knownData(1000, 3);
      await Deno.writeFile(path, data);
      const source = await openDiskImageSource(path, "auto");
      try {
        assert.equal(source.format, "raw");
        assert.equal(source.imageSize, 1000);
        assert.equal(source.size, 1024);
        const { device, bytes } = memoryDevice(1024);
        await source.feed(device, () => {});
        assert.deepEqual(bytes.subarray(0, 1000), data);
        assert.ok(bytes.subarray(1000).every((b) => b === 0));
      } finally {
        source.close();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "openDiskImageSource with confine keeps backing and extent files in the image's directory",
  async fn() {
    const root = await Deno.makeTempDir({ prefix: "vmakit-cli-confine-" });
    try {
      const dir = join(root, "images");
      await Deno.mkdir(dir);
      await Deno.writeFile(join(root, "outside.raw"), new Uint8Array(65536).fill(1));
      await Deno.writeFile(join(dir, "inside.raw"), new Uint8Array(65536).fill(2));
      await Deno.symlink(join(root, "outside.raw"), join(dir, "link.raw"));
      const top = async (name: string, backing: string, backingFormat?: string) => {
        const path = join(dir, name);
        await Deno.writeFile(
          path,
          qcow2({ size: 65536, l1: [0], clusters: [], backing, backingFormat }),
        );
        return path;
      };
      const confine = { confine: true };
      const cases: [string, string, string | undefined, string][] = [
        ["abs.qcow2", "/etc/passwd", "raw", "an absolute name is not allowed (--confine)"],
        [
          "up.qcow2",
          "../outside.raw",
          "raw",
          `it resolves to '${join(root, "outside.raw")}', outside '${dir}' (--confine)`,
        ],
        [
          "link.qcow2",
          "link.raw",
          "raw",
          `it resolves to '${join(root, "outside.raw")}', outside '${dir}' (--confine)`,
        ],
        [
          "probe.qcow2",
          "inside.raw",
          undefined,
          "the backing file has no recorded format and would be probed as raw (--confine)",
        ],
      ];
      for (const [name, backing, format, why] of cases) {
        const path = await top(name, backing, format);
        await rejectsWith(
          openDiskImageSource(path, "qcow2", confine),
          CliError,
          `bdrv_open '${path}' failed - Cannot open the backing file ${
            JSON.stringify(backing)
          }: ${why}`,
        );
        // QEMU-compatible by default: the same image opens (with a warning for the probe).
        if (name !== "probe.qcow2") (await openDiskImageSource(path, "qcow2")).close();
      }
      const vmdk = join(dir, "flat.vmdk");
      await Deno.writeTextFile(
        vmdk,
        '# Disk DescriptorFile\nversion=1\nparentCID=ffffffff\ncreateType="monolithicFlat"\nRW 128 FLAT "../outside.raw" 0\n',
      );
      await rejectsWith(
        openDiskImageSource(vmdk, "vmdk", confine),
        CliError,
        `bdrv_open '${vmdk}' failed - Cannot open the extent file "../outside.raw": it resolves to '${
          join(root, "outside.raw")
        }', outside '${dir}' (--confine)`,
      );
      // Inside the directory, with a recorded format: accepted and read.
      const good = await top("good.qcow2", "inside.raw", "raw");
      const source = await openDiskImageSource(good, "qcow2", confine);
      try {
        const { device, bytes } = memoryDevice(source.size);
        await source.feed(device, () => {});
        assert.ok(bytes.every((b) => b === 2));
      } finally {
        source.close();
      }
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "openDiskImageSource feeds a compressed qcow2 of several 4 MiB pieces exactly (reused buffers)",
  ignore,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "vmakit-cli-image-" });
    try {
      const raw = join(dir, "disk.raw");
      await Deno.writeFile(raw, knownData(13 * 1024 * 1024 + 4096, 33));
      const path = join(dir, "disk.qcow2");
      await run("qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", raw, path);
      const expected = await qemuRaw(path, dir);
      const source = await openDiskImageSource(path, "qcow2");
      try {
        const { device, bytes } = memoryDevice(source.size);
        await source.feed(device, () => {});
        assert.ok(equalBytes(bytes, expected), "the fed bytes are the image's");
      } finally {
        source.close();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
