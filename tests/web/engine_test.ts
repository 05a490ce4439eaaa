// The page's engine (web/_engine.ts) in Deno, with an in-memory folder in
// place of a File System Access handle: replies, no overwriting, and nothing
// left under a final name when the archive fails.
import assert from "node:assert/strict";
import { gunzipSync } from "node:zlib";
import { TESTDATA } from "../_cli_run.ts";
import { Engine, fzstdFrameDecoder, type Reply, type Request } from "../../web/_engine.ts";
import { verifyVma, VmaReader } from "../../mod.ts";

/** An in-memory folder with the parts of FileSystemDirectoryHandle the engine uses. */
class MemoryFolder {
  /** Committed files by name. */
  readonly files = new Map<string, Uint8Array>();

  getFileHandle(name: string, options: { create?: boolean } = {}) {
    if (!this.files.has(name)) {
      if (!options.create) return Promise.reject(new DOMException("missing", "NotFoundError"));
      this.files.set(name, new Uint8Array(0));
    }
    const files = this.files;
    return Promise.resolve({
      createWritable() {
        // Like Chromium's: a swap copy, swapped in on close(), dropped on abort().
        let swap = new Uint8Array(0);
        const grow = (size: number) => {
          const next = new Uint8Array(size);
          next.set(swap.subarray(0, Math.min(size, swap.length)));
          swap = next;
        };
        let at = 0;
        return Promise.resolve({
          write(chunk: Uint8Array | { type: "write"; position: number; data: Uint8Array }) {
            const { position, data } = chunk instanceof Uint8Array
              ? { position: at, data: chunk }
              : chunk;
            if (position + data.length > swap.length) grow(position + data.length);
            swap.set(data, position);
            at = position + data.length;
            return Promise.resolve();
          },
          truncate(size: number) {
            grow(size);
            return Promise.resolve();
          },
          close() {
            files.set(name, swap);
            return Promise.resolve();
          },
          abort() {
            return Promise.resolve();
          },
        });
      },
    });
  }

  removeEntry(name: string) {
    this.files.delete(name);
    return Promise.resolve();
  }
}

/** Runs one request and returns the replies, progress left out. */
async function ask(request: Request): Promise<Reply[]> {
  const replies: Reply[] = [];
  await new Engine((reply) => replies.push(reply)).handle(request);
  return replies.filter((r) => r.type !== "progress");
}

const fixture = async (name: string) => new File([await Deno.readFile(`${TESTDATA}${name}`)], name);

const extract = (file: File, dir: MemoryFolder, replace = false): Request => ({
  type: "extract",
  file,
  dir: dir as unknown as FileSystemDirectoryHandle,
  devices: ["drive-scsi0", "drive-scsi1"],
  configs: true,
  format: "raw",
  replace,
});

Deno.test("Engine reads the header of a .vma.zst through fzstd", async () => {
  const [reply] = await ask({ type: "open", file: await fixture("small.vma.zst") });
  assert.equal(reply.type, "header");
  if (reply.type !== "header") return;
  assert.equal(reply.compression, "zstd");
  assert.deepEqual(reply.devices.map((d) => [d.name, d.size]), [
    ["drive-scsi0", 4194304],
    ["drive-scsi1", 1053184],
  ]);
  assert.equal(reply.configs[0].text, await Deno.readTextFile(`${TESTDATA}qemu-server.conf`));
});

Deno.test("Engine extracts the disks and configs byte for byte", async () => {
  const dir = new MemoryFolder();
  const replies = await ask(extract(await fixture("small.vma.zst"), dir));
  assert.equal(replies.length, 1);
  assert.equal(replies[0].type, "done");
  assert.deepEqual([...dir.files.keys()].sort(), [
    "disk-drive-scsi0.raw",
    "disk-drive-scsi1.raw",
    "qemu-server.conf",
    "qemu-server.fw",
  ]);
  assert.ok(
    gunzipSync(await Deno.readFile(`${TESTDATA}disk0.raw.gz`)).equals(
      dir.files.get("disk-drive-scsi0.raw")!,
    ),
  );
});

Deno.test("Engine refuses to overwrite a file of the chosen folder and leaves it as it was", async () => {
  const dir = new MemoryFolder();
  dir.files.set("qemu-server.fw", new Uint8Array([1, 2, 3]));
  const replies = await ask(extract(await fixture("small.vma.zst"), dir));
  assert.deepEqual(replies, [{
    type: "error",
    message: 'Cannot extract: "qemu-server.fw" already exists in the chosen folder',
  }]);
  // qemu-server.conf, made before the refusal, is gone again; the old file is untouched.
  assert.deepEqual([...dir.files], [["qemu-server.fw", new Uint8Array([1, 2, 3])]]);
});

Deno.test("Engine leaves no file when the archive fails halfway", async () => {
  const dir = new MemoryFolder();
  const replies = await ask(extract(await fixture("small-truncated.vma.gz"), dir));
  assert.deepEqual(replies, [{ type: "error", message: "short vma extent (987200 < 1712640)" }]);
  assert.deepEqual([...dir.files.keys()], []);
});

/** Verifies `bytes` with fzstd: "ok" or the error's class and message. */
async function verifyWithFzstd(bytes: Uint8Array): Promise<string> {
  try {
    await verifyVma(new VmaReader(ReadableStream.from([bytes]), { zstd: fzstdFrameDecoder }));
    return "ok";
  } catch (error) {
    return `${(error as Error).constructor.name}: ${(error as Error).message}`;
  }
}

Deno.test("fzstdFrameDecoder: corrupt zstd data is one SyntaxError, whatever fzstd threw", async () => {
  const zst = await Deno.readFile(`${TESTDATA}small.vma.zst`);
  const at = (offset: number) => {
    const bad = zst.slice();
    bad.fill(0xff, offset, offset + 8);
    return bad;
  };
  // fzstd's own message.
  assert.equal(
    await verifyWithFzstd(at(12)),
    "SyntaxError: zstd decompression failed - invalid zstd data",
  );
  // fzstd overruns a typed array (a RangeError, which the reader would pass on as a limit).
  assert.equal(
    await verifyWithFzstd(at(13)),
    "SyntaxError: zstd decompression failed - invalid zstd data (offset is out of bounds)",
  );
});

Deno.test("fzstdFrameDecoder: seeded corruptions of a .vma.zst end in a SyntaxError or pass, never hang", async () => {
  const zst = await Deno.readFile(`${TESTDATA}small.vma.zst`);
  let seed = 14;
  const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8;
  const outcomes = new Set<string>();
  for (let i = 0; i < 60; i++) {
    const bad = zst.slice();
    // Half the cases hit the first KiB (frame and block headers, the archive
    // header's tables), the rest anywhere (mostly raw blocks of random disk data).
    const span = i % 2 === 0 ? 1024 : bad.length;
    for (let k = 0; k < 1 + (next() % 4); k++) bad[next() % span] = next() & 0xff;
    const outcome = await verifyWithFzstd(bad);
    outcomes.add(outcome.slice(0, outcome.indexOf(":") + 1) || outcome);
  }
  assert.ok(outcomes.has("SyntaxError:"), "no case reached the zstd decoder's errors");
  for (const outcome of outcomes) {
    assert.ok(["ok", "SyntaxError:", "VmaFormatError:"].includes(outcome), outcome);
  }
});
