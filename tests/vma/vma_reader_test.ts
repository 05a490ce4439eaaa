import assert from "node:assert/strict";
import { zstdDecompressSync } from "node:zlib";
import { verifyVma, VmaFormatError, VmaReader } from "../../mod.ts";
import { extractAll, gunzip, sha256, testdata, writeArchive } from "../_helpers.ts";

const text = (b: Uint8Array) => new TextDecoder().decode(b);

async function expectedSums(): Promise<Map<string, string>> {
  const sums = new Map<string, string>();
  for (const line of text(await testdata("SHA256SUMS")).trim().split("\n")) {
    const [sum, name] = line.split(/\s+/);
    sums.set(name, sum);
  }
  return sums;
}

async function formatError(
  archive: Uint8Array,
  phase: "header" | "verify",
): Promise<VmaFormatError> {
  const reader = new VmaReader(ReadableStream.from([archive]));
  const error = await (phase === "header" ? reader.header() : verifyVma(reader)).then(
    () => undefined,
    (e) => e,
  );
  assert.ok(error instanceof VmaFormatError, `expected a VmaFormatError, got ${error}`);
  return error;
}

const small = async () => await gunzip(await testdata("small.vma.gz"));

Deno.test("VmaReader reads the header of Proxmox's small.vma", async () => {
  const header = await new VmaReader(ReadableStream.from([await small()])).header();
  assert.equal(header.uuid, "000c3804-7a21-4bcd-8806-1ca23a06d458");
  assert.equal(header.ctime.toISOString(), "2026-11-24T14:21:54.000Z");
  assert.equal(header.headerSize, 12800);
  assert.deepEqual(header.devices, [
    { id: 1, name: "drive-scsi0", size: 4194304, vmstate: false },
    { id: 2, name: "drive-scsi1", size: 1053184, vmstate: false },
  ]);
  assert.deepEqual(header.configs.map((c) => c.name), ["qemu-server.conf", "qemu-server.fw"]);
  assert.deepEqual(header.configs[0].data, await testdata("qemu-server.conf"));
  assert.deepEqual(header.configs[1].data, await testdata("qemu-server.fw"));
});

Deno.test("extractVma reproduces the sources of Proxmox's fixtures byte for byte", async () => {
  const sums = await expectedSums();
  const zst = await testdata("small.vma.zst");
  for (const archive of [await small(), new Uint8Array(zstdDecompressSync(zst))]) {
    const { disks, configs } = await extractAll(archive);
    assert.equal(await sha256(disks.get("drive-scsi0")!), sums.get("disk0.raw"));
    assert.equal(await sha256(disks.get("drive-scsi1")!), sums.get("disk1.raw"));
    assert.equal(await sha256(configs.get("qemu-server.conf")!), sums.get("qemu-server.conf"));
    assert.equal(await sha256(configs.get("qemu-server.fw")!), sums.get("qemu-server.fw"));
  }
  // The gzipped sources agree with SHA256SUMS too.
  assert.equal(await sha256(await gunzip(await testdata("disk0.raw.gz"))), sums.get("disk0.raw"));
  assert.equal(await sha256(await gunzip(await testdata("disk1.raw.gz"))), sums.get("disk1.raw"));
});

Deno.test("verifyVma counts small.vma as Proxmox's vma verify -v does", async () => {
  const seen: number[] = [];
  const summary = await verifyVma(new VmaReader(ReadableStream.from([await small()])), {
    onProgress: (p) => {
      assert.equal(p.clustersTotal, 80);
      assert.equal(p.bytesRead, p.clustersRead * 65536);
      seen.push(p.clustersRead);
    },
  });
  assert.equal(seen.length, 81);
  // "total bytes read 5308416, sparse bytes 3080192 (58%)", "space reduction due to 4K zero blocks 0%"
  const { devices, ...totals } = summary;
  assert.deepEqual(totals, {
    clusters: 81,
    bytes: 5308416,
    sparseBytes: 3080192,
    zeroBlockBytes: 0,
    storedBytes: 5308416 - 3080192 - 14 * 4096,
  });
  assert.deepEqual(devices.map((d) => [d.device.name, d.clusters]), [["drive-scsi0", 64], [
    "drive-scsi1",
    17,
  ]]);
  assert.equal(devices[0].sparseBytes + devices[1].sparseBytes, summary.sparseBytes);
  assert.equal(devices[0].storedBytes + devices[1].storedBytes, summary.storedBytes);
});

Deno.test("VmaReader reads Proxmox's configs-only.vma", async () => {
  const reader = new VmaReader(ReadableStream.from([await testdata("configs-only.vma")]));
  const header = await reader.header();
  assert.equal(header.devices.length, 0);
  assert.deepEqual(header.configs.map((c) => [c.name, c.data.length]), [["qemu-server.conf", 317]]);
  assert.equal(header.ctime.toISOString(), "2026-11-24T14:22:13.000Z");
  assert.deepEqual(await verifyVma(reader), {
    clusters: 0,
    bytes: 0,
    sparseBytes: 0,
    zeroBlockBytes: 0,
    storedBytes: 0,
    devices: [],
  });
});

Deno.test("VmaReader rejects Proxmox's broken fixtures as Proxmox does", async () => {
  const truncated = await gunzip(await testdata("small-truncated.vma.gz"));
  const short = await formatError(truncated, "verify");
  assert.equal(short.message, "short vma extent (987200 < 1712640)");
  assert.equal(short.offset, 12800);
  const badMd5 = await gunzip(await testdata("small-bad-header-md5.vma.gz"));
  const md5 = await formatError(badMd5, "header");
  assert.equal(md5.message, "wrong vma header chechsum");
});

Deno.test("VmaReader reports header problems in Proxmox's order and words", async () => {
  const good = await writeArchive([{ name: "d", data: new Uint8Array(65536).fill(1) }]);
  assert.equal(
    (await formatError(new Uint8Array(0), "header")).message,
    "can't read vma header - got EOF",
  );
  assert.equal(
    (await formatError(good.subarray(0, 12000), "header")).message,
    "can't read vma header - got EOF",
  );
  const notVma = good.slice();
  notVma[0] = 0x4e;
  assert.equal(
    (await formatError(notVma, "header")).message,
    "not a vma file - wrong magic number",
  );
  const shortData = good.subarray(0, 12500);
  assert.equal(
    (await formatError(shortData, "header")).message,
    "can't read vma header data - got EOF",
  );
  const size = good.slice();
  new DataView(size.buffer).setUint32(56, 12288);
  assert.equal((await formatError(size, "header")).message, "wrong vma header size 12288");
  // The checksum comes before the version.
  const version = good.slice();
  new DataView(version.buffer).setUint32(4, 2);
  assert.equal((await formatError(version, "header")).message, "wrong vma header chechsum");
});

Deno.test("VmaReader fails on a missing cluster, where Proxmox's verify does not", async () => {
  const image = new Uint8Array(60 * 65536).fill(3);
  const archive = await writeArchive([{ name: "drive-scsi0", data: image }]);
  const cut = archive.subarray(0, 12800 + 512 + 59 * 65536); // drop the last extent
  const error = await formatError(cut, "verify");
  assert.equal(error.message, "detected missing cluster 59 for stream drive-scsi0");
  assert.equal(error.offset, cut.length);
});

Deno.test("VmaReader rejects bytes after the last extent", async () => {
  const archive = await writeArchive([{ name: "d", data: new Uint8Array(65536).fill(2) }]);
  const few = new Uint8Array(archive.length + 100);
  few.set(archive);
  assert.equal((await formatError(few, "verify")).message, "read short extent (100 bytes)");
  const many = new Uint8Array(archive.length + 600);
  many.set(archive);
  const error = await formatError(many, "verify");
  assert.equal(error.message, "wrong vma extent header chechsum");
  assert.equal(error.offset, archive.length);
});

Deno.test("VmaReader reads the same archive for every chunking of its input", async () => {
  const archive = await writeArchive([{
    name: "d",
    data: new Uint8Array(3 * 65536).fill(5, 1000, 70000),
  }]);
  const reference = await extractAll(archive);
  for (const size of [1, 511, 512, 4097, 65536 + 3]) {
    const chunks: Uint8Array[] = [];
    for (let at = 0; at < archive.length; at += size) chunks.push(archive.slice(at, at + size));
    const back = await extractAll(ReadableStream.from(chunks));
    assert.deepEqual(back.disks, reference.disks, `chunk size ${size}`);
  }
});

Deno.test("VmaReader.extents can be read only once", async () => {
  const archive = await writeArchive([]);
  const reader = new VmaReader(ReadableStream.from([archive]));
  for await (const _ of reader.extents()) { /* drain */ }
  await assert.rejects(async () => {
    for await (const _ of reader.extents()) { /* never */ }
  }, { name: "TypeError", message: "Cannot read the extents twice" });
});

/** A byte stream (BYOB-capable) that answers each read with at most `most` bytes. */
function byteStream(data: Uint8Array, most: number): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream({
    type: "bytes",
    pull(controller) {
      const request = controller.byobRequest!;
      const view = request.view! as Uint8Array;
      const n = Math.min(view.byteLength, most, data.length - at);
      if (n === 0) {
        controller.close();
        request.respond(0);
        return;
      }
      view.set(data.subarray(at, at + n));
      at += n;
      request.respond(n);
    },
  });
}

Deno.test("VmaReader reads byte streams straight into its buffers, for any read size", async () => {
  const archive = await writeArchive([{
    name: "d",
    data: new Uint8Array(61 * 65536).fill(5, 1000, 3000000),
  }]);
  const reference = await extractAll(archive);
  for (const most of [500, 4096, 1 << 22]) {
    const back = await extractAll(byteStream(archive, most));
    assert.deepEqual(back.disks, reference.disks, `at most ${most} bytes per read`);
  }
  const tiny = await writeArchive([{
    name: "d",
    data: new Uint8Array(2 * 65536).fill(5, 1000, 70000),
  }]);
  const tinyReference = await extractAll(tiny);
  for (const most of [1, 3]) {
    const back = await extractAll(byteStream(tiny, most));
    assert.deepEqual(back.disks, tinyReference.disks, `at most ${most} bytes per read`);
  }
  const truncated = await gunzip(await testdata("small-truncated.vma.gz"));
  const error = await verifyVma(new VmaReader(byteStream(truncated, 65536))).catch((e) => e);
  assert.ok(error instanceof VmaFormatError);
  assert.equal(error.message, "short vma extent (987200 < 1712640)");
  const trailing = new Uint8Array(archive.length + 100);
  trailing.set(archive);
  const error2 = await verifyVma(new VmaReader(byteStream(trailing, 1 << 20))).catch((e) => e);
  assert.equal(error2.message, "read short extent (100 bytes)");
});

Deno.test("VmaReader reads byte streams ahead and gives the same clusters, pieces of any size", async () => {
  // Data extents, zero-only extents and partial clusters, so reads of 512
  // bytes, of a few blocks and of whole extents mix.
  const image = new Uint8Array(70 * 65536 + 4096);
  for (let c = 0; c < 70; c += 3) image.fill(c + 1, c * 65536 + 4096 * (c % 16), c * 65536 + 70000);
  image.fill(9, 70 * 65536);
  const archive = await writeArchive([{ name: "drive-scsi0", data: image }], {
    configs: [["qemu-server.conf", "memory: 1\n"]],
  });
  const expected: string[] = [];
  for await (const c of new VmaReader(ReadableStream.from([archive])).clusters()) {
    expected.push(`${c.cluster}:${c.mask}:${await sha256(c.data)}`);
  }
  for (const piece of [333, 4096, 65536, 1 << 20]) {
    for (const reuseBuffers of [false, true]) {
      const reader = new VmaReader(byteStream(archive, piece));
      const got: string[] = [];
      for await (const extent of reader.extents({ reuseBuffers })) {
        for (const c of extent.clusters) got.push(`${c.cluster}:${c.mask}:${await sha256(c.data)}`);
      }
      assert.deepEqual(got, expected, `pieces of ${piece}, reuseBuffers ${reuseBuffers}`);
      assert.equal(reader.bytesRead, archive.length);
    }
  }
});

Deno.test("VmaReader checks the MD5 of the first of identical extent headers, and of an all-zero one", async () => {
  const { craftHeader, craftExtent, concat } = await import("../_craft.ts");
  const header = craftHeader({}).bytes;
  const empty = craftExtent({ slots: [] });
  // 1,000 identical empty extents are valid.
  const valid = concat(header, ...Array.from({ length: 1000 }, () => empty));
  const summary = await verifyVma(new VmaReader(ReadableStream.from([valid])));
  assert.equal(summary.clusters, 0);
  // A 512-byte run of zeros after them still fails on its checksum first.
  const zeros = concat(valid, new Uint8Array(512));
  const error = await verifyVma(new VmaReader(ReadableStream.from([zeros]))).catch((e) => e);
  assert.ok(error instanceof VmaFormatError);
  assert.equal(error.message, "wrong vma extent header chechsum");
  assert.equal(error.offset, valid.length);
  // As does a zero header right after the archive header.
  const first = concat(header, new Uint8Array(512));
  const error2 = await verifyVma(new VmaReader(ReadableStream.from([first]))).catch((e) => e);
  assert.equal(error2.message, "wrong vma extent header chechsum");
  // And a copy of a valid header with one byte changed.
  const changed = empty.slice();
  changed[100] ^= 1;
  const error3 = await verifyVma(
    new VmaReader(ReadableStream.from([concat(header, empty, changed)])),
  )
    .catch((e) => e);
  assert.equal(error3.message, "wrong vma extent header chechsum");
  assert.equal(error3.offset, header.length + 512);
});
