// The library bundled by `deno bundle` runs under Node (20 and later): it
// writes an archive with VmaWriter and reads it back with VmaReader, reads
// the gzip and lzop fixtures, and the zstd one where Node's node:zlib has
// zstd (22.15+); without it, the zstd fixture gives the documented TypeError.
import assert from "node:assert/strict";
import { ROOT, TESTDATA } from "./_cli_run.ts";

const decoder = new TextDecoder();

const NODE_SCRIPT = `
import { readFileSync } from "node:fs";
import * as zlib from "node:zlib";
import { verifyVma, VmaReader, VmaWriter } from "./vmakit.mjs";

const image = new Uint8Array(5 * 65536 + 512);
for (let i = 0; i < image.length; i += 4099) image[i] = (i >> 12) & 0xff;
const writer = new VmaWriter();
writer.addConfig("qemu-server.conf", "memory: 512\\n");
const device = writer.addDevice("drive-scsi0", image.length);
const archive = new Response(writer.readable).arrayBuffer();
await ReadableStream.from([image]).pipeTo(device.writable);
await writer.close();
const reader = new VmaReader(ReadableStream.from([new Uint8Array(await archive)]));
const read = new Uint8Array(image.length);
const header = await reader.header();
for await (const c of reader.clusters()) {
  let at = 0;
  for (let j = 0; j < 16; j++) {
    if (!(c.mask & (1 << j))) continue;
    const start = c.cluster * 65536 + j * 4096;
    read.set(c.data.subarray(at, at + Math.min(4096, image.length - start)), start);
    at += 4096;
  }
}
const same = read.every((b, i) => b === image[i]);
console.log("roundtrip", header.devices[0].name, same);

const fixture = (name) => ReadableStream.from([new Uint8Array(readFileSync(process.argv[2] + name))]);
const plain = await verifyVma(new VmaReader(ReadableStream.from([zlib.gunzipSync(readFileSync(process.argv[2] + "small.vma.gz"))])));
for (const [name, compression] of [["small.vma.gz", "gzip"], ["small.vma.lzo", "lzop"], ["small.vma.zst", "zstd"]]) {
  const r = new VmaReader(fixture(name));
  try {
    const s = await verifyVma(r);
    console.log(name, r.compression === compression, JSON.stringify(s) === JSON.stringify(plain));
  } catch (e) {
    console.log(name, e.name + ": " + e.message);
  }
}
console.log("zstd in node:zlib", typeof zlib.createZstdDecompress === "function");
`;

async function hasNode(): Promise<boolean> {
  try {
    const out = await new Deno.Command("node", { args: ["--version"], stdout: "null" }).output();
    return out.success;
  } catch {
    return false;
  }
}

const node = await hasNode();
if (!node) console.log("node_bundle_test: skipped, `node` is not on PATH");

Deno.test({
  name: "the deno bundle of mod.ts round-trips and reads compressed archives under Node",
  ignore: !node,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const bundle = await new Deno.Command(Deno.execPath(), {
        args: ["bundle", "--platform", "browser", "-o", `${dir}/vmakit.mjs`, `${ROOT}mod.ts`],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(bundle.code, 0, decoder.decode(bundle.stderr));
      const js = await Deno.readTextFile(`${dir}/vmakit.mjs`);
      // Runtime-free: no static import of a runtime module (node:zlib is loaded on demand).
      assert.doesNotMatch(js, /^\s*import\b[^;]*from\s*["'](node|npm|jsr):/m);
      await Deno.writeTextFile(`${dir}/main.mjs`, NODE_SCRIPT);
      const out = await new Deno.Command("node", {
        args: ["main.mjs", TESTDATA],
        cwd: dir,
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stderr = decoder.decode(out.stderr);
      assert.equal(out.code, 0, stderr);
      const lines = decoder.decode(out.stdout).trimEnd().split("\n");
      const zstd = lines.pop() === "zstd in node:zlib true";
      assert.deepEqual(lines, [
        "roundtrip drive-scsi0 true",
        "small.vma.gz true true",
        "small.vma.lzo true true",
        zstd
          ? "small.vma.zst true true"
          : "small.vma.zst TypeError: Cannot read a zstd-compressed " +
            "archive: this runtime has no zstd decoder (neither node:zlib's nor " +
            "DecompressionStream's); pass one as the zstd option",
      ]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
