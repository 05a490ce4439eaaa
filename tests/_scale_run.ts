// One scale scenario, run as its own process by tests/scale_test.ts so its
// memory is measured alone: a device of `--size` bytes (declared) written
// through VmaWriter with a few data clusters and the rest as zero clusters
// (writeZeroes), read back concurrently by VmaReader. Prints one JSON line.
//
//   deno run tests/_scale_run.ts --size 1099511627776
import { VmaReader, VmaWriter } from "../mod.ts";

const CLUSTER = 65536;

function arg(name: string, fallback: number): number {
  const i = Deno.args.indexOf(name);
  return i >= 0 ? Number(Deno.args[i + 1]) : fallback;
}

const size = arg("--size", 2 ** 40);
const clusters = Math.ceil(size / CLUSTER);
/** Data clusters: the first, two in the middle, the last; byte value = index + 1. */
const dataClusters = [0, Math.floor(clusters / 3), Math.floor(clusters / 3) + 1, clusters - 1];

const rssStart = Deno.memoryUsage().rss;
let rssPeak = rssStart;
let heapPeak = 0;
let externalPeak = 0;
const sample = () => {
  const m = Deno.memoryUsage();
  rssPeak = Math.max(rssPeak, m.rss);
  heapPeak = Math.max(heapPeak, m.heapUsed);
  externalPeak = Math.max(externalPeak, m.external);
};
const started = performance.now();

const writer = new VmaWriter({ uuid: "00000000-0000-4000-8000-000000000001" });
writer.addConfig("qemu-server.conf", "memory: 512\n");
const device = writer.addDevice("drive-scsi0", size);
const reader = new VmaReader(writer.readable);

const produce = (async () => {
  let at = 0;
  for (const [i, c] of dataClusters.entries()) {
    if (c * CLUSTER > at) await device.writeZeroes(at, c * CLUSTER - at);
    const length = Math.min(CLUSTER, size - c * CLUSTER);
    await device.write(c * CLUSTER, new Uint8Array(length).fill(i + 1));
    at = c * CLUSTER + length;
  }
  if (at < size) await device.writeZeroes(at, size - at);
  await writer.close();
})();

let writerSeconds = 0;
produce.then(() => writerSeconds = (performance.now() - started) / 1000, () => {});

const consume = (async () => {
  const header = await reader.header();
  if (header.devices.length !== 1 || header.devices[0].size !== size) {
    throw new Error(`header lists ${JSON.stringify(header.devices)}`);
  }
  let seen = 0;
  let zero = 0;
  let extents = 0;
  let maxCluster = -1;
  const found: number[] = [];
  for await (const extent of reader.extents()) {
    extents++;
    for (const cluster of extent.clusters) {
      seen++;
      if (cluster.cluster > maxCluster) maxCluster = cluster.cluster;
      if (cluster.mask === 0) {
        zero++;
        continue;
      }
      const index = dataClusters.indexOf(cluster.cluster);
      if (index < 0 || cluster.data[0] !== index + 1 || cluster.data.at(-1) !== index + 1) {
        throw new Error(`cluster ${cluster.cluster} holds data it should not`);
      }
      found.push(cluster.cluster);
    }
    if ((extents & 0x3fff) === 0) sample();
  }
  // extents() ends only after its completeness check: every cluster was seen.
  return { seen, zero, extents, maxCluster, found, bytesRead: reader.bytesRead };
})();

const [result] = await Promise.all([consume, produce]);
sample();
console.log(JSON.stringify({
  size,
  clusters,
  ...result,
  dataClusters,
  seconds: (performance.now() - started) / 1000,
  writerSeconds,
  rssStart,
  rssPeak,
  heapPeak,
  externalPeak,
}));
