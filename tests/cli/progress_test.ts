// The progress bar: drawn on stderr only when stderr is a terminal (here a
// pseudo-terminal from util-linux `script`), never with -v or --no-progress,
// and never on stdout.
import assert from "node:assert/strict";
import { CLI, fixtureDir, have } from "../_cli_run.ts";

const canPty = Deno.build.os === "linux" && have("script");
const dir = canPty ? await fixtureDir() : "";
globalThis.addEventListener("unload", () => {
  if (dir) Deno.removeSync(dir, { recursive: true });
});

/** Runs the CLI with a pseudo-terminal as stdin/stdout/stderr; returns what the terminal got. */
async function inPty(args: string): Promise<string> {
  const out = await new Deno.Command("script", {
    args: ["-qec", `${Deno.execPath()} run -A ${CLI} ${args}`, "/dev/null"],
    cwd: dir,
    env: { TZ: "UTC" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  return new TextDecoder().decode(out.stdout);
}

Deno.test({
  name: "vma verify, extract and create draw a progress bar on a terminal and erase it",
  ignore: !canPty,
  async fn() {
    for (
      const [args, label] of [
        ["verify small.vma", "verify"],
        ["extract small.vma ex-bar", "extract"],
        ["create bar.vma -d format=raw:disk0.raw", "create"],
      ]
    ) {
      const screen = await inPty(args);
      assert.match(screen, new RegExp(`\\r${label} \\[#+\\] +100% `), args);
      assert.match(screen, /ETA/);
      // Erased at the end: carriage return + erase to end of line.
      assert.ok(screen.includes("\r\x1b[K"), JSON.stringify(screen.slice(-60)));
    }
  },
});

Deno.test({
  name: "vma draws no progress bar with -v, with --no-progress, or when stderr is not a terminal",
  ignore: !canPty,
  async fn() {
    assert.doesNotMatch(await inPty("verify --no-progress small.vma"), /\[#/);
    assert.doesNotMatch(await inPty("verify -v small.vma"), /\[#/);
    assert.doesNotMatch(await inPty("verify small.vma 2>/dev/null"), /\[#/);
    // stderr to a file, not a terminal: no bar there either.
    await inPty("verify small.vma 2>err.txt");
    assert.equal(await Deno.readTextFile(`${dir}/err.txt`), "");
  },
});
