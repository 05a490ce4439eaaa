// indexVma and openVmaDisk: the index of an archive and random access to its devices.
import assert from "node:assert/strict";
import { gzipSync } from "node:zlib";
import {
  type DiskImage,
  indexVma,
  openVmaDisk,
  type PositionedReader,
  type VmaArchiveReader,
  type VmaDiskImage,
  VmaFormatError,
  VmaWriter,
} from "../../mod.ts";
import { collect, extractAll, FIXED_CTIME, FIXED_UUID, gunzip, testdata } from "../_helpers.ts";

/** Positioned reads over bytes in memory, counting the reads. */
function memoryReader(data: Uint8Array): PositionedReader & { reads: number } {
  return {
    size: data.length,
    reads: 0,
    read(position, length) {
      this.reads++;
      return Promise.resolve(data.slice(position, position + length));
    },
    close: () => Promise.resolve(),
  };
}

/** Positioned reads into the caller's memory only (`read` fails). */
function intoReader(data: Uint8Array): VmaArchiveReader {
  return {
    size: data.length,
    read: () => Promise.reject(new Error("read() called where readInto() was expected")),
    readInto(position, target) {
      const bytes = data.subarray(position, position + target.length);
      target.set(bytes);
      return Promise.resolve(bytes.length);
    },
    close: () => Promise.resolve(),
  };
}

/** A reader that fails on any read: proves that no I/O happened. */
const noReads: PositionedReader = {
  size: Number.MAX_SAFE_INTEGER,
  read: () => Promise.reject(new Error("unexpected read")),
  close: () => Promise.resolve(),
};

/** A deterministic disk: per 4 KiB block, zero, full of noise, or one byte. */
function makeDisk(size: number, seed: number): Uint8Array {
  const data = new Uint8Array(size);
  let x = seed;
  for (let block = 0; block * 4096 < size; block++) {
    x = (x * 1103515245 + 12345) >>> 0;
    const kind = x % 5; // 0, 1: zero; 2, 3: full; 4: one byte
    if (kind < 2) continue;
    const end = Math.min(size, (block + 1) * 4096);
    for (let i = block * 4096; i < end; i++) {
      x = (x * 1103515245 + 12345) >>> 0;
      if (kind < 4 || i === block * 4096 + 17) data[i] = (x >>> 16) | 1;
    }
  }
  // Whole zero clusters and whole full clusters too.
  if (size > 4 * 65536) data.fill(0, 65536, 3 * 65536);
  if (size > 6 * 65536) data.fill(9, 4 * 65536, 6 * 65536);
  return data;
}

/** Writes `disks` with write() in a shuffled cluster order (seeded), or in order when `ordered`. */
async function writeShuffled(
  disks: [string, Uint8Array][],
  seed: number,
  ordered = false,
): Promise<Uint8Array> {
  const writer = new VmaWriter({ uuid: FIXED_UUID, ctime: FIXED_CTIME, ordered });
  writer.addConfig("qemu-server.conf", "memory: 512\n");
  const devices = disks.map(([name, data]) => writer.addDevice(name, data.length));
  const out = collect(writer.readable);
  const jobs: [number, number][] = [];
  disks.forEach(([, data], d) => {
    for (let c = 0; c * 65536 < data.length; c++) jobs.push([d, c]);
  });
  let x = seed;
  for (let i = ordered ? 0 : jobs.length - 1; i > 0; i--) {
    x = (x * 1103515245 + 12345) >>> 0;
    const j = x % (i + 1);
    [jobs[i], jobs[j]] = [jobs[j], jobs[i]];
  }
  for (const [d, c] of jobs) {
    const data = disks[d][1];
    await devices[d].write(c * 65536, data.subarray(c * 65536, (c + 1) * 65536));
  }
  await writer.close();
  return await out;
}

async function allRegions(image: DiskImage) {
  const regions = [];
  for await (const r of image.regions()) regions.push(r);
  return regions;
}

/** Checks every read path of `image` against `data`. */
async function checkImage(image: VmaDiskImage, data: Uint8Array, seed: number): Promise<void> {
  assert.equal(image.size, data.length);
  assert.equal(image.format, "vma");
  assert.deepEqual(await image.read(0, data.length), data);
  let x = seed;
  for (let i = 0; i < 200; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    const offset = x % (data.length + 1);
    x = (x * 1103515245 + 12345) >>> 0;
    const length = x % (Math.min(300_000, data.length - offset) + 1);
    assert.deepEqual(await image.read(offset, length), data.subarray(offset, offset + length));
    const dirty = new Uint8Array(length).fill(0xee); // readInto writes the zeros too
    await image.readInto(offset, dirty);
    assert.deepEqual(dirty, data.subarray(offset, offset + length));
  }
  // Regions cover 0..size in order; zero ones read as zeros.
  let at = 0;
  for (const r of await allRegions(image)) {
    assert.equal(r.offset, at);
    assert.ok(r.length > 0);
    if (r.zero) assert.ok(data.subarray(r.offset, r.offset + r.length).every((b) => b === 0));
    at += r.length;
  }
  assert.equal(at, data.length);
}

const disks: [string, Uint8Array][] = [
  ["drive-scsi0", makeDisk(20 * 65536 + 5 * 512, 1)],
  ["drive-virtio1", makeDisk(9 * 65536, 2)],
  ["drive-sata2", makeDisk(1536, 3)],
];

Deno.test("openVmaDisk reads any range of every device of a shuffled archive", async () => {
  const archive = await writeShuffled(disks, 42);
  const index = await indexVma(ReadableStream.from([archive]));
  assert.equal(index.archiveSize, archive.length);
  assert.equal(index.compression, "none");
  assert.equal(index.header.uuid, FIXED_UUID);
  for (const [i, [name, data]] of disks.entries()) {
    await checkImage(openVmaDisk(index, memoryReader(archive), name), data, i + 7);
  }
});

Deno.test("VmaDiskImage.readInto uses the reader's readInto, without allocating reads", async () => {
  const archive = await writeShuffled(disks, 43);
  const index = await indexVma(ReadableStream.from([archive]));
  for (const [name, data] of disks) {
    const image = openVmaDisk(index, intoReader(archive), name);
    const target = new Uint8Array(data.length).fill(0xee);
    await image.readInto(0, target);
    assert.deepEqual(target, data, name);
  }
});

Deno.test("openVmaDisk reads an archive written in order and through the writables", async () => {
  const writer = new VmaWriter();
  const devices = disks.map(([name, data]) => writer.addDevice(name, data.length));
  const out = collect(writer.readable);
  await Promise.all(devices.map((d, i) => ReadableStream.from([disks[i][1]]).pipeTo(d.writable)));
  await writer.close();
  const archive = await out;
  const index = await indexVma(ReadableStream.from([archive]));
  for (const [i, [name, data]] of disks.entries()) {
    await checkImage(openVmaDisk(index, memoryReader(archive), name), data, i + 70);
  }
});

Deno.test("indexVma reads a compressed archive; offsets are into the uncompressed one", async () => {
  const archive = await writeShuffled(disks, 5, true);
  const index = await indexVma(ReadableStream.from([gzipSync(archive)]));
  assert.equal(index.compression, "gzip");
  assert.equal(index.archiveSize, archive.length);
  const image = openVmaDisk(index, memoryReader(archive), "drive-scsi0");
  assert.deepEqual(await image.read(0, image.size), disks[0][1]);
});

Deno.test("openVmaDisk reads the devices of the Proxmox fixture byte for byte", async () => {
  const plain = await gunzip(await testdata("small.vma.gz"));
  const { disks: expected } = await extractAll(plain);
  for (const name of ["small.vma.zst", "small.vma.gz", "small.vma.lzo"]) {
    const index = await indexVma(ReadableStream.from([await testdata(name)]));
    assert.equal(index.archiveSize, plain.length, name);
    assert.equal(index.header.devices.length, expected.size);
    for (const [device, data] of expected) {
      const image = openVmaDisk(index, memoryReader(plain), device);
      assert.deepEqual(await image.read(0, image.size), data, `${name} ${device}`);
      await image.close();
    }
  }
});

Deno.test("openVmaDisk reads zero clusters without I/O; the index of a zero disk is empty", async () => {
  const writer = new VmaWriter();
  const size = 2 ** 36; // 64 GiB, 1M zero clusters
  const disk = writer.addDevice("drive-scsi0", size);
  const out = collect(writer.readable);
  await disk.writeZeroes(0, size);
  await writer.close();
  const index = await indexVma(ReadableStream.from([await out]));
  assert.equal(index.byteLength, 0);
  const image = openVmaDisk(index, noReads, "drive-scsi0");
  assert.deepEqual(await image.read(size - 100_000, 100_000), new Uint8Array(100_000));
  assert.deepEqual(await allRegions(image), [{ offset: 0, length: size, zero: true }]);
});

Deno.test("openVmaDisk reads zero blocks of a partial cluster without I/O", async () => {
  const data = new Uint8Array(65536);
  data.fill(1, 4096, 8192);
  const archive = await writeShuffled([["drive-scsi0", data]], 1);
  const index = await indexVma(ReadableStream.from([archive]));
  const reader = memoryReader(archive);
  const image = openVmaDisk(index, reader, "drive-scsi0");
  assert.deepEqual(await image.read(8192, 50000), new Uint8Array(50000));
  assert.equal(reader.reads, 0);
  assert.deepEqual(await image.read(4000, 200), data.subarray(4000, 4200));
  assert.equal(reader.reads, 1);
  assert.deepEqual(await allRegions(image), [
    { offset: 0, length: 4096, zero: true },
    { offset: 4096, length: 4096, zero: false },
    { offset: 8192, length: 65536 - 8192, zero: true },
  ]);
});

Deno.test("indexVma keeps a full device in few runs: bytes far below one per cluster", async () => {
  const size = 2000 * 65536;
  const writer = new VmaWriter();
  const disk = writer.addDevice("drive-scsi0", size);
  const out = collect(writer.readable);
  const cluster = new Uint8Array(65536).fill(3);
  for (let c = 0; c < 2000; c++) await disk.write(c * 65536, cluster);
  await writer.close();
  const index = await indexVma(ReadableStream.from([await out]));
  // One run per extent of 59 clusters (35 extents), 18 bytes each, capacity rounded to a power of 2.
  assert.ok(index.byteLength <= 64 * 18, `${index.byteLength}`);
});

Deno.test("indexVma rejects an index larger than maxBytes with a RangeError", async () => {
  const archive = await writeShuffled(disks, 42);
  await assert.rejects(
    indexVma(ReadableStream.from([archive]), { maxBytes: 100 }),
    new RangeError("Cannot index the archive: the index needs more than 100 bytes (maxBytes)"),
  );
  await assert.rejects(
    indexVma(ReadableStream.from([archive]), { maxBytes: -1 }),
    new RangeError("Cannot index the archive: maxBytes -1 is not a byte count"),
  );
});

Deno.test("indexVma makes the checks of verify", async () => {
  const archive = await writeShuffled(disks, 42);
  const badHead = archive.slice();
  const firstExtent = (await indexVma(ReadableStream.from([archive]))).header.headerSize;
  badHead[firstExtent + 100] ^= 1;
  await assert.rejects(indexVma(ReadableStream.from([badHead])), (e) => {
    assert.ok(e instanceof VmaFormatError);
    assert.equal(e.message, "wrong vma extent header chechsum");
    assert.equal(e.offset, firstExtent);
    return true;
  });
  await assert.rejects(
    indexVma(ReadableStream.from([archive.subarray(0, firstExtent)])),
    new VmaFormatError("detected missing cluster 0 for stream drive-scsi0", firstExtent),
  );
});

Deno.test("openVmaDisk rejects unknown devices, bad ranges, short archives", async () => {
  const archive = await writeShuffled(disks, 42);
  const index = await indexVma(ReadableStream.from([archive]));
  assert.throws(
    () => openVmaDisk(index, memoryReader(archive), "drive\nscsi9"),
    new TypeError('Cannot open device "drive\\nscsi9": the archive has no such device'),
  );
  assert.throws(
    () => openVmaDisk(index, memoryReader(archive.subarray(1)), "drive-scsi0"),
    new TypeError(
      `Cannot open device "drive-scsi0": the archive file has ${archive.length - 1} bytes, ` +
        `the index describes ${archive.length}`,
    ),
  );
  const image = openVmaDisk(index, memoryReader(archive), "drive-sata2");
  await assert.rejects(
    image.read(1000, 537),
    new RangeError('Cannot read 537 bytes at 1000 of device "drive-sata2": it has 1536 bytes'),
  );
  await assert.rejects(image.read(-1, 1), RangeError);
  await assert.rejects(image.read(0.5, 1), RangeError);
  // A file that shrank after it was opened.
  const lying: PositionedReader = {
    size: archive.length,
    read: (p, n) => Promise.resolve(archive.slice(p, Math.min(p + n, archive.length - 70000))),
    close: () => Promise.resolve(),
  };
  const shrunk = openVmaDisk(index, lying, "drive-scsi0");
  await assert.rejects(shrunk.read(0, shrunk.size), (e) => {
    assert.ok(e instanceof VmaFormatError);
    assert.match(e.message, /^archive ended early: \d+ bytes wanted at \d+, \d+ read$/);
    return true;
  });
  await image.close();
  await assert.rejects(
    image.read(0, 1),
    new TypeError('Cannot read device "drive-sata2": closed'),
  );
});
