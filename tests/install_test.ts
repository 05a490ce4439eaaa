// The library and the CLI used from outside the checkout, without its
// deno.json: imported by path and by file URL, installed with `deno install
// -g`, and run for the first time with an empty Deno cache (which must fetch
// nothing: the library and CLI import no npm package, the test-only ones such
// as fast-check and fflate included).
import assert from "node:assert/strict";
import { CLI, ROOT } from "./_cli_run.ts";

const decoder = new TextDecoder();

async function deno(
  args: string[],
  cwd: string,
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    cwd,
    env: { NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** A script that writes a small archive and reads it back through `specifier`. */
function roundTripScript(specifier: string): string {
  return `import { VmaReader, VmaWriter } from ${JSON.stringify(specifier)};
const writer = new VmaWriter();
writer.addConfig("qemu-server.conf", "memory: 512\\n");
const device = writer.addDevice("drive-scsi0", 65536);
const archive = new Response(writer.readable).bytes();
await ReadableStream.from([new Uint8Array(65536).fill(7)]).pipeTo(device.writable);
await writer.close();
const reader = new VmaReader(ReadableStream.from([await archive]));
const header = await reader.header();
let sum = 0;
for await (const c of reader.clusters()) sum += c.data.reduce((a, b) => a + b, 0);
console.log(header.devices[0].name, sum);
`;
}

for (
  const [how, specifier] of [
    ["an absolute path", `${ROOT}mod.ts`],
    ["a file: URL", new URL("../mod.ts", import.meta.url).href],
  ]
) {
  Deno.test(`mod.ts imports by ${how} from outside the checkout, with no config`, async () => {
    const dir = await Deno.makeTempDir();
    try {
      await Deno.writeTextFile(`${dir}/main.ts`, roundTripScript(specifier));
      const r = await deno(["run", "--no-config", "--no-lock", "main.ts"], dir);
      assert.equal(r.stderr.replace(/^.*Download.*\n/gm, ""), "");
      assert.equal(r.stdout, `drive-scsi0 ${7 * 65536}\n`);
      assert.equal(r.code, 0);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("deno install -g of the checkout's cli.ts gives a working vma, without --config", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const r = await deno(["install", "--root", dir, "-g", "-A", "-n", "vma", CLI], dir);
    assert.equal(r.code, 0, r.stderr);
    const bin = Deno.build.os === "windows" ? `${dir}/bin/vma.cmd` : `${dir}/bin/vma`;
    const out = await new Deno.Command(bin, { args: ["--version"], cwd: dir, stdout: "piped" })
      .output();
    assert.match(decoder.decode(out.stdout), /^vma \(vmakit\) \d+\.\d+\.\d+/);
    assert.equal(out.code, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the module graphs of cli.ts and mod.ts hold no npm package", async () => {
  for (const entry of ["cli.ts", "mod.ts", "deno.ts"]) {
    const r = await deno(["info", "--json", entry], ROOT);
    assert.equal(r.code, 0, r.stderr);
    // (Its npmPackages lists the lockfile's packages, used or not: not a test.)
    const info = JSON.parse(r.stdout) as { modules: { specifier: string }[] };
    const foreign = info.modules.map((m) => m.specifier).filter((s) => !s.startsWith("file:"));
    // node: built-ins are part of the runtime; npm:, jsr: and https: would be fetched.
    assert.deepEqual(foreign.filter((s) => !s.startsWith("node:")), [], entry);
  }
});

Deno.test("a first run of the CLI with an empty Deno cache downloads nothing", async () => {
  const cache = await Deno.makeTempDir();
  try {
    const r = await deno(["run", "-A", CLI, "--version"], ROOT, { DENO_DIR: cache });
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /Download/);
    assert.equal(r.stderr, "");
    // Deno installs every npm package of the lockfile as soon as one is needed:
    // none may be, or fast-check (test-only) would be fetched too.
    const fetched: string[] = [];
    try {
      for await (const e of Deno.readDir(`${cache}/npm/registry.npmjs.org`)) fetched.push(e.name);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    assert.deepEqual(fetched, []);
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});
