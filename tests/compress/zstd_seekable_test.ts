// openZstdSeekable / ZstdSeekableReader: random access through a seek table,
// and tables and frames that lie.
import assert from "node:assert/strict";
import { constants, createZstdDecompress, zstdCompressSync } from "node:zlib";
import { Duplex } from "node:stream";
import { openZstdSeekable } from "../../mod.ts";
import { framesOf, seekableFile } from "./_seekable.ts";

/** Positioned reads of bytes in memory, counting the bytes read. */
function fileOf(bytes: Uint8Array) {
  return {
    size: bytes.length,
    bytesRead: 0,
    read(p: number, n: number) {
      const out = bytes.slice(p, p + n);
      this.bytesRead += out.length;
      return Promise.resolve(out);
    },
    close: () => Promise.resolve(),
  };
}

function data(size: number): Uint8Array {
  const d = new Uint8Array(size);
  let x = 1;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    d[i] = i % 3000 < 1000 ? 0 : x >>> 24;
  }
  return d;
}

Deno.test("ZstdSeekableReader reads any range as the source, with and without checksums", async () => {
  const source = data(300_000);
  for (const checksums of [false, true]) {
    // Uneven frames, and one of zero bytes.
    const entries = [
      ...framesOf(source.subarray(0, 70_001), 70_001),
      { compressed: new Uint8Array(zstdCompressSync(new Uint8Array(0))), decompressed: 0 },
      ...framesOf(source.subarray(70_001), 65_536),
    ];
    const reader = await openZstdSeekable(fileOf(seekableFile(entries, { checksums })));
    assert.ok(reader);
    assert.equal(reader.size, source.length);
    assert.equal(reader.frameCount, entries.length);
    let x = 7;
    for (let i = 0; i < 300; i++) {
      x = (x * 1103515245 + 12345) >>> 0;
      const position = x % source.length;
      const length = (x >>> 8) % 200_000;
      const got: Uint8Array = await reader.read(position, length);
      assert.deepEqual(got, source.slice(position, position + length));
    }
    // At the end: fewer bytes.
    assert.equal((await reader.read(source.length - 10, 100)).length, 10);
    assert.equal((await reader.read(source.length, 100)).length, 0);
    // Concurrent reads of one frame.
    const all = await Promise.all([0, 1, 2, 3].map((k) => reader.read(100_000 + k, 1000)));
    all.forEach((bytes, k) => assert.deepEqual(bytes, source.slice(100_000 + k, 101_000 + k)));
    await reader.close();
    await assert.rejects(reader.read(0, 1), {
      name: "TypeError",
      message: "Cannot read the seekable zstd file: closed",
    });
  }
});

Deno.test("ZstdSeekableReader decompresses only the frames a read needs", async () => {
  const source = data(1_000_000);
  const file = fileOf(seekableFile(framesOf(source, 100_000)));
  const reader = await openZstdSeekable(file);
  assert.ok(reader);
  const before = file.bytesRead;
  assert.deepEqual(await reader.read(550_000, 10), source.slice(550_000, 550_010));
  const one = file.bytesRead - before;
  assert.ok(one > 0 && one < file.size / 5, `${one} of ${file.size} bytes read`);
  // Cached: no more reads of the file.
  await reader.read(560_000, 10);
  assert.equal(file.bytesRead - before, one);
});

Deno.test("openZstdSeekable gives undefined for a zstd file without a seek table", async () => {
  const plain = new Uint8Array(zstdCompressSync(data(10_000)));
  assert.equal(await openZstdSeekable(fileOf(plain)), undefined);
  assert.equal(await openZstdSeekable(fileOf(new Uint8Array(5))), undefined);
});

Deno.test("openZstdSeekable refuses seek tables that lie", async () => {
  const entries = framesOf(data(200_000), 50_000);
  const refuse = async (bytes: Uint8Array, name: string, message: string) => {
    await assert.rejects(openZstdSeekable(fileOf(bytes)), {
      name,
      message: `Cannot read the seekable zstd file: ${message}`,
    });
  };
  const good = seekableFile(entries);
  await refuse(
    seekableFile(entries, { descriptor: 0x04 }),
    "SyntaxError",
    "the seek table descriptor 4 has reserved bits set",
  );
  await refuse(
    seekableFile(entries, { count: 0xffffffff }),
    "SyntaxError",
    `the seek table lists 4294967295 frames, more than the ${good.length}-byte file can hold`,
  );
  await refuse(
    seekableFile(entries, { count: 3 }),
    "SyntaxError",
    "the seek table is not framed as a skippable frame of its size",
  );
  // Sizes that do not add up to the file: one byte short, one byte over.
  const frameBytes = good.length - 8 - 4 * 8 - 9;
  for (const delta of [-1, 1]) {
    const lying = good.slice();
    const v = new DataView(lying.buffer);
    v.setUint32(frameBytes + 8 + 8, entries[1].compressed.length + delta, true);
    await refuse(
      lying,
      "SyntaxError",
      delta < 0
        ? `the seek table covers ${
          frameBytes - 1
        } bytes of frames, the file has ${frameBytes} before the table`
        : `the seek table has frames past its own start (${frameBytes})`,
    );
  }
  await refuse(
    seekableFile([...entries, { compressed: new Uint8Array(0), decompressed: 5 }]),
    "SyntaxError",
    "the seek table gives frame 4 no bytes",
  );
  await refuse(
    seekableFile([{ compressed: entries[0].compressed, decompressed: 0x7fffffff }]),
    "RangeError",
    "frame 0 declares 2147483647 bytes, more than 67108864 (maxFrameSize)",
  );
  // More compressed bytes than zstd's worst case for maxFrameSize (1000 +
  // 1000/256 + (128 KiB - 1000)/2048 = 1066): refused before any is read.
  const stored = { compressed: data(1067), decompressed: 1000 };
  await assert.rejects(openZstdSeekable(fileOf(seekableFile([stored])), { maxFrameSize: 1000 }), {
    name: "RangeError",
    message: "Cannot read the seekable zstd file: frame 0 takes 1067 compressed bytes, " +
      "more than 1066 (zstd's worst case for maxFrameSize)",
  });
  stored.compressed = stored.compressed.subarray(0, 1066);
  assert.ok(await openZstdSeekable(fileOf(seekableFile([stored])), { maxFrameSize: 1000 }));
  // The default: 64 MiB + 256 KiB, in a sparse file of that much.
  const table = seekableFile([{ compressed: new Uint8Array(1), decompressed: 1 }]).slice(1);
  const claimed = 64 * 1024 * 1024 + 256 * 1024 + 1;
  new DataView(table.buffer).setUint32(8, claimed, true);
  const sparse = {
    size: claimed + table.length,
    read(p: number, n: number) {
      const out = new Uint8Array(Math.max(0, Math.min(n, this.size - p)));
      for (let k = 0; k < out.length; k++) out[k] = p + k < claimed ? 0 : table[p + k - claimed];
      return Promise.resolve(out);
    },
    close: () => Promise.resolve(),
  };
  await assert.rejects(openZstdSeekable(sparse), {
    name: "RangeError",
    message: "Cannot read the seekable zstd file: frame 0 takes 67371009 compressed bytes, " +
      "more than 67371008 (zstd's worst case for maxFrameSize)",
  });
  await assert.rejects(openZstdSeekable(fileOf(good), { maxTableBytes: 32 }), {
    name: "RangeError",
    message: "Cannot read the seekable zstd file: 4 frames need more than 32 bytes (maxTableBytes)",
  });
});

Deno.test("ZstdSeekableReader refuses frames that decompress to more or less than the table says", async () => {
  // A bomb: 64 MiB of zeros in a frame the table says holds 1000 bytes.
  const bomb = new Uint8Array(zstdCompressSync(new Uint8Array(64 * 1024 * 1024)));
  const reader = await openZstdSeekable(
    fileOf(seekableFile([{ compressed: bomb, decompressed: 1000 }])),
  );
  assert.ok(reader);
  await assert.rejects(reader.read(0, 10), {
    name: "SyntaxError",
    message:
      "Cannot read the seekable zstd file: frame 0 at 0 decompresses to more than the 1000 bytes of the seek table",
  });
  const small = new Uint8Array(zstdCompressSync(new Uint8Array(500)));
  const fewer = await openZstdSeekable(
    fileOf(seekableFile([{ compressed: small, decompressed: 1000 }])),
  );
  await assert.rejects(fewer!.read(0, 10), {
    name: "SyntaxError",
    message:
      "Cannot read the seekable zstd file: frame 0 at 0 decompresses to 500 bytes, not the 1000 of the seek table",
  });
  const garbage = await openZstdSeekable(
    fileOf(seekableFile([{ compressed: new Uint8Array(64).fill(7), decompressed: 1000 }])),
  );
  await assert.rejects(garbage!.read(0, 10), {
    name: "SyntaxError",
    message:
      /^Cannot read the seekable zstd file: frame 0 at 0 does not hold whole zstd frames \(.+\)$/,
  });
});

Deno.test("ZstdSeekableReader with a given zstd decoder (the streaming path) reads and refuses alike", async () => {
  const zstd = () =>
    Duplex.toWeb(createZstdDecompress()) as unknown as TransformStream<Uint8Array, Uint8Array>;
  const source = data(200_000);
  const reader = await openZstdSeekable(fileOf(seekableFile(framesOf(source, 30_000))), { zstd });
  assert.deepEqual(await reader!.read(12_345, 100_000), source.slice(12_345, 112_345));
  const bomb = new Uint8Array(zstdCompressSync(new Uint8Array(8 * 1024 * 1024)));
  const bad = await openZstdSeekable(
    fileOf(seekableFile([{ compressed: bomb, decompressed: 1000 }])),
    { zstd },
  );
  await assert.rejects(bad!.read(0, 10), {
    name: "SyntaxError",
    message:
      "Cannot read the seekable zstd file: frame 0 at 0 decompresses to more than the 1000 bytes of the seek table",
  });
});

Deno.test("ZstdSeekableReader refuses junk or a cut frame in an entry, reads every frame of one", async () => {
  // Frames of exactly the declared size followed by more in the same entry:
  // Deno's zlib ignored the rest, or threw an uncaught error that ended the process.
  const a = new Uint8Array(zstdCompressSync(new Uint8Array(1000).fill(1)));
  const b = new Uint8Array(zstdCompressSync(new Uint8Array(1000).fill(2)));
  const cases: [Uint8Array, string][] = [
    [
      new Uint8Array([...a, ...new Uint8Array(50).fill(0x41)]),
      `unknown frame magic 0x41414141 at offset ${a.length} (not zstd data)`,
    ],
    [
      a.subarray(0, a.length - 1),
      `the input ends inside a frame: ${a.length - 1} bytes, the frame at offset 0 is cut short`,
    ],
  ];
  for (const [compressed, why] of cases) {
    const reader = await openZstdSeekable(
      fileOf(seekableFile([{ compressed, decompressed: 1000 }])),
    );
    await assert.rejects(reader!.read(0, 1000), {
      name: "SyntaxError",
      message:
        `Cannot read the seekable zstd file: frame 0 at 0 does not hold whole zstd frames (${why})`,
    });
  }
  // Two frames where the table says 1000 bytes: both are decoded, too many.
  const two = await openZstdSeekable(
    fileOf(seekableFile([{ compressed: new Uint8Array([...a, ...b]), decompressed: 1000 }])),
  );
  await assert.rejects(two!.read(0, 1000), {
    name: "SyntaxError",
    message:
      "Cannot read the seekable zstd file: frame 0 at 0 decompresses to more than the 1000 bytes of the seek table",
  });
  // A frame of exactly the declared size, alone or with more frames (an
  // empty one, as node:zlib's zstdCompressSync may add, a skippable one), reads.
  const empty = new Uint8Array([0x28, 0xb5, 0x2f, 0xfd, 0, 0x58, 1, 0, 0]);
  const skippable = new Uint8Array([0x50, 0x2a, 0x4d, 0x18, 2, 0, 0, 0, 9, 9]);
  const ones = new Uint8Array(1000).fill(1);
  const cases2: [Uint8Array, Uint8Array][] = [
    [a, ones],
    [new Uint8Array([...a, ...empty, ...skippable]), ones],
    [new Uint8Array([...skippable, ...a, ...b]), new Uint8Array([...ones, ...ones.map(() => 2)])],
  ];
  for (const [compressed, expected] of cases2) {
    const good = await openZstdSeekable(
      fileOf(seekableFile([{ compressed, decompressed: expected.length }])),
    );
    assert.deepEqual(await good!.read(0, expected.length), expected);
  }
});

Deno.test("ZstdSeekableReader decompresses concurrent reads of different frames only as far as decodingBytes allows", async () => {
  // 16 frames of the same bytes, so of the same cost.
  const piece = data(10_000);
  const source = new Uint8Array(160_000).map((_, k) => piece[k % 10_000]);
  const entries = framesOf(source, 10_000);
  const bytes = seekableFile(entries);
  const cost = entries[0].compressed.length + 10_000;
  for (const [decodingBytes, most] of [[2 * cost, 2], [3 * cost - 1, 2], [1, 1], [16 * cost, 16]]) {
    // Reads of the frames' bytes held open until the next turn of the event loop.
    let inFlight = 0;
    let peak = 0;
    const file = {
      size: bytes.length,
      async read(p: number, n: number) {
        inFlight++;
        peak = Math.max(peak, inFlight);
        await new Promise((r) => setTimeout(r, 0));
        inFlight--;
        return bytes.slice(p, p + n);
      },
      close: () => Promise.resolve(),
    };
    const reader = await openZstdSeekable(file, { decodingBytes, cacheBytes: 0 });
    peak = 0;
    const got = await Promise.all(
      entries.map((_, k) => reader!.read(k * 10_000 + 5, 100)),
    );
    got.forEach((g, k) => assert.deepEqual(g, source.slice(k * 10_000 + 5, k * 10_000 + 105)));
    assert.equal(peak, most, `decodingBytes ${decodingBytes}`);
  }
});

Deno.test("ZstdSeekableReader ignores the seek table's checksums but checks a frame's own", async () => {
  const source = data(50_000);
  const { constants } = await import("node:zlib");
  const framed = new Uint8Array(
    zstdCompressSync(source, { params: { [constants.ZSTD_c_checksumFlag]: 1 } }),
  );
  // Wrong table checksums (0x12345678): read as they are.
  const fine = await openZstdSeekable(
    fileOf(seekableFile([{ compressed: framed, decompressed: 50_000 }], { checksums: true })),
  );
  assert.deepEqual(await fine!.read(0, 50_000), source);
  // The frame's own checksum (its last 4 bytes) damaged: refused.
  const damaged = framed.slice();
  damaged[damaged.length - 1] ^= 1;
  const bad = await openZstdSeekable(
    fileOf(seekableFile([{ compressed: damaged, decompressed: 50_000 }])),
  );
  await assert.rejects(bad!.read(0, 10), {
    name: "SyntaxError",
    message:
      /^Cannot read the seekable zstd file: frame 0 at 0 is not valid zstd \(.*checksum.*\)$/i,
  });
});

Deno.test("ZstdSeekableReader reuses a frame's buffer only once no read holds it: concurrent reads through a tiny cache get the source's bytes", async () => {
  // 24 frames of different bytes; reads of 1 to 3 frames at random places,
  // 16 at a time, each compressed read answered at once or after a while.
  const source = data(240_000).map((b, k) => b ^ (k / 10_000));
  const bytes = seekableFile(framesOf(source, 10_000));
  const buffers = new Set<ArrayBufferLike>();
  let seed = 7;
  const random = (n: number) => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return (seed >>> 8) % n;
  };
  const file = {
    size: bytes.length,
    read: (p: number, n: number) => Promise.resolve(bytes.slice(p, p + n)),
    async readInto(p: number, target: Uint8Array) {
      buffers.add(target.buffer);
      // Some at once (the reads then interleave within one turn of the event loop).
      const wait = random(3);
      if (wait > 0) await new Promise((r) => setTimeout(r, wait - 1));
      const piece = bytes.subarray(p, p + target.length);
      target.set(piece);
      return piece.length;
    },
    close: () => Promise.resolve(),
  };
  for (const cacheBytes of [0, 10_000, 30_000]) {
    buffers.clear();
    const reader = (await openZstdSeekable(file, { cacheBytes }))!;
    for (let round = 0; round < 8; round++) {
      const reads = Array.from({ length: 16 }, () => {
        const at = random(source.length - 1);
        return [at, 1 + random(30_000)] as const;
      });
      const got = await Promise.all(reads.map(([at, n]) => reader.read(at, n)));
      got.forEach((g, k) => {
        const [at, n] = reads[k];
        assert.deepEqual(g, source.subarray(at, at + n), `cacheBytes ${cacheBytes}: ${n} at ${at}`);
      });
    }
    // One read at a time: the compressed frames go into a few buffers, not one each.
    buffers.clear();
    for (let k = 0; k < 24; k++) {
      assert.deepEqual(
        await reader.read(k * 10_000 + 5, 10),
        source.subarray(k * 10_000 + 5, k * 10_000 + 15),
      );
    }
    assert.ok(buffers.size <= 2, `cacheBytes ${cacheBytes}: ${buffers.size} buffers`);
    await reader.close();
  }
});

Deno.test("ZstdSeekableReader: a damaged frame read among others fails alone, and close() during reads ends nothing but them", async () => {
  // (Both aborted the process once: a decode that failed closed the decoder
  // another read was about to use, and so did close().)
  const source = data(4 * 200_000).map((b, k) => b ^ Math.floor(k / 200_000));
  // With content checksums, so that the damage is found whatever it hits.
  const entries = [0, 1, 2, 3].map((k) => ({
    compressed: new Uint8Array(
      zstdCompressSync(source.subarray(k * 200_000, (k + 1) * 200_000), {
        params: { [constants.ZSTD_c_checksumFlag]: 1 },
      }),
    ),
    decompressed: 200_000,
  }));
  const damaged = entries.map((e) => ({ ...e, compressed: e.compressed.slice() }));
  damaged[1].compressed[damaged[1].compressed.length >> 1] ^= 0x40;
  const bytes = seekableFile(damaged);
  const reader = (await openZstdSeekable(fileOf(bytes), { cacheBytes: 0 }))!;
  const settled = await Promise.allSettled(
    [0, 1, 2, 3].map((k) => reader.read(k * 200_000, 200_000)),
  );
  settled.forEach((r, k) => {
    if (k === 1) {
      assert.equal(r.status, "rejected");
      assert.ok((r as PromiseRejectedResult).reason instanceof SyntaxError);
    } else {
      assert.equal(r.status, "fulfilled", `frame ${k}`);
      assert.deepEqual(
        (r as PromiseFulfilledResult<Uint8Array>).value,
        source.subarray(k * 200_000, (k + 1) * 200_000),
      );
    }
  });
  // The reader goes on with a new decoder.
  assert.deepEqual(await reader.read(3 * 200_000 + 7, 9), source.subarray(600_007, 600_016));
  await reader.close();
  const good = seekableFile(entries);
  for (let delay = 0; delay < 6; delay++) {
    const r = (await openZstdSeekable(fileOf(good), { cacheBytes: 0 }))!;
    await r.read(0, 10);
    const reads = [1, 2, 3].map((k) =>
      r.read(k * 200_000, 200_000).then(() => "ok", () => "failed")
    );
    for (let i = 0; i < delay; i++) await Promise.resolve();
    await r.close();
    for (const outcome of await Promise.all(reads)) {
      assert.ok(outcome === "ok" || outcome === "failed");
    }
  }
});

/** Byte equality without assert.deepEqual's cost on large differences. */
function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

Deno.test("ZstdSeekableReader: 300 damaged files read concurrently end in bytes or a SyntaxError, never a crash; the right bytes once read through in order", async () => {
  const source = data(8 * 20_000).map((b, k) => b ^ Math.floor(k / 20_000));
  const good = seekableFile([...Array(8).keys()].map((k) => ({
    compressed: new Uint8Array(
      zstdCompressSync(source.subarray(k * 20_000, (k + 1) * 20_000), {
        params: { [constants.ZSTD_c_checksumFlag]: 1 },
      }),
    ),
    decompressed: 20_000,
  })));
  let seed = 99;
  const random = (n: number) => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return (seed >>> 8) % n;
  };
  const outcomes = new Map<string, number>();
  for (let c = 0; c < 300; c++) {
    const bytes = good.slice(0, c % 10 === 0 ? random(good.length) : good.length);
    for (let flips = 1 + random(4); flips > 0; flips--) {
      bytes[random(bytes.length)] ^= 1 << random(8);
    }
    let outcome: string;
    try {
      const reader = await openZstdSeekable(fileOf(bytes), { cacheBytes: random(2) * 20_000 });
      if (reader === undefined) {
        outcome = "no table";
      } else {
        const wanted = [...Array(8).keys()].map((k) =>
          [k * 20_000 + random(100), 20_000 + random(30_000)] as const
        );
        const reads = await Promise.allSettled(wanted.map(([at, n]) => reader.read(at, n)));
        for (const r of reads) {
          if (r.status === "rejected") assert.ok(r.reason instanceof SyntaxError, String(r.reason));
        }
        outcome = reads.map((r) => r.status[0]).join("");
        // Read through in order, every frame is checked against its entry:
        // then the table is right, and so are the reads above that were
        // given bytes. (Only then: with sizes that are wrong yet add up, the
        // frames after a wrong entry are found at other places.)
        const whole = await reader.read(0, reader.size).catch((e) => {
          assert.ok(e instanceof SyntaxError, String(e));
          return undefined;
        });
        if (whole !== undefined) {
          assert.ok(bytesEqual(whole, source), `case ${c}`);
          reads.forEach((r, k) => {
            const [at, n] = wanted[k];
            if (r.status === "fulfilled") {
              assert.ok(bytesEqual(r.value, source.subarray(at, at + n)), `case ${c}, read ${k}`);
            }
          });
        }
        await reader.close();
      }
    } catch (e) {
      assert.ok(e instanceof SyntaxError || e instanceof RangeError, String(e));
      outcome = e.constructor.name;
    }
    outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
  }
  // Every kind of end is there: whole reads, failed frames, refused tables.
  assert.ok([...outcomes.keys()].some((o) => o.includes("r")), JSON.stringify([...outcomes]));
  assert.ok([...outcomes.keys()].some((o) => o.includes("f")), JSON.stringify([...outcomes]));
});
