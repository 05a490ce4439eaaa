/**
 * The VMA reader fuzzer (`deno task fuzz`): mutates valid archives and feeds
 * each to `verifyVma` and `extractVma`. Every case must end in success or a
 * `VmaFormatError` (the same for both), within the per-case timeout, without
 * a write outside a device or a memory blow-up.
 *
 * ```sh
 * deno task fuzz                          # 20,000 cases, random seed
 * deno task fuzz --cases 100000 --seed 7  # a longer run
 * deno task fuzz --seed 7 --case 1234     # reproduce one case, verbosely
 * deno task fuzz --target compress        # zstd/gzip/lzop framing and inflate instead
 * ```
 *
 * With `--target compress` the cases are mutated zstd (frames, skippable
 * frames), gzip (members), lzop and raw DEFLATE/zlib streams, some of them
 * bombs, fed to the CLI's decoders and `_inflate.ts`: each must decode or
 * fail with the decoder's one-line error.
 *
 * Prints a summary of outcomes by error message (numbers shown as N) and
 * exits 1 when a case misbehaved. `--jsonl` prints one JSON line per case
 * instead (used by tests/fuzz_test.ts).
 *
 * @module
 */
import {
  baseArchives,
  compressedBases,
  type CompressedMutant,
  makeCase,
  makeCompressedCase,
  messageKind,
  type Mutant,
  type Outcome,
  runCase,
  runCompressedCase,
} from "./_fuzz.ts";

interface Options {
  cases: number;
  seed: number;
  start: number;
  single: boolean;
  jsonl: boolean;
  timeoutMs: number;
  memoryLimitMb: number;
  target: "vma" | "compress";
}

function parseArgs(args: string[]): Options {
  const options: Options = {
    cases: 20_000,
    seed: crypto.getRandomValues(new Uint32Array(1))[0],
    start: 0,
    single: false,
    jsonl: false,
    timeoutMs: 10_000,
    memoryLimitMb: 1024,
    target: "vma",
  };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const value = (): number => {
      const n = Number(args[++i]);
      if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${arg} needs a whole number`);
      return n;
    };
    if (arg === "--cases") options.cases = value();
    else if (arg === "--seed") options.seed = value() >>> 0;
    else if (arg === "--start") options.start = value();
    else if (arg === "--case") {
      options.start = value();
      options.cases = 1;
      options.single = true;
    } else if (arg === "--timeout") options.timeoutMs = value();
    else if (arg === "--memory-limit") options.memoryLimitMb = value();
    else if (arg === "--jsonl") options.jsonl = true;
    else if (arg === "--target") {
      const target = args[++i];
      if (target !== "vma" && target !== "compress") {
        throw new Error(`--target needs "vma" or "compress", not "${target}"`);
      }
      options.target = target;
    } else throw new Error(`Unknown argument "${arg}"`);
  }
  return options;
}

function withTimeout(run: Promise<Outcome>, ms: number): Promise<Outcome> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<Outcome>((resolve) => {
    timer = setTimeout(
      () => resolve({ kind: "bug", message: `hang: no result after ${ms} ms` }),
      ms,
    );
  });
  return Promise.race([run, timeout]).finally(() => clearTimeout(timer));
}

async function main(): Promise<number> {
  const options = parseArgs(Deno.args);
  const write = (line: string) => console.log(line);
  // Both targets give cases of the same shape: bytes, steps, a chunk size.
  const compress = options.target === "compress";
  const vmaBases = compress ? [] : await baseArchives();
  const compressed = compress ? await compressedBases() : [];
  const bases: { name: string; bytes: Uint8Array }[] = compress ? compressed : vmaBases;
  const make = (index: number): Mutant =>
    compress
      ? makeCompressedCase(compressed, options.seed, index)
      : makeCase(vmaBases, options.seed, index);
  const run = (mutant: Mutant): Promise<Outcome> =>
    compress ? runCompressedCase(mutant as CompressedMutant) : runCase(mutant);
  const rssBase = Deno.memoryUsage().rss;
  let rssPeak = rssBase;
  const counts = new Map<string, number>();
  const bugs: { index: number; base: string; steps: string[]; outcome: Outcome }[] = [];
  const started = performance.now();
  const reproduce = (index: number) =>
    `deno task fuzz${compress ? " --target compress" : ""} --seed ${options.seed} --case ${index}`;
  if (!options.jsonl && !options.single) {
    console.error(
      `fuzz: ${options.cases} cases from ${options.start}, seed ${options.seed}, bases: ${
        bases.map((b) => `${b.name} (${b.bytes.length} bytes)`).join("; ")
      }`,
    );
  }
  for (let index = options.start; index < options.start + options.cases; index++) {
    let mutant: Mutant;
    try {
      mutant = make(index);
    } catch (error) {
      // A bug of the fuzzer itself: report it like a case, with its seed and index.
      const e = error as Error;
      mutant = {
        base: "(mutation failed)",
        bytes: new Uint8Array(0),
        steps: [],
        chunk: 1,
        byteStream: false,
      };
      const outcome: Outcome = {
        kind: "bug",
        message: `the mutation failed: ${e.message}`,
        stack: e.stack,
      };
      counts.set("BUG", (counts.get("BUG") ?? 0) + 1);
      bugs.push({ index, base: mutant.base, steps: [], outcome });
      if (options.jsonl) {
        write(
          JSON.stringify({
            case: index,
            seed: options.seed,
            base: mutant.base,
            steps: [],
            chunk: 1,
            byteStream: false,
            kind: "bug",
            message: outcome.message,
            stack: e.stack,
            rss: 0,
          }),
        );
      }
      continue;
    }
    let outcome = await withTimeout(run(mutant), options.timeoutMs);
    const rss = Deno.memoryUsage().rss;
    rssPeak = Math.max(rssPeak, rss);
    if (outcome.kind !== "bug" && rss - rssBase > options.memoryLimitMb * 2 ** 20) {
      outcome = {
        kind: "bug",
        message: `memory: rss grew by ${Math.round((rss - rssBase) / 2 ** 20)} MiB`,
      };
    }
    const key = outcome.kind === "ok"
      ? "success"
      : outcome.kind === "format"
      ? compress
        ? `error: ${messageKind(outcome.message.replace(/0x[0-9a-f]+/g, "0xH"))}`
        : `VmaFormatError: ${messageKind(outcome.message)}`
      : "BUG";
    counts.set(key, (counts.get(key) ?? 0) + 1);
    if (outcome.kind === "bug") {
      bugs.push({ index, base: mutant.base, steps: mutant.steps, outcome });
    }
    if (options.jsonl) {
      write(JSON.stringify({
        case: index,
        seed: options.seed,
        base: mutant.base,
        steps: mutant.steps,
        chunk: mutant.chunk,
        byteStream: mutant.byteStream,
        kind: outcome.kind,
        message: outcome.kind === "ok" ? undefined : outcome.message,
        stack: outcome.kind === "bug" ? outcome.stack : undefined,
        rss,
      }));
    } else if (options.single) {
      write(
        `case ${index} (seed ${options.seed}), base "${mutant.base}", ${mutant.bytes.length} bytes in chunks of ${mutant.chunk}${
          mutant.byteStream ? " (byte stream)" : ""
        }`,
      );
      for (const step of mutant.steps) write(`  - ${step}`);
      write(outcome.kind === "ok" ? "success" : `${outcome.kind}: ${outcome.message}`);
      if (outcome.kind === "bug" && outcome.stack) write(outcome.stack);
    }
    if (outcome.kind === "bug" && outcome.message.startsWith("hang")) break; // the case may still run
  }
  const seconds = (performance.now() - started) / 1000;
  if (options.jsonl) {
    write(JSON.stringify({ done: true, seconds, rssBase, rssPeak }));
  } else if (!options.single) {
    const total = [...counts.values()].reduce((a, b) => a + b, 0);
    write(`fuzz: ${total} cases in ${seconds.toFixed(1)} s, seed ${options.seed}`);
    write(
      `peak rss ${Math.round(rssPeak / 2 ** 20)} MiB (${
        Math.round((rssPeak - rssBase) / 2 ** 20)
      } MiB over the start)`,
    );
    for (const [key, n] of [...counts].sort((a, b) => b[1] - a[1])) {
      write(`${String(n).padStart(7)}  ${key}`);
    }
    for (const bug of bugs.slice(0, 20)) {
      write(
        `\nBUG in case ${bug.index} (base "${bug.base}"): ${
          bug.outcome.kind === "bug" ? bug.outcome.message : ""
        }`,
      );
      for (const step of bug.steps) write(`  - ${step}`);
      write(`  reproduce: ${reproduce(bug.index)}`);
    }
  }
  return bugs.length > 0 ? 1 : 0;
}

if (import.meta.main) {
  Deno.exitCode = await main();
  // A hung case may keep the event loop alive.
  if (Deno.exitCode !== 0) Deno.exit(Deno.exitCode);
}
