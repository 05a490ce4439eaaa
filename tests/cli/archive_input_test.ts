import assert from "node:assert/strict";
import { gunzipSync, gzipSync, zstdCompressSync } from "node:zlib";
import { decompress, openArchiveInput } from "../../src/cli/_archive_input.ts";
import { CliError } from "../../src/cli/_errors.ts";
import { existsSync } from "node:fs";
import { VmaWriter } from "../../mod.ts";
import { CLI, have, TESTDATA, vma } from "../_cli_run.ts";
import { concat } from "../_craft.ts";
import { chunked, compressToFile, writeNoise } from "../_helpers.ts";

/** small.vma: the Proxmox fixture, decompressed. */
const small = new Uint8Array(gunzipSync(await Deno.readFile(`${TESTDATA}small.vma.gz`)));
/** Offsets of its extents (512-byte headers starting "VMAE"). */
const extentOffsets = (() => {
  const found: number[] = [];
  for (let i = 0; i + 4 <= small.length; i += 512) {
    if (
      small[i] === 0x56 && small[i + 1] === 0x4d && small[i + 2] === 0x41 && small[i + 3] === 0x45
    ) {
      found.push(i);
    }
  }
  return found;
})();

if (!have("pzstd")) {
  console.log("pzstd is not installed (Debian's zstd package): skipping its test");
}
if (!existsSync("/usr/bin/time")) console.log("/usr/bin/time is missing: skipping the RSS test");

const dir = await Deno.makeTempDir({ prefix: "vmakit-archive-input-" });
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

let files = 0;
/** Writes `parts` one after another to a new file in the temp dir; returns its path. */
async function file(...parts: Uint8Array[]): Promise<string> {
  const path = `${dir}/input-${files++}.vma.zst`;
  await Deno.writeFile(path, concat(...parts));
  return path;
}

const zstd = (bytes: Uint8Array): Uint8Array => zstdCompressSync(bytes);

/** A skippable frame (magic 0x184d2a5`nibble`) holding `data`. */
function skippable(data: Uint8Array, nibble = 0): Uint8Array {
  const frame = new Uint8Array(8 + data.length);
  const view = new DataView(frame.buffer);
  view.setUint32(0, 0x184d2a50 + nibble, true);
  view.setUint32(4, data.length, true);
  frame.set(data, 8);
  return frame;
}

/** Everything openArchiveInput gives for `path`. */
async function decoded(path: string): Promise<Uint8Array> {
  const input = await openArchiveInput(path);
  return new Uint8Array(await new Response(input.readable).arrayBuffer());
}

async function assertDecodeFails(path: string, message: string): Promise<void> {
  const input = await openArchiveInput(path);
  await assert.rejects(new Response(input.readable).arrayBuffer(), (e: unknown) => {
    assert.ok(e instanceof CliError, String(e));
    assert.equal(e.message, message);
    return true;
  });
}

Deno.test("openArchiveInput decodes every zstd frame: split at extent boundaries and mid-extent", async () => {
  assert.ok(extentOffsets.length >= 2, "small.vma has at least two extents");
  const splits = [1, 4, 511, ...extentOffsets, extentOffsets[0] + 4096 + 7, small.length - 1];
  for (const at of splits) {
    const path = await file(zstd(small.subarray(0, at)), zstd(small.subarray(at)));
    const input = await openArchiveInput(path);
    assert.equal(input.compression, "zstd");
    assert.deepEqual(
      new Uint8Array(await new Response(input.readable).arrayBuffer()),
      small,
      `split at ${at}`,
    );
  }
  // Many frames, one per 64 KiB.
  const frames: Uint8Array[] = [];
  for (let at = 0; at < small.length; at += 65536) {
    frames.push(zstd(small.subarray(at, at + 65536)));
  }
  assert.deepEqual(await decoded(await file(...frames)), small);
});

Deno.test("openArchiveInput skips zstd skippable frames before, between and after frames", async () => {
  const at = extentOffsets[1];
  const path = await file(
    skippable(new Uint8Array(100).fill(0x28)),
    zstd(small.subarray(0, at)),
    skippable(new Uint8Array(0), 15),
    skippable(zstd(new Uint8Array(70000).fill(9)), 7),
    zstd(small.subarray(at)),
    skippable(new Uint8Array(3)),
  );
  const input = await openArchiveInput(path);
  assert.equal(input.compression, "zstd");
  assert.deepEqual(new Uint8Array(await new Response(input.readable).arrayBuffer()), small);
});

Deno.test({
  name: "openArchiveInput decodes pzstd output (a skippable frame before each frame)",
  ignore: !have("pzstd"),
  async fn() {
    const vmaPath = `${dir}/pzstd.vma`;
    await Deno.writeFile(vmaPath, small);
    const out = await new Deno.Command("pzstd", {
      args: ["-q", "-1", "-p", "2", "-f", vmaPath, "-o", `${vmaPath}.zst`],
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    const bytes = await Deno.readFile(`${vmaPath}.zst`);
    assert.deepEqual(
      [...bytes.subarray(0, 4)],
      [0x50, 0x2a, 0x4d, 0x18],
      "pzstd's skippable frame",
    );
    assert.deepEqual(await decoded(`${vmaPath}.zst`), small);
    // Two pzstd outputs back to back, as `cat a.zst b.zst`.
    const half = extentOffsets[1];
    await Deno.writeFile(`${dir}/a.vma`, small.subarray(0, half));
    await Deno.writeFile(`${dir}/b.vma`, small.subarray(half));
    for (const name of ["a", "b"]) {
      const r = await new Deno.Command("pzstd", {
        args: ["-q", "-1", "-f", `${dir}/${name}.vma`, "-o", `${dir}/${name}.vma.zst`],
      }).output();
      assert.equal(r.code, 0);
    }
    const both = await file(
      await Deno.readFile(`${dir}/a.vma.zst`),
      await Deno.readFile(`${dir}/b.vma.zst`),
    );
    assert.deepEqual(await decoded(both), small);
  },
});

Deno.test("vma verify and extract accept a two-frame .vma.zst and reject a second frame with a duplicate extent", async () => {
  const at = extentOffsets[1];
  const split = await file(zstd(small.subarray(0, at)), zstd(small.subarray(at)));
  const verified = await vma(["verify", split]);
  assert.equal(verified.stderr, "");
  assert.equal(verified.code, 0);
  const extracted = await vma(["extract", split, `${dir}/ex-split`]);
  assert.equal(extracted.code, 0, extracted.stderr);
  const reference = await vma(["extract", `${TESTDATA}small.vma.zst`, `${dir}/ex-reference`]);
  assert.equal(reference.code, 0, reference.stderr);
  for await (const entry of Deno.readDir(`${dir}/ex-reference`)) {
    assert.deepEqual(
      await Deno.readFile(`${dir}/ex-split/${entry.name}`),
      await Deno.readFile(`${dir}/ex-reference/${entry.name}`),
      entry.name,
    );
  }

  // A valid archive, then a frame repeating its first extent: Proxmox's vma,
  // fed by `zstd -dc`, sees the extent twice.
  const duplicate = await file(zstd(small), zstd(small.subarray(extentOffsets[0], at)));
  const verify = await vma(["verify", duplicate]);
  assert.equal(verify.code, 1);
  assert.equal(
    verify.stderr,
    "vma: verify failed - found duplicated cluster 0 for stream drive-scsi1\n",
  );
  const extract = await vma(["extract", duplicate, `${dir}/ex-duplicate`]);
  assert.equal(extract.code, 1);
  assert.equal(
    extract.stderr,
    "vma: restore failed - found duplicated cluster 0 for stream drive-scsi1\n",
  );
  await assert.rejects(Deno.stat(`${dir}/ex-duplicate`), Deno.errors.NotFound);
});

Deno.test("openArchiveInput rejects what zstd -dc rejects: junk after frames, a cut frame, bad headers", async () => {
  const whole = zstd(small);
  const prefix = "zstd decompression failed - ";
  await assertDecodeFails(
    await file(whole, new Uint8Array([1, 2, 3, 4, 5])),
    `${prefix}unknown frame magic 0x04030201 at offset ${whole.length} (not zstd data)`,
  );
  await assertDecodeFails(
    await file(whole, new Uint8Array(16)),
    `${prefix}unknown frame magic 0x00000000 at offset ${whole.length} (not zstd data)`,
  );
  await assertDecodeFails(
    await file(whole.subarray(0, whole.length - 3)),
    `${prefix}the input ends inside a frame: ${
      whole.length - 3
    } bytes, the frame at offset 0 is cut short`,
  );
  await assertDecodeFails(
    await file(whole, zstd(small).subarray(0, 10)),
    `${prefix}the input ends inside a frame: ${
      whole.length + 10
    } bytes, the frame at offset ${whole.length} is cut short`,
  );
  await assertDecodeFails(
    await file(skippable(new Uint8Array(50)).subarray(0, 30)),
    `${prefix}the input ends inside a frame: 30 bytes, the frame at offset 0 is cut short`,
  );
  // Frame header descriptor with the reserved bit.
  await assertDecodeFails(
    await file(new Uint8Array([0x28, 0xb5, 0x2f, 0xfd, 0x08, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])),
    `${prefix}reserved bit set in the frame header at offset 4`,
  );
  // A window of 2^31 bytes (window descriptor 0xa8): zstd -d wants --long=31.
  await assertDecodeFails(
    await file(new Uint8Array([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0xa8, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0])),
    `${prefix}the frame at offset 0 needs a 2147483648-byte window, more than 134217728 (zstd's default limit)`,
  );
  // Block type 3 is reserved.
  await assertDecodeFails(
    await file(
      new Uint8Array([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x50, 0x07, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    ),
    `${prefix}reserved block type at offset 6`,
  );
  // A block larger than 128 KiB.
  await assertDecodeFails(
    await file(
      new Uint8Array([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x50, 0x08, 0x00, 0x10, 0, 0, 0, 0, 0, 0]),
    ),
    `${prefix}block of 131073 bytes at offset 6 is larger than 131072`,
  );
});

Deno.test("openArchiveInput decodes gzip members and concatenated lzop streams", async () => {
  const at = extentOffsets[1] + 1000;
  const gz = `${dir}/members.vma.gz`;
  await Deno.writeFile(gz, concat(gzipSync(small.subarray(0, at)), gzipSync(small.subarray(at))));
  assert.deepEqual(await decoded(gz), small);
  if (!have("lzop")) {
    console.log("lzop is not installed: skipping the concatenated lzop part");
    return;
  }
  await Deno.writeFile(`${dir}/a.bin`, small.subarray(0, at));
  await Deno.writeFile(`${dir}/b.bin`, small.subarray(at));
  const out = await new Deno.Command("sh", {
    args: ["-c", "lzop -c a.bin > ab.vma.lzo && lzop -c b.bin >> ab.vma.lzo"],
    cwd: dir,
  }).output();
  assert.equal(out.code, 0);
  assert.deepEqual(await decoded(`${dir}/ab.vma.lzo`), small);
  // A gzip member cut short is an error, not a shorter archive.
  const cut = `${dir}/cut.vma.gz`;
  const whole = gzipSync(small);
  await Deno.writeFile(cut, whole.subarray(0, whole.length - 100));
  const input = await openArchiveInput(cut);
  await assert.rejects(new Response(input.readable).arrayBuffer(), (e: unknown) => {
    assert.ok(e instanceof CliError);
    assert.match(e.message, /^gzip decompression failed - /);
    return true;
  });
});

/** Runs `vma verify path` under /usr/bin/time; returns the peak RSS in KiB. */
async function verifyPeakRss(path: string): Promise<number> {
  const out = await new Deno.Command("/usr/bin/time", {
    args: ["-f", "%M", Deno.execPath(), "run", "-A", CLI, "verify", path],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, stderr);
  return Number(stderr.trim().split("\n").at(-1));
}

Deno.test({
  name: "vma verify decodes 512 MiB bombs (zstd frames, gzip, lzop) in bounded memory",
  ignore: !existsSync("/usr/bin/time"),
  async fn() {
    // A valid archive: one 512 MiB device whose clusters all hold 0x01. It goes
    // to a file (for gzip and lzop) and into 64 MiB zstd frames with skippable
    // frames between them.
    const size = 512 << 20;
    const writer = new VmaWriter({ uuid: "00000000-0000-4000-8000-000000000002" });
    writer.addConfig("qemu-server.conf", "memory: 512\n");
    const device = writer.addDevice("drive-scsi0", size);
    const produce = (async () => {
      const cluster = new Uint8Array(65536).fill(1);
      for (let at = 0; at < size; at += cluster.length) await device.write(at, cluster);
      await writer.close();
    })();
    const plain = `${dir}/bomb.vma`;
    const plainFile = await Deno.open(plain, { write: true, create: true, truncate: true });
    const frames: Uint8Array[] = [];
    const frameSize = 64 << 20;
    let buffer = new Uint8Array(frameSize);
    let filled = 0;
    let total = 0;
    for await (const chunk of writer.readable) {
      total += chunk.length;
      for (let at = 0; at < chunk.length;) at += await plainFile.write(chunk.subarray(at));
      for (let at = 0; at < chunk.length;) {
        const n = Math.min(chunk.length - at, frameSize - filled);
        buffer.set(chunk.subarray(at, at + n), filled);
        filled += n;
        at += n;
        if (filled === frameSize) {
          frames.push(zstd(buffer), skippable(new Uint8Array(16), frames.length & 15));
          buffer = new Uint8Array(frameSize);
          filled = 0;
        }
      }
    }
    plainFile.close();
    await produce;
    frames.push(zstd(buffer.subarray(0, filled)));
    const inputs: [string, string][] = [["zstd", await file(...frames)]];
    for (const [name, command] of [["gzip", "gzip -1 -c"], ["lzop", "lzop -c"]]) {
      if (!have(name)) {
        console.log(`${name} is not installed: skipping its bomb`);
        continue;
      }
      const out = await new Deno.Command("sh", {
        args: ["-c", `${command} bomb.vma > bomb.vma.${name}`],
        cwd: dir,
      }).output();
      assert.equal(out.code, 0);
      inputs.push([name, `${dir}/bomb.vma.${name}`]);
    }
    await Deno.remove(plain);
    for (const [name, path] of inputs) {
      const compressed = (await Deno.stat(path)).size;
      assert.ok(total > size && compressed < 8 << 20, `${name}: ${total} bytes in ${compressed}`);
      const peakKiB = await verifyPeakRss(path);
      console.log(
        `vma verify: ${total} bytes of archive from ${compressed} bytes of ${name}, peak RSS ${
          Math.round(peakKiB / 1024)
        } MiB`,
      );
      assert.ok(peakKiB > 0 && peakKiB < 200 * 1024, `${name}: peak RSS ${peakKiB} KiB`);
    }
  },
});

for (
  const [tool, ext, measured] of [
    // Measured decoding into the reader's own buffers; 130 MiB (zstd) and
    // 126 MiB (lzop) when each chunk or block was a fresh buffer.
    ["zstd", "zst", "76 MiB"],
    ["lzop", "lzo", "74 MiB"],
  ] as const
) {
  Deno.test({
    name: `vma verify of a 256 MiB .vma.${
      tool.replace("lzop", "lzo")
    } of incompressible data stays below 100 MiB of peak RSS (${measured})`,
    ignore: !existsSync("/usr/bin/time") || !have(tool),
    async fn() {
      // Incompressible clusters: 256 MiB of decoded output, all of it in
      // buffers a decoder could leave to the garbage collector.
      const size = 256 << 20;
      const writer = new VmaWriter({ uuid: "00000000-0000-4000-8000-000000000003" });
      const device = writer.addDevice("drive-scsi0", size);
      const path = `${dir}/random.vma.${ext}`;
      const done = compressToFile(writer.readable, path, tool);
      await writeNoise(device, size, 0x2545f491);
      await writer.close();
      await done;
      const peakKiB = await verifyPeakRss(path);
      console.log(`vma verify of 256 MiB of random data, ${tool}: peak RSS ${peakKiB >> 10} MiB`);
      assert.ok(peakKiB < 100 * 1024, `peak RSS ${peakKiB} KiB`);
      await Deno.remove(path);
    },
  });
}

Deno.test("decompress: gzip members then zero padding decode; other trailing bytes or a cut member fail in one error", async () => {
  const data = new Uint8Array(300_000).map((_, i) => i % 251);
  const gz = concat(gzipSync(data.subarray(0, 100_000)), gzipSync(data.subarray(100_000)));
  const read = async (bytes: Uint8Array<ArrayBuffer>) =>
    new Uint8Array(
      await new Response(decompress(new Blob([bytes]).stream(), "gzip")).arrayBuffer(),
    );
  assert.deepEqual(await read(gz), data);
  // (A fuzz case of padding spun forever once: the decoder took no more input.)
  assert.deepEqual(await read(concat(gz, new Uint8Array(513))), data);
  await assert.rejects(read(concat(gz, new Uint8Array([1, 2, 3]))), (e) => {
    assert.ok(e instanceof CliError);
    assert.equal(
      e.message,
      // zlib takes them for the next member.
      "gzip decompression failed - incorrect header check",
    );
    return true;
  });
  await assert.rejects(read(gz.subarray(0, gz.length - 3)), (e) => {
    assert.ok(e instanceof CliError);
    assert.equal(e.message, "gzip decompression failed - unexpected end of file");
    return true;
  });
});

Deno.test({
  name:
    "decompress: lzop blocks, stored and compressed, come out whole through any chunking and any read size",
  ignore: !have("lzop"),
  async fn() {
    // 1 MiB of text, 700 KiB of random bytes (stored blocks), 300 KiB of zeros:
    // 256 KiB blocks, some split across input chunks.
    const text = new TextEncoder().encode("vma verify archive.vma.lzo\n".repeat(40_000));
    const random = new Uint8Array(700 << 10);
    for (let at = 0; at < random.length; at += 65536) {
      crypto.getRandomValues(random.subarray(at, at + 65536));
    }
    const data = concat(text, random, new Uint8Array(300 << 10));
    const lzop = new Deno.Command("lzop", { args: ["-c"], stdin: "piped", stdout: "piped" })
      .spawn();
    const [, out] = await Promise.all([
      new Blob([data]).stream().pipeTo(lzop.stdin),
      lzop.output(),
    ]);
    const lzo = out.stdout;
    for (const chunk of [1, 4093, 65536, 300_000, lzo.length]) {
      const stream = decompress(chunked(lzo, chunk), "lzop");
      // Reads of an odd size, into one buffer the reader reuses.
      const reader = stream.getReader({ mode: "byob" });
      const got = new Uint8Array(data.length + 1);
      let filled = 0;
      let view = new Uint8Array(new ArrayBuffer(12_345));
      for (;;) {
        const r = await reader.read(view);
        if (r.done) break;
        got.set(r.value, filled);
        filled += r.value.length;
        view = new Uint8Array(r.value.buffer);
      }
      assert.equal(filled, data.length, `chunks of ${chunk}`);
      assert.ok(got.subarray(0, filled).every((b, i) => b === data[i]), `chunks of ${chunk}`);
    }
  },
});
