import assert from "node:assert/strict";
import { VmaReader, VmaWriter } from "../../mod.ts";
import {
  chunked,
  collect,
  extractAll,
  FIXED_CTIME,
  FIXED_UUID,
  md5With,
  pseudoRandom,
  writeArchive,
} from "../_helpers.ts";

const be32 = (b: Uint8Array, at: number) => new DataView(b.buffer, b.byteOffset).getUint32(at);
const be16 = (b: Uint8Array, at: number) => new DataView(b.buffer, b.byteOffset).getUint16(at);
const be64 = (b: Uint8Array, at: number) => new DataView(b.buffer, b.byteOffset).getBigUint64(at);
const text = (b: Uint8Array) => new TextDecoder().decode(b);

Deno.test("VmaWriter writes the header of the spec's worked example byte for byte", async () => {
  const config = new TextEncoder().encode("memory: 512\n"); // 12 bytes
  const writer = new VmaWriter({ uuid: FIXED_UUID, ctime: FIXED_CTIME });
  writer.addConfig("qemu-server.conf", config);
  const disk = writer.addDevice("drive-scsi0", 131072);
  const out = collect(writer.readable);
  await disk.writeZeroes(0, 131072);
  await writer.close();
  const a = await out;

  assert.deepEqual([...a.subarray(0, 4)], [0x56, 0x4d, 0x41, 0x00]);
  assert.equal(be32(a, 4), 1);
  assert.equal(
    Array.from(a.subarray(8, 24), (x) => x.toString(16).padStart(2, "0")).join(""),
    FIXED_UUID.replaceAll("-", ""),
  );
  assert.equal(be64(a, 24), BigInt(FIXED_CTIME.getTime() / 1000));
  assert.equal(be32(a, 48), 12288); // blob_buffer_offset
  assert.equal(be32(a, 52), 48); // blob_buffer_size: used bytes, dummy included
  assert.equal(be32(a, 56), 12800); // header_size
  assert.equal(be32(a, 2044), 1); // config_names[0]
  assert.equal(be32(a, 3068), 20); // config_data[0]
  assert.equal(be32(a, 2048), 0);
  assert.equal(be32(a, 4096 + 32), 34); // dev_info[1].devname_ptr
  assert.equal(be64(a, 4096 + 32 + 8), 131072n);
  const blob = a.subarray(12288, 12288 + 48);
  assert.equal(blob[0], 0); // dummy
  assert.deepEqual([...blob.subarray(1, 3)], [17, 0]); // little-endian length
  assert.equal(text(blob.subarray(3, 20)), "qemu-server.conf\0");
  assert.deepEqual([...blob.subarray(20, 22)], [12, 0]);
  assert.deepEqual(blob.subarray(22, 34), config);
  assert.deepEqual([...blob.subarray(34, 36)], [12, 0]);
  assert.equal(text(blob.subarray(36, 48)), "drive-scsi0\0");
  assert.ok(a.subarray(12288 + 48, 12800).every((x) => x === 0), "blob padding is zero");
  assert.deepEqual(a.subarray(32, 48), md5With(a.subarray(0, 12800), 32));
  // Then exactly one extent with two zero clusters and no data.
  assert.equal(a.length, 12800 + 512);
  const ext = a.subarray(12800);
  assert.equal(text(ext.subarray(0, 4)), "VMAE");
  assert.equal(be16(ext, 4), 0);
  assert.equal(be16(ext, 6), 0);
  assert.deepEqual(ext.subarray(8, 24), a.subarray(8, 24));
  assert.equal(be64(ext, 40), (1n << 32n) | 0n); // mask 0, dev 1, cluster 0
  assert.equal(be64(ext, 48), (1n << 32n) | 1n); // mask 0, dev 1, cluster 1
  assert.equal(be64(ext, 56), 0n);
  assert.deepEqual(ext.subarray(24, 40), md5With(ext, 24));
});

Deno.test("VmaWriter leaves zero 4 KiB blocks out through the mask and keeps block order", async () => {
  const image = new Uint8Array(131072);
  image.fill(0xaa, 0, 4096); // block 0
  image.fill(0xbb, 8192, 65536); // blocks 2..15 (block 1 zero)
  image[65536 + 5 * 4096 + 17] = 1; // cluster 1: block 5 only
  const a = await writeArchive([{ name: "drive-scsi0", data: image }]);
  const ext = a.subarray(12800);
  assert.equal(be16(ext, 6), 15 + 1); // block_count = popcount of all masks
  assert.equal(be16(ext, 40), 0b1111_1111_1111_1101);
  assert.equal(ext[42], 0); // reserved
  assert.equal(ext[43], 1); // dev_id
  assert.equal(be32(ext, 44), 0);
  assert.equal(be16(ext, 48), 1 << 5);
  assert.equal(be32(ext, 52), 1);
  assert.equal(ext.length, 512 + 16 * 4096);
  assert.deepEqual(ext.subarray(512, 512 + 4096), image.subarray(0, 4096));
  assert.deepEqual(ext.subarray(512 + 4096, 512 + 15 * 4096), image.subarray(8192, 65536));
  assert.deepEqual(
    ext.subarray(512 + 15 * 4096),
    image.subarray(65536 + 5 * 4096, 65536 + 6 * 4096),
  );
});

Deno.test("VmaWriter never sets mask bits past the device end and zero-fills the cut block", async () => {
  for (const size of [65536 + 512, 65536 + 4096, 65536 + 4608, 3 * 512]) {
    const image = new Uint8Array(size).fill(0x11);
    const a = await writeArchive([{ name: "d", data: image }]);
    const ext = a.subarray(12800);
    const slots = size > 65536 ? 2 : 1;
    const lastMask = be16(ext, 40 + 8 * (slots - 1));
    const tail = size - (slots - 1) * 65536;
    assert.equal(lastMask, (1 << Math.ceil(tail / 4096)) - 1, `mask for size ${size}`);
    assert.equal(ext.length, 512 + 4096 * ((slots - 1) * 16 + Math.ceil(tail / 4096)));
    // Bytes of the last block past the device end are zero.
    const lastBlockEnd = ext.length;
    const valid = tail % 4096 || 4096;
    assert.ok(ext.subarray(lastBlockEnd - 4096 + valid).every((x) => x === 0), `tail for ${size}`);
    const back = await extractAll(a);
    assert.deepEqual(back.disks.get("d"), image);
  }
});

Deno.test("VmaWriter puts at most 59 clusters in an extent", async () => {
  const image = new Uint8Array(60 * 65536).fill(1);
  const a = await writeArchive([{ name: "d", data: image }]);
  const first = a.subarray(12800);
  assert.equal(be16(first, 6), 59 * 16);
  assert.equal(be64(first, 40 + 8 * 58) & 0xffffffffn, 58n);
  const second = a.subarray(12800 + 512 + 59 * 65536);
  assert.equal(second.length, 512 + 65536);
  assert.equal(be16(second, 6), 16);
  assert.equal(be32(second, 44), 59);
});

Deno.test("VmaWriter writes a header and one empty extent for an archive without devices", async () => {
  const writer = new VmaWriter({ uuid: FIXED_UUID, ctime: FIXED_CTIME });
  writer.addConfig("qemu-server.conf", "memory: 1\n");
  const out = collect(writer.readable);
  await writer.close();
  const a = await out;
  assert.equal(a.length, 12800 + 512);
  assert.equal(be16(a, 12800 + 6), 0);
  assert.ok(a.subarray(12800 + 40, 12800 + 512).every((x) => x === 0));
  const back = await extractAll(a);
  assert.equal(text(back.configs.get("qemu-server.conf")!), "memory: 1\n");

  const empty = new VmaWriter();
  const out2 = collect(empty.readable);
  await empty.close();
  const b = await out2;
  assert.equal(be32(b, 56), 12288 + 512, "at least a 512-byte blob area, so Proxmox accepts it");
  assert.equal((await new VmaReader(ReadableStream.from([b])).header()).configs.length, 0);
});

Deno.test("VmaWriter stores config data, not the config name (the 2013 vma.py bug)", async () => {
  const a = await writeArchive([], {
    configs: [["qemu-server.conf", "cores: 4\n"], ["qemu-server.fw", ""]],
  });
  const header = await new VmaReader(ReadableStream.from([a])).header();
  assert.deepEqual(header.configs.map((c) => [c.name, text(c.data)]), [
    ["qemu-server.conf", "cores: 4\n"],
    ["qemu-server.fw", ""],
  ]);
});

Deno.test("VmaWriter gives the same archive for every chunking of the same input", async () => {
  const image = pseudoRandom(3 * 65536 + 4096 * 3, 7);
  image.fill(0, 65536, 2 * 65536); // a zero cluster
  image.fill(0, 4096, 3 * 4096); // zero blocks
  const reference = await writeArchive([{ name: "d", data: image }]);
  for (const chunk of [1, 7, 511, 4096, 65535, 65537, 1 << 20]) {
    const a = await writeArchive([{ name: "d", data: image }], { chunk });
    assert.deepEqual(a, reference, `chunk size ${chunk}`);
  }
});

Deno.test("VmaWriter accepts cluster-aligned writes in any order and partial clusters in sequence", async () => {
  const size = 5 * 65536 + 4096;
  const image = pseudoRandom(size, 3);
  const writer = new VmaWriter();
  const dev = writer.addDevice("drive-scsi0", size);
  const out = collect(writer.readable);
  await dev.write(3 * 65536, image.subarray(3 * 65536, 5 * 65536)); // two whole clusters
  await dev.write(5 * 65536, image.subarray(5 * 65536, 5 * 65536 + 100)); // partial...
  await dev.write(5 * 65536 + 100, image.subarray(5 * 65536 + 100)); // ...completed
  await dev.write(0, image.subarray(0, 1000));
  await dev.write(1000, image.subarray(1000, 3 * 65536));
  assert.equal(dev.bytesWritten, size);
  await writer.close();
  const back = await extractAll(await out);
  assert.deepEqual(back.disks.get("drive-scsi0"), image);
});

Deno.test("VmaWriter ordered mode emits device then cluster order whatever the interleaving", async () => {
  const a = pseudoRandom(4 * 65536, 1);
  const b = pseudoRandom(3 * 65536 + 512, 2);
  const run = async (chunkA: number, chunkB: number) => {
    const writer = new VmaWriter({ uuid: FIXED_UUID, ctime: FIXED_CTIME, ordered: true });
    const da = writer.addDevice("a", a.length);
    const db = writer.addDevice("b", b.length);
    const out = collect(writer.readable);
    await Promise.all([
      chunked(b, chunkB).pipeTo(db.writable),
      chunked(a, chunkA).pipeTo(da.writable),
    ]);
    await writer.close();
    return await out;
  };
  const first = await run(1000, 70000);
  const second = await run(65536, 3);
  assert.deepEqual(first, second);
  const order: string[] = [];
  for await (const c of new VmaReader(ReadableStream.from([first])).clusters()) {
    order.push(`${c.device.name}${c.cluster}`);
  }
  assert.deepEqual(order, ["a0", "a1", "a2", "a3", "b0", "b1", "b2", "b3"]);
});

Deno.test("VmaWriter interleaves devices fed at the same time", async () => {
  const a = pseudoRandom(8 * 65536, 4);
  const b = pseudoRandom(8 * 65536, 5);
  const writer = new VmaWriter();
  const da = writer.addDevice("a", a.length);
  const db = writer.addDevice("b", b.length);
  const out = collect(writer.readable);
  await Promise.all([chunked(a, 65536).pipeTo(da.writable), chunked(b, 65536).pipeTo(db.writable)]);
  await writer.close();
  const archive = await out;
  const devs = [];
  for await (const c of new VmaReader(ReadableStream.from([archive])).clusters()) {
    devs.push(c.device.name);
  }
  assert.notDeepEqual(devs, [...devs].sort(), "clusters of both devices interleave");
  const back = await extractAll(archive);
  assert.deepEqual(back.disks.get("a"), a);
  assert.deepEqual(back.disks.get("b"), b);
});

Deno.test("VmaWriter holds back device writes while the archive is not read", async () => {
  const writer = new VmaWriter();
  const dev = writer.addDevice("d", 400 * 65536);
  let done = false;
  const writing = dev.write(0, new Uint8Array(400 * 65536).fill(1)).then(() => done = true);
  for (let i = 0; i < 20; i++) await new Promise((r) => setTimeout(r, 1));
  assert.equal(done, false);
  // At most the header, one queued extent and the one being built.
  assert.ok(
    writer.stats.archiveBytes <= 12800 + 2 * (512 + 59 * 65536),
    `${writer.stats.archiveBytes}`,
  );
  const out = collect(writer.readable);
  await writing;
  await writer.close();
  assert.equal((await out).length, writer.stats.archiveBytes);
  assert.equal(writer.stats.bytes, 400 * 65536);
  assert.equal(writer.stats.zeroBytes, 0);
});

Deno.test("VmaWriter counts zero bytes in its stats", async () => {
  const writer = new VmaWriter();
  const dev = writer.addDevice("d", 2 * 65536);
  const out = collect(writer.readable);
  const data = new Uint8Array(65536);
  data[0] = 1;
  await dev.write(0, data);
  await dev.writeZeroes(65536, 65536);
  await writer.close();
  await out;
  assert.deepEqual({ ...writer.stats, archiveBytes: 0 }, {
    bytes: 131072,
    zeroBytes: 131072 - 4096,
    archiveBytes: 0,
  });
});

Deno.test("VmaWriter rejects invalid config and device declarations", () => {
  const w = new VmaWriter();
  w.addConfig("qemu-server.conf", "");
  w.addDevice("drive-scsi0", 512);
  const cases: [
    () => unknown,
    ErrorConstructor | RangeErrorConstructor | TypeErrorConstructor,
    string,
  ][] = [
    [
      () => w.addConfig("qemu-server.conf", ""),
      TypeError,
      'Cannot add config "qemu-server.conf": the name is already used',
    ],
    [() => w.addConfig("", ""), TypeError, 'Cannot add config "": the name is empty'],
    [() => w.addConfig("a/b", ""), TypeError, 'Cannot add config "a/b": the name contains "/"'],
    [
      () => w.addConfig("a b", ""),
      TypeError,
      'Cannot add config "a b": the name contains whitespace',
    ],
    [
      () => w.addConfig("a\0b", ""),
      TypeError,
      'Cannot add config "a\\u0000b": the name contains a NUL or control character',
    ],
    [
      () => w.addConfig("a\x07", ""),
      TypeError,
      'Cannot add config "a\\u0007": the name contains a NUL or control character',
    ],
    [
      () => w.addDevice("a\u0085b", 65536),
      TypeError,
      'Cannot add device "a\\u0085b": the name contains a NUL or control character',
    ],
    [
      () => w.addDevice("a\u009bb", 65536),
      TypeError,
      'Cannot add device "a\\u009bb": the name contains a NUL or control character',
    ],
    [() => w.addConfig("..", ""), TypeError, 'Cannot add config "..": the name is not a file name'],
    [
      () => w.addConfig("x".repeat(65535), ""),
      RangeError,
      "the name is 65535 bytes long, more than 65534",
    ],
    [
      () => w.addConfig("big", new Uint8Array(65536)),
      RangeError,
      'Cannot add config "big": the data is 65536 bytes, more than 65535',
    ],
    [
      () => w.addConfig("n", 5 as unknown as string),
      TypeError,
      'Cannot add config "n": the data must be a string or a Uint8Array',
    ],
    [
      () => w.addDevice("drive-scsi0", 512),
      TypeError,
      'Cannot add device "drive-scsi0": the name is already used',
    ],
    [
      () => w.addDevice("d", 0),
      RangeError,
      'Cannot add device "d": the size must be a positive safe integer, got 0',
    ],
    [() => w.addDevice("d", -512), RangeError, "got -512"],
    [() => w.addDevice("d", 1.5), RangeError, "got 1.5"],
    [() => w.addDevice("d", 2 ** 53), RangeError, "got 9007199254740992"],
    [
      () => w.addDevice("d", 1000),
      RangeError,
      'Cannot add device "d": the size 1000 is not a multiple of 512',
    ],
    [() => w.addDevice("d\n", 512), TypeError, "the name contains whitespace"],
    [() => new VmaWriter({ uuid: "nope" }), TypeError, 'Cannot use uuid "nope"'],
    [
      () => new VmaWriter({ uuid: new Uint8Array(15) }),
      TypeError,
      "Cannot use uuid: it must be a string or 16 bytes",
    ],
    [
      () => new VmaWriter({ ctime: new Date(NaN) }),
      TypeError,
      "Cannot use ctime: it must be a valid Date",
    ],
  ];
  for (const [fn, cls, message] of cases) {
    assert.throws(fn, (e: unknown) => {
      assert.ok(e instanceof cls, `${message}: got ${e}`);
      assert.ok(
        (e as Error).message.includes(message),
        `expected "${message}", got "${(e as Error).message}"`,
      );
      return true;
    });
  }
  // vmstate may have any size.
  assert.equal(w.addDevice("vmstate", 1000).size, 1000);
});

Deno.test("VmaWriter enforces the config, device and header limits", () => {
  const w = new VmaWriter();
  for (let i = 0; i < 256; i++) w.addConfig(`c${i}`, "");
  assert.throws(() => w.addConfig("c256", ""), {
    name: "RangeError",
    message: 'Cannot add config "c256": an archive holds at most 256 configs',
  });
  for (let i = 1; i <= 254; i++) w.addDevice(`d${i}`, 512);
  assert.throws(() => w.addDevice("d255", 512), {
    name: "RangeError",
    message: 'Cannot add device "d255": an archive holds at most 254 devices',
  });
  const big = new VmaWriter();
  for (let i = 0; i < 7; i++) big.addConfig(`c${i}`, new Uint8Array(65535));
  assert.throws(() => big.addConfig("c7", new Uint8Array(65535)), {
    name: "RangeError",
    message: 'Cannot add config "c7": the header would be larger than 524288 bytes',
  });
});

Deno.test("VmaWriter rejects bad writes, and the failure is sticky", async () => {
  const cases: [(w: VmaWriter) => Promise<unknown>, string][] = [
    [
      (w) => w.addDevice("d", 131072).write(0, new Uint8Array(131073)),
      'Cannot write 131073 bytes at offset 0 to device "d": it goes past the end of the device (131072 bytes)',
    ],
    [
      (w) => w.addDevice("d", 131072).write(512, new Uint8Array(512)),
      'Cannot write at offset 512 to device "d": the offset is not a multiple of 65536 and continues no partial cluster',
    ],
    [async (w) => {
      const d = w.addDevice("d", 131072);
      await d.write(0, new Uint8Array(65536));
      await d.write(0, new Uint8Array(65536));
    }, 'Cannot write cluster 0 of device "d": it was already written'],
    [
      async (w) => {
        const d = w.addDevice("d", 131072);
        await d.write(0, new Uint8Array(100));
        await d.write(65536, new Uint8Array(100));
      },
      'Cannot write at offset 65536 to device "d": the partial cluster at offset 0 continues at offset 100',
    ],
    [
      (w) => w.addDevice("d", 131072).writeZeroes(0, 1000),
      'Cannot write 1000 zero bytes at offset 0 to device "d": zeroes are recorded in whole clusters of 65536 bytes',
    ],
    [async (w) => {
      const d = w.addDevice("d", 131072);
      await d.write(0, new Uint8Array(70000));
      await d.close();
    }, 'Cannot close device "d": 70000 of 131072 bytes were written, 61072 missing'],
    [async (w) => {
      w.addDevice("d", 131072);
      await w.close();
    }, 'Cannot close device "d": 0 of 131072 bytes were written, 131072 missing'],
    [async (w) => {
      const d = w.addDevice("d", 65536);
      await d.write(0, new Uint8Array(65536));
      await d.close();
      await d.write(0, new Uint8Array(1));
    }, 'Cannot write to device "d": it is closed'],
  ];
  for (const [fn, message] of cases) {
    const w = new VmaWriter();
    const out = collect(w.readable);
    const error = await fn(w).then(() => undefined, (e) => e);
    assert.ok(error instanceof RangeError || error instanceof TypeError, `${message}: ${error}`);
    assert.equal(error.message, message);
    // Sticky: the archive and every later call fail with the same error.
    await assert.rejects(out, (e) => e === error);
    await assert.rejects(w.close(), (e) => e === error);
    assert.throws(() => w.addConfig("late", ""), (e) => e === error);
  }
});

Deno.test("VmaWriter refuses new devices once data was written", async () => {
  const w = new VmaWriter();
  const d = w.addDevice("d", 131072);
  const out = collect(w.readable);
  await d.write(0, new Uint8Array(65536));
  assert.throws(() => w.addDevice("e", 512), {
    name: "TypeError",
    message: 'Cannot add device "e": device data was already written',
  });
  await d.writeZeroes(65536, 65536);
  await w.close();
  assert.throws(() => w.addConfig("x", ""), {
    name: "TypeError",
    message: 'Cannot add config "x": the archive is closed',
  });
  await out;
});

Deno.test("VmaWriter abort and cancel propagate both ways", async () => {
  const w = new VmaWriter();
  const d = w.addDevice("d", 400 * 65536);
  const reason = new Error("disk on fire");
  const reader = w.readable.getReader();
  const pending = d.write(0, new Uint8Array(400 * 65536));
  await w.abort(reason);
  await assert.rejects(pending, (e) => e === reason);
  await assert.rejects(reader.read(), (e) => e === reason);

  const w2 = new VmaWriter();
  const d2 = w2.addDevice("d", 400 * 65536);
  const pending2 = d2.write(0, new Uint8Array(400 * 65536).fill(1));
  const cancelReason = new Error("consumer went away");
  await w2.readable.cancel(cancelReason);
  await assert.rejects(pending2, (e) => e === cancelReason);

  const w3 = new VmaWriter();
  const d3 = w3.addDevice("d", 65536);
  const out3 = collect(w3.readable);
  await d3.writable.abort(reason);
  await assert.rejects(out3, (e) => e === reason);
});

Deno.test("VmaWriter.recycle reuses extent buffers without changing the archive", async () => {
  const image = pseudoRandom(12 * 59 * 65536, 9);
  image.fill(0, 65536, 5 * 65536);
  const reference = await writeArchive([{ name: "d", data: image }]);

  const writer = new VmaWriter({ uuid: FIXED_UUID, ctime: FIXED_CTIME });
  const dev = writer.addDevice("d", image.length);
  const copies: Uint8Array[] = [];
  const buffers = new Set<ArrayBufferLike>();
  const done = writer.readable.pipeTo(
    new WritableStream({
      write(chunk) {
        copies.push(chunk.slice());
        buffers.add(chunk.buffer);
        writer.recycle(chunk);
        writer.recycle(chunk); // a second call is ignored
        writer.recycle(new Uint8Array(16)); // not ours: ignored
      },
    }),
  );
  await chunked(image, 1 << 20).pipeTo(dev.writable);
  await writer.close();
  await done;
  const total = copies.reduce((n, c) => n + c.length, 0);
  const archive = new Uint8Array(total);
  let at = 0;
  for (const c of copies) {
    archive.set(c, at);
    at += c.length;
  }
  assert.deepEqual(archive, reference);
  // 12 data extents plus the header went through far fewer buffers.
  assert.ok(buffers.size <= 6, `${buffers.size} distinct buffers`);
});
