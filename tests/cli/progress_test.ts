// The progress bar: drawn on stderr only when stderr is a terminal (here a
// pseudo-terminal from util-linux `script`), never with -v or --no-progress,
// and never on stdout.
import assert from "node:assert/strict";
import { CLI, fixtureDir, have } from "../_cli_run.ts";
import { formatBar } from "../../src/cli/_progress.ts";

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

Deno.test("formatBar fits every width, dropping whole fields (ETA first), never cutting one", () => {
  const field =
    /^(create \[[#-]{10,40}\])?( *\d+%)( [\d.]+ [KMGTP]?i?B \/ [\d.]+ [KMGTP]?i?B)?( {2}[\d.]+ [KMGTP]?i?B\/s)?( {2}ETA [\d:-]+)?$/;
  const seen = new Set<number>();
  for (let columns = 1; columns <= 200; columns++) {
    for (const [done, total, seconds] of [[0, 0, 0], [3 * 2 ** 30, 64 * 2 ** 30, 7.5]]) {
      const bar = formatBar("create", done, total, seconds, columns);
      assert.ok(bar.length <= Math.max(0, columns - 1), `${columns}: ${bar}`);
      if (bar === "") continue;
      const m = field.exec(bar.replace(/^create(?= +\d+%$)/, ""));
      assert.ok(m, `${columns}: ${JSON.stringify(bar)}`);
      seen.add([m[1], m[3], m[4], m[5]].filter((f) => f !== undefined).length);
    }
  }
  // Every stage was reached: only the percentage up to the full bar with ETA.
  assert.deepEqual([...seen].sort(), [0, 1, 2, 3, 4]);
  // At 80 columns the whole bar fits; narrower, the ETA, the rate, the bytes go.
  const at = (columns: number) => formatBar("create", 3 * 2 ** 30, 64 * 2 ** 30, 7.5, columns);
  assert.equal(at(80), `create [#${"-".repeat(23)}]   5% 3.00 GiB / 64.0 GiB  410 MiB/s  ETA 2:33`);
  assert.equal(at(60), `create [#${"-".repeat(13)}]   5% 3.00 GiB / 64.0 GiB  410 MiB/s`);
  assert.equal(at(40), `create [#${"-".repeat(24)}]   5%`);
  assert.equal(at(12), "create   5%");
});

Deno.test({
  name: "vma create interrupted by SIGINT on a terminal prints its message on a line of its own",
  ignore: !canPty,
  async fn() {
    // A 4 GiB sparse disk read without SEEK_HOLE (no FFI) keeps the bar up long
    // enough; the shell waits for the temporary archive, then interrupts.
    await Deno.writeFile(`${dir}/big.raw`, new Uint8Array(0));
    await Deno.truncate(`${dir}/big.raw`, 4 * 2 ** 30);
    try {
      const out = await new Deno.Command("script", {
        args: [
          "-qec",
          `${Deno.execPath()} run --allow-read --allow-write --allow-env --allow-run ${CLI} ` +
          `create int.vma -d format=raw:big.raw & ` +
          `until ls -a | grep -q 'int\\.vma\\.vma-tmp'; do sleep 0.05; done; sleep 0.5; kill -INT $!; wait $!`,
          "/dev/null",
        ],
        cwd: dir,
        env: { TZ: "UTC" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const screen = new TextDecoder().decode(out.stdout);
      assert.match(screen, /\rcreate \[[#-]+\] /, JSON.stringify(screen.slice(-200)));
      // Erased (carriage return, erase to end of line) right before the message.
      assert.ok(
        screen.includes("\r\x1b[Kvma: interrupted by SIGINT\r\n"),
        JSON.stringify(screen.slice(-200)),
      );
      assert.ok(!Deno.readDirSync(dir).some((e) => e.name.startsWith("int.vma")));
    } finally {
      await Deno.remove(`${dir}/big.raw`);
    }
  },
});
