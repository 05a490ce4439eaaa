// `vma` usage, help, version and usage errors, and the permission set of the
// compiled binary.
import assert from "node:assert/strict";
import { fixtureDir, ROOT, vma } from "../_cli_run.ts";
import { USAGE, VERSION } from "../../src/cli/_usage.ts";
import { PERMISSIONS } from "../../tools/compile.ts";

const COMMANDS = ["list", "config", "create", "extract", "verify"];

/** The lines of `text` wider than 80 columns. */
function wide(text: string): string[] {
  return text.split("\n").filter((line) => line.length > 80);
}

Deno.test("vma usage is Proxmox's with vmakit's options and commands, in at most 80 columns", () => {
  assert.equal(
    USAGE,
    `usage: vma command [command options]

vma list <filename> [--json]
vma config <filename> [-c <config>]
vma create <filename> [-v] [-c <config>] [--vm-config <file>]
           [-d format=<format>:<device name>=<path> [-d ...]]
vma extract <filename> [-v] [-d <drive-list>] [-r <fifo>] <targetdir>
vma verify <filename> [-v]
vma cat [--tmpdir <dir>] <filename> <device>
vma repack [--ordered] [--uuid <uuid>] [--ctime <time>]
           [--compress zstd|gzip|none] <in> <out>
vma serve [--socket <path> | --listen <host>:<port>] <archive>
`,
  );
  assert.deepEqual(wide(USAGE), []);
});

Deno.test("vma --help and every command's --help fit in 80 columns", async () => {
  for (const args of [["--help"], ...COMMANDS.map((c) => [c, "--help"])]) {
    const r = await vma(args);
    assert.equal(r.code, 0);
    assert.ok(r.stdout.length > 100, r.stdout);
    assert.deepEqual(wide(r.stdout), [], args.join(" "));
  }
});

Deno.test("vma help <command> prints the command's help, not the general one", async () => {
  for (const command of COMMANDS) {
    const r = await vma(["help", command]);
    assert.equal(r.code, 0);
    assert.equal(r.stderr, "");
    assert.equal(r.stdout, (await vma([command, "--help"])).stdout);
    assert.ok(r.stdout.startsWith(`usage: vma ${command} <filename>`), r.stdout);
  }
  const r = await vma(["help", "frob"]);
  assert.equal(r.code, 2);
  assert.ok(r.stderr.startsWith("vma: unknown command 'frob'\n"), r.stderr);
});

Deno.test("vma create --help says what disk<N> counts and the --vmid range", async () => {
  const help = (await vma(["create", "--help"])).stdout;
  const flat = help.replace(/\s+/g, " ");
  assert.match(
    flat,
    /called disk<N>, where N is its position among the -d options: disk0 for the first, disk1 for the second/,
  );
  assert.match(flat, /<vmid> is a number from 100 to 999999999/);
  assert.match(flat, /--vm-config <file> the VM's config as Proxmox keeps it/);
  assert.doesNotMatch(help, /N counts from 0/);
});

Deno.test("vma without a command or with an unknown one prints the usage on stderr, status 2", async () => {
  for (const args of [[], ["frob"], ["--frob"]]) {
    const r = await vma(args);
    assert.equal(r.code, 2);
    assert.equal(r.stdout, "");
    assert.ok(r.stderr.endsWith(USAGE), r.stderr);
    assert.match(r.stderr, /^vma: (missing command|unknown command '.*')\n/);
  }
});

Deno.test("vma --help prints the usage and more on stdout, status 0", async () => {
  for (const flag of ["--help", "-h", "help"]) {
    const r = await vma([flag]);
    assert.equal(r.code, 0);
    assert.ok(r.stdout.startsWith(USAGE));
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

for (const command of COMMANDS) {
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
    ["create", "a.vma", "--threads", "-1"],
    "option '--threads' needs a value (or use --threads=-...)",
  ],
  [
    ["create", "d", "--vmid", "abc"],
    "invalid --vmid 'abc': a VM id is a number from 100 to 999999999",
  ],
  [
    ["create", "a.vma", "--vm-config", "100.conf", "--make-config"],
    "--vm-config and --make-config both give qemu-server.conf: use one",
  ],
  [
    ["create", "a.vma", "--vm-config", "100.conf", "-c", "x/qemu-server.conf"],
    "--vm-config and -c 'x/qemu-server.conf' both give qemu-server.conf: use one",
  ],
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
    const lines = r.stderr.trimEnd().split("\n");
    assert.equal(lines[0], `vma: ${message}`);
    assert.match(lines[1], new RegExp(`^usage: vma ${args[0]} `));
    assert.equal(lines.at(-1), `Try 'vma ${args[0]} --help' for more.`);
    assert.deepEqual(wide(r.stderr), []);
  });
}

Deno.test("vma runs create, list, verify and extract with only the compiled binary's permissions", async () => {
  const config = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`));
  assert.match(config.tasks.compile, /tools\/compile\.ts/);
  const permissions = [...PERMISSIONS];
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
