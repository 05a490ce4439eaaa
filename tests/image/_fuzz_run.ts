// The bounded, seeded run both image fuzz tests make: the fuzzer's main in a
// child process (a case that hangs is caught by the watchdog, the run's memory
// is measured apart), and the checks every image fuzz run must pass.
import assert from "node:assert/strict";
import { runJsonlChild } from "../_jsonl_child.ts";

/** No output for this long means a case hung (a hang detector, not a speed check). */
const WATCHDOG_MS = 60_000;

/** One case's line of a fuzzer's output. */
export interface FuzzCase {
  case: number;
  base: string;
  steps: string[];
  kind: "ok" | "error" | "bug";
  message?: string;
  stack?: string;
}

interface DoneLine {
  done: true;
  ok: number;
  error: number;
  bug: number;
  rssPeak: number;
}

/**
 * Runs `main` for `cases` cases from `seed` and checks the run: no hang, no
 * bug (each shown by `describe`), every case reported, a tenth read through,
 * errors of every class, peak RSS under 300 MiB. Returns the cases for the
 * caller's own checks.
 */
export async function runImageFuzz<C extends FuzzCase>(
  main: string,
  cases: number,
  seed: number,
  describe: (c: C) => string,
): Promise<C[]> {
  const { lines, hung, stderr, code } = await runJsonlChild<C | DoneLine>(
    ["run", "-A", main, "--cases", String(cases), "--seed", String(seed)],
    {
      watchdogMs: WATCHDOG_MS,
      onHang: (lines) => {
        const last = lines.at(-1);
        const next = last && "case" in last ? last.case + 1 : 0;
        return `case ${next} hung; reproduce: deno run -A ${main} --seed ${seed} --case ${next}`;
      },
    },
  );
  assert.equal(hung, undefined, hung);
  const all = lines.filter((l): l is C => "case" in l);
  const bugs = all.filter((c) => c.kind === "bug");
  assert.equal(
    bugs.length,
    0,
    bugs.slice(0, 5).map((b) =>
      `case ${b.case} (${describe(b)}): ${b.message}\n` +
      `  reproduce: deno run -A ${main} --seed ${seed} --case ${b.case}\n${b.stack}`
    ).join("\n"),
  );
  assert.equal(code, 0, stderr);
  const done = lines.find((l): l is DoneLine => "done" in l);
  assert.ok(done, "the fuzzer did not finish");
  assert.equal(all.length, cases);
  console.log(
    `${cases} cases: ${done.ok} read, ${done.error} documented errors; peak RSS ${
      Math.round(done.rssPeak / 2 ** 20)
    } MiB`,
  );
  // Worth something only if the mutations reach deep: reads, and errors of every class.
  assert.ok(done.ok > cases / 10, "too few cases read through");
  for (
    const prefix of ["SyntaxError: Corrupt", "TypeError: Unsupported", "RangeError: Oversized"]
  ) {
    assert.ok(all.some((c) => c.message?.startsWith(prefix)), `no case ended in ${prefix}`);
  }
  assert.ok(done.rssPeak < 300 * 2 ** 20, `peak RSS ${done.rssPeak}`);
  return all;
}
