// The reader's ring (`ByteSource.useRing`, used by `extents({ reuseBuffers })`):
// windows of a byte stream read ahead while the extents are parsed, extents
// straddling two windows handed out as two views. The results must not depend
// on it: same disks, same clusters, same errors as the plain path.
import assert from "node:assert/strict";
import { extractVma, verifyVma, VmaFormatError, VmaReader } from "../../mod.ts";
import { extractAll, pseudoRandom, sha256, writeArchive } from "../_helpers.ts";

/** A byte stream answering each read with at most `most` bytes (or a varying count). */
function byteStream(
  data: Uint8Array,
  most: number | ((call: number) => number),
  failAt?: number,
  eagerClose = false,
): ReadableStream<Uint8Array> {
  let at = 0;
  let call = 0;
  return new ReadableStream({
    type: "bytes",
    pull(controller) {
      const request = controller.byobRequest!;
      const view = request.view! as Uint8Array;
      if (failAt !== undefined && at >= failAt) throw new Error("disk on fire");
      const limit = typeof most === "number" ? most : most(call++);
      const n = Math.min(view.byteLength, limit, data.length - at);
      if (n === 0) {
        controller.close();
        request.respond(0);
        return;
      }
      view.set(data.subarray(at, at + n));
      at += n;
      request.respond(n);
      // Like a pipe reader that sees the end with its last bytes: close at
      // once, answering no read queued behind this one.
      if (eagerClose && at === data.length) controller.close();
    },
  });
}

/** Half zero 4 KiB blocks, half random: clusters of every mask. */
function mixedDisk(size: number, seed: number): Uint8Array {
  const data = pseudoRandom(size, seed);
  for (let b = 0; b < size / 4096; b++) {
    if ((b * 7 + seed) % 3 === 0) data.fill(0, b * 4096, (b + 1) * 4096);
  }
  data.fill(0, 2 * 1048576, 3 * 1048576); // a whole zero MiB
  return data;
}

const archive = await writeArchive([
  { name: "drive-scsi0", data: mixedDisk(13 * 1048576 + 4096, 1) },
  { name: "drive-scsi1", data: mixedDisk(5 * 1048576, 2) },
], { configs: [["qemu-server.conf", "memory: 512\n"]] });

/** Every cluster as device, number, mask and the SHA-256 of its data, in stream order. */
async function clusterList(stream: ReadableStream<Uint8Array>, reuse: boolean): Promise<string[]> {
  const out: string[] = [];
  for await (const extent of new VmaReader(stream).extents({ reuseBuffers: reuse })) {
    for (const c of extent.clusters) {
      out.push(`${c.device.name} ${c.cluster} ${c.mask} ${await sha256(c.data)}`);
    }
  }
  return out;
}

Deno.test("VmaReader gives the same clusters through the ring as without, for any read size", async () => {
  const reference = await clusterList(ReadableStream.from([archive]), false);
  assert.ok(reference.length > 250, `only ${reference.length} clusters`);
  const sizes: (number | ((call: number) => number))[] = [
    1 << 22,
    1 << 20,
    65536 + 17,
    (call) => [4 << 20, 100, 3 << 20, 1, 777777][call % 5],
  ];
  for (const most of sizes) {
    const got = await clusterList(byteStream(archive, most), true);
    assert.deepEqual(got, reference, `reads of at most ${String(most)}`);
  }
});

Deno.test("extractVma through the ring reproduces the disks byte for byte", async () => {
  const reference = await extractAll(archive);
  for (const most of [1 << 22, 123457]) {
    const back = await extractAll(byteStream(archive, most));
    assert.deepEqual(back.disks, reference.disks, `reads of at most ${most}`);
    assert.deepEqual(back.configs, reference.configs);
  }
});

Deno.test("VmaReader fails the same way through the ring on a cut archive", async () => {
  for (const cut of [archive.length - 1, archive.length - 4096 - 1, 9 * 1048576 + 3]) {
    const bytes = archive.subarray(0, cut);
    const plain = await verifyVma(new VmaReader(ReadableStream.from([bytes]))).catch((e) => e);
    const ring = await verifyVma(new VmaReader(byteStream(bytes, 1 << 22))).catch((e) => e);
    assert.ok(plain instanceof VmaFormatError, `cut at ${cut}: ${plain}`);
    assert.ok(ring instanceof VmaFormatError, `cut at ${cut}: ${ring}`);
    assert.equal(ring.message, plain.message);
    assert.equal(ring.offset, plain.offset);
  }
});

Deno.test("VmaReader through the ring passes on the stream's error and stops reading", async () => {
  const error = await extractVma(new VmaReader(byteStream(archive, 1 << 20, 6 * 1048576)), {
    device: () => ({ write() {} }),
  }).catch((e) => e);
  assert.ok(error instanceof Error);
  assert.equal(error.message, "disk on fire");
});

Deno.test("VmaReader through the ring ends on a source that closes with its last bytes", async () => {
  const reference = await clusterList(ReadableStream.from([archive]), false);
  for (const most of [1 << 20, 1 << 22, 999999]) {
    const got = await clusterList(byteStream(archive, most, undefined, true), true);
    assert.deepEqual(got, reference, `reads of at most ${most}`);
  }
});

Deno.test("VmaReader with reused buffers takes a chunked stream's pieces as they come", async () => {
  const reference = await clusterList(ReadableStream.from([archive]), false);
  for (const size of [262144, 65536 + 3, 4095, 5 << 20]) {
    const chunks: Uint8Array[] = [];
    for (let at = 0; at < archive.length; at += size) chunks.push(archive.slice(at, at + size));
    const got = await clusterList(ReadableStream.from(chunks), true);
    assert.deepEqual(got, reference, `chunks of ${size} bytes`);
  }
});
