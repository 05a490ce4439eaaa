// `vma` usage, help, version and usage errors, and the permission set of the
// compiled binary.
import assert from "node:assert/strict";
import { fixtureDir, ROOT, vma } from "../_cli_run.ts";
import { USAGE, VERSION } from "../../src/cli/_usage.ts";

const PROXMOX_USAGE = `usage: vma command [command options]

vma list <filename>
vma config <filename> [-c <config>]
vma create <filename> [-c <config>] [-d format=<format>:<device name>=<path> [-d ...]]
vma extract <filename> [-d <drive-list>] [-r <fifo>] <targetdir>
vma verify <filename> [-v]
`;

Deno.test("vma usage text is Proxmox's, word for word", () => {
  assert.equal(USAGE, PROXMOX_USAGE);
});

Deno.test("vma without a command or with an unknown one prints the usage on stderr, status 2", async () => {
  for (const args of [[], ["frob"], ["--frob"]]) {
    const r = await vma(args);
    assert.equal(r.code, 2);
    assert.equal(r.stdout, "");
    assert.ok(r.stderr.endsWith(PROXMOX_USAGE), r.stderr);
    assert.match(r.stderr, /^vma: (missing command|unknown command '.*')\n/);
  }
});

Deno.test("vma --help prints the usage and more on stdout, status 0", async () => {
  for (const flag of ["--help", "-h", "help"]) {
    const r = await vma([flag]);
    assert.equal(r.code, 0);
    assert.ok(r.stdout.startsWith(PROXMOX_USAGE));
    assert.match(r.stdout, /Exit status: 0 success, 1 failure, 2 usage error/);
    assert.equal(r.stderr, "");
  }
});

Deno.test("vma --version prints the version of deno.json", async () => {
  const config = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`));
  assert.equal(VERSION, config.version);
  const r = await vma(["--version"]);
  assert.equal(r.stdout, `vma (vmakit) ${config.version}\n`);
  assert.equal(r.code, 0);
});

for (const command of ["list", "config", "create", "extract", "verify"]) {
  Deno.test(`vma ${command} --help prints the command's help on stdout`, async () => {
    for (const flag of ["--help", "-h"]) {
      const r = await vma([command, flag]);
      assert.equal(r.code, 0);
      assert.equal(r.stderr, "");
      assert.ok(r.stdout.startsWith(`usage: vma ${command} <filename>`), r.stdout);
    }
  });
}

const usageErrors: [string[], string][] = [
  [["list"], "missing <filename>"],
  [["list", "a", "b"], "unexpected argument 'b'"],
  [["list", "-x", "a"], "unknown option '-x'"],
  [["config"], "missing <filename>"],
  [["config", "a", "-c"], "option '-c' needs a value"],
  [["config", "a", "b"], "unexpected argument 'b'"],
  [["verify"], "missing <filename>"],
  [["verify", "--quick", "a"], "unknown option '--quick'"],
  [["extract", "a"], "missing <targetdir>"],
  [["extract"], "missing <filename> and <targetdir>"],
  [["extract", "a", "b", "c"], "unexpected argument 'c'"],
  [["extract", "-d"], "option '-d' needs a value"],
  [["create"], "missing <filename>"],
  [["create", "a.vma", "-c"], "option '-c' needs a value"],
  [["create", "a.vma", "--bogus"], "unknown option '--bogus'"],
  [
    ["create", "-d", "format=raw:x", "a.vma", "y"],
    "Unexpected extra argument - specify all devices via '-d'",
  ],
];
for (const [args, message] of usageErrors) {
  Deno.test(`vma ${args.join(" ")} is a usage error: ${message}`, async () => {
    const r = await vma(args);
    assert.equal(r.code, 2);
    assert.equal(r.stdout, "");
    const lines = r.stderr.split("\n");
    assert.equal(lines[0], `vma: ${message}`);
    assert.match(lines[1], new RegExp(`^usage: vma ${args[0]} `));
    assert.equal(lines[2], `Try 'vma ${args[0]} --help' for more.`);
  });
}

Deno.test("vma runs create, list, verify and extract with only the compiled binary's permissions", async () => {
  const config = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`));
  const task: string = config.tasks.compile;
  const permissions = task.split(/\s+/).filter((w) => w.startsWith("--allow-"));
  assert.ok(permissions.length > 0);
  assert.ok(!permissions.includes("--allow-all"));
  const dir = await fixtureDir();
  try {
    const opts = { cwd: dir, permissions, env: { SOURCE_DATE_EPOCH: "1693927761" } };
    const c = await vma([
      "create",
      "p.vma.zst",
      "-c",
      "qemu-server.conf",
      "-d",
      "format=raw:drive-scsi0=disk0.raw",
    ], opts);
    assert.equal(c.code, 0, c.stderr);
    const l = await vma(["list", "p.vma.zst"], opts);
    assert.ok(l.stdout.endsWith("\nCTIME: Tue Sep  5 15:29:21 2023\n"), l.stdout);
    const v = await vma(["verify", "p.vma.zst"], opts);
    assert.equal(v.code, 0, v.stderr);
    const x = await vma(["extract", "p.vma.zst", "out"], opts);
    assert.equal(x.code, 0, x.stderr);
    const e = await vma(["create", "exec:cat > e.vma", "-c", "qemu-server.conf"], opts);
    assert.equal(e.code, 0, e.stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
