// Tests of the benchmark harness's pure helpers. No timing is asserted here:
// benchmarks are measured by `deno task bench`, never judged by tests.

import assert from "node:assert/strict";
import { parseTimeReport, shellQuote, spread } from "./_measure.ts";
import {
  applyMixedPattern,
  BLOCK_SIZE,
  CLUSTER_SIZE,
  type Inputs,
  QUICK_SIZES,
  RandomChunks,
} from "./_inputs.ts";
import { parseOptions } from "./_options.ts";
import { judgeTargets, type RowResult } from "./_report.ts";
import { suiteRows, suiteTargets } from "./_suite.ts";

const TIME_V = `\tCommand being timed: "sh -c cat raw.img > /dev/null"
\tUser time (seconds): 0.01
\tSystem time (seconds): 0.25
\tPercent of CPU this job got: 99%
\tElapsed (wall clock) time (h:mm:ss or m:ss): 0:00.26
\tMaximum resident set size (kbytes): 2048
\tExit status: 0
`;

Deno.test("parseTimeReport reads CPU times and the peak RSS in bytes", () => {
  assert.deepEqual(parseTimeReport(TIME_V), { userS: 0.01, sysS: 0.25, maxRssBytes: 2048 * 1024 });
});

Deno.test("parseTimeReport reports the signal that killed the command", () => {
  const report = parseTimeReport(`Command terminated by signal 9\n${TIME_V}`);
  assert.equal(report?.signal, 9);
});

Deno.test("parseTimeReport returns undefined without the RSS line", () => {
  assert.equal(parseTimeReport("\tUser time (seconds): 0.01\n"), undefined);
});

Deno.test("spread gives the median of odd and even series, and the extremes", () => {
  assert.deepEqual(spread([3, 1, 2]), { median: 2, min: 1, max: 3 });
  assert.deepEqual(spread([4, 1, 3, 2]), { median: 2.5, min: 1, max: 4 });
  assert.throws(() => spread([]), RangeError);
});

Deno.test("shellQuote leaves plain words alone and quotes the rest", () => {
  assert.equal(shellQuote("format=raw:drive-scsi0=raw.img"), "format=raw:drive-scsi0=raw.img");
  assert.equal(shellQuote("it's here"), `'it'\\''s here'`);
});

Deno.test("RandomChunks repeats a chunk for its index and differs between indexes", () => {
  const random = new RandomChunks();
  const first = random.chunk(5).slice(0, 4096);
  const other = random.chunk(6).slice(0, 4096);
  assert.deepEqual(random.chunk(5).slice(0, 4096), first);
  assert.notDeepEqual(other, first);
});

Deno.test("applyMixedPattern cycles zero / random / half-zero / random clusters", () => {
  const buffer = new Uint8Array(8 * CLUSTER_SIZE).fill(0xff);
  applyMixedPattern(buffer, 4);
  const zeroBlocks = (cluster: number) => {
    const blocks = [];
    for (let b = 0; b < CLUSTER_SIZE / BLOCK_SIZE; b++) {
      const start = cluster * CLUSTER_SIZE + b * BLOCK_SIZE;
      if (buffer.subarray(start, start + BLOCK_SIZE).every((x) => x === 0)) blocks.push(b);
    }
    return blocks.length;
  };
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 7].map(zeroBlocks), [16, 0, 8, 0, 16, 0, 8, 0]);
});

Deno.test("judgeTargets divides medians and marks pass, miss and n/a", () => {
  const row = (id: string, median: number): RowResult => ({
    id,
    label: id,
    kind: "vma",
    command: id,
    runs: [],
    wallS: { median, min: median, max: median },
  });
  const rows = [row("a", 2), row("b", 4), row("c", 1)];
  const targets = judgeTargets([
    { id: "t1", label: "t1", row: "a", baseline: "b", maxRatio: 0.5 },
    { id: "t2", label: "t2", row: "a", baseline: "c", maxRatio: 1 },
    { id: "t3", label: "t3", row: "x", baseline: "c", maxRatio: 1 },
  ], rows);
  assert.deepEqual(targets.map((t) => [t.ratio, t.verdict]), [
    [0.5, "pass"],
    [2, "miss"],
    [undefined, "n/a"],
  ]);
});

Deno.test("parseOptions takes Proxmox's vma from --proxmox-vma, else from PROXMOX_VMA", () => {
  assert.equal(parseOptions([], {}).proxmoxVma, undefined);
  assert.equal(parseOptions([], { PROXMOX_VMA: "" }).proxmoxVma, undefined);
  assert.equal(parseOptions([], { PROXMOX_VMA: "/env/vma" }).proxmoxVma, "/env/vma");
  assert.equal(
    parseOptions(["--proxmox-vma", "/opt/vma"], { PROXMOX_VMA: "/env/vma" }).proxmoxVma,
    "/opt/vma",
  );
});

const INPUTS: Inputs = {
  raw: "raw.img",
  qcow2: "raw.qcow2",
  vhdx: "raw.vhdx",
  vmdk: "raw.vmdk",
  mixed: "mixed.img",
  disks: ["disk0.img", "disk1.img", "disk2.img", "disk3.img"],
  sparse: "sparse.img",
};

Deno.test("suiteRows skips the Proxmox rows, with the reason, when its vma is absent", () => {
  const rows = suiteRows(["vma"], INPUTS);
  const pve = rows.filter((r) => r.id.startsWith("pve-"));
  assert.deepEqual(pve.map((r) => r.id), [
    "pve-create",
    "pve-create-zstd",
    "pve-create-zstd-t0",
    "pve-verify",
    "pve-extract",
  ]);
  for (const row of pve) {
    assert.equal(row.skip, "skipped: Proxmox vma not found (--proxmox-vma)");
    assert.equal(row.kind, "baseline");
  }
});

Deno.test("suiteRows runs Proxmox's vma like vmakit: same input, fsynced output", () => {
  const rows = suiteRows(["vma"], INPUTS, { proxmox: { command: ["/p/vma"] }, threads: 8 });
  const script = (id: string) => rows.find((r) => r.id === id)?.script;
  assert.equal(
    script("pve-create"),
    "/p/vma create archive-pve.vma -d format=raw:drive-scsi0=raw.img && sync archive-pve.vma",
  );
  assert.equal(script("pve-verify"), "/p/vma verify archive.vma");
  assert.equal(
    script("pve-extract"),
    "/p/vma extract archive.vma extract-pve && sync extract-pve/disk-drive-scsi0.raw",
  );
  assert.match(script("pve-create-zstd")!, /zstd -q --threads=1 -3 -c < pve\.fifo/);
  assert.match(script("pve-create-zstd")!, /\/p\/vma create pve\.fifo /);
  assert.match(script("pve-create-zstd-t0")!, /zstd -q -T0 -3 /);
  assert.match(script("create-zstd-threads")!, /create --compress zstd --threads 8 /);
  assert.equal(rows.find((r) => r.id === "pve-create")?.skip, undefined);
});

Deno.test("suiteTargets holds the issue 15 ratios against Proxmox's vma", () => {
  const targets = suiteTargets(QUICK_SIZES);
  const bound = (id: string) => {
    const t = targets.find((t) => t.id === id);
    return [t?.row, t?.baseline, t?.maxRatio];
  };
  assert.deepEqual(bound("pve-create"), ["create-file", "pve-create", 0.6]);
  assert.deepEqual(bound("pve-extract"), ["extract", "pve-extract", 0.6]);
  assert.deepEqual(bound("pve-verify"), ["verify", "pve-verify", 1]);
  assert.deepEqual(bound("pve-create-zstd"), ["create-zstd", "pve-create-zstd", 0.8]);
  assert.deepEqual(bound("pve-create-zstd-threads"), [
    "create-zstd-threads",
    "pve-create-zstd-t0",
    1,
  ]);
  assert.deepEqual(bound("create-qcow2"), ["create-qcow2", "create-file", 1.2]);
});
