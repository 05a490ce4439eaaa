// A bounded, seeded run of the fuzzer (tests/fuzz_main.ts, `deno task fuzz`).
// It runs in a child process, so a case that hangs the event loop (a busy
// loop no timer can interrupt) is caught by the watchdog here, and so its
// memory is measured apart from the other tests.
import assert from "node:assert/strict";
import { type VmaExtractTarget, VmaFormatError } from "../mod.ts";
import { baseArchives, checkingTarget, makeCase, runCase } from "./_fuzz.ts";
import { type JsonlRun, runJsonlChild } from "./_jsonl_child.ts";

const CASES = Number(Deno.env.get("VMAKIT_FUZZ_CASES") ?? 3000);
const SEED = Number(Deno.env.get("VMAKIT_FUZZ_SEED") ?? 20261124);
/** No output for this long means a case hung (a hang detector, not a speed check). */
const WATCHDOG_MS = 60_000;

interface CaseLine {
  case: number;
  seed: number;
  base: string;
  steps: string[];
  chunk: number;
  byteStream: boolean;
  kind: "ok" | "format" | "bug";
  message?: string;
  stack?: string;
  rss: number;
}

interface DoneLine {
  done: true;
  seconds: number;
  rssBase: number;
  rssPeak: number;
}

const main = new URL("./fuzz_main.ts", import.meta.url).pathname;
const root = new URL("../", import.meta.url).pathname;

function runFuzzer(args: string[]): Promise<JsonlRun<CaseLine | DoneLine>> {
  return runJsonlChild<CaseLine | DoneLine>(["run", "--allow-read", main, ...args], {
    cwd: root,
    watchdogMs: WATCHDOG_MS,
    onHang: (lines) => {
      const last = lines.at(-1);
      const next = last && "case" in last ? last.case + 1 : "the first";
      return `case ${next} hung: no result for ${
        WATCHDOG_MS / 1000
      } s; reproduce: deno task fuzz --seed ${SEED} --case ${next}`;
    },
  });
}

Deno.test(`fuzz: ${CASES} mutated archives all end in success or VmaFormatError (seed ${SEED})`, async () => {
  const { lines, hung, stderr, code } = await runFuzzer([
    "--cases",
    String(CASES),
    "--seed",
    String(SEED),
    "--jsonl",
  ]);
  const cases = lines.filter((l): l is CaseLine => "case" in l);
  const done = lines.find((l): l is DoneLine => "done" in l);
  const bugs = cases.filter((c) => c.kind === "bug");
  const report = bugs.slice(0, 10).map((b) =>
    `case ${b.case}: ${b.message}\n  base: ${b.base}\n  steps: ${
      b.steps.join("; ")
    }\n  chunk: ${b.chunk}${
      b.byteStream ? " (byte stream)" : ""
    }\n  reproduce: deno task fuzz --seed ${b.seed} --case ${b.case}${
      b.stack ? `\n${b.stack}` : ""
    }`
  ).join("\n");
  assert.equal(
    hung,
    undefined,
    hung,
  );
  assert.equal(bugs.length, 0, `${bugs.length} cases misbehaved:\n${report}`);
  assert.equal(code, 0, `the fuzzer exited with ${code}: ${stderr}`);
  assert.ok(done, "the fuzzer did not finish");
  assert.equal(cases.length, CASES);

  // The run is only worth something if the mutations reach deep into the
  // reader: successes, and errors from every phase.
  const messages = new Map<string, number>();
  for (const c of cases) {
    const key = c.kind === "ok"
      ? "success"
      : c.message!.replace(/\d+/g, "N").replace(/"[^"]*"/g, "S");
    messages.set(key, (messages.get(key) ?? 0) + 1);
  }
  for (
    const expected of [
      "success",
      "wrong vma header chechsum",
      "wrong vma extent header chechsum",
      "got wrong dev id N",
      "got wrong block address - write beyond end",
      "short vma extent (N < N)",
      "short vma extent - too many blocks",
      "vma extent error - missing blocks",
      "vma contains invalid data pointers",
    ]
  ) {
    assert.ok(messages.has(expected), `no case ended in "${expected}"`);
  }
  assert.ok(
    [...messages.keys()].some((m) => m.startsWith("found duplicated cluster")),
    "no case found a duplicated cluster",
  );
  assert.ok(
    [...messages.keys()].some((m) => m.startsWith("detected missing cluster")),
    "no case found a missing cluster",
  );
  const mib = (n: number) => Math.round(n / 2 ** 20);
  console.log(
    `fuzz: ${cases.length} cases in ${done.seconds.toFixed(1)} s; peak rss ${
      mib(done.rssPeak)
    } MiB (${mib(done.rssPeak - done.rssBase)} MiB over the start); ${
      messages.get("success") ?? 0
    } successes, ${messages.size - 1} distinct errors`,
  );
});

const COMPRESSED_CASES = Number(Deno.env.get("VMAKIT_FUZZ_COMPRESSED_CASES") ?? 500);

Deno.test(`fuzz: ${COMPRESSED_CASES} mutated zstd/gzip/lzop/deflate streams decode or fail in one line (seed ${SEED})`, async () => {
  const { lines, hung, stderr, code } = await runFuzzer([
    "--target",
    "compress",
    "--cases",
    String(COMPRESSED_CASES),
    "--seed",
    String(SEED),
    "--memory-limit",
    "512",
    "--jsonl",
  ]);
  const cases = lines.filter((l): l is CaseLine => "case" in l);
  const done = lines.find((l): l is DoneLine => "done" in l);
  const bugs = cases.filter((c) => c.kind === "bug");
  const report = bugs.slice(0, 10).map((b) =>
    `case ${b.case}: ${b.message}\n  base: ${b.base}\n  steps: ${
      b.steps.join("; ")
    }\n  chunk: ${b.chunk}\n  reproduce: deno task fuzz --target compress --seed ${b.seed} --case ${b.case}${
      b.stack ? `\n${b.stack}` : ""
    }`
  ).join("\n");
  assert.equal(hung, undefined, hung);
  assert.equal(bugs.length, 0, `${bugs.length} cases misbehaved:\n${report}`);
  assert.equal(code, 0, `the fuzzer exited with ${code}: ${stderr}`);
  assert.ok(done, "the fuzzer did not finish");
  assert.equal(cases.length, COMPRESSED_CASES);

  // Every format both decodes and fails, and the framing checks are reached.
  const seen = new Set<string>();
  for (const c of cases) {
    const format = c.base.split(" ")[0].replace("Proxmox", "lzop");
    seen.add(`${format} ${c.kind}`);
    if (c.kind === "format") seen.add(c.message!.replace(/0x[0-9a-f]+|\d+/g, "N"));
  }
  for (const format of ["zstd", "gzip", "lzop", "deflate", "zlib"]) {
    assert.ok(seen.has(`${format} ok`), `no ${format} case decoded`);
    assert.ok(seen.has(`${format} format`), `no ${format} case failed`);
  }
  for (
    const expected of [
      "zstd decompression failed - the input ends inside a frame: N bytes, the frame at offset N is cut short",
      "zstd decompression failed - unknown frame magic N at offset N (not zstd data)",
      "gzip decompression failed - unexpected end of file",
      "Invalid deflate data: the stream ends early",
    ]
  ) {
    assert.ok(seen.has(expected), `no case ended in "${expected}"`);
  }
  assert.ok(
    [...seen].some((m) =>
      m.startsWith("lzop decompression failed - Invalid lzop stream: checksum")
    ),
    "no lzop checksum mismatch",
  );
  const mib = (n: number) => Math.round(n / 2 ** 20);
  const kinds = new Set(
    cases.filter((c) => c.kind === "format").map((c) =>
      c.message!.replace(/0x[0-9a-f]+|\d+/g, "N")
    ),
  );
  console.log(
    `fuzz (compressed): ${cases.length} cases in ${done.seconds.toFixed(1)} s; peak rss ${
      mib(done.rssPeak)
    } MiB (${mib(done.rssPeak - done.rssBase)} MiB over the start); ${
      cases.filter((c) => c.kind === "ok").length
    } decoded, ${
      cases.filter((c) => c.kind === "format").length
    } clean errors of ${kinds.size} kinds`,
  );
});

Deno.test("fuzz: a case is reproduced by its seed and index alone", async () => {
  const bases = await baseArchives();
  for (const index of [0, 17, 2999]) {
    const a = makeCase(bases, SEED, index);
    const b = makeCase(bases, SEED, index);
    assert.deepEqual(b.steps, a.steps);
    assert.deepEqual(b.bytes, a.bytes);
    assert.deepEqual(await runCase(b), await runCase(a));
  }
  assert.notDeepEqual(makeCase(bases, SEED, 1).bytes, makeCase(bases, SEED + 1, 1).bytes);
});

Deno.test("fuzz: the checking sinks catch what the fuzzer looks for", async () => {
  // A check of the checker, with calls a buggy extractVma could make.
  const device = { id: 1, name: "drive-scsi0", size: 65536 + 512, vmstate: false };
  const run = async (calls: (t: VmaExtractTarget) => Promise<void>) => {
    const checking = checkingTarget(1 << 20);
    await calls(checking.target);
    checking.finish();
  };
  const block = new Uint8Array(4096);
  await run(async (t) => {
    const sink = (await t.device(device))!;
    await sink.write(0, block);
    await sink.write(65536, block.subarray(0, 512));
    await sink.close?.();
  });
  const bad: [string, (t: VmaExtractTarget) => Promise<void>][] = [
    ["past the end", async (t) => void await (await t.device(device))!.write(65536, block)],
    ["negative", async (t) => void await (await t.device(device))!.write(-4096, block)],
    ["unaligned", async (t) => void await (await t.device(device))!.write(512, block)],
    ["twice", async (t) => {
      const sink = (await t.device(device))!;
      await sink.write(0, block);
      await sink.write(0, block);
    }],
    ["not closed", async (t) => void await t.device(device)],
    ["unsafe device name", async (t) => void await t.device({ ...device, name: "../x" })],
    ["unsafe config name", async (t) => void await t.config?.({ name: "a/b", data: block })],
  ];
  for (const [what, calls] of bad) {
    await assert.rejects(run(calls), (e: Error) => !(e instanceof VmaFormatError), what);
  }
});
