import assert from "node:assert/strict";
import { join } from "node:path";
import { detectImageFormat } from "../../src/image/open_disk_image.ts";
import { vpcChecksum } from "../../src/image/_vpc_header.ts";
import { openFileReader, qemuMissing, run } from "../_disk_image_helpers.ts";
import { memoryReader } from "./_foreign_image.ts";

Deno.test("detectImageFormat finds VHDX, VHD and VDI by their magic at its documented offset", async () => {
  const at = (text: string, offset: number, size = 4096) => {
    const bytes = new Uint8Array(size);
    bytes.set(new TextEncoder().encode(text), offset);
    return bytes;
  };
  assert.equal(await detectImageFormat(memoryReader(at("vhdxfile", 0))), "vhdx");
  assert.equal(await detectImageFormat(memoryReader(at("conectix", 0))), "vpc");
  const vdi = new Uint8Array(512);
  new DataView(vdi.buffer).setUint32(64, 0xbeda107f, true);
  assert.equal(await detectImageFormat(memoryReader(vdi)), "vdi");
  // A fixed VHD: its footer at the end, with the fixed type and a good checksum.
  const fixed = at("conectix", 4096, 4096 + 512);
  const footer = fixed.subarray(4096);
  const v = new DataView(fixed.buffer, 4096);
  v.setUint32(60, 2);
  v.setUint32(64, vpcChecksum(footer, 64));
  assert.equal(await detectImageFormat(memoryReader(fixed)), "vpc");
  // The same footer with a bad checksum, or another type: not a VHD.
  v.setUint32(64, vpcChecksum(footer, 64) ^ 1);
  assert.equal(await detectImageFormat(memoryReader(fixed)), "raw");
  // Magic elsewhere, or nothing: not these formats.
  assert.equal(await detectImageFormat(memoryReader(at("vhdxfile", 1))), "raw");
  assert.equal(await detectImageFormat(memoryReader(new Uint8Array(0))), "raw");
  assert.equal(await detectImageFormat(memoryReader(new Uint8Array(100))), "raw");
});

Deno.test({
  name: "detectImageFormat finds the images qemu-img makes, fixed VHD included",
  ignore: qemuMissing !== undefined,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "vmakit-detect-" });
    try {
      const raw = join(dir, "src.raw");
      await Deno.writeFile(raw, new Uint8Array(3 * 1024 * 1024).fill(1));
      for (
        const [format, options, expected] of [
          ["vhdx", [], "vhdx"],
          ["vhdx", ["-o", "subformat=fixed"], "vhdx"],
          ["vpc", [], "vpc"],
          ["vpc", ["-o", "subformat=fixed"], "vpc"],
          ["vdi", [], "vdi"],
          ["vdi", ["-o", "static=on"], "vdi"],
          ["qcow2", [], "qcow2"],
          ["raw", [], "raw"],
        ] as [string, string[], string][]
      ) {
        const out = join(dir, `${crypto.randomUUID()}.${format}`);
        await run("qemu-img", "convert", "-f", "raw", "-O", format, ...options, raw, out);
        const reader = await openFileReader(out);
        try {
          assert.equal(await detectImageFormat(reader), expected, `${format} ${options}`);
        } finally {
          await reader.close();
        }
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
