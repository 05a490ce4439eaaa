// saveVmaIndex and loadVmaIndex: an index file read back, checked as outside
// data (damaged, hostile and stale files are refused, never trusted); and
// indexVma of mutated archives.
import assert from "node:assert/strict";
import {
  indexVma,
  loadVmaIndex,
  openVmaDisk,
  saveVmaIndex,
  type VmaHeader,
  type VmaIndex,
  VmaReader,
  VmaWriter,
} from "../../mod.ts";

/** `size` bytes: every fourth cluster zero, some 4 KiB blocks zero, the rest random (seeded). */
function makeDisk(size: number, seed: number): Uint8Array {
  const disk = new Uint8Array(size);
  let x = seed;
  for (let i = 0; i < size; i++) {
    const cluster = Math.floor(i / 65536);
    const block = Math.floor(i / 4096);
    if (cluster % 4 === 3 || (block * 7 + seed) % 5 === 0) continue;
    x = (x * 1103515245 + 12345) >>> 0;
    disk[i] = (x >>> 16) | 1;
  }
  return disk;
}

const STAMP = {
  size: 0,
  mtimeMs: 1_700_000_000_123.5,
  ino: 4242,
  dev: 2049,
  ctimeMs: 1_700_000_001_000,
};
/** Bytes before the first device in an index file (format 2). */
const FIXED = 104;

/** An archive of three devices (partly zero clusters and blocks, shuffled order). */
async function archive(uuid?: string): Promise<Uint8Array> {
  const writer = new VmaWriter({ uuid });
  const disks = [makeDisk(23 * 65536 + 1024, 1), new Uint8Array(3 * 65536), makeDisk(9 * 65536, 2)];
  const devices = disks.map((d, i) => writer.addDevice(`drive-scsi${i}`, d.length));
  const out = new Response(writer.readable).bytes();
  for (let c = 23; c >= 0; c--) {
    for (let d = 0; d < disks.length; d++) {
      const data = disks[d].subarray(c * 65536, (c + 1) * 65536);
      if (data.length > 0) await devices[d].write(c * 65536, data);
    }
  }
  await writer.close();
  return await out;
}

async function headerOf(bytes: Uint8Array): Promise<VmaHeader> {
  const reader = new VmaReader(ReadableStream.from([bytes]));
  const header = await reader.header();
  await reader.cancel();
  return header;
}

function memoryReader(data: Uint8Array) {
  return {
    size: data.length,
    read: (p: number, n: number) => Promise.resolve(data.slice(p, p + n)),
    close: () => Promise.resolve(),
  };
}

/** Every device of `index` read whole from `data`. */
async function devices(index: VmaIndex, data: Uint8Array): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for (const d of index.header.devices) {
    const image = openVmaDisk(index, memoryReader(data), d.name);
    out.push(await image.read(0, image.size));
    for await (const _ of image.regions()) { /* walk them */ }
    await image.close();
  }
  return out;
}

async function resign(bytes: Uint8Array): Promise<Uint8Array> {
  const end = bytes.length - 32;
  const digest = new Uint8Array(
    await crypto.subtle.digest("SHA-256", bytes.subarray(0, end) as BufferSource),
  );
  bytes.set(digest, end);
  return bytes;
}

Deno.test("saveVmaIndex and loadVmaIndex: the loaded index reads every device as the built one", async () => {
  const data = await archive();
  const stamp = { ...STAMP, size: data.length };
  const built = await indexVma(ReadableStream.from([data]));
  const saved = await saveVmaIndex(built, stamp);
  assert.deepEqual([...saved.subarray(0, 16)], [
    ...new TextEncoder().encode("VMAKITIX\x02\0\0\0\0\0\0\0"),
  ]);
  const loaded = await loadVmaIndex(saved, await headerOf(data), stamp);
  assert.equal(loaded.archiveSize, built.archiveSize);
  assert.equal(loaded.byteLength, built.byteLength);
  assert.deepEqual(await devices(loaded, data), await devices(built, data));
});

Deno.test("loadVmaIndex refuses an index of a changed file or another archive (RangeError)", async () => {
  const data = await archive();
  const stamp = { ...STAMP, size: data.length };
  const saved = await saveVmaIndex(await indexVma(ReadableStream.from([data])), stamp);
  const header = await headerOf(data);
  const changed =
    "Cannot load the index: the archive file changed since it was saved (size or time)";
  await assert.rejects(
    loadVmaIndex(saved, header, { ...stamp, mtimeMs: stamp.mtimeMs + 1 }),
    { name: "RangeError", message: changed },
  );
  await assert.rejects(loadVmaIndex(saved, header, { ...stamp, size: stamp.size + 1 }), {
    name: "RangeError",
    message: changed,
  });
  // Another file given the same size and times (cp -p, touch -r), or the
  // archive copied or moved: another inode, file system or ctime.
  const replaced = "Cannot load the index: the archive file was replaced, copied or moved " +
    "since it was saved (inode, file system or ctime)";
  for (
    const other of [{ ino: 4243 }, { dev: 2050 }, { ctimeMs: stamp.ctimeMs + 1 }, { ino: null }]
  ) {
    await assert.rejects(loadVmaIndex(saved, header, { ...stamp, ...other }), {
      name: "RangeError",
      message: replaced,
    });
  }
  // Where the system gives none of them, size and time alone.
  const bare = { size: stamp.size, mtimeMs: stamp.mtimeMs };
  const savedBare = await saveVmaIndex(await indexVma(ReadableStream.from([data])), bare);
  assert.ok(await loadVmaIndex(savedBare, header, { ...bare, ino: null, ctimeMs: null }));
  await assert.rejects(loadVmaIndex(savedBare, header, stamp), {
    name: "RangeError",
    message: replaced,
  });
  const other = await headerOf(await archive("99999999-8888-4777-8666-555555555555"));
  await assert.rejects(loadVmaIndex(saved, other, stamp), {
    name: "RangeError",
    message: new RegExp(
      `^Cannot load the index: it is for the archive "${header.uuid}", ` +
        `not "99999999-8888-4777-8666-555555555555"$`,
    ),
  });
  await assert.rejects(loadVmaIndex(saved, header, stamp, { maxBytes: 10 }), {
    name: "RangeError",
    message: /^Cannot index the archive: the index needs more than 10 bytes \(maxBytes\)$/,
  });
});

Deno.test("loadVmaIndex refuses damaged, foreign and hostile index files (SyntaxError)", async () => {
  const data = await archive();
  const stamp = { ...STAMP, size: data.length };
  const saved = await saveVmaIndex(await indexVma(ReadableStream.from([data])), stamp);
  const header = await headerOf(data);
  const refuse = async (bytes: Uint8Array, message: string) => {
    await assert.rejects(loadVmaIndex(bytes, header, stamp), {
      name: "SyntaxError",
      message: `Cannot load the index: ${message}`,
    });
  };
  await refuse(saved.subarray(0, 50), "50 bytes is too short");
  await refuse(new Uint8Array(200), "not a vmakit index file");
  const v2 = saved.slice();
  v2[8] = 1;
  await refuse(v2, "format version 1 is not supported");
  const flipped = saved.slice();
  flipped[100] ^= 1;
  await refuse(flipped, "the checksum does not match (damaged)");
  // Well signed but hostile: a run count of 2^32 - 1 for the first device.
  const huge = saved.slice();
  new DataView(huge.buffer).setUint32(FIXED + 16, 0xffffffff, true);
  await refuse(await resign(huge), "it ends early");
  // A run past the end of the archive.
  const beyond = saved.slice();
  const nameLength = new DataView(beyond.buffer).getUint32(FIXED + 4, true);
  new DataView(beyond.buffer).setBigUint64(FIXED + 20 + nameLength + 8, 1n << 40n, true);
  await refuse(await resign(beyond), "run 0 of a device is out of bounds");
  // An archive size beyond the file.
  const larger = saved.slice();
  new DataView(larger.buffer).setBigUint64(32, BigInt(data.length + 1), true);
  await refuse(
    await resign(larger),
    `archive size ${data.length + 1} is beyond the file's ${data.length} bytes`,
  );
  await refuse(
    await resign(new Uint8Array([...saved.subarray(0, -32), 0, ...saved.subarray(-32)])),
    "1 bytes after the last device",
  );
});

Deno.test("loadVmaIndex: 3000 mutated index files are refused, or accepted with every read in bounds", async () => {
  const data = await archive();
  const stamp = { ...STAMP, size: data.length };
  const built = await indexVma(ReadableStream.from([data]));
  const saved = await saveVmaIndex(built, stamp);
  const header = await headerOf(data);
  const expected = await devices(built, data);
  let x = 12345;
  const random = (n: number) => {
    x = (x * 1103515245 + 12345) >>> 0;
    return x % n;
  };
  let refused = 0;
  let accepted = 0;
  for (let i = 0; i < 3000; i++) {
    let bytes: Uint8Array = saved.slice();
    const kind = random(5);
    if (kind === 4) {
      // A small change to one run's offset or mask: often still in bounds.
      const view = new DataView(bytes.buffer);
      const first = FIXED + 20 + view.getUint32(FIXED + 4, true);
      const runs = view.getUint32(FIXED + 16, true);
      const at = first + 18 * random(runs);
      if (random(2) === 0) {
        view.setBigUint64(
          at + 8,
          view.getBigUint64(at + 8, true) + BigInt(512 * (random(9) - 4)),
          true,
        );
      } else {
        view.setUint16(at + 16, random(65536), true);
      }
    } else if (kind === 0) {
      // Truncated or extended.
      bytes = random(2) === 0
        ? bytes.slice(0, random(bytes.length))
        : new Uint8Array([...bytes, ...new Uint8Array(1 + random(64))]);
    } else {
      for (let k = 1 + random(4); k > 0; k--) {
        const at = random(bytes.length - 32);
        bytes[at] = kind === 1 ? bytes[at] ^ (1 << random(8)) : random(256);
      }
    }
    // Most mutations are re-signed, so the checks behind the checksum are reached.
    if (random(8) !== 0 && bytes.length >= 32) bytes = await resign(bytes);
    let index: VmaIndex;
    try {
      index = await loadVmaIndex(bytes, header, stamp);
    } catch (e) {
      assert.ok(e instanceof SyntaxError || e instanceof RangeError, String(e));
      assert.match((e as Error).message, /^Cannot (load the index|index the archive): /);
      refused++;
      continue;
    }
    // Accepted: every read stays within the archive; a run table that
    // differs from the built one (a mutated mask or offset) gives other
    // bytes, but never a crash or a read out of bounds.
    accepted++;
    const got = await devices(index, data);
    assert.deepEqual(got.map((d) => d.length), expected.map((d) => d.length));
  }
  assert.ok(refused > 1500 && accepted > 50, `${refused} refused, ${accepted} accepted`);
  console.log(`${refused} refused, ${accepted} accepted`);
});

Deno.test("indexVma and openVmaDisk: 2000 mutated archives are refused or read in bounds", async () => {
  const data = await archive();
  let x = 99;
  const random = (n: number) => {
    x = (x * 1103515245 + 12345) >>> 0;
    return x % n;
  };
  let refused = 0;
  let read = 0;
  for (let i = 0; i < 2000; i++) {
    const bytes = data.slice();
    // Mostly in the extents (the header has its own MD5), a few anywhere.
    for (let k = 1 + random(3); k > 0; k--) {
      const at = random(8) === 0 ? random(bytes.length) : 12288 + random(bytes.length - 12288);
      bytes[at] = random(2) === 0 ? bytes[at] ^ (1 << random(8)) : random(256);
    }
    const cut = random(10) === 0 ? bytes.subarray(0, random(bytes.length)) : bytes;
    let index: VmaIndex;
    try {
      index = await indexVma(ReadableStream.from([cut]));
    } catch (e) {
      assert.ok(e instanceof SyntaxError || e instanceof RangeError, String(e));
      refused++;
      continue;
    }
    read++;
    for (const d of index.header.devices) {
      const image = openVmaDisk(index, memoryReader(cut), d.name);
      assert.equal((await image.read(0, image.size)).length, d.size);
      await image.close();
    }
  }
  assert.ok(refused > 0 && read > 0, `${refused} refused, ${read} read`);
  console.log(`${refused} refused, ${read} indexed and read`);
});
