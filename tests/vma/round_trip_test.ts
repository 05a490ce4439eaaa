// Property tests: writer -> reader -> compare, over many layouts.
import assert from "node:assert/strict";
import fc from "npm:fast-check@^4.3.0";
import { verifyVma, VmaReader, VmaWriter } from "../../mod.ts";
import { chunked, collect, extractAll, FIXED_CTIME, FIXED_UUID } from "../_helpers.ts";

/** A disk described by its size and which 4 KiB blocks hold data. */
const diskArb = fc.record({
  // Sizes around block and cluster edges, in 512-byte sectors.
  sectors: fc.oneof(
    fc.integer({ min: 1, max: 8 }),
    fc.integer({ min: 120, max: 136 }), // around 64 KiB
    fc.integer({ min: 250, max: 520 }),
  ),
  pattern: fc.array(fc.constantFrom("zero", "full", "sparse"), { minLength: 1, maxLength: 9 }),
  seed: fc.integer({ min: 1, max: 1 << 30 }),
});

function makeDisk(spec: { sectors: number; pattern: string[]; seed: number }): Uint8Array {
  const data = new Uint8Array(spec.sectors * 512);
  let x = spec.seed;
  for (let block = 0; block * 4096 < data.length; block++) {
    const kind = spec.pattern[block % spec.pattern.length];
    if (kind === "zero") continue;
    const end = Math.min(data.length, (block + 1) * 4096);
    for (let i = block * 4096; i < end; i++) {
      x = (x * 1103515245 + 12345) >>> 0;
      // "sparse" blocks hold one non-zero byte.
      if (kind === "full" || i === block * 4096 + (x % 4096)) data[i] = (x >>> 16) | 1;
    }
  }
  return data;
}

Deno.test("VmaWriter and VmaReader round-trip any layout, chunking and interleaving", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(diskArb, { minLength: 1, maxLength: 3 }),
      fc.array(fc.integer({ min: 1, max: 70000 }), { minLength: 3, maxLength: 3 }),
      fc.boolean(),
      async (specs, chunks, ordered) => {
        const disks = specs.map(makeDisk);
        const writer = new VmaWriter({ ordered });
        writer.addConfig("qemu-server.conf", "cores: 1\n");
        const devices = disks.map((d, i) => writer.addDevice(`drive-scsi${i}`, d.length));
        const out = collect(writer.readable);
        await Promise.all(
          devices.map((dev, i) => chunked(disks[i], chunks[i]).pipeTo(dev.writable)),
        );
        await writer.close();
        const archive = await out;
        const back = await extractAll(archive);
        disks.forEach((d, i) => assert.deepEqual(back.disks.get(`drive-scsi${i}`), d));
        const summary = await verifyVma(new VmaReader(ReadableStream.from([archive])));
        const clusters = disks.reduce((n, d) => n + Math.ceil(d.length / 65536), 0);
        assert.equal(summary.clusters, clusters);
        assert.equal(writer.stats.bytes, disks.reduce((n, d) => n + d.length, 0));
        assert.equal(archive.length, writer.stats.archiveBytes);
      },
    ),
    { numRuns: 60 },
  );
});

Deno.test("VmaWriter ordered mode gives identical archives for any chunking", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(diskArb, { minLength: 1, maxLength: 3 }),
      fc.integer({ min: 1, max: 9000 }),
      fc.integer({ min: 1, max: 200000 }),
      async (specs, chunkA, chunkB) => {
        const disks = specs.map(makeDisk);
        const write = async (chunk: number) => {
          const writer = new VmaWriter({ uuid: FIXED_UUID, ctime: FIXED_CTIME, ordered: true });
          const devices = disks.map((d, i) => writer.addDevice(`d${i}`, d.length));
          const out = collect(writer.readable);
          await Promise.all(
            devices.map((dev, i) => chunked(disks[i], chunk + i).pipeTo(dev.writable)),
          );
          await writer.close();
          return await out;
        };
        assert.deepEqual(await write(chunkA), await write(chunkB));
      },
    ),
    { numRuns: 25 },
  );
});

Deno.test("VmaWriter round-trips random-access cluster writes in any order", async () => {
  await fc.assert(
    fc.asyncProperty(diskArb, fc.integer({ min: 0, max: 1000 }), async (spec, shuffleSeed) => {
      const disk = makeDisk(spec);
      const count = Math.ceil(disk.length / 65536);
      const order = Array.from({ length: count }, (_, i) => i);
      let s = shuffleSeed + 1;
      for (let i = order.length - 1; i > 0; i--) {
        s = (s * 16807) % 2147483647;
        const j = s % (i + 1);
        [order[i], order[j]] = [order[j], order[i]];
      }
      const writer = new VmaWriter();
      const dev = writer.addDevice("drive-virtio0", disk.length);
      const out = collect(writer.readable);
      for (const c of order) {
        const part = disk.subarray(c * 65536, Math.min(disk.length, (c + 1) * 65536));
        if (part.every((b) => b === 0)) await dev.writeZeroes(c * 65536, part.length);
        else await dev.write(c * 65536, part);
      }
      await writer.close();
      const back = await extractAll(await out);
      assert.deepEqual(back.disks.get("drive-virtio0"), disk);
    }),
    { numRuns: 40 },
  );
});
