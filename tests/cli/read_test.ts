// `vma list`, `config`, `verify`, `extract` against Proxmox's reference
// outputs, compressed fixtures, stdin, and their errors.
import assert from "node:assert/strict";
import {
  CLI,
  fixtureDir,
  have,
  readOrUndefined,
  references,
  sh,
  TESTDATA,
  vma,
} from "../_cli_run.ts";

const refs = await references();
const dir = await fixtureDir();
globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(dir, { recursive: true });
  } catch {
    // gone
  }
});

// Every reference command whose output we reproduce byte for byte (stdout and
// stderr); exit statuses differ only where Proxmox dies by SIGTRAP (133 → 1).
for (const [command, ref] of refs) {
  if (command.startsWith("vma extract")) continue; // below, in a fresh directory
  Deno.test(`vma CLI reproduces Proxmox's output of '${command}'`, async () => {
    const args = command.split(" ").slice(1);
    const r = await vma(args, { cwd: dir });
    assert.equal(r.stdout, ref.stdout);
    assert.equal(r.stderr, ref.stderr);
    assert.equal(r.code, ref.status === 133 ? 1 : ref.status);
  });
}

Deno.test("vma extract -v reproduces Proxmox's output and the disks byte for byte", async () => {
  const ref = refs.get("vma extract -v small.vma ex")!;
  const r = await vma(["extract", "-v", "small.vma", "ex"], { cwd: dir });
  assert.equal(r.stderr, "");
  assert.equal(r.stdout, ref.stdout);
  assert.equal(r.code, 0);
  const names = [...Deno.readDirSync(`${dir}/ex`)].map((e) => e.name).sort();
  assert.deepEqual(names, [
    "disk-drive-scsi0.raw",
    "disk-drive-scsi1.raw",
    "qemu-server.conf",
    "qemu-server.fw",
  ]);
  assert.deepEqual(
    await Deno.readFile(`${dir}/ex/disk-drive-scsi0.raw`),
    await Deno.readFile(`${dir}/disk0.raw`),
  );
  assert.deepEqual(
    await Deno.readFile(`${dir}/ex/disk-drive-scsi1.raw`),
    await Deno.readFile(`${dir}/disk1.raw`),
  );
  assert.deepEqual(
    await Deno.readFile(`${dir}/ex/qemu-server.conf`),
    await Deno.readFile(`${dir}/qemu-server.conf`),
  );
  // Sparse: the 2 MiB of zero clusters of disk0 take no space.
  const st = await Deno.stat(`${dir}/ex/disk-drive-scsi0.raw`);
  if (st.blocks !== null) {
    assert.ok(st.blocks * 512 <= 2 * 1024 * 1024 + 65536, `blocks ${st.blocks}`);
  }
});

Deno.test("vma extract without -v prints only the DEVINFO lines", async () => {
  const r = await vma(["extract", "small.vma", "ex-quiet"], { cwd: dir });
  assert.equal(r.code, 0);
  assert.equal(
    r.stdout,
    "DEVINFO ex-quiet/tmp-disk-drive-scsi0.raw 4194304\nDEVINFO ex-quiet/tmp-disk-drive-scsi1.raw 1053184\n",
  );
  assert.equal(r.stderr, "");
});

Deno.test("vma extract -d extracts only the listed drives", async () => {
  const r = await vma(["extract", "-d", "drive-scsi1", "small.vma", "ex-d"], { cwd: dir });
  assert.equal(r.code, 0);
  assert.equal(r.stdout, "DEVINFO ex-d/tmp-disk-drive-scsi1.raw 1053184\n");
  const names = [...Deno.readDirSync(`${dir}/ex-d`)].map((e) => e.name).sort();
  assert.deepEqual(names, ["disk-drive-scsi1.raw", "qemu-server.conf", "qemu-server.fw"]);
});

Deno.test("vma extract refuses an existing target directory", async () => {
  await Deno.mkdir(`${dir}/exists`, { recursive: true });
  const r = await vma(["extract", "small.vma", "exists"], { cwd: dir });
  assert.equal(r.code, 1);
  assert.equal(r.stdout, "");
  assert.equal(r.stderr, "vma: unable to create target directory exists - File exists\n");
});

Deno.test("vma extract of a truncated archive fails and leaves no target directory", async () => {
  const r = await vma(["extract", `${TESTDATA}small-truncated.vma.gz`, `${dir}/ex-trunc`]);
  assert.equal(r.code, 1);
  assert.equal(r.stderr, "vma: restore failed - short vma extent (987200 < 1712640)\n");
  assert.equal(await readOrUndefined(`${dir}/ex-trunc`), undefined);
  assert.throws(() => Deno.statSync(`${dir}/ex-trunc`), Deno.errors.NotFound);
});

for (const fixture of ["small.vma.gz", "small.vma.zst", "small.vma.lzo"]) {
  Deno.test(`vma list and verify -v read ${fixture}, compression found by magic`, async () => {
    const list = await vma(["list", `${TESTDATA}${fixture}`]);
    assert.equal(list.stdout, refs.get("vma list small.vma")!.stdout);
    assert.equal(list.code, 0);
    const verify = await vma(["verify", "-v", `${TESTDATA}${fixture}`]);
    assert.equal(verify.stderr, "");
    assert.equal(verify.stdout, refs.get("vma verify -v small.vma")!.stdout);
    assert.equal(verify.code, 0);
  });
}

Deno.test("vma detects compression by magic, not by name", async () => {
  await Deno.copyFile(`${TESTDATA}small.vma.zst`, `${dir}/renamed.vma`);
  const r = await vma(["verify", "renamed.vma"], { cwd: dir });
  assert.equal(r.code, 0);
  assert.equal(r.stderr, "");
});

Deno.test("vma reads '-' from stdin: list, config, verify -v, extract", async () => {
  const small = await Deno.readFile(`${dir}/small.vma`);
  const list = await vma(["list", "-"], { stdin: small });
  assert.equal(list.stdout, refs.get("vma list small.vma")!.stdout);
  const config = await vma(["config", "-", "-c", "qemu-server.fw"], { stdin: small });
  assert.equal(config.stdout, "fw-config-blob\n");
  const zst = await Deno.readFile(`${TESTDATA}small.vma.zst`);
  const verify = await vma(["verify", "-v", "-"], { stdin: zst });
  assert.equal(verify.stdout, refs.get("vma verify -v small.vma")!.stdout);
  const extract = await vma(["extract", "-", `${dir}/ex-stdin`], { stdin: zst });
  assert.equal(extract.code, 0);
  assert.deepEqual(
    await Deno.readFile(`${dir}/ex-stdin/disk-drive-scsi0.raw`),
    await Deno.readFile(`${dir}/disk0.raw`),
  );
});

Deno.test({
  name:
    "vma reads from a pipe: zstd -dc x.vma.zst | vma extract - dir, and gzip -dc | vma config -",
  ignore: !have("zstd") || !have("gzip"),
  async fn() {
    const r = await sh(
      `set -e -o pipefail; zstd -dc ${TESTDATA}small.vma.zst | $VMA extract - ex-pipe; cmp ex-pipe/disk-drive-scsi1.raw disk1.raw; set +o pipefail; gzip -dc ${TESTDATA}small.vma.gz | $VMA config -`,
      dir,
    );
    assert.equal(r.stderr, "");
    assert.equal(r.code, 0);
    assert.equal(
      r.stdout,
      refs.get("vma config small.vma")!.stdout.replace(
        /^/,
        "DEVINFO ex-pipe/tmp-disk-drive-scsi0.raw 4194304\nDEVINFO ex-pipe/tmp-disk-drive-scsi1.raw 1053184\n",
      ),
    );
  },
});

Deno.test("vma config stops after the header, so a closed stdout pipe upstream is fine", async () => {
  // Only the header is read: the rest of a large stdin is not needed.
  const r = await sh(
    `cat small.vma small.vma small.vma | $VMA config - -c qemu-server.fw; echo "status \${PIPESTATUS[1]}"`,
    dir,
  );
  assert.equal(r.stdout, "fw-config-blob\nstatus 0\n");
  assert.equal(r.stderr, "");
});

Deno.test("vma verify -v and list end quietly with status 1 when stdout is closed", async () => {
  const r = await sh(
    `$VMA verify -v small.vma | true; a=\${PIPESTATUS[0]}; $VMA list small.vma | true; echo "status $a \${PIPESTATUS[0]}"`,
    dir,
  );
  assert.equal(r.stdout, "status 1 1\n");
  assert.equal(r.stderr, "");
});

Deno.test("vma list --json prints the header as JSON", async () => {
  const r = await vma(["list", "--json", "small.vma"], { cwd: dir });
  assert.equal(r.code, 0);
  const json = JSON.parse(r.stdout);
  assert.deepEqual(json, {
    uuid: json.uuid,
    ctime: "2026-11-24T14:21:54Z",
    ctimeSeconds: 1795530114,
    headerSize: json.headerSize,
    configs: [{ name: "qemu-server.conf", size: 317 }, { name: "qemu-server.fw", size: 15 }],
    devices: [
      { id: 1, name: "drive-scsi0", size: 4194304, vmstate: false },
      { id: 2, name: "drive-scsi1", size: 1053184, vmstate: false },
    ],
  });
  assert.match(json.uuid, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
});

Deno.test("vma list prints CTIME in the local time zone (TZ)", async () => {
  const r = await vma(["list", "small.vma"], { cwd: dir, env: { TZ: "America/New_York" } });
  assert.match(r.stdout, /^CTIME: Tue Nov 24 09:21:54 2026$/m);
});

Deno.test("vma reading commands report a missing file, a directory and a non-VMA file", async () => {
  const missing = await vma(["list", "nope.vma"], { cwd: dir });
  assert.equal(missing.stderr, "vma: can't open file nope.vma - No such file or directory\n");
  assert.equal(missing.code, 1);
  const directory = await vma(["verify", "."], { cwd: dir });
  assert.equal(directory.stderr, "vma: can't open file . - Is a directory\n");
  const notVma = await vma(["list", "qemu-server.conf"], { cwd: dir });
  assert.equal(notVma.stderr, "vma: can't read vma header - got EOF\n");
  const wrongMagic = await vma(["list", "disk0.raw"], { cwd: dir });
  assert.equal(wrongMagic.stderr, "vma: not a vma file - wrong magic number\n");
  const empty = await vma(["list", "-"], { stdin: new Uint8Array(0) });
  assert.equal(empty.stderr, "vma: can't read vma header - got EOF\n");
  assert.equal(empty.code, 1);
});

Deno.test("vma verify reports a corrupt compressed stream in one line", async () => {
  const zst = await Deno.readFile(`${TESTDATA}small.vma.zst`);
  const broken = zst.slice(0, 200000);
  const r = await vma(["verify", "-"], { stdin: broken });
  assert.equal(r.code, 1);
  assert.equal(r.stderr.split("\n").length, 2, r.stderr);
  // The frame scanner reports the cut frame once the decoder has used up the input.
  assert.equal(
    r.stderr,
    "vma: zstd decompression failed - the input ends inside a frame: 200000 bytes, " +
      "the frame at offset 0 is cut short\n",
  );
});

Deno.test("vma extract stopped by SIGTERM midway removes the target directory", async () => {
  const small = await Deno.readFile(`${dir}/small.vma`);
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, "extract", "-", "ex-killed"],
    cwd: dir,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // Half the archive, then the pipe stays open: extract waits for the rest.
  const w = child.stdin.getWriter();
  await w.write(small.subarray(0, small.length >> 1));
  for (let i = 0; i < 100 && !existsDir(`${dir}/ex-killed`); i++) {
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(existsDir(`${dir}/ex-killed`), "the target directory never appeared");
  await new Promise((r) => setTimeout(r, 200));
  child.kill("SIGTERM");
  const out = await child.output();
  await w.close().catch(() => {});
  assert.equal(out.code, 143);
  assert.equal(new TextDecoder().decode(out.stderr), "vma: interrupted by SIGTERM\n");
  assert.ok(!existsDir(`${dir}/ex-killed`));
});

function existsDir(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
}
