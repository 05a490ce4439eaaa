// `vma extract -r` into qcow2 images made by `qemu-img create -f qcow2` (plain,
// with preallocated metadata, and holding old data for `1:` lines): the images
// stay valid (`qemu-img check`) and `qemu-img compare` finds them identical to
// the sources; bad qcow2 targets fail with one line.
import assert from "node:assert/strict";
import { join } from "node:path";
import { VmaWriter } from "../../src/vma/vma_writer.ts";
import { collect, pseudoRandom } from "../_helpers.ts";
import { fixtureDir, vma } from "../_cli_run.ts";
import { qemuMissing } from "../_disk_image_helpers.ts";

const ignore = qemuMissing !== undefined;
const dir = await fixtureDir();
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

async function run(command: string, ...args: string[]): Promise<{ code: number; out: string }> {
  const { code, stdout, stderr } = await new Deno.Command(command, { args }).output();
  const d = new TextDecoder();
  return { code, out: d.decode(stdout) + d.decode(stderr) };
}

async function qcow2(name: string, size: number, ...options: string[]): Promise<string> {
  const path = join(dir, name);
  const r = await run("qemu-img", "create", "-q", "-f", "qcow2", ...options, path, String(size));
  assert.equal(r.code, 0, r.out);
  return path;
}

async function assertIdentical(raw: string, image: string): Promise<void> {
  const check = await run("qemu-img", "check", image);
  assert.equal(check.code, 0, check.out);
  assert.match(check.out, /No errors were found on the image/);
  const compare = await run("qemu-img", "compare", "-f", "raw", "-F", "qcow2", raw, image);
  assert.equal(compare.code, 0, compare.out);
  assert.match(compare.out, /Images are identical/);
}

/** Runs `vma extract -r` with `map` written to a file. */
async function restore(archive: string, map: string) {
  const mapPath = join(dir, `map-${crypto.randomUUID()}`);
  await Deno.writeTextFile(mapPath, map);
  return await vma(["extract", "-r", mapPath, archive, join(dir, `out-${crypto.randomUUID()}`)], {
    cwd: dir,
  });
}

Deno.test({
  name: "vma extract -r writes into qcow2 images from qemu-img create, plain and preallocated",
  ignore,
  async fn() {
    const a = await qcow2("plain.qcow2", 4194304);
    const b = await qcow2("prealloc.qcow2", 1053184, "-o", "preallocation=metadata");
    const r = await restore(
      "small.vma",
      `format=qcow2:0:drive-scsi0=${a}\nformat=qcow2:1:drive-scsi1=${b}\ndone\n`,
    );
    assert.equal(r.stderr, "");
    assert.equal(r.code, 0);
    await assertIdentical(join(dir, "disk0.raw"), a);
    await assertIdentical(join(dir, "disk1.raw"), b);
  },
});

Deno.test({
  name: "vma extract -r with 1: makes a qcow2 image holding old data identical to the source",
  ignore,
  async fn() {
    const a = await qcow2("old-a.qcow2", 4194304);
    const b = await qcow2("old-b.qcow2", 1053184);
    for (
      const [path, commands] of [
        [a, ["write -P 0x55 0 4M"]],
        [b, ["write -P 0x77 0 1M", "write -z 0 64k"]], // a zero cluster still allocated
      ] as [string, string[]][]
    ) {
      const r = await run("qemu-io", ...commands.flatMap((c) => ["-c", c]), path);
      assert.equal(r.code, 0, r.out);
    }
    const r = await restore(
      "small.vma",
      `format=qcow2:1:drive-scsi0=${a}\nformat=qcow2:1:drive-scsi1=${b}\ndone\n`,
    );
    assert.equal(r.code, 0, r.stderr);
    await assertIdentical(join(dir, "disk0.raw"), a);
    await assertIdentical(join(dir, "disk1.raw"), b);
  },
});

Deno.test({
  name: "vma extract -r writes clusters arriving out of order into a qcow2 image",
  ignore,
  async fn() {
    const size = 9 * 1024 * 1024 + 512 * 3;
    const data = new Uint8Array(size);
    for (let at = 0; at < size; at += 65536 * 3) {
      data.set(pseudoRandom(Math.min(40000, size - at), at), at);
    }
    const writer = new VmaWriter();
    const device = writer.addDevice("drive-virtio0", size);
    const out = collect(writer.readable);
    const clusters = [...Array(Math.ceil(size / 65536)).keys()].reverse();
    for (const c of clusters) {
      await device.write(c * 65536, data.subarray(c * 65536, Math.min(size, (c + 1) * 65536)));
    }
    await writer.close();
    await Deno.writeFile(join(dir, "reversed.vma"), await out);
    await Deno.writeFile(join(dir, "reversed.raw"), data);
    const image = await qcow2("reversed.qcow2", size);
    const r = await restore("reversed.vma", `format=qcow2:0:drive-virtio0=${image}\n`);
    assert.equal(r.code, 0, r.stderr);
    await assertIdentical(join(dir, "reversed.raw"), image);
  },
});

Deno.test({
  name: "vma extract -r refuses a qcow2 target of the wrong size or that is not qcow2, in one line",
  ignore,
  async fn() {
    const small = await qcow2("small.qcow2", 65536);
    const huge = await qcow2("huge.qcow2", 2 ** 50, "-o", "cluster_size=2M");
    const notQcow2 = join(dir, "not.qcow2");
    await Deno.writeFile(notQcow2, new Uint8Array(4194304));
    for (
      const [path, message] of [
        [
          small,
          /^vma: vma_reader_register_bs for stream drive-scsi0 failed - unexpected size 65536 != 4194304\n$/,
        ],
        [
          huge,
          /^vma: vma_reader_register_bs for stream drive-scsi0 failed - unexpected size 1125899906842624 != 4194304\n$/,
        ],
        [
          notQcow2,
          /^vma: can't open file \S*not\.qcow2 - Not a qcow2 image: the file does not start with "QFI\\xfb"\n$/,
        ],
      ] as [string, RegExp][]
    ) {
      const r = await restore(
        "small.vma",
        `format=qcow2:0:drive-scsi0=${path}\nskip=drive-scsi1\n`,
      );
      assert.equal(r.code, 1);
      assert.match(r.stderr, message);
    }
  },
});

Deno.test({
  name: "vma extract -r - writes into a qcow2 image from standard input, as qmrestore runs it",
  ignore,
  async fn() {
    const a = await qcow2("stdin.qcow2", 4194304);
    const mapPath = join(dir, "map-stdin");
    await Deno.writeTextFile(mapPath, `format=qcow2:0:drive-scsi0=${a}\nskip=drive-scsi1\ndone\n`);
    const r = await vma(["extract", "-v", "-r", mapPath, "-", join(dir, "out-stdin")], {
      cwd: dir,
      stdin: await Deno.readFile(join(dir, "small.vma")),
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^CFG: size: 317 name: qemu-server\.conf\n/);
    await assertIdentical(join(dir, "disk0.raw"), a);
  },
});

Deno.test({
  name: "vma extract -r refuses a qcow2 target whose L2 entry points at its own metadata",
  ignore,
  async fn() {
    const path = await qcow2("hostile.qcow2", 4194304);
    const io = await run("qemu-io", "-c", "write -P 0x11 0 64k", path);
    assert.equal(io.code, 0, io.out);
    // Point guest cluster 0 at the refcount table (the header's offset 48).
    const bytes = await Deno.readFile(path);
    const v = new DataView(bytes.buffer);
    const l1 = Number(v.getBigUint64(40));
    const l2 = Number(v.getBigUint64(l1) & 0x00fffffffffffe00n);
    const table = v.getBigUint64(48);
    v.setBigUint64(l2, table | (1n << 63n));
    await Deno.writeFile(path, bytes);
    const r = await restore("small.vma", `format=qcow2:0:drive-scsi0=${path}\nskip=drive-scsi1\n`);
    assert.equal(r.code, 1);
    assert.equal(
      r.stderr,
      `vma: restore failed - Corrupt qcow2 image: guest cluster 0 overlaps the image's metadata at ${table}\n`,
    );
    // Nothing was written over the refcount table (or anywhere else).
    assert.deepEqual(await Deno.readFile(path), bytes);
  },
});
