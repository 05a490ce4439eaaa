// `vma create -d format=vhdx|vpc|vhd|vdi:...` end to end: images made by
// qemu-img from known raw data go into an archive, and `vma extract` gives
// back exactly what `qemu-img convert -f <format> -O raw` makes of them.
import assert from "node:assert/strict";
import { join } from "node:path";
import { have, vma } from "../_cli_run.ts";
import { NO_CONF } from "./_warnings.ts";
import { equalBytes, knownData } from "../_disk_image_helpers.ts";

const noQemu = have("qemu-img")
  ? undefined
  : "qemu-img is not installed (apt-get install qemu-utils)";
if (noQemu) console.error(`Skipping the VHDX/VHD/VDI CLI tests: ${noQemu}`);

const MiB = 1024 * 1024;

async function qemuImg(cwd: string, ...args: string[]): Promise<void> {
  const out = await new Deno.Command("qemu-img", { args, cwd, stdout: "null", stderr: "piped" })
    .output();
  assert.ok(out.success, `qemu-img ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
}

/** The known raw data: 5 MiB and a bit (no whole block), zeros from 1 to 3 MiB. */
function source(): Uint8Array {
  const data = knownData(5 * MiB + 12345, 21);
  data.fill(0, MiB, 3 * MiB);
  return data;
}

Deno.test({
  name:
    "vma create reads VHDX, VHD (vpc and its alias vhd) and VDI images that vma extract gives back",
  ignore: noQemu !== undefined,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "vmakit-foreign-cli-" });
    try {
      await Deno.writeFile(join(dir, "src.raw"), source());
      // [device, -d format, qemu-img format, qemu-img options]
      const images: [string, string, string, string[]][] = [
        ["drive-scsi0", "vhdx", "vhdx", ["-o", "block_size=1M"]],
        ["drive-scsi1", "vhdx", "vhdx", ["-o", "subformat=fixed"]],
        ["drive-scsi2", "vpc", "vpc", []],
        ["drive-scsi3", "vhd", "vpc", ["-o", "subformat=fixed,force_size=on"]],
        ["drive-scsi4", "vdi", "vdi", []],
        ["drive-scsi5", "vdi", "vdi", ["-o", "static=on"]],
      ];
      const args = ["create", "foreign.vma"];
      for (const [device, format, qemuFormat, options] of images) {
        const name = `${device}.${qemuFormat}`;
        await qemuImg(dir, "convert", "-f", "raw", "-O", qemuFormat, ...options, "src.raw", name);
        await qemuImg(dir, "convert", "-f", qemuFormat, "-O", "raw", name, `${device}.ref`);
        args.push("-d", `format=${format}:${device}=${name}`);
      }
      const created = await vma(args, { cwd: dir });
      assert.equal(created.code, 0, created.stderr);
      assert.equal(created.stderr, NO_CONF);
      const extracted = await vma(["extract", "foreign.vma", "out"], { cwd: dir });
      assert.equal(extracted.code, 0, extracted.stderr);
      const data = source();
      for (const [device] of images) {
        const got = await Deno.readFile(join(dir, "out", `disk-${device}.raw`));
        const expected = await Deno.readFile(join(dir, `${device}.ref`));
        assert.equal(got.length, expected.length, device);
        assert.ok(equalBytes(got, expected), `${device} extracts to qemu-img's raw image`);
        assert.ok(equalBytes(got.subarray(0, data.length), data), `${device} holds the source`);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "vma create refuses a damaged or mislabelled VHDX, VHD or VDI with one line and no archive",
  ignore: noQemu !== undefined,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "vmakit-foreign-cli-" });
    try {
      await Deno.writeFile(join(dir, "src.raw"), source());
      await qemuImg(dir, "convert", "-f", "raw", "-O", "vpc", "src.raw", "bad\nname.vhd");
      const vhd = await Deno.readFile(join(dir, "bad\nname.vhd"));
      vhd[vhd.length - 512 + 100] ^= 1; // the footer at the end; the copy at 0 is intact
      vhd[100] ^= 1;
      await Deno.writeFile(join(dir, "bad\nname.vhd"), vhd);
      const cases: [string, RegExp][] = [
        [
          "format=vhdx:src.raw",
          /^vma: bdrv_open 'src\.raw' failed - Not a vhdx image: the file does not start with "vhdxfile"\n$/,
        ],
        [
          "format=vdi:src.raw",
          /^vma: bdrv_open 'src\.raw' failed - Not a vdi image: the signature 0xbeda107f is missing at offset 64\n$/,
        ],
        [
          "format=vpc:bad\nname.vhd",
          /^vma: bdrv_open "bad\\nname\.vhd" failed - Corrupt vpc image: incorrect footer checksum 0x[0-9a-f]+ \(the bytes sum to 0x[0-9a-f]+\)\n$/,
        ],
      ];
      for (const [spec, line] of cases) {
        const r = await vma(["create", "out.vma", "-d", spec], { cwd: dir });
        assert.equal(r.code, 1, r.stderr);
        assert.match(r.stderr, line);
        const left = (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name);
        assert.ok(!left.some((name) => name.includes("out.vma")), `nothing left: ${left}`);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
