// VmaReader (and so verifyVma) on archives compressed as vzdump writes them:
// zstd (every frame, skippable frames dropped), gzip (every member) and lzop,
// found by magic, from byte streams and from plain chunked streams.
import assert from "node:assert/strict";
import { gzipSync, zstdCompressSync, zstdDecompressSync } from "node:zlib";
import { createZstdDecompress } from "node:zlib";
import { type Compression, detectCompression, verifyVma, VmaReader, VmaWriter } from "../../mod.ts";
import { nodeTransformToWeb } from "../../src/compress/_node_transform.ts";
import { chunked, gunzip, testdata } from "../_helpers.ts";
import { concat } from "../_craft.ts";

const plain = await gunzip(await testdata("small.vma.gz"));
const expected = await verifyVma(new VmaReader(ReadableStream.from([plain])));

/** A byte stream (BYOB readers) over `data`, `piece` bytes per pull at most. */
function byteStream(data: Uint8Array, piece = 100_000): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream({
    type: "bytes",
    pull(controller) {
      const request = controller.byobRequest!;
      const view = request.view as Uint8Array;
      const n = Math.min(view.byteLength, piece, data.length - at);
      if (n === 0) {
        controller.close();
        request.respond(0);
        return;
      }
      new Uint8Array(view.buffer, view.byteOffset, n).set(data.subarray(at, at + n));
      at += n;
      request.respond(n);
    },
  });
}

async function check(
  data: Uint8Array,
  compression: Compression,
  label: string,
  options = {},
): Promise<void> {
  for (
    const [how, stream] of [
      ["a byte stream", () => byteStream(data)],
      ["1-byte chunks first, then 64 KiB", () =>
        ReadableStream.from(
          (function* () {
            for (let i = 0; i < 5; i++) yield data.subarray(i, i + 1);
            for (let i = 5; i < data.length; i += 65536) yield data.subarray(i, i + 65536);
          })(),
        )],
    ] as const
  ) {
    const reader = new VmaReader(stream(), options);
    assert.equal(reader.compression, undefined);
    const summary = await verifyVma(reader);
    assert.equal(reader.compression, compression, `${label}, ${how}`);
    assert.deepEqual(summary, expected, `${label}, ${how}`);
  }
}

Deno.test("VmaReader reads the zstd, gzip and lzop fixtures as the plain archive", async () => {
  await check(plain, "none", "plain");
  await check(await testdata("small.vma.zst"), "zstd", "zstd");
  await check(await testdata("small.vma.gz"), "gzip", "gzip");
  await check(await testdata("small.vma.lzo"), "lzop", "lzop");
});

Deno.test("VmaReader decodes every zstd frame and every gzip member", async () => {
  const cut = [0, 12345, 600_000, plain.length];
  const skippable = new Uint8Array([0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3]);
  const zstdParts: Uint8Array[] = [skippable];
  const gzipParts: Uint8Array[] = [];
  for (let i = 0; i + 1 < cut.length; i++) {
    zstdParts.push(zstdCompressSync(plain.subarray(cut[i], cut[i + 1])), skippable);
    gzipParts.push(gzipSync(plain.subarray(cut[i], cut[i + 1])));
  }
  const zstd = concat(...zstdParts);
  // node:zlib's own decoder stops after one frame: the test would pass vacuously otherwise.
  assert.ok(zstdDecompressSync(zstd.subarray(skippable.length)).length < plain.length);
  await check(zstd, "zstd", "3 zstd frames");
  await check(concat(...gzipParts), "gzip", "3 gzip members");
});

Deno.test("VmaReader uses the zstd option for each frame", async () => {
  let frames = 0;
  const zstd = () => {
    frames++;
    return nodeTransformToWeb(createZstdDecompress());
  };
  const parts = [zstdCompressSync(plain.subarray(0, 1000)), zstdCompressSync(plain.subarray(1000))];
  await check(concat(...parts), "zstd", "option", { zstd });
  assert.equal(frames, 2 * 2); // two frames, two runs of check
});

Deno.test("a corrupt compressed archive is a SyntaxError naming the compression", async () => {
  for (const [name, compression] of [["small.vma.zst", "zstd"], ["small.vma.gz", "gzip"]]) {
    const data = (await testdata(name)).slice();
    for (let i = 5000; i < 5400; i++) data[i] ^= 0x5a;
    await assert.rejects(verifyVma(new VmaReader(chunked(data, 65536))), (e: Error) => {
      assert.equal(e.name, "SyntaxError", `${name}: ${e.message}`);
      assert.match(e.message, new RegExp(`^${compression} decompression failed - \\S`));
      return true;
    });
  }
  // lzop: its own stream's messages, with the same prefix.
  const lzo = (await testdata("small.vma.lzo")).slice();
  for (let i = 5000; i < 5400; i++) lzo[i] ^= 0x5a;
  await assert.rejects(verifyVma(new VmaReader(chunked(lzo, 65536))), {
    name: "SyntaxError",
    message: /^lzop decompression failed - \S/,
  });
});

Deno.test("detectCompression finds each magic and nothing in a plain archive", () => {
  assert.equal(detectCompression(plain.subarray(0, 9)), "none");
  assert.equal(detectCompression(new Uint8Array([0x28, 0xb5, 0x2f, 0xfd])), "zstd");
  assert.equal(detectCompression(new Uint8Array([0x5f, 0x2a, 0x4d, 0x18])), "zstd");
  assert.equal(detectCompression(new Uint8Array([0x1f, 0x8b, 8])), "gzip");
  assert.equal(
    detectCompression(new Uint8Array([0x89, 0x4c, 0x5a, 0x4f, 0x00, 0x0d, 0x0a, 0x1a, 0x0a])),
    "lzop",
  );
  assert.equal(detectCompression(new Uint8Array([0x89, 0x4c, 0x5a])), "none");
});

Deno.test({
  name:
    "VmaReader verifies a 512 MiB zstd bomb (64 MiB frames) as a library user in bounded memory",
  ignore: !(await Deno.stat("/usr/bin/time").then(() => true, () => false)),
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      // One 512 MiB device of 0x01 bytes: 512 MiB of archive, a few hundred KiB of zstd.
      const size = 512 << 20;
      const writer = new VmaWriter({ uuid: "00000000-0000-4000-8000-000000000003" });
      writer.addConfig("qemu-server.conf", "memory: 512\n");
      const device = writer.addDevice("drive-scsi0", size);
      const produce = (async () => {
        const cluster = new Uint8Array(65536).fill(1);
        for (let at = 0; at < size; at += cluster.length) await device.write(at, cluster);
        await writer.close();
      })();
      const frames: Uint8Array[] = [];
      const frame = new Uint8Array(64 << 20);
      let filled = 0;
      let total = 0;
      for await (const chunk of writer.readable) {
        total += chunk.length;
        for (let at = 0; at < chunk.length;) {
          const n = Math.min(chunk.length - at, frame.length - filled);
          frame.set(chunk.subarray(at, at + n), filled);
          filled += n;
          at += n;
          if (filled === frame.length) {
            frames.push(zstdCompressSync(frame));
            filled = 0;
          }
        }
      }
      await produce;
      frames.push(zstdCompressSync(frame.subarray(0, filled)));
      const archive = concat(...frames);
      assert.ok(archive.length < 4 << 20 && frames.length === 9, `${archive.length} bytes`);
      await Deno.writeFile(`${dir}/bomb.vma.zst`, archive);
      await Deno.writeTextFile(
        `${dir}/main.ts`,
        `import { verifyVma, VmaReader } from ${
          JSON.stringify(new URL("../../mod.ts", import.meta.url).href)
        };
const file = await Deno.open(Deno.args[0]);
const reader = new VmaReader(file.readable);
const summary = await verifyVma(reader);
console.log(reader.compression, reader.bytesRead, summary.storedBytes);
`,
      );
      const out = await new Deno.Command("/usr/bin/time", {
        args: ["-f", "%M", Deno.execPath(), "run", "--allow-read", "main.ts", "bomb.vma.zst"],
        cwd: dir,
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 0, stderr);
      const [compression, bytesRead] = new TextDecoder().decode(out.stdout).split(" ");
      assert.equal(compression, "zstd");
      assert.equal(Number(bytesRead), total); // every frame decoded
      const peakKiB = Number(stderr.trim().split("\n").at(-1));
      console.log(
        `VmaReader: ${total} bytes of archive from ${archive.length} bytes of zstd, peak RSS ${
          Math.round(peakKiB / 1024)
        } MiB`,
      );
      assert.ok(peakKiB > 0 && peakKiB < 200 * 1024, `peak RSS ${peakKiB} KiB`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
