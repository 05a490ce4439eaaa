// runJsonlChild (tests/_jsonl_child.ts), the fuzz tests' child runner: it
// parses the JSON lines, and its watchdog kills a child that stops reporting.
import assert from "node:assert/strict";
import { join } from "node:path";
import { runJsonlChild } from "./_jsonl_child.ts";

async function script(text: string): Promise<{ path: string; dir: string }> {
  const dir = await Deno.makeTempDir({ prefix: "vmakit-jsonl-" });
  const path = join(dir, "child.ts");
  await Deno.writeTextFile(path, text);
  return { path, dir };
}

Deno.test("runJsonlChild parses the lines, the exit status and stderr", async () => {
  const { path, dir } = await script(
    'console.log(JSON.stringify({ n: 1 }));\nconsole.log("");\n' +
      'console.log(JSON.stringify({ n: 2 }));\nconsole.error("said");\nDeno.exit(3);\n',
  );
  try {
    const run = await runJsonlChild<{ n: number }>(["run", path], {
      watchdogMs: 60_000,
      onHang: () => "hung",
    });
    assert.deepEqual(run.lines, [{ n: 1 }, { n: 2 }]);
    assert.equal(run.hung, undefined);
    assert.equal(run.code, 3);
    assert.equal(run.stderr, "said\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("runJsonlChild kills a child that stops reporting (a busy loop)", async () => {
  const { path, dir } = await script(
    "console.log(JSON.stringify({ case: 0 }));\nfor (;;) {}\n",
  );
  try {
    const run = await runJsonlChild<{ case: number }>(["run", path], {
      watchdogMs: 2000,
      onHang: (lines) => `case ${lines.length} hung after ${JSON.stringify(lines)}`,
    });
    assert.equal(run.hung, 'case 1 hung after [{"case":0}]');
    assert.deepEqual(run.lines, [{ case: 0 }]);
    assert.notEqual(run.code, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
