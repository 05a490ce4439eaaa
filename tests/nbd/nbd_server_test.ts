import assert from "node:assert/strict";
import type { DiskImage, DiskImageRegion, NbdExport } from "../../mod.ts";
import { NBD_MAX_BLOCK } from "../../mod.ts";
import { infoData, metaData, request, ScriptedClient, u32 } from "./_nbd_client.ts";

const SIZE = 3 * 65536 + 1000;

/** A disk held in memory: data, a zero region, data. */
function memoryImage(size = SIZE): DiskImage & { bytes: Uint8Array } {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < 65536 && i < size; i++) bytes[i] = (i * 7 + 1) & 255;
  for (let i = 196608; i < size; i++) bytes[i] = (i * 13 + 5) & 255;
  const regions: DiskImageRegion[] = [
    { offset: 0, length: 65536, zero: false },
    { offset: 65536, length: 131072, zero: true },
    { offset: 196608, length: size - 196608, zero: false },
  ];
  return {
    bytes,
    format: "raw",
    size,
    async *regions() {
      yield* regions;
    },
    read: (offset, length) => Promise.resolve(bytes.slice(offset, offset + length)),
    close: () => Promise.resolve(),
  };
}

const exportsOf = (): NbdExport[] => [
  { name: "drive-scsi0", image: memoryImage() },
  { name: "drive-virtio1", image: memoryImage(4096) },
];

const OPT_EXPORT_NAME = 1, OPT_ABORT = 2, OPT_LIST = 3, OPT_INFO = 6, OPT_GO = 7;
const OPT_STRUCTURED = 8, OPT_LIST_META = 9, OPT_SET_META = 10;
const REP_ACK = 1, REP_SERVER = 2, REP_INFO = 3, REP_META = 4;
const ERR_UNSUP = 0x80000001, ERR_INVALID = 0x80000003, ERR_UNKNOWN = 0x80000006;
const ERR_TOO_BIG = 0x80000009;
const CMD_READ = 0, CMD_WRITE = 1, CMD_DISC = 2, CMD_FLUSH = 3, CMD_TRIM = 4;
const CMD_WRITE_ZEROES = 6, CMD_BLOCK_STATUS = 7;
const EPERM = 1, EINVAL = 22;

/** Handshake, structured replies, base:allocation, GO on `name`. */
async function connected(name = "drive-scsi0", structured = true): Promise<ScriptedClient> {
  const c = new ScriptedClient(exportsOf());
  await c.handshake();
  if (structured) {
    await c.option(OPT_STRUCTURED);
    assert.equal((await c.reply()).type, REP_ACK);
    await c.option(OPT_SET_META, metaData(name, ["base:allocation"]));
    const meta = await c.reply();
    assert.equal(meta.type, REP_META);
    assert.equal(new TextDecoder().decode(meta.data.subarray(4)), "base:allocation");
    assert.equal((await c.reply()).type, REP_ACK);
  }
  await c.option(OPT_GO, infoData(name));
  for (;;) {
    const r = await c.reply();
    if (r.type === REP_ACK) break;
    assert.equal(r.type, REP_INFO);
  }
  return c;
}

async function chunkError(c: ScriptedClient): Promise<number> {
  const ch = await c.chunk();
  assert.equal(ch.type, 0x8001);
  assert.equal(ch.flags & 1, 1);
  return new DataView(ch.data.buffer, ch.data.byteOffset).getUint32(0);
}

Deno.test("nbd: the greeting is fixed newstyle with NO_ZEROES", async () => {
  const c = new ScriptedClient(exportsOf());
  const g = await c.read(18);
  assert.equal(
    new TextDecoder().decode(new Uint8Array(g.buffer, g.byteOffset, 16)),
    "NBDMAGICIHAVEOPT",
  );
  assert.equal(g.getUint16(16), 3);
  await c.send(u32(3));
  await c.option(OPT_ABORT);
  assert.deepEqual(await c.reply(), { option: OPT_ABORT, type: REP_ACK, data: new Uint8Array(0) });
  assert.equal(await c.closed(), true);
  await c.served;
});

Deno.test("nbd: NBD_OPT_LIST names every export, then ACK", async () => {
  const c = new ScriptedClient(exportsOf());
  await c.handshake();
  await c.option(OPT_LIST);
  const names = [];
  for (;;) {
    const r = await c.reply();
    if (r.type === REP_ACK) break;
    assert.equal(r.type, REP_SERVER);
    names.push(new TextDecoder().decode(r.data.subarray(4)));
  }
  assert.deepEqual(names, ["drive-scsi0", "drive-virtio1"]);
  await c.option(OPT_LIST, new Uint8Array(3));
  assert.equal((await c.reply()).type, ERR_INVALID);
  await c.option(OPT_ABORT);
  await c.reply();
  await c.served;
});

Deno.test("nbd: NBD_OPT_INFO gives the size, read-only flags and block sizes; unknown export", async () => {
  const c = new ScriptedClient(exportsOf());
  await c.handshake();
  await c.option(OPT_INFO, infoData("drive-scsi0"));
  const info = await c.reply();
  assert.equal(info.type, REP_INFO);
  const v = new DataView(info.data.buffer, info.data.byteOffset);
  assert.equal(v.getUint16(0), 0);
  assert.equal(Number(v.getBigUint64(2)), SIZE);
  assert.equal(v.getUint16(10), 1 | 2 | 256);
  const sizes = await c.reply();
  const s = new DataView(sizes.data.buffer, sizes.data.byteOffset);
  assert.deepEqual([s.getUint16(0), s.getUint32(2), s.getUint32(6), s.getUint32(10)], [
    3,
    1,
    4096,
    NBD_MAX_BLOCK,
  ]);
  assert.equal((await c.reply()).type, REP_ACK);
  await c.option(OPT_INFO, infoData("nope"));
  assert.equal((await c.reply()).type, ERR_UNKNOWN);
  await c.option(OPT_GO, new Uint8Array(3));
  assert.equal((await c.reply()).type, ERR_INVALID);
  await c.option(99, new Uint8Array(5));
  assert.equal((await c.reply()).type, ERR_UNSUP);
  await c.option(OPT_ABORT);
  await c.reply();
  await c.served;
});

Deno.test("nbd: meta contexts: LIST offers base:allocation, SET needs structured replies", async () => {
  const c = new ScriptedClient(exportsOf());
  await c.handshake();
  await c.option(OPT_SET_META, metaData("drive-scsi0", ["base:allocation"]));
  assert.equal((await c.reply()).type, ERR_INVALID);
  await c.option(OPT_LIST_META, metaData("drive-scsi0", []));
  const m = await c.reply();
  assert.equal(m.type, REP_META);
  assert.equal(new TextDecoder().decode(m.data.subarray(4)), "base:allocation");
  assert.equal((await c.reply()).type, REP_ACK);
  await c.option(OPT_STRUCTURED);
  assert.equal((await c.reply()).type, REP_ACK);
  await c.option(OPT_SET_META, metaData("drive-scsi0", ["qemu:dirty-bitmap:x"]));
  assert.equal((await c.reply()).type, REP_ACK); // nothing selected
  await c.option(OPT_LIST_META, metaData("nope", []));
  assert.equal((await c.reply()).type, ERR_UNKNOWN);
  await c.option(OPT_ABORT);
  await c.reply();
  await c.served;
});

Deno.test("nbd: structured read: data chunks and a hole for the zero region", async () => {
  const c = await connected();
  const image = memoryImage();
  await c.request(CMD_READ, 0, SIZE, 42n);
  const got = new Uint8Array(SIZE).fill(0xee);
  const kinds: string[] = [];
  for (;;) {
    const ch = await c.chunk();
    assert.equal(ch.cookie, 42n);
    const v = new DataView(ch.data.buffer, ch.data.byteOffset);
    const at = Number(v.getBigUint64(0));
    if (ch.type === 1) {
      got.set(ch.data.subarray(8), at);
      kinds.push(`data ${at}+${ch.data.length - 8}`);
    } else {
      assert.equal(ch.type, 2);
      got.fill(0, at, at + v.getUint32(8));
      kinds.push(`hole ${at}+${v.getUint32(8)}`);
    }
    if (ch.flags & 1) break;
  }
  assert.deepEqual(kinds, ["data 0+65536", "hole 65536+131072", `data 196608+${SIZE - 196608}`]);
  assert.deepEqual(got, image.bytes);
  await c.request(CMD_DISC, 0, 0);
  assert.equal(await c.closed(), true);
  await c.served;
});

Deno.test("nbd: simple read without structured replies, via NBD_OPT_EXPORT_NAME", async () => {
  const c = new ScriptedClient(exportsOf());
  await c.handshake(1); // no NO_ZEROES: 124 zero bytes after size and flags
  await c.option(OPT_EXPORT_NAME, new TextEncoder().encode("drive-scsi0"));
  const h = await c.read(134);
  assert.equal(Number(h.getBigUint64(0)), SIZE);
  assert.equal(h.getUint16(8), 1 | 2 | 256);
  await c.request(CMD_READ, 1000, 70000, 9n);
  assert.deepEqual(await c.simple(), { error: 0, cookie: 9n });
  assert.deepEqual(await c.readBytes(70000), memoryImage().bytes.slice(1000, 71000));
  await c.request(CMD_WRITE, 0, 512, 10n);
  await c.send(new Uint8Array(512));
  assert.deepEqual(await c.simple(), { error: EPERM, cookie: 10n });
  await c.request(CMD_READ, SIZE - 10, 11, 11n);
  assert.deepEqual(await c.simple(), { error: EINVAL, cookie: 11n });
  await c.request(CMD_BLOCK_STATUS, 0, 512, 12n);
  assert.deepEqual(await c.simple(), { error: EINVAL, cookie: 12n });
  await c.request(CMD_DISC, 0, 0);
  assert.equal(await c.closed(), true);
  await c.served;
});

Deno.test("nbd: block status reports the zero region as HOLE|ZERO; REQ_ONE gives one extent", async () => {
  const c = await connected();
  await c.request(CMD_BLOCK_STATUS, 1000, SIZE - 1000, 5n);
  const ch = await c.chunk();
  assert.equal(ch.type, 5);
  assert.equal(ch.flags & 1, 1);
  const v = new DataView(ch.data.buffer, ch.data.byteOffset);
  assert.equal(v.getUint32(0), 1);
  const extents = [];
  for (let at = 4; at < ch.data.length; at += 8) {
    extents.push([v.getUint32(at), v.getUint32(at + 4)]);
  }
  assert.deepEqual(extents, [[64536, 0], [131072, 3], [SIZE - 196608, 0]]);
  await c.request(CMD_BLOCK_STATUS, 65536, 4096, 6n, 8);
  const one = await c.chunk();
  const w = new DataView(one.data.buffer, one.data.byteOffset);
  assert.equal(one.data.length, 12);
  assert.deepEqual([w.getUint32(4), w.getUint32(8)], [4096, 3]);
  await c.request(CMD_DISC, 0, 0);
  await c.served;
});

Deno.test("nbd: writes, trims and write-zeroes are refused with EPERM; bad requests EINVAL", async () => {
  const c = await connected();
  await c.request(CMD_WRITE, 0, 4096, 1n);
  await c.send(new Uint8Array(4096).fill(1));
  assert.equal(await chunkError(c), EPERM);
  await c.request(CMD_TRIM, 0, 4096, 2n);
  assert.equal(await chunkError(c), EPERM);
  await c.request(CMD_WRITE_ZEROES, 0, 4096, 3n);
  assert.equal(await chunkError(c), EPERM);
  await c.request(CMD_FLUSH, 0, 0, 4n);
  assert.equal(await chunkError(c), EINVAL);
  await c.request(CMD_READ, 0, NBD_MAX_BLOCK + 1, 5n);
  assert.equal(await chunkError(c), EINVAL);
  await c.request(CMD_READ, SIZE, 1, 6n);
  assert.equal(await chunkError(c), EINVAL);
  await c.request(CMD_READ, 2 ** 63, 1, 7n); // offset beyond 2^53
  assert.equal(await chunkError(c), EINVAL);
  await c.request(CMD_READ, 0, 0, 8n);
  assert.equal(await chunkError(c), EINVAL);
  // Still serving after all that.
  await c.request(CMD_READ, 0, 16, 9n);
  const ok = await c.chunk();
  assert.deepEqual([ok.type, ok.cookie, ok.data.length], [1, 9n, 24]);
  await c.request(CMD_DISC, 0, 0);
  await c.served;
});

Deno.test("nbd: hostile: garbage magic and unknown client flags end the connection", async () => {
  const a = new ScriptedClient(exportsOf());
  await a.handshake(0x80);
  assert.equal(await a.closed(), true);
  await a.served;

  const b = new ScriptedClient(exportsOf());
  await b.handshake();
  await b.send(new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n"));
  assert.equal(await b.closed(), true);
  await b.served;

  const d = await connected();
  await d.send(new Uint8Array(28).fill(0x41));
  assert.equal(await d.closed(), true);
  await d.served;
});

Deno.test("nbd: hostile: a 4 GiB option length is skipped without holding it", async () => {
  const c = new ScriptedClient(exportsOf());
  await c.handshake();
  // Announce 0xffffffff bytes, send 1 MiB of them, then hang up: the server only skips.
  await c.option(OPT_GO, new Uint8Array(0), 0xffffffff);
  for (let i = 0; i < 16; i++) await c.send(new Uint8Array(65536));
  await c.writer.close();
  assert.equal(await c.closed(), true);
  await c.served;

  const d = new ScriptedClient(exportsOf());
  await d.handshake();
  await d.option(OPT_INFO, new Uint8Array(65537), 65537);
  assert.equal((await d.reply()).type, ERR_TOO_BIG);
  await d.option(OPT_ABORT);
  await d.reply();
  await d.served;
});

Deno.test("nbd: hostile: a client that hangs up mid-handshake or mid-request", async () => {
  const a = new ScriptedClient(exportsOf());
  await a.read(18);
  await a.send(new Uint8Array(2));
  await a.writer.close();
  await a.served;

  const b = await connected();
  await b.send(request(CMD_READ, 0, 4096).subarray(0, 20));
  await b.writer.close();
  await b.served;
});

Deno.test("nbd: hostile: thousands of pipelined requests are answered in order", async () => {
  const c = await connected();
  const n = 5000;
  const all = new Uint8Array(28 * n);
  for (let i = 0; i < n; i++) {
    all.set(request(i % 2 ? CMD_READ : CMD_WRITE + 3, 0, 512, BigInt(i)), 28 * i);
  }
  const sending = c.send(all);
  for (let i = 0; i < n; i++) {
    const ch = await c.chunk();
    assert.equal(ch.cookie, BigInt(i));
    assert.equal(ch.type, i % 2 ? 1 : 0x8001);
  }
  await sending;
  await c.request(CMD_DISC, 0, 0);
  await c.served;
});

Deno.test("nbd: duplicate export names are a TypeError", async () => {
  const image = memoryImage(512);
  const t = new TransformStream<Uint8Array, Uint8Array>();
  await assert.rejects(
    () =>
      (async () => {
        const { serveNbd } = await import("../../mod.ts");
        await serveNbd({ readable: t.readable, writable: t.writable }, [
          { name: "a", image },
          { name: "a", image },
        ]);
      })(),
    { name: "TypeError", message: 'Duplicate NBD export name "a"' },
  );
});

Deno.test("nbd: block status may span more than the maximum block size", async () => {
  const size = 3 * NBD_MAX_BLOCK;
  const image: DiskImage = {
    format: "raw",
    size,
    async *regions() {
      yield { offset: 0, length: NBD_MAX_BLOCK, zero: true };
      yield { offset: NBD_MAX_BLOCK, length: 2 * NBD_MAX_BLOCK, zero: false };
    },
    read: (_offset, length) => Promise.resolve(new Uint8Array(length)),
    close: () => Promise.resolve(),
  };
  const c = new ScriptedClient([{ name: "big", image }]);
  await c.handshake();
  await c.option(OPT_STRUCTURED);
  await c.reply();
  await c.option(OPT_SET_META, metaData("big", ["base:allocation"]));
  await c.reply();
  await c.reply();
  await c.option(OPT_GO, infoData("big"));
  while ((await c.reply()).type !== REP_ACK);
  await c.request(CMD_BLOCK_STATUS, 0, size, 1n);
  const ch = await c.chunk();
  const v = new DataView(ch.data.buffer, ch.data.byteOffset);
  assert.deepEqual([v.getUint32(4), v.getUint32(8), v.getUint32(12), v.getUint32(16)], [
    NBD_MAX_BLOCK,
    3,
    2 * NBD_MAX_BLOCK,
    0,
  ]);
  await c.request(CMD_BLOCK_STATUS, 1, size, 2n);
  assert.equal(await chunkError(c), EINVAL); // past the end
  await c.request(CMD_DISC, 0, 0);
  await c.served;
});

Deno.test("nbd: a failing image read is EIO, and the connection goes on", async () => {
  const image: DiskImage = {
    format: "raw",
    size: 4 << 20,
    async *regions() {
      yield { offset: 0, length: 4 << 20, zero: false };
    },
    read: (offset, length) =>
      offset >= 4096 && offset !== 2 << 20
        ? Promise.reject(new Error("Input/output error"))
        : Promise.resolve(new Uint8Array(length).fill(1)),
    close: () => Promise.resolve(),
  };
  const failed: unknown[][] = [];
  const c = new ScriptedClient([{ name: "d", image }], {
    onReadError: (...args) => failed.push(args),
  });
  await c.handshake();
  await c.option(OPT_STRUCTURED);
  await c.reply();
  await c.option(OPT_GO, infoData("d"));
  while ((await c.reply()).type !== REP_ACK);
  await c.request(CMD_READ, 4096, 512, 1n);
  const ch = await c.chunk();
  assert.equal(ch.type, 0x8001);
  const v = new DataView(ch.data.buffer, ch.data.byteOffset);
  assert.equal(v.getUint32(0), 5);
  assert.equal(
    new TextDecoder().decode(ch.data.subarray(6, 6 + v.getUint16(4))),
    "Input/output error",
  );
  await c.request(CMD_READ, 0, 512, 2n);
  const ok = await c.chunk();
  assert.deepEqual([ok.type, ok.cookie, ok.data.length], [1, 2n, 520]);
  // A read that fails after its first 1 MiB piece went out: the data chunk,
  // then an error chunk that ends the reply (the connection goes on).
  await c.request(CMD_READ, 2 << 20, 2 << 20, 3n);
  const first = await c.chunk();
  assert.deepEqual([first.type, first.cookie, first.flags & 1], [1, 3n, 0]);
  const last = await c.chunk();
  assert.deepEqual([last.type, last.cookie, last.flags & 1], [0x8001, 3n, 1]);
  assert.equal(new DataView(last.data.buffer, last.data.byteOffset).getUint32(0), 5);
  await c.request(CMD_READ, 0, 512, 4n);
  const again = await c.chunk();
  assert.deepEqual([again.type, again.cookie, again.data.length], [1, 4n, 520]);
  await c.request(CMD_DISC, 0, 0);
  await c.served;
  assert.deepEqual(failed, [
    ["d", 4096, 512, "Input/output error"],
    ["d", 2 << 20, 2 << 20, "Input/output error"],
  ]);
});

Deno.test("nbd: 300 random byte streams after the handshake: the server always ends cleanly", async () => {
  let seed = 0x13b;
  const rand = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
  let replyBytes = 0;
  for (let i = 0; i < 300; i++) {
    const c = new ScriptedClient(exportsOf());
    await c.read(18);
    const parts: Uint8Array[] = [u32(3)];
    // Random options and requests, some well-formed, with random garbage in between.
    for (let k = 0; k < 1 + Math.floor(rand() * 6); k++) {
      const r = rand();
      if (r < 0.3) {
        const data = new Uint8Array(Math.floor(rand() * 40)).map(() => rand() * 256);
        const head = new DataView(new ArrayBuffer(16));
        head.setBigUint64(0, 0x49484156454f5054n);
        head.setUint32(8, Math.floor(rand() * 12));
        head.setUint32(12, rand() < 0.1 ? Math.floor(rand() * 2 ** 32) : data.length);
        parts.push(new Uint8Array(head.buffer), data);
      } else if (r < 0.5) {
        parts.push(optionGo());
      } else if (r < 0.8) {
        parts.push(
          request(
            Math.floor(rand() * 9),
            Math.floor(rand() * SIZE * 1.2),
            Math.floor(rand() * 70000),
            1n,
            Math.floor(rand() * 64),
          ),
        );
      } else {
        parts.push(new Uint8Array(Math.floor(rand() * 64)).map(() => rand() * 256));
      }
    }
    const sending = (async () => {
      for (const p of parts) await c.send(p).catch(() => {});
      await c.writer.close().catch(() => {});
    })();
    // Drain whatever the server says until it closes.
    while (await c.input.read(1) !== null) replyBytes++;
    await sending;
    // serveNbd resolves (never rejects, never hangs) whatever the client sent.
    await c.served;
  }
  // The server answered some of it (options, GO, requests), not only hung up.
  assert.ok(replyBytes > 300 * 20, `${replyBytes} reply bytes`);
});

function optionGo(): Uint8Array {
  const data = infoData("drive-scsi0");
  const head = new DataView(new ArrayBuffer(16));
  head.setBigUint64(0, 0x49484156454f5054n);
  head.setUint32(8, OPT_GO);
  head.setUint32(12, data.length);
  const out = new Uint8Array(16 + data.length);
  out.set(new Uint8Array(head.buffer));
  out.set(data, 16);
  return out;
}
