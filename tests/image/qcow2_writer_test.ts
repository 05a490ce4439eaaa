// createQcow2Writer: clusters in any order, partial clusters, zero clusters,
// compression, small L2 caches and refcount blocks past 2 GiB, checked with
// qemu-img (check, compare) and vmakit's own qcow2 reader.
import assert from "node:assert/strict";
import { join } from "node:path";
import { deflateRawSync, zstdCompressSync } from "node:zlib";
import { createQcow2Writer, type Qcow2WriterOptions } from "../../src/image/qcow2_writer.ts";
import { FileWriter } from "../../src/cli/_file_writer.ts";
import { checkAgainstQemu, knownData, openPath, qemuMissing } from "../_disk_image_helpers.ts";
import { pseudoRandom } from "../_helpers.ts";

const ignore = qemuMissing !== undefined;
const CLUSTER = 65536;
const BLOCK = 4096;

/** Runs a command; returns its exit status and output. */
async function qemuImg(...args: string[]): Promise<{ code: number; out: string }> {
  const { code, stdout, stderr } = await new Deno.Command("qemu-img", { args }).output();
  const d = new TextDecoder();
  return { code, out: d.decode(stdout) + d.decode(stderr) };
}

/** The data of a test disk: random, patterned and zero 4 KiB blocks, and untouched ones. */
function diskData(size: number, seed: number): { data: Uint8Array; written: boolean[] } {
  const data = new Uint8Array(size);
  const rnd = pseudoRandom(Math.ceil(size / BLOCK) * 2, seed);
  const pattern = knownData(size, seed);
  const written: boolean[] = [];
  for (let b = 0; b * BLOCK < size; b++) {
    const kind = rnd[b] % 5; // 0: not written, 1: written zeros, 2: random, 3, 4: pattern
    written.push(kind !== 0);
    const from = b * BLOCK;
    const to = Math.min(size, from + BLOCK);
    if (kind === 2) data.set(pseudoRandom(to - from, seed + b), from);
    else if (kind >= 3) data.set(pattern.subarray(from, to), from);
  }
  // Every fourth cluster stays empty.
  for (let c = 0; c * CLUSTER < size; c += 4) {
    data.fill(0, c * CLUSTER, Math.min(size, (c + 1) * CLUSTER));
    for (let b = c * 16; b < c * 16 + 16 && b < written.length; b++) written[b] = false;
  }
  return { data, written };
}

/** Writes `data` into a new qcow2 image block run by block run, clusters shuffled. */
async function writeImage(
  path: string,
  data: Uint8Array,
  written: boolean[],
  options: Qcow2WriterOptions,
  seed: number,
): Promise<void> {
  const file = FileWriter.create(path);
  const writer = await createQcow2Writer(file, data.length, options);
  const clusters = [...Array(Math.ceil(data.length / CLUSTER)).keys()];
  const order = pseudoRandom(clusters.length * 4, seed);
  clusters.sort((a, b) =>
    new DataView(order.buffer).getUint32(a * 4) - new DataView(order.buffer).getUint32(b * 4)
  );
  for (const c of clusters) {
    // Runs of written blocks inside the cluster, as extractVma writes them.
    let b = c * 16;
    const end = Math.min(c * 16 + 16, written.length);
    while (b < end) {
      if (!written[b]) {
        b++;
        continue;
      }
      let e = b;
      while (e < end && written[e]) e++;
      const from = b * BLOCK;
      await writer.write(from, data.slice(from, Math.min(data.length, e * BLOCK)));
      b = e;
    }
  }
  await writer.close();
  file.close();
}

const dir = ignore ? "" : await Deno.makeTempDir({ prefix: "vmakit-qcow2-writer-" });
globalThis.addEventListener("unload", () => {
  if (!ignore) Deno.removeSync(dir, { recursive: true });
});

const zstd = (data: Uint8Array) => Promise.resolve(new Uint8Array(zstdCompressSync(data)));

for (
  const [title, options] of [
    ["uncompressed", {}],
    ["zlib (built-in deflate)", { compress: "zlib" }],
    ["zlib (node:zlib deflate)", {
      compress: "zlib",
      deflate: (d: Uint8Array) =>
        Promise.resolve(new Uint8Array(deflateRawSync(d, { windowBits: 12 }))),
    }],
    ["zstd", { compress: "zstd", zstd }],
  ] as [string, Qcow2WriterOptions][]
) {
  for (const size of [3 * CLUSTER + 12345, 5 * 1024 * 1024 + 512, 1000]) {
    Deno.test({
      name:
        `createQcow2Writer writes ${title} images of ${size} bytes, clusters out of order, that qemu-img finds identical`,
      ignore,
      async fn() {
        const path = join(dir, `${crypto.randomUUID()}.qcow2`);
        const { data, written } = diskData(size, size % 97);
        await writeImage(path, data, written, options, 7);
        const check = await qemuImg("check", path);
        assert.equal(check.code, 0, check.out);
        assert.match(check.out, /No errors were found on the image/);
        const info = JSON.parse((await qemuImg("info", "--output=json", path)).out);
        assert.equal(info.format, "qcow2");
        assert.equal(info["virtual-size"], Math.ceil(size / 512) * 512);
        if (options.compress === "zstd") {
          assert.equal(info["format-specific"].data["compression-type"], "zstd");
        }
        const rawPath = `${path}.raw`;
        await Deno.writeFile(rawPath, data);
        const compare = await qemuImg("compare", "-f", "raw", "-F", "qcow2", rawPath, path);
        assert.equal(compare.code, 0, compare.out);
        assert.match(compare.out, /Images are identical/);
        await checkAgainstQemu(path, dir, "qcow2");
      },
    });
  }
}

Deno.test({
  name: "createQcow2Writer leaves an all-zero disk without data clusters",
  ignore,
  async fn() {
    const path = join(dir, "zero.qcow2");
    const file = FileWriter.create(path);
    const writer = await createQcow2Writer(file, 10 * CLUSTER + 7, { compress: "zlib" });
    await writer.write(0, new Uint8Array(3 * CLUSTER)); // zeros written still allocate nothing
    await writer.close();
    file.close();
    const map = JSON.parse((await qemuImg("map", "--output=json", path)).out);
    assert.ok(map.every((m: { data: boolean }) => !m.data), JSON.stringify(map));
    // Header, refcount block, L1 table, refcount table: 4 clusters and no L2 table.
    assert.equal((await Deno.stat(path)).size, 4 * CLUSTER);
    assert.equal((await qemuImg("check", path)).code, 0);
  },
});

Deno.test({
  name:
    "createQcow2Writer evicts L2 tables to the file and grows refcount blocks past 2 GiB of file",
  ignore,
  async fn() {
    // 40,000 data clusters of one 4 KiB block each: a 2.6 GB sparse file, 3 refcount
    // blocks' ranges and 5 L2 tables through a cache of one.
    const path = join(dir, "big.qcow2");
    const size = 40000 * CLUSTER;
    const file = FileWriter.create(path);
    const writer = await createQcow2Writer(file, size, { l2CacheBytes: CLUSTER });
    const block = new Uint8Array(BLOCK);
    const count = 40000;
    for (let i = 0; i < count; i++) {
      const c = (i * 7919) % count; // every cluster once, out of order
      new DataView(block.buffer).setUint32(0, c + 1);
      await writer.write(c * CLUSTER + (c % 16) * BLOCK, block);
    }
    await writer.close();
    file.close();
    const check = await qemuImg("check", path);
    assert.equal(check.code, 0, check.out);
    assert.match(check.out, /No errors were found on the image/);
    const disk = await openPath(path);
    try {
      for (const c of [0, 1, 32767, 32768, 39999]) {
        const got = await disk.read(c * CLUSTER + (c % 16) * BLOCK, 8);
        assert.equal(new DataView(got.buffer, got.byteOffset).getUint32(0), c + 1, `cluster ${c}`);
      }
    } finally {
      await disk.close();
    }
  },
});

Deno.test("createQcow2Writer refuses bad sizes, options and writes", async () => {
  const target = { write: () => Promise.resolve(), truncate: () => Promise.resolve() };
  await assert.rejects(
    createQcow2Writer(target, -1),
    new RangeError("Invalid qcow2 size -1: it must be a non-negative safe integer"),
  );
  await assert.rejects(
    createQcow2Writer(target, 2 ** 52),
    RangeError,
  );
  await assert.rejects(
    createQcow2Writer(target, 1024, { compress: "zstd" }),
    new TypeError(
      'Invalid qcow2 options: compress "zstd" needs a zstd compressor (the zstd option)',
    ),
  );
  await assert.rejects(
    createQcow2Writer(target, 1024, { compress: "lz4" as "zlib" }),
    new TypeError('Invalid qcow2 options: compress must be "zlib" or "zstd", not "lz4"'),
  );
  const writer = await createQcow2Writer(target, 1024);
  await assert.rejects(
    writer.write(1000, new Uint8Array(100)),
    new RangeError("Cannot write 100 bytes at offset 1000: the image holds 1024 bytes"),
  );
  await writer.close();
  await assert.rejects(
    writer.write(0, new Uint8Array(1)),
    new TypeError("Cannot write: the qcow2 image is closed"),
  );
});

Deno.test("createQcow2Writer refuses a write to a compressed cluster already stored", async () => {
  const target = { write: () => Promise.resolve(), truncate: () => Promise.resolve() };
  const writer = await createQcow2Writer(target, 4 * CLUSTER, {
    compress: "zlib",
    pendingBytes: CLUSTER,
  });
  await writer.write(0, new Uint8Array(BLOCK).fill(1));
  await writer.write(CLUSTER, new Uint8Array(BLOCK).fill(2)); // pushes cluster 0 out
  await assert.rejects(
    writer.write(BLOCK, new Uint8Array(BLOCK).fill(3)),
    new RangeError(
      "Cannot write at offset 4096: its cluster was already compressed (writes to one cluster must arrive within 65536 bytes of pending clusters)",
    ),
  );
  // Errors are sticky.
  await assert.rejects(writer.close(), RangeError);
});

Deno.test({
  name: "createQcow2Writer writes a 16 TiB disk with a few clusters into a small valid image",
  ignore,
  async fn() {
    const path = join(dir, "huge.qcow2");
    const size = 16 * 2 ** 40;
    const file = FileWriter.create(path);
    const writer = await createQcow2Writer(file, size);
    for (const at of [size - CLUSTER, 0, 2 ** 40 + 12 * BLOCK]) {
      await writer.write(at, new Uint8Array(BLOCK).fill(0x5a));
    }
    await writer.close();
    file.close();
    const check = await qemuImg("check", path);
    assert.equal(check.code, 0, check.out);
    assert.match(check.out, /No errors were found on the image/);
    // Header, refcount block, 3 L2 tables, 3 data clusters, a 256 KiB L1 table, refcount table.
    assert.equal((await Deno.stat(path)).size, 13 * CLUSTER);
    const image = await openPath(path);
    try {
      assert.equal(image.size, size);
      assert.deepEqual(await image.read(2 ** 40 + 12 * BLOCK - 1, 2), new Uint8Array([0, 0x5a]));
    } finally {
      await image.close();
    }
  },
});
