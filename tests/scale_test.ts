// Scale and limits at the library level: huge declared devices written as
// zero clusters and read back concurrently (in a child process, so its
// memory is measured alone), and every count and size limit, at the limit
// and one past it.
import assert from "node:assert/strict";
import { verifyVma, VmaReader, VmaWriter } from "../mod.ts";
import { extractAll } from "./_helpers.ts";

const TiB = 2 ** 40;
const MiB = 2 ** 20;
const CLUSTER = 65536;
const SLOW = Deno.env.get("VMAKIT_SLOW_TESTS") === "1";

interface ScaleResult {
  size: number;
  clusters: number;
  seen: number;
  zero: number;
  extents: number;
  maxCluster: number;
  found: number[];
  bytesRead: number;
  dataClusters: number[];
  seconds: number;
  writerSeconds: number;
  rssStart: number;
  rssPeak: number;
  heapPeak: number;
  externalPeak: number;
}

async function runScale(size: number): Promise<ScaleResult> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-prompt",
      new URL("./_scale_run.ts", import.meta.url).pathname,
      "--size",
      String(size),
    ],
    cwd: new URL("../", import.meta.url).pathname,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(output.stderr);
  assert.equal(output.code, 0, stderr);
  return JSON.parse(new TextDecoder().decode(output.stdout));
}

async function checkScale(size: number): Promise<void> {
  const r = await runScale(size);
  const clusters = size / CLUSTER;
  assert.equal(r.clusters, clusters);
  // Header, cluster numbers and completeness (extents() checks it at the end).
  assert.equal(r.seen, clusters);
  assert.equal(r.zero, clusters - 4);
  assert.deepEqual(r.found, r.dataClusters);
  assert.equal(r.maxCluster, clusters - 1);
  assert.equal(r.extents, Math.ceil(clusters / 59));
  // 12,800-byte header, a 512-byte header per extent, 4 clusters of data.
  assert.equal(r.bytesRead, 12800 + r.extents * 512 + 4 * 16 * 4096);
  const growth = r.rssPeak - r.rssStart;
  console.log(
    `${size / TiB} TiB: ${r.extents} extents, ${
      (r.bytesRead / 2 ** 30).toFixed(2)
    } GiB of archive in ${r.seconds.toFixed(1)} s; rss ${Math.round(r.rssStart / MiB)} -> ${
      Math.round(r.rssPeak / MiB)
    } MiB, peak heap ${Math.round(r.heapPeak / MiB)} MiB, peak external ${
      Math.round(r.externalPeak / MiB)
    } MiB`,
  );
  // Memory that grows with the device: the cluster bitmaps of the writer and
  // the reader (1 bit per cluster each: 64 MiB for 16 TiB). Anything that
  // kept the archive (145 MB for 1 TiB, 2.3 GB for 16 TiB) would show.
  const bitmaps = clusters / 4;
  assert.ok(
    r.heapPeak + r.externalPeak < 100 * MiB + bitmaps,
    `heap ${Math.round(r.heapPeak / MiB)} MiB + external ${Math.round(r.externalPeak / MiB)} MiB`,
  );
  assert.ok(growth < 150 * MiB + bitmaps, `rss grew by ${Math.round(growth / MiB)} MiB`);
}

Deno.test("VmaWriter and VmaReader stream a 1 TiB device of zero clusters in constant memory", async () => {
  await checkScale(TiB);
});

Deno.test({
  name: "VmaWriter and VmaReader stream a 16 TiB device of zero clusters in constant memory",
  ignore: !SLOW,
  fn: async () => {
    await checkScale(16 * TiB);
  },
});
if (!SLOW) {
  console.log(
    "scale_test: the 16 TiB test is skipped (about 2 to 3 minutes: 4.5 M extents, 2.3 GB of " +
      "archive, an MD5 per extent header on each side); run it with VMAKIT_SLOW_TESTS=1",
  );
}

// ---------------------------------------------------------------------------
// Limits

async function roundTrip(
  configs: [string, Uint8Array][],
  devices: [string, number][],
): Promise<Awaited<ReturnType<typeof extractAll>>> {
  const writer = new VmaWriter({ uuid: "00000000-0000-4000-8000-000000000002" });
  for (const [name, data] of configs) writer.addConfig(name, data);
  const handles = devices.map(([name, size]) => writer.addDevice(name, size));
  const archive = new Response(writer.readable).bytes();
  for (const [i, handle] of handles.entries()) {
    const data = new Uint8Array(handle.size).fill((i % 255) + 1);
    await handle.write(0, data);
  }
  await writer.close();
  const bytes = await archive;
  await verifyVma(new VmaReader(ReadableStream.from([bytes])));
  return await extractAll(bytes);
}

Deno.test("VmaWriter round-trips 254 devices and 256 configs in one archive", async () => {
  const configs: [string, Uint8Array][] = Array.from(
    { length: 256 },
    (_, i) => [`config-${i}.conf`, new TextEncoder().encode(`config ${i}\n`)],
  );
  const devices: [string, number][] = Array.from(
    { length: 254 },
    (_, i) => [`drive-scsi${i}`, 512 * (1 + (i % 3))],
  );
  const { devices: read, disks, configs: readConfigs } = await roundTrip(configs, devices);
  assert.deepEqual(read.map((d) => [d.name, d.size]), devices);
  assert.deepEqual(read.map((d) => d.id), Array.from({ length: 254 }, (_, i) => i + 1));
  for (const [i, [name, size]] of devices.entries()) {
    assert.deepEqual(disks.get(name), new Uint8Array(size).fill((i % 255) + 1), name);
  }
  assert.deepEqual([...readConfigs], configs);
});

Deno.test("VmaWriter refuses a 255th device and a 257th config", () => {
  const writer = new VmaWriter();
  for (let i = 0; i < 254; i++) writer.addDevice(`d${i}`, 512);
  assert.throws(() => writer.addDevice("d254", 512), {
    name: "RangeError",
    message: 'Cannot add device "d254": an archive holds at most 254 devices',
  });
  for (let i = 0; i < 256; i++) writer.addConfig(`c${i}`, "");
  assert.throws(() => writer.addConfig("c256", ""), {
    name: "RangeError",
    message: 'Cannot add config "c256": an archive holds at most 256 configs',
  });
  void writer.abort();
});

Deno.test("VmaWriter round-trips a config of exactly 65,535 bytes and refuses 65,536", async () => {
  const data = Uint8Array.from({ length: 65535 }, (_, i) => (i * 7) & 0xff);
  const { configs } = await roundTrip([["qemu-server.conf", data]], []);
  assert.deepEqual(configs.get("qemu-server.conf"), data);
  const writer = new VmaWriter();
  assert.throws(() => writer.addConfig("big.conf", new Uint8Array(65536)), {
    name: "RangeError",
    message: 'Cannot add config "big.conf": the data is 65536 bytes, more than 65535',
  });
  assert.throws(() => writer.addConfig("big.conf", "x".repeat(65536)), {
    name: "RangeError",
    message: 'Cannot add config "big.conf": the data is 65536 bytes, more than 65535',
  });
  void writer.abort();
});

Deno.test("VmaWriter round-trips names of 65,534 bytes and refuses 65,535", async () => {
  const deviceName = "d".repeat(65534);
  const configName = "c".repeat(65534);
  const { devices, disks, configs } = await roundTrip(
    [[configName, new Uint8Array([1, 2, 3])]],
    [[deviceName, 4096]],
  );
  assert.equal(devices[0].name, deviceName);
  assert.equal(disks.get(deviceName)!.length, 4096);
  assert.deepEqual(configs.get(configName), new Uint8Array([1, 2, 3]));

  const writer = new VmaWriter();
  const long = "d".repeat(65535);
  assert.throws(() => writer.addDevice(long, 512), {
    name: "RangeError",
    message: `Cannot add device "${long}": the name is 65535 bytes long, more than 65534`,
  });
  assert.throws(() => writer.addConfig(long, ""), {
    name: "RangeError",
    message: `Cannot add config "${long}": the name is 65535 bytes long, more than 65534`,
  });
  // Bytes, not characters: 32,767 two-byte characters are 65,534 bytes, one more is too many.
  writer.addDevice("é".repeat(32767), 512);
  assert.throws(() => writer.addDevice("é".repeat(32768), 512), {
    name: "RangeError",
    message: `Cannot add device "${
      "é".repeat(32768)
    }": the name is 65536 bytes long, more than 65534`,
  });
  void writer.abort();
});

Deno.test("VmaWriter refuses a header past 512 KiB", () => {
  const writer = new VmaWriter();
  const data = new Uint8Array(65535);
  // Seven configs of 65,535 bytes fill 458,804 bytes of blobs; the eighth would pass 512,000.
  for (let i = 0; i < 7; i++) writer.addConfig(`c${i}`, data);
  assert.throws(() => writer.addConfig("c7", data), {
    name: "RangeError",
    message: 'Cannot add config "c7": the header would be larger than 524288 bytes',
  });
  void writer.abort();
});

Deno.test("VmaWriter takes a device of 2^32 clusters (256 TiB) and refuses one byte-sector more", () => {
  const writer = new VmaWriter();
  assert.equal(writer.addDevice("drive-scsi0", 2 ** 48).size, 2 ** 48);
  assert.throws(() => writer.addDevice("drive-scsi1", 2 ** 48 + 512), {
    name: "RangeError",
    message: 'Cannot add device "drive-scsi1": the size 281474976711168 is more than 2^32 clusters',
  });
  assert.throws(() => writer.addDevice("drive-scsi2", 2 ** 53), {
    name: "RangeError",
    message:
      'Cannot add device "drive-scsi2": the size must be a positive safe integer, got 9007199254740992',
  });
  void writer.abort();
});

Deno.test("ClusterSet behaves as a Set of cluster numbers, sparse pages and bitmaps alike", async () => {
  const { ClusterSet } = await import("../src/vma/_cluster_set.ts");
  const fc = (await import("npm:fast-check@^4.3.0")).default;
  fc.assert(
    fc.property(
      fc.array(
        fc.oneof(
          fc.integer({ min: 0, max: 300 }), // one page, past the list limit
          fc.integer({ min: 65536 - 200, max: 65536 + 200 }), // a page boundary
          fc.integer({ min: 0, max: 2 ** 32 - 1 }), // anywhere
        ),
        { maxLength: 600 },
      ),
      fc.integer({ min: 0, max: 70000 }),
      (clusters, total) => {
        const set = new ClusterSet();
        const model = new Set<number>();
        for (const c of clusters) {
          assert.equal(set.add(c), !model.has(c));
          model.add(c);
          assert.equal(set.size, model.size);
        }
        for (const c of clusters) assert.ok(set.has(c));
        assert.equal(set.has(12345678), model.has(12345678));
        // firstMissing(total) is asked of sets of clusters below total (the reader checks that first).
        const below = new ClusterSet();
        for (const c of clusters) if (c < total) below.add(c);
        let missing: number | undefined;
        for (let c = 0; c < total; c++) {
          if (!model.has(c)) {
            missing = c;
            break;
          }
        }
        assert.equal(below.firstMissing(total), missing);
      },
    ),
    { numRuns: 300 },
  );
  // A page filled completely, through the list and then the bitmap.
  const set = new ClusterSet();
  for (let c = 65535; c >= 0; c--) assert.ok(set.add(c));
  assert.equal(set.firstMissing(65536), undefined);
  assert.equal(set.firstMissing(65537), 65536);
  assert.equal(set.addRange(65536, 65600), undefined);
  assert.equal(set.addRange(65599, 65601), 65599);
});
