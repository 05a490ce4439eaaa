// The closing figures of verify/extract -v and the zeros of create -v, on a
// five-disk archive with partial last clusters, all-zero clusters and mixed
// masks. Every expected number is worked out by hand below (docs:
// vma-format.md, section 3 "How the two closing figures are counted" and
// 6.5), and was checked against Proxmox's own `vma` on the same raw disks.
import { NO_CONF } from "../cli/_warnings.ts";
import assert from "node:assert/strict";
import { verifyVma, VmaReader, VmaWriter } from "../../mod.ts";
import { formatSummary } from "../../src/cli/_proxmox_text.ts";
import { vma } from "../_cli_run.ts";
import { collect, pseudoRandom } from "../_helpers.ts";
import { concat, craftExtent, craftHeader } from "../_craft.ts";

const K = 4096;
const C = 65536;

/** Random bytes with no all-zero 4 KiB block (so every data block is stored). */
function random(length: number, seed: number): Uint8Array {
  const bytes = pseudoRandom(length, seed);
  for (let i = 0; i < length; i += 512) bytes[i] |= 1;
  return bytes;
}

/**
 * The five disks (ids 1..5), their cluster masks, and per disk:
 * sparse (Proxmox's "sparse bytes" share), partial (its "4K zero blocks" share),
 * zeros (create -v).
 *
 * A "drive-scsi0", 143,872 bytes = 2 clusters + 12,800 bytes, random:
 *   masks ffff, ffff, 000f (block 3 holds the end at 12,800 of 16,384).
 *   sparse 0 (blocks 4..15 start past the end); partial 0;
 *   zeros = 12 · 4096 = 49,152 (padding blocks count), saved 94,720.
 * B "drive-scsi1", 540,672 bytes = 8 clusters + 16,384 bytes:
 *   cluster 0 zero (mask 0): sparse 65,536;
 *   cluster 1 data in blocks 0 and 15 (mask 8001): 14 zero blocks, 57,344 sparse and partial;
 *   clusters 2..7 random (ffff);
 *   cluster 8 (4 blocks in the device) data in block 1 only (mask 0002): blocks 0, 2, 3
 *   are 3 · 4096 = 12,288 sparse and partial, blocks 4..15 past the end count nothing.
 *   sparse 65,536 + 57,344 + 12,288 = 135,168; partial 57,344 + 12,288 = 69,632;
 *   zeros 65,536 + 57,344 + 15 · 4096 = 184,320; saved 540,672 − 184,320 = 356,352.
 * C "drive-scsi2", 3 MiB = 48 clusters, all zero: sparse 48 · 65,536 = 3,145,728;
 *   partial 0; zeros 3,145,728, saved 0.
 * D "drive-scsi3", 200,192 bytes = 3 clusters + 3,584 bytes (7 sectors):
 *   cluster 0 random (ffff); cluster 1 data in block 7 (mask 0080): 15 · 4096 = 61,440
 *   sparse and partial; cluster 2 zero: 65,536 sparse; cluster 3 random (mask 0001):
 *   blocks 1..15 start past the end, nothing.
 *   sparse 126,976; partial 61,440; zeros 61,440 + 65,536 + 61,440 = 188,416; saved 11,776.
 * E "drive-scsi4", 70,144 bytes = 1 cluster + 4,608 bytes (9 sectors):
 *   cluster 0 random (ffff); cluster 1 all zero (mask 0): block 0 is 4,096 bytes, block 1
 *   is cut to sectors 136..137, 512 bytes, blocks 2..15 nothing: sparse 4,608 (not 65,536);
 *   partial 0 (mask 0); zeros 65,536, saved 70,144 − 65,536 = 4,608.
 *
 * Totals: clusters 3 + 9 + 48 + 4 + 2 = 66, bytes 66 · 65,536 = 4,325,376;
 * sparse 0 + 135,168 + 3,145,728 + 126,976 + 4,608 = 3,412,480 (78.894…% → "78.9");
 * partial 69,632 + 61,440 = 131,072, over 4,325,376 − 3,412,480 = 912,896 → 14.358…% → "14.4".
 */
function disks(): { name: string; data: Uint8Array }[] {
  const a = random(143872, 1);
  const b = new Uint8Array(540672);
  b.set(random(K, 2), C); // cluster 1, block 0
  b.set(random(K, 3), 2 * C - K); // cluster 1, block 15
  b.set(random(6 * C, 4), 2 * C); // clusters 2..7
  b.set(random(K, 5), 8 * C + K); // cluster 8, block 1
  const c = new Uint8Array(3 * 1024 * 1024);
  const d = new Uint8Array(200192);
  d.set(random(C, 6), 0);
  d.set(random(K, 7), C + 7 * K); // cluster 1, block 7
  d.set(random(3584, 8), 3 * C); // cluster 3: its 3,584 bytes
  const e = new Uint8Array(70144);
  e.set(random(C, 9), 0);
  return [a, b, c, d, e].map((data, i) => ({ name: `drive-scsi${i}`, data }));
}

const MASKS = [
  [0xffff, 0xffff, 0x000f],
  [0, 0x8001, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0x0002],
  Array(48).fill(0),
  [0xffff, 0x0080, 0, 0x0001],
  [0xffff, 0],
];
const SPARSE = [0, 135168, 3145728, 126976, 4608];
const ZEROS = [49152, 184320, 3145728, 188416, 65536];
const CLOSING = "total bytes read 4325376, sparse bytes 3412480 (78.9%)\n" +
  "space reduction due to 4K zero blocks 14.4%\n";

async function archive(): Promise<{ bytes: Uint8Array; zeros: number[] }> {
  const writer = new VmaWriter();
  const devices = disks().map((d) => ({ ...d, dev: writer.addDevice(d.name, d.data.length) }));
  const out = collect(writer.readable);
  const zeros: number[] = [];
  for (const { dev, data } of devices) {
    const before = writer.stats.zeroBytes;
    await dev.write(0, data);
    await dev.close();
    zeros.push(writer.stats.zeroBytes - before);
  }
  await writer.close();
  return { bytes: await out, zeros };
}

Deno.test("VmaWriter stores the expected masks for the five test disks", async () => {
  const { bytes } = await archive();
  const masks: number[][] = MASKS.map(() => []);
  for await (const c of new VmaReader(ReadableStream.from([bytes])).clusters()) {
    masks[c.device.id - 1][c.cluster] = c.mask;
  }
  assert.deepEqual(masks, MASKS);
});

Deno.test("VmaWriter stats.zeroBytes counts zeros as Proxmox's create -v, padding included", async () => {
  const { zeros } = await archive();
  assert.deepEqual(zeros, ZEROS);
});

Deno.test("verifyVma counts Proxmox's closing figures, cut at each device end", async () => {
  const { bytes } = await archive();
  const summary = await verifyVma(new VmaReader(ReadableStream.from([bytes])));
  assert.equal(summary.clusters, 66);
  assert.equal(summary.bytes, 4325376);
  assert.equal(summary.sparseBytes, 3412480);
  assert.equal(summary.zeroBlockBytes, 131072);
  assert.deepEqual(summary.devices.map((d) => d.sparseBytes), SPARSE);
  assert.equal(formatSummary(summary), CLOSING);
});

Deno.test("verifyVma ignores 0xffff clusters and cuts partial masks in crafted extents", async () => {
  // Device 1: 70,144 bytes (1 cluster + 9 sectors). Cluster 0 mask 00ff: blocks 8..15
  // are 8 · 4096 = 32,768 sparse and partial. Cluster 1 mask ffff (as old writers
  // and vma.py pad the last cluster): counts nothing at all.
  // Device 2: 100,352 bytes (1 cluster + 34,816 = 8.5 blocks). Cluster 0 mask 0: 65,536
  // sparse. Cluster 1 mask 0101: blocks 1..7 are 7 · 4096 = 28,672 sparse and partial;
  // block 8 is stored (it starts at 32,768, inside); blocks 9..15 start at 36,864 and
  // later, past the end: nothing.
  // Totals: 4 clusters = 262,144 bytes; sparse 32,768 + 65,536 + 28,672 = 126,976
  // (48.4375% → "48.4"); partial 32,768 + 28,672 = 61,440 over 262,144 − 126,976 =
  // 135,168 → 45.4545…% → "45.5".
  const header = craftHeader({
    devices: [{ name: "drive-scsi0", size: 70144 }, { name: "drive-scsi1", size: 100352 }],
  });
  const extent = craftExtent({
    slots: [
      { devId: 1, cluster: 0, mask: 0x00ff },
      { devId: 1, cluster: 1, mask: 0xffff },
      { devId: 2, cluster: 0, mask: 0 },
      { devId: 2, cluster: 1, mask: 0x0101 },
    ],
  });
  const summary = await verifyVma(
    new VmaReader(ReadableStream.from([concat(header.bytes, extent)])),
  );
  assert.deepEqual(
    { bytes: summary.bytes, sparse: summary.sparseBytes, partial: summary.zeroBlockBytes },
    { bytes: 262144, sparse: 126976, partial: 61440 },
  );
  assert.deepEqual(summary.devices.map((d) => d.sparseBytes), [32768, 94208]);
  assert.equal(
    formatSummary(summary),
    "total bytes read 262144, sparse bytes 126976 (48.4%)\n" +
      "space reduction due to 4K zero blocks 45.5%\n",
  );
});

Deno.test("vma create -v, verify -v and extract -v print Proxmox's figures for the five disks", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vmakit-figures-" });
  try {
    const args = ["create", "-v", "five.vma"];
    for (const { name, data } of disks()) {
      await Deno.writeFile(`${dir}/${name}.raw`, data);
      args.push("-d", `format=raw:${name}=${name}.raw`);
    }
    const create = await vma(args, { cwd: dir });
    assert.equal(create.code, 0, create.stderr);
    assert.ok(create.stderr.endsWith(NO_CONF), create.stderr);
    const sizes = disks().map((d) => d.data.length);
    assert.deepEqual(
      create.stderr.slice(0, -NO_CONF.length).trimEnd().split("\n").slice(-5),
      ZEROS.map((z, i) =>
        `image drive-scsi${i}: size=${sizes[i]} zeros=${z} saved=${sizes[i] - z}`
      ),
    );
    // The last progress line: the sizes sum to 4,100,608, the zeros to 3,633,152.
    assert.match(create.stderr, /\nprogress 100% 4100608\/4100608 3633152\n/);

    const verify = await vma(["verify", "-v", "five.vma"], { cwd: dir });
    assert.equal(verify.code, 0, verify.stderr);
    assert.ok(verify.stdout.endsWith(`\n${CLOSING}`), verify.stdout);

    const extract = await vma(["extract", "-v", "five.vma", "out"], { cwd: dir });
    assert.equal(extract.code, 0, extract.stderr);
    assert.ok(extract.stdout.endsWith(`\n${CLOSING}`), extract.stdout);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
