/**
 * `deno run -A bench/lzop_decompression_stream.ts [MiB] [runs]`: decompression speed
 * of {@linkcode LzopDecompressionStream} against `lzop -dc file > /dev/null`.
 *
 * Writes `MiB` (default 256) of mixed data (random, zero and text pieces of 4 KiB to
 * 1 MiB) to a temporary directory, compresses it with `lzop -1`, then times `runs`
 * (default 5) alternating runs of each decoder reading the file after one warm-up run
 * each, then checks that the decoder's output matches, and prints the best and median MB/s of uncompressed data.
 *
 * @module
 */

import { LzopDecompressionStream } from "../src/compress/lzop_decompression_stream.ts";

const mib = Number(Deno.args[0] ?? 256);
const runs = Number(Deno.args[1] ?? 5);
const size = mib * 1024 * 1024;

const dir = await Deno.makeTempDir({ prefix: "vmakit-lzop-bench-" });
try {
  const raw = `${dir}/data`;
  const lzo = `${dir}/data.lzo`;
  await writeMixedData(raw, size);
  await run("sh", ["-c", `lzop -1 -c '${raw}' > '${lzo}'`]);
  const compressed = (await Deno.stat(lzo)).size;
  console.log(
    `input: ${mib} MiB mixed data, ${(compressed / 2 ** 20).toFixed(1)} MiB as lzop -1 ` +
      `(load average ${Deno.loadavg().map((n) => n.toFixed(2)).join(" ")})`,
  );

  const ours: number[] = [];
  const lzop: number[] = [];
  for (let i = -1; i < runs; i++) { // run -1 warms up both
    let start = performance.now();
    await run("sh", ["-c", `lzop -dc '${lzo}' > /dev/null`]);
    if (i >= 0) lzop.push(performance.now() - start);

    start = performance.now();
    using file = await Deno.open(lzo);
    let total = 0;
    for await (const chunk of file.readable.pipeThrough(new LzopDecompressionStream())) {
      total += chunk.length;
    }
    if (i >= 0) ours.push(performance.now() - start);
    if (total !== size) throw new Error(`decoded ${total} bytes, expected ${size}`);
  }
  const digest = await sha256Stream(
    (await Deno.open(lzo)).readable.pipeThrough(new LzopDecompressionStream()),
  );
  if (digest !== await sha256File(raw)) throw new Error("decoded bytes differ from the input");

  const report = (name: string, times: number[]) => {
    const sorted = times.toSorted((a, b) => a - b);
    const rate = (ms: number) => (size / 1e6 / (ms / 1000)).toFixed(0);
    console.log(
      `${name.padEnd(26)} best ${rate(sorted[0]).padStart(5)} MB/s  median ${
        rate(sorted[sorted.length >> 1]).padStart(5)
      } MB/s  (${runs} runs)`,
    );
  };
  report("LzopDecompressionStream", ours);
  report("lzop -dc > /dev/null", lzop);
} finally {
  await Deno.remove(dir, { recursive: true });
}

async function run(command: string, args: string[]): Promise<void> {
  const { success, stderr } = await new Deno.Command(command, { args, stderr: "piped" }).output();
  if (!success) throw new Error(`${command} failed: ${new TextDecoder().decode(stderr)}`);
}

async function writeMixedData(path: string, total: number): Promise<void> {
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  const words = "proxmox vma backup extent cluster disk config header blob zero ".split(" ");
  let seed = 12345;
  const next = () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 8;
  let written = 0;
  while (written < total) {
    const sizes = [4096, 65536, 262144, 1048576];
    const length = Math.min(sizes[next() % 4], total - written);
    const piece = new Uint8Array(length);
    const kind = next() % 20;
    if (kind < 7) {
      for (let i = 0; i < length; i += 65536) {
        crypto.getRandomValues(piece.subarray(i, Math.min(length, i + 65536)));
      }
    } else if (kind < 14) {
      // zeros
    } else {
      let text = "";
      while (text.length < length) text += words[next() % words.length] + (next() % 1000) + " ";
      piece.set(new TextEncoder().encode(text.slice(0, length)));
    }
    for (let at = 0; at < length;) at += await file.write(piece.subarray(at));
    written += length;
  }
}

async function sha256File(path: string): Promise<string> {
  return hex(new Uint8Array(await crypto.subtle.digest("SHA-256", await Deno.readFile(path))));
}

async function sha256Stream(stream: ReadableStream<Uint8Array<ArrayBuffer>>): Promise<string> {
  const bytes = await new Response(stream).arrayBuffer();
  return hex(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)));
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
