// `vma extract --format`: disks written straight as qcow2 (plain and
// compressed) from archives whose clusters are out of order, from a file, from
// standard input and from .vma.zst; checked with qemu-img info, check and
// compare against the raw sources; -d, failures and option errors.
import assert from "node:assert/strict";
import { join } from "node:path";
import { VmaWriter } from "../../src/vma/vma_writer.ts";
import { collect, pseudoRandom } from "../_helpers.ts";
import { have, vma } from "../_cli_run.ts";
import { openPath, qemuMissing } from "../_disk_image_helpers.ts";
import { measureVma, NO_PEAK_RSS } from "./_peak_rss.ts";
import { IMAGE_FORMATS } from "../../src/cli/_image_formats.ts";

const CLUSTER = 65536;
const ignore = qemuMissing !== undefined;
const noZstd = have("zstd") ? undefined : "zstd is not installed (apt-get install zstd)";
if (noZstd) console.error(`Skipping the .vma.zst extract --format tests: ${noZstd}`);

const dir = await Deno.makeTempDir({ prefix: "vmakit-extract-format-" });
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

/** A disk of `size` bytes: random, patterned and zero clusters, and partly zero ones. */
function disk(size: number, seed: number): Uint8Array {
  const data = new Uint8Array(size);
  const kinds = pseudoRandom(Math.ceil(size / 4096), seed);
  for (let b = 0; b * 4096 < size; b++) {
    const from = b * 4096;
    const to = Math.min(size, from + 4096);
    if (kinds[b] % 3 === 0) data.set(pseudoRandom(to - from, seed * 1000 + b), from);
    else if (kinds[b] % 3 === 1) data.fill(b & 0xff || 1, from, to);
  }
  return data;
}

const DISKS: [string, Uint8Array][] = [
  ["drive-scsi0", disk(3 * CLUSTER + 12800, 1)],
  ["drive-virtio1", new Uint8Array(CLUSTER * 16 + 512)], // all zero
  ["drive-sata2", disk(40 * CLUSTER + 4096, 2)],
];

/** An archive of DISKS whose clusters come in a shuffled order, interleaved across devices. */
async function shuffledArchive(): Promise<Uint8Array> {
  const writer = new VmaWriter();
  writer.addConfig("qemu-server.conf", "memory: 512\n");
  const devices = DISKS.map(([name, data]) => writer.addDevice(name, data.length));
  const out = collect(writer.readable);
  const pieces: [number, number][] = [];
  DISKS.forEach(([, data], d) => {
    for (let at = 0; at < data.length; at += CLUSTER) pieces.push([d, at]);
  });
  const order = pseudoRandom(pieces.length, 42);
  pieces.sort((a, b) => order[pieces.indexOf(a)] - order[pieces.indexOf(b)]);
  for (const [d, at] of pieces) {
    const data = DISKS[d][1];
    await devices[d].write(at, data.subarray(at, Math.min(data.length, at + CLUSTER)));
  }
  await writer.close();
  return await out;
}

const archive = await shuffledArchive();
const archivePath = join(dir, "shuffled.vma");
await Deno.writeFile(archivePath, archive);
for (const [name, data] of DISKS) await Deno.writeFile(join(dir, `${name}.raw`), data);
if (!noZstd) {
  const zst = await new Deno.Command("zstd", { args: ["-q", "-f", archivePath] }).output();
  assert.ok(zst.success);
}

async function qemuImg(...args: string[]): Promise<{ code: number; out: string }> {
  const { code, stdout, stderr } = await new Deno.Command("qemu-img", { args }).output();
  const d = new TextDecoder();
  return { code, out: d.decode(stdout) + d.decode(stderr) };
}

/** Checks every qcow2 disk in `target` with qemu-img and vmakit's reader against its source. */
async function checkQcow2Disks(target: string, compression: string): Promise<void> {
  const names = [...Deno.readDirSync(target)].map((e) => e.name).sort();
  assert.deepEqual(names, [
    "disk-drive-sata2.qcow2",
    "disk-drive-scsi0.qcow2",
    "disk-drive-virtio1.qcow2",
    "qemu-server.conf",
  ]);
  for (const [name, data] of DISKS) {
    const path = join(target, `disk-${name}.qcow2`);
    const info = JSON.parse((await qemuImg("info", "--output=json", path)).out);
    assert.equal(info.format, "qcow2");
    assert.equal(info["format-specific"].data["compression-type"], compression);
    const check = await qemuImg("check", path);
    assert.equal(check.code, 0, check.out);
    assert.match(check.out, /No errors were found on the image/);
    const compare = await qemuImg(
      "compare",
      "-f",
      "raw",
      "-F",
      "qcow2",
      join(dir, `${name}.raw`),
      path,
    );
    assert.equal(compare.code, 0, compare.out);
    assert.match(compare.out, /Images are identical/);
    const image = await openPath(path);
    try {
      assert.deepEqual(await image.read(0, data.length), data);
    } finally {
      await image.close();
    }
  }
  // The all-zero disk has no data cluster: header, refcount block, L1, refcount table.
  assert.equal((await Deno.stat(join(target, "disk-drive-virtio1.qcow2"))).size, 4 * CLUSTER);
}

for (
  const [title, extra, compression] of [
    ["qcow2", [], "zlib"],
    ["qcow2 --compress zlib", ["--compress", "zlib"], "zlib"],
    ["qcow2 --compress zstd", ["--compress", "zstd"], "zstd"],
  ] as [string, string[], string][]
) {
  Deno.test({
    name: `vma extract --format ${title} writes images qemu-img finds identical, from a file`,
    ignore,
    async fn() {
      const target = join(dir, `file-${crypto.randomUUID()}`);
      const r = await vma(["extract", archivePath, target, "--format", "qcow2", ...extra]);
      assert.equal(r.stderr, "");
      assert.equal(r.code, 0);
      assert.match(r.stdout, /^DEVINFO .*\/tmp-disk-drive-scsi0\.qcow2 209408\n/);
      await checkQcow2Disks(target, compression);
    },
  });
}

Deno.test({
  name: "vma extract --format qcow2 writes the same images from standard input",
  ignore,
  async fn() {
    const target = join(dir, "stdin");
    const r = await vma(["extract", "-", target, "--format", "qcow2"], { stdin: archive });
    assert.equal(r.stderr, "");
    assert.equal(r.code, 0);
    await checkQcow2Disks(target, "zlib");
  },
});

Deno.test({
  name: "vma extract --format qcow2 --compress zstd writes the same images from a .vma.zst",
  ignore: ignore || noZstd !== undefined,
  async fn() {
    const target = join(dir, "zst");
    const r = await vma([
      "extract",
      `${archivePath}.zst`,
      target,
      "--format=qcow2",
      "--compress=zstd",
    ]);
    assert.equal(r.stderr, "");
    assert.equal(r.code, 0);
    await checkQcow2Disks(target, "zstd");
  },
});

Deno.test({
  name: "vma extract --format qcow2 -d writes only the named device",
  ignore,
  async fn() {
    const target = join(dir, "only");
    const r = await vma(["extract", archivePath, target, "--format", "qcow2", "-d", "drive-sata2"]);
    assert.equal(r.code, 0, r.stderr);
    const names = [...Deno.readDirSync(target)].map((e) => e.name).sort();
    assert.deepEqual(names, ["disk-drive-sata2.qcow2", "qemu-server.conf"]);
    const compare = await qemuImg(
      "compare",
      "-f",
      "raw",
      "-F",
      "qcow2",
      join(dir, "drive-sata2.raw"),
      join(target, "disk-drive-sata2.qcow2"),
    );
    assert.equal(compare.code, 0, compare.out);
  },
});

Deno.test("vma extract --format qcow2 removes the target directory when the archive is cut short", async () => {
  const target = join(dir, "cut");
  const cut = join(dir, "cut.vma");
  await Deno.writeFile(cut, archive.subarray(0, archive.length - 70000));
  const r = await vma(["extract", cut, target, "--format", "qcow2"]);
  assert.equal(r.code, 1);
  assert.equal(r.stderr.split("\n").length, 2, r.stderr); // one line and its newline
  assert.match(r.stderr, /^vma: /);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
  assert.throws(() => Deno.statSync(target), Deno.errors.NotFound);
});

for (
  const [args, message, code] of [
    [
      ["--format", "qcow3"],
      'vma: invalid --format "qcow3" (one of raw, qcow2, vmdk, vhdx, vdi, vpc)\n',
      2,
    ],
    [
      ["--format", "a\nb"],
      'vma: invalid --format "a\\nb" (one of raw, qcow2, vmdk, vhdx, vdi, vpc)\n',
      2,
    ],
    [["--compress", "zlib"], "vma: --compress needs --format qcow2\n", 2],
    [
      ["--format", "qcow2", "--compress", "lz4"],
      'vma: invalid --compress "lz4" (zlib or zstd)\n',
      2,
    ],
    [
      ["--format", "qcow2", "--vmdk-subformat", "streamOptimized"],
      "vma: --vmdk-subformat needs --format vmdk\n",
      2,
    ],
    [
      ["--format", "vmdk", "--vmdk-subformat", "flat"],
      'vma: invalid --vmdk-subformat "flat" (monolithicSparse or streamOptimized)\n',
      2,
    ],
    [
      ["--format", "qcow2", "-r", "/nonexistent"],
      "vma: --format cannot be used with -r (the map names each target's format)\n",
      2,
    ],
  ] as [string[], string, number][]
) {
  Deno.test(`vma extract ${JSON.stringify(args)} is refused before anything is written`, async () => {
    const target = join(dir, `refused-${crypto.randomUUID()}`);
    const r = await vma(["extract", archivePath, target, ...args]);
    assert.equal(r.code, code);
    assert.equal(r.stderr.split("\n")[0] + "\n", message);
    assert.throws(() => Deno.statSync(target), Deno.errors.NotFound);
  });
}

// Every other format wired into the registry: from a file and from standard input,
// checked with qemu-img (check where the format has checks) and compared with the sources.
const OTHER_FORMATS: [string, string[]][] = Object.keys(IMAGE_FORMATS)
  .filter((f) => f !== "raw" && f !== "qcow2")
  .flatMap((f) =>
    f === "vmdk"
      ? [[f, []], [f, ["--vmdk-subformat", "streamOptimized"]]] as [string, string[]][]
      : [[f, []] as [string, string[]]]
  );
for (const [format, extra] of OTHER_FORMATS) {
  for (const input of ["file", "stdin"]) {
    Deno.test({
      name: `vma extract --format ${format} ${
        extra.join(" ")
      } from a ${input} writes images qemu-img finds identical`,
      ignore,
      async fn() {
        const target = join(dir, `${format}-${crypto.randomUUID()}`);
        const r = input === "file"
          ? await vma(["extract", archivePath, target, "--format", format, ...extra])
          : await vma(["extract", "-", target, "--format", format, ...extra], { stdin: archive });
        assert.equal(r.stderr, "");
        assert.equal(r.code, 0);
        const ext = IMAGE_FORMATS[format].ext;
        for (const [name] of DISKS) {
          const path = join(target, `disk-${name}.${ext}`);
          const info = JSON.parse((await qemuImg("info", "--output=json", path)).out);
          assert.equal(info.format, format);
          const check = await qemuImg("check", "-f", format, path);
          // 63: the format has no checks (qemu-img check's documented status).
          assert.ok(check.code === 0 || check.code === 63, check.out);
          const compare = await qemuImg(
            "compare",
            "-f",
            "raw",
            "-F",
            format,
            join(dir, `${name}.raw`),
            path,
          );
          assert.equal(compare.code, 0, compare.out);
        }
      },
    });
  }
}

/**
 * Extracts, from standard input, a device of `size` bytes whose clusters are
 * random data with a counter (none compresses) to a qcow2 with `compress`
 * clusters in `dir/name`; returns the peak RSS.
 */
async function extractRandomClusters(
  compress: "zlib" | "zstd",
  size: number,
  seed: number,
  name: string,
): Promise<number> {
  const writer = new VmaWriter();
  const device = writer.addDevice("drive-scsi0", size);
  const run = measureVma(
    ["extract", "-", join(dir, name), "--format", "qcow2", "--compress", compress],
    dir,
  );
  const feed = writer.readable.pipeTo(run.child.stdin);
  const block = pseudoRandom(CLUSTER, seed);
  for (let at = 0; at < size; at += CLUSTER) {
    new DataView(block.buffer).setUint32(0, at / CLUSTER + 1);
    await device.write(at, block);
  }
  await writer.close();
  await feed;
  const result = await run.result();
  assert.equal(result.code, 0, result.stderr);
  console.error(`peak RSS ${(result.peakRss / 2 ** 20).toFixed(1)} MiB`);
  return result.peakRss;
}

Deno.test({
  name:
    "vma extract --format qcow2 --compress zlib of a 160 MiB disk from standard input stays below 88 MiB peak RSS (random, incompressible clusters: the worst case)",
  ignore: ignore || NO_PEAK_RSS !== undefined,
  async fn() {
    const peakRss = await extractRandomClusters("zlib", 160 * 1024 * 1024, 9, "big");
    // Measured 75 MiB with one zlib context and one scratch buffer for every
    // cluster; 102 MiB with deflateRawSync (a context and a buffer each).
    assert.ok(peakRss < 88 * 2 ** 20, `peak RSS ${peakRss} bytes`);
    const check = await qemuImg("check", join(dir, "big", "disk-drive-scsi0.qcow2"));
    assert.equal(check.code, 0, check.out);
    // Incompressible clusters are stored as they are, as QEMU stores them.
    assert.match(check.out, /2560\/2560 = 100\.00% allocated, .* 0\.00% compressed clusters/);
  },
});

Deno.test({
  name:
    "vma extract --format qcow2 --compress zstd of a 256 MiB disk of random clusters stays below 88 MiB peak RSS",
  ignore: ignore || NO_PEAK_RSS !== undefined,
  async fn() {
    const peakRss = await extractRandomClusters("zstd", 256 * 1024 * 1024, 11, "big-zstd");
    // Measured 74-77 MiB with one zstd context and one scratch buffer for
    // every cluster; 91-93 MiB with a copy of each compressed cluster.
    assert.ok(peakRss < 88 * 2 ** 20, `peak RSS ${peakRss} bytes`);
    const check = await qemuImg("check", join(dir, "big-zstd", "disk-drive-scsi0.qcow2"));
    assert.equal(check.code, 0, check.out);
  },
});
