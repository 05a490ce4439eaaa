// Hostile VHDX, VHD and VDI images, crafted small in a temp dir: tables past
// the memory budget and a huge log to scan. Each run of `vma create` must end
// in one clear line (or a correct archive) with a peak RSS far below 300 MB.
import assert from "node:assert/strict";
import { join } from "node:path";
import { NO_CONF } from "../cli/_warnings.ts";
import { crc32cWithZeroField } from "../../src/image/_crc32c.ts";
import { vpcChecksum } from "../../src/image/_vpc_header.ts";
import { RSS_BOUND, vmaCreate } from "./_hostile.ts";
import { qemuMissing, run } from "../_disk_image_helpers.ts";

const MiB = 1024 * 1024;
const BUDGET_LINE = "the images need more than 67108864 bytes for their tables, caches and buffers";

async function inTemp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "vmakit-foreign-hostile-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Runs `vma create` on the image; checks one line, exit 1, no archive, bounded RSS. */
async function refused(dir: string, format: string, image: string, line: string) {
  const r = await vmaCreate("out.vma", format, image, dir);
  assert.equal(r.code, 1, r.stderr);
  assert.equal(r.stderr, `vma: bdrv_open '${image}' failed - ${line}\n`);
  assert.ok(r.peakRss < RSS_BOUND, `peak RSS ${r.peakRss}`);
  const left = (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name);
  assert.deepEqual(left.filter((n) => n.includes("out.vma")), []);
}

Deno.test("vma create refuses a VDI whose block map is 2 GiB, in bounded memory", async () => {
  await inTemp(async (dir) => {
    const file = new Uint8Array(4096);
    const v = new DataView(file.buffer);
    v.setUint32(64, 0xbeda107f, true);
    v.setUint32(68, 0x00010001, true);
    v.setUint32(76, 1, true);
    v.setUint32(340, 512, true);
    v.setUint32(344, 1024 * 1024, true);
    v.setUint32(360, 512, true);
    v.setBigUint64(368, 0x1fffff80n * BigInt(MiB), true);
    v.setUint32(376, MiB, true);
    v.setUint32(384, 0x1fffff80, true);
    await Deno.writeFile(join(dir, "huge.vdi"), file);
    await refused(dir, "vdi", "huge.vdi", `Oversized vdi image: ${BUDGET_LINE}`);
  });
});

Deno.test("vma create refuses a 2000 GiB VHD of 512-byte blocks (a 16 GiB table), in bounded memory", async () => {
  await inTemp(async (dir) => {
    const file = new Uint8Array(2048 + 512);
    const footer = file.subarray(0, 512);
    const fv = new DataView(file.buffer, 0, 512);
    footer.set(new TextEncoder().encode("conectix"), 0);
    fv.setBigUint64(16, 512n);
    footer.set(new TextEncoder().encode("win "), 28);
    fv.setBigUint64(48, 2000n << 30n);
    fv.setUint32(60, 3);
    fv.setUint32(64, vpcChecksum(footer, 64));
    file.set(footer, file.length - 512);
    const dynamic = file.subarray(512, 1536);
    const dv = new DataView(file.buffer, 512, 1024);
    dynamic.set(new TextEncoder().encode("cxsparse"), 0);
    dv.setBigUint64(16, 1536n);
    dv.setUint32(28, 0xffffffff);
    dv.setUint32(32, 512);
    dv.setUint32(36, vpcChecksum(dynamic, 36));
    await Deno.writeFile(join(dir, "huge.vhd"), file);
    await refused(dir, "vhd", "huge.vhd", `Oversized vpc image: ${BUDGET_LINE}`);
  });
});

Deno.test({
  name:
    "vma create scans a 256 MiB VHDX log without entries in bounded memory, then reads the disk",
  ignore: qemuMissing !== undefined,
  async fn() {
    await inTemp(async (dir) => {
      await Deno.writeFile(join(dir, "src.raw"), new Uint8Array(MiB).fill(5));
      await run(
        "qemu-img",
        "convert",
        "-f",
        "raw",
        "-O",
        "vhdx",
        "-o",
        "block_size=1M",
        join(dir, "src.raw"),
        join(dir, "log.vhdx"),
      );
      const bytes = await Deno.readFile(join(dir, "log.vhdx"));
      // Both headers get a log GUID and a 256 MiB log at the (1 MiB aligned) end.
      const logOffset = Math.ceil(bytes.length / MiB) * MiB;
      for (const at of [64 * 1024, 128 * 1024]) {
        const v = new DataView(bytes.buffer, at, 4096);
        bytes.fill(0xab, at + 48, at + 64);
        v.setUint32(68, 256 * MiB, true);
        v.setBigUint64(72, BigInt(logOffset), true);
        v.setUint32(4, crc32cWithZeroField(bytes.subarray(at, at + 4096), 4), true);
      }
      const file = await Deno.open(join(dir, "log.vhdx"), { write: true });
      await file.write(bytes);
      await file.truncate(logOffset + 256 * MiB);
      file.close();
      const r = await vmaCreate("out.vma", "vhdx", "log.vhdx", dir);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stderr, NO_CONF);
      assert.ok(r.peakRss < RSS_BOUND, `peak RSS ${r.peakRss}`);
      console.log(`peak RSS ${Math.round(r.peakRss / MiB)} MiB`);
    });
  },
});
