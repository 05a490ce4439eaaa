// A bounded, seeded run of the image readers' fuzzer
// (tests/image/_image_fuzz_main.ts) in a child process: a case that hangs is
// caught by the watchdog here, and the run's memory is measured apart.
import assert from "node:assert/strict";
import { qemuMissing } from "../_disk_image_helpers.ts";
import { runJsonlChild } from "../_jsonl_child.ts";

const CASES = Number(Deno.env.get("VMAKIT_IMAGE_FUZZ_CASES") ?? 2000);
const SEED = Number(Deno.env.get("VMAKIT_IMAGE_FUZZ_SEED") ?? 20261202);
/** No output for this long means a case hung (a hang detector, not a speed check). */
const WATCHDOG_MS = 60_000;
const main = new URL("./_image_fuzz_main.ts", import.meta.url).pathname;

interface CaseLine {
  case: number;
  base: string;
  target: string;
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

Deno.test({
  name: `image fuzz: ${CASES} mutated qcow2 and VMDK images end in a read or a documented error`,
  ignore: qemuMissing !== undefined,
  async fn() {
    const { lines, hung, stderr, code } = await runJsonlChild<CaseLine | DoneLine>(
      ["run", "-A", main, "--cases", String(CASES), "--seed", String(SEED)],
      {
        watchdogMs: WATCHDOG_MS,
        onHang: (lines) => {
          const last = lines.at(-1);
          const next = last && "case" in last ? last.case + 1 : 0;
          return `case ${next} hung; reproduce: deno run -A ${main} --seed ${SEED} --case ${next}`;
        },
      },
    );
    assert.equal(hung, undefined, hung);
    const cases = lines.filter((l): l is CaseLine => "case" in l);
    const bugs = cases.filter((c) => c.kind === "bug");
    assert.equal(
      bugs.length,
      0,
      bugs.slice(0, 5).map((b) =>
        `case ${b.case} (${b.base}, ${b.target}: ${b.steps.join("; ")}): ${b.message}\n` +
        `  reproduce: deno run -A ${main} --seed ${SEED} --case ${b.case}\n${b.stack}`
      ).join("\n"),
    );
    assert.equal(code, 0, stderr);
    const done = lines.find((l): l is DoneLine => "done" in l);
    assert.ok(done, "the fuzzer did not finish");
    assert.equal(cases.length, CASES);
    console.log(
      `${CASES} cases: ${done.ok} read, ${done.error} documented errors; peak RSS ${
        Math.round(done.rssPeak / 2 ** 20)
      } MiB`,
    );
    // Worth something only if the mutations reach deep: reads, and errors of every class.
    assert.ok(done.ok > CASES / 10, "too few cases read through");
    for (
      const prefix of ["SyntaxError: Corrupt", "TypeError: Unsupported", "RangeError: Oversized"]
    ) {
      assert.ok(cases.some((c) => c.message?.startsWith(prefix)), `no case ended in ${prefix}`);
    }
    assert.ok(
      cases.some((c) => /decompress/.test(c.message ?? "")),
      "no case reached a compressed cluster or grain",
    );
    assert.ok(done.rssPeak < 300 * 2 ** 20, `peak RSS ${done.rssPeak}`);
  },
});
