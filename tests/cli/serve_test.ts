// `vma serve` with real NBD clients (Debian's libnbd-bin: nbdinfo, nbdcopy;
// python3-libnbd: nbdsh; qemu-utils: qemu-img), each run as a subprocess.
import assert from "node:assert/strict";
import { CLI, fixtureDir, have, TESTDATA, vma } from "../_cli_run.ts";
import { framesOf, seekableFile } from "../compress/_seekable.ts";
import { zstdCompressSync } from "node:zlib";

const NO_NBD = have("nbdinfo") && have("nbdcopy")
  ? undefined
  : "nbdinfo/nbdcopy are missing (apt-get install libnbd-bin)";
const NO_QEMU = have("qemu-img") ? undefined : "qemu-img is missing (apt-get install qemu-utils)";
/** nbdsh needs Debian's python3 with the nbd module (python3-libnbd). */
const NO_NBDSH = (() => {
  try {
    const out = new Deno.Command("/usr/bin/python3", {
      args: ["-c", "import nbd"],
      stdout: "null",
      stderr: "null",
    }).outputSync();
    return out.success ? undefined : "python3-libnbd is missing (apt-get install python3-libnbd)";
  } catch {
    return "/usr/bin/python3 is missing (apt-get install python3-libnbd)";
  }
})();

function skip(reason: string | undefined): boolean {
  if (reason) console.log(`skipped: ${reason}`);
  return reason !== undefined;
}

const decoder = new TextDecoder();

/** A data disk whose size is not a multiple of 64 KiB, with a zero region in the middle. */
function dataDisk(): Uint8Array {
  const b = new Uint8Array(3 * 65536 + 1536);
  for (let i = 0; i < 65536; i++) b[i] = (i * 7 + 1) & 255;
  for (let i = 196608; i < b.length; i++) b[i] = (i * 13 + 5) & 255;
  return b;
}

/** A temp dir with a.raw, z.raw (all zero), t.vma of both, t.vma.zst. */
async function archiveDir(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "vma-serve-test-" });
  await Deno.writeFile(`${dir}/a.raw`, dataDisk());
  await Deno.writeFile(`${dir}/z.raw`, new Uint8Array(5 * 65536));
  await Deno.writeTextFile(`${dir}/qemu-server.conf`, "memory: 512\n");
  const r = await vma([
    "create",
    "t.vma",
    "-c",
    "qemu-server.conf",
    "-d",
    "format=raw:drive-scsi0=a.raw",
    "-d",
    "format=raw:drive-virtio1=z.raw",
  ], { cwd: dir });
  assert.equal(r.code, 0, r.stderr);
  if (have("zstd")) {
    const z = await new Deno.Command("zstd", { args: ["-q", "t.vma"], cwd: dir }).output();
    assert.equal(z.code, 0);
  }
  return dir;
}

/** A running `vma serve`. */
interface Server {
  readonly pid: number;
  readonly line: string;
  /** Sends `signal`, waits for the end: exit code and the rest of stderr. */
  stop(signal?: Deno.Signal): Promise<{ code: number; stderr: string }>;
}

/** Starts `vma serve ...args` and waits for its "serving" line. */
async function startServe(args: string[], cwd: string, env: Record<string, string> = {}) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--no-prompt", CLI, "serve", ...args],
    cwd,
    env: { TZ: "UTC", NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const reader = child.stderr.getReader();
  let text = "";
  // A compressed archive is spooled first, which serve says in a line of its own.
  const serving = () => /(^|\n)vma: serving [^\n]*\n/.exec(text);
  while (serving() === null) {
    const { value, done } = await reader.read();
    if (done) break;
    text += decoder.decode(value, { stream: true });
  }
  const found = serving();
  if (found === null) {
    await child.status;
    throw new Error(`serve did not start: ${JSON.stringify(text)}`);
  }
  const line = found[0].replace(/^\n/, "");
  text = text.slice(found.index + found[0].length - line.length);
  const server: Server = {
    pid: child.pid,
    line,
    async stop(signal = "SIGINT") {
      child.kill(signal);
      let rest = text.slice(line.length);
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        rest += decoder.decode(value, { stream: true });
      }
      return { code: (await child.status).code, stderr: rest };
    },
  };
  return server;
}

async function run(program: string, args: string[], cwd?: string) {
  const out = await new Deno.Command(program, { args, cwd, stdout: "piped", stderr: "piped" })
    .output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

function peakRss(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

const uri = (sock: string, name: string) => `nbd+unix:///${name}?socket=${sock}`;

Deno.test("serve: nbdinfo --list shows each device as an export; SIGINT removes the socket", async () => {
  if (skip(NO_NBD)) return;
  const dir = await archiveDir();
  const tmp = await Deno.makeTempDir({ dir, prefix: "tmp" });
  const sock = `${dir}/s.sock`;
  const server = await startServe(["--socket", sock, "t.vma"], dir, { TMPDIR: tmp });
  try {
    assert.equal(
      server.line,
      `vma: serving "drive-scsi0", "drive-virtio1" at nbd+unix:///?socket=${sock}\n`,
    );
    const list = await run("nbdinfo", ["--list", "--json", uri(sock, "")]);
    assert.equal(list.code, 0, list.stderr);
    const exports = JSON.parse(list.stdout).exports.map((
      e: { "export-name": string; "export-size": number; is_read_only: boolean },
    ) => [e["export-name"], e["export-size"], e.is_read_only]);
    assert.deepEqual(exports, [["drive-scsi0", 198144, true], ["drive-virtio1", 327680, true]]);
  } finally {
    const end = await server.stop("SIGINT");
    assert.deepEqual(end, { code: 0, stderr: "vma: stopped by SIGINT\n" });
  }
  assert.equal(await Deno.stat(sock).then(() => true, () => false), false);
  assert.deepEqual(await Array.fromAsync(Deno.readDir(tmp)), []); // nothing in $TMPDIR
  await Deno.remove(dir, { recursive: true });
});

Deno.test("serve: nbdcopy of each export equals its device (plain and .vma.zst)", async () => {
  if (skip(NO_NBD)) return;
  const dir = await archiveDir();
  for (const archive of have("zstd") ? ["t.vma", "t.vma.zst"] : ["t.vma"]) {
    const sock = `${dir}/s.sock`;
    const server = await startServe(["--socket", sock, archive], dir);
    try {
      for (const [name, file] of [["drive-scsi0", "a.raw"], ["drive-virtio1", "z.raw"]]) {
        const r = await run("nbdcopy", [uri(sock, name), `${dir}/out.raw`]);
        assert.equal(r.code, 0, r.stderr);
        assert.deepEqual(
          await Deno.readFile(`${dir}/out.raw`),
          await Deno.readFile(`${dir}/${file}`),
          `${archive} ${name}`,
        );
        await Deno.remove(`${dir}/out.raw`);
      }
    } finally {
      assert.equal((await server.stop("SIGTERM")).code, 0);
      // The spool of a compressed archive (next to it) is removed on the signal too.
      const spools = (await Array.fromAsync(Deno.readDir(dir))).filter((e) =>
        e.name.startsWith(".vma-spool-")
      );
      assert.deepEqual(spools, []);
    }
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("serve: qemu-img compare against the nbd+unix URL; nbdinfo --map shows the zeros", async () => {
  if (skip(NO_NBD ?? NO_QEMU)) return;
  const dir = await archiveDir();
  const sock = `${dir}/s.sock`;
  const server = await startServe(["--socket", sock, "t.vma"], dir);
  try {
    const cmp = await run("qemu-img", ["compare", `${dir}/a.raw`, uri(sock, "drive-scsi0")]);
    assert.equal(cmp.code, 0, cmp.stderr);
    assert.match(cmp.stdout, /Images are identical/);
    const map = await run("nbdinfo", ["--map", "--json", uri(sock, "drive-scsi0")]);
    assert.equal(map.code, 0, map.stderr);
    assert.deepEqual(
      JSON.parse(map.stdout).map((e: { offset: number; length: number; type: number }) => [
        e.offset,
        e.length,
        e.type,
      ]),
      [[0, 65536, 0], [65536, 131072, 3], [196608, 1536, 0]],
    );
    const zero = await run("nbdinfo", ["--map", "--json", uri(sock, "drive-virtio1")]);
    assert.deepEqual(
      JSON.parse(zero.stdout).map((e: { length: number; type: number }) => [e.length, e.type]),
      [[327680, 3]],
    );
  } finally {
    await server.stop();
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("serve: a write is refused with EPERM, and reads still work", async () => {
  if (skip(NO_NBD ?? NO_NBDSH)) return;
  const dir = await archiveDir();
  const sock = `${dir}/s.sock`;
  const server = await startServe(["--socket", sock, "t.vma"], dir);
  try {
    const script = `
h.set_strict_mode(0)
h.connect_uri(${JSON.stringify(uri(sock, "drive-scsi0"))})
try:
    h.pwrite(b"x" * 512, 0)
    print("written")
except nbd.Error as e:
    print("refused", e.errno, e.string)
print(h.pread(4, 0).hex())
`;
    const r = await run("/usr/bin/python3", ["-m", "nbd", "-c", script]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout,
      "refused EPERM nbd_pwrite: write: command failed: Operation not permitted\n01080f16\n",
    );
  } finally {
    await server.stop();
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("serve: two clients at once, over TCP on loopback", async () => {
  if (skip(NO_NBD)) return;
  const dir = await archiveDir();
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = probe.addr.port;
  probe.close();
  const server = await startServe(["--listen", `127.0.0.1:${port}`, "t.vma"], dir);
  try {
    // A first client connects and stays in the handshake while the others copy.
    const idle = await Deno.connect({ hostname: "127.0.0.1", port });
    const greeting = new Uint8Array(18);
    let got = 0;
    while (got < 18) got += (await idle.read(greeting.subarray(got))) ?? 18;
    assert.equal(decoder.decode(greeting.subarray(0, 16)), "NBDMAGICIHAVEOPT");
    const [a, z] = await Promise.all([
      run("nbdcopy", [`nbd://127.0.0.1:${port}/drive-scsi0`, `${dir}/a.out`]),
      run("nbdcopy", [`nbd://127.0.0.1:${port}/drive-virtio1`, `${dir}/z.out`]),
    ]);
    assert.equal(a.code + z.code, 0, a.stderr + z.stderr);
    assert.deepEqual(await Deno.readFile(`${dir}/a.out`), dataDisk());
    assert.deepEqual(await Deno.readFile(`${dir}/z.out`), new Uint8Array(5 * 65536));
    idle.close();
  } finally {
    await server.stop();
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("serve: a client piping thousands of unread 1 MiB reads neither stops the server nor grows it", async () => {
  if (skip(NO_NBD)) return;
  const dir = await archiveDir();
  const sock = `${dir}/s.sock`;
  const server = await startServe(["--socket", sock, "t.vma"], dir);
  try {
    const conn = await Deno.connect({ transport: "unix", path: sock });
    const read = async (n: number) => {
      const b = new Uint8Array(n);
      let got = 0;
      while (got < n) {
        const k = await conn.read(b.subarray(got));
        if (k === null) throw new Error("closed");
        got += k;
      }
      return b;
    };
    await read(18);
    await conn.write(new Uint8Array([0, 0, 0, 3]));
    const go = new Uint8Array(16 + 4 + 11 + 2);
    const v = new DataView(go.buffer);
    v.setBigUint64(0, 0x49484156454f5054n);
    v.setUint32(8, 7);
    v.setUint32(12, 4 + 11 + 2);
    v.setUint32(16, 11);
    go.set(new TextEncoder().encode("drive-scsi0"), 20);
    await conn.write(go);
    // Do not read the replies: send 4000 reads of 64 KiB (250 MiB of answers) and hang up.
    const requests = new Uint8Array(28 * 4000);
    const r = new DataView(requests.buffer);
    for (let i = 0; i < 4000; i++) {
      r.setUint32(28 * i, 0x25609513);
      r.setBigUint64(28 * i + 8, BigInt(i));
      r.setUint32(28 * i + 24, 65536);
    }
    await conn.write(requests);
    conn.close();
    const list = await run("nbdinfo", ["--size", uri(sock, "drive-scsi0")]);
    assert.equal(list.stdout, "198144\n", list.stderr);
    const rss = peakRss(server.pid);
    console.log(`serve peak RSS: ${(rss / 2 ** 20).toFixed(1)} MiB`);
    assert.ok(rss < 160 * 2 ** 20, `peak RSS ${rss} bytes`);
  } finally {
    assert.equal((await server.stop()).code, 0);
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("serve: peak RSS while nbdcopy reads a 96 MiB export stays below 110 MB", async () => {
  if (skip(NO_NBD)) return;
  const dir = await Deno.makeTempDir({ prefix: "vma-serve-test-" });
  const big = new Uint8Array(96 * 2 ** 20);
  for (let i = 0; i < big.length; i += 4096) big[i] = (i >> 12) & 255 | 1;
  await Deno.writeFile(`${dir}/big.raw`, big);
  const c = await vma(["create", "b.vma", "-d", "format=raw:drive-scsi0=big.raw"], { cwd: dir });
  assert.equal(c.code, 0, c.stderr);
  const sock = `${dir}/s.sock`;
  const server = await startServe(["--socket", sock, "b.vma"], dir);
  try {
    const r = await run("nbdcopy", [uri(sock, "drive-scsi0"), `${dir}/out.raw`]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await Deno.readFile(`${dir}/out.raw`), big);
    const rss = peakRss(server.pid);
    console.log(`serve peak RSS (96 MiB export, nbdcopy): ${(rss / 2 ** 20).toFixed(1)} MiB`);
    // Measured 127-136 MiB with a fresh buffer per reply, 60-70 MiB with one per connection.
    assert.ok(rss < 110 * 2 ** 20, `peak RSS ${rss} bytes`);
  } finally {
    await server.stop();
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("serve: bad command lines and archives are one line on stderr", async () => {
  const dir = await archiveDir();
  const both = await vma(["serve", "--socket", "s", "--listen", "127.0.0.1:1", "t.vma"], {
    cwd: dir,
  });
  assert.equal(both.code, 2);
  assert.equal(both.stderr.split("\n")[0], "vma: --socket and --listen cannot be used together");
  const bad = await vma(["serve", "--listen", "localhost:99999", "t.vma"], { cwd: dir });
  assert.equal(bad.code, 2);
  assert.equal(
    bad.stderr.split("\n")[0],
    'vma: invalid --listen "localhost:99999" (<host>:<port>)',
  );
  const missing = await vma(["serve", "--socket", "s", "nope\n.vma"], { cwd: dir });
  assert.equal(missing.code, 1);
  assert.equal(missing.stderr.split("\n").length, 2);
  assert.equal(
    missing.stderr,
    "vma: can't open file nope\\u000a.vma - No such file or directory\n",
  );
  await Deno.writeFile(`${dir}/taken`, new Uint8Array(1));
  const taken = await vma(["serve", "--socket", "taken", "t.vma"], { cwd: dir });
  assert.equal(taken.code, 1);
  assert.match(taken.stderr, /^vma: cannot listen on "taken": .*\n$/);
  assert.deepEqual(await Deno.readFile(`${dir}/taken`), new Uint8Array(1));
  await Deno.copyFile(`${TESTDATA}configs-only.vma`, `${dir}/c.vma`);
  const none = await vma(["serve", "--socket", "s", "c.vma"], { cwd: dir });
  assert.deepEqual([none.code, none.stderr], [
    1,
    'vma: nothing to serve: "c.vma" has no devices\n',
  ]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("serve: a truncated archive fails in one line and leaves no temporary copy", async () => {
  const dir = await fixtureDir();
  const tmp = await Deno.makeTempDir({ dir, prefix: "tmp" });
  const r = await vma(["serve", "--socket", "s", "small-truncated.vma"], {
    cwd: dir,
    env: { TMPDIR: tmp },
  });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^vma: serve failed - [^\n]+\n$/);
  assert.deepEqual(await Array.fromAsync(Deno.readDir(tmp)), []);
  assert.equal(await Deno.stat(`${dir}/s`).then(() => true, () => false), false);
  await Deno.remove(dir, { recursive: true });
});

/** Writes `disk` as d.raw and `vma create`s d.vma from it in `dir`. */
async function createArchive(dir: string, disk: Uint8Array): Promise<void> {
  await Deno.writeFile(`${dir}/d.raw`, disk);
  const c = await vma(["create", "d.vma", "-d", "format=raw:drive-scsi0=d.raw"], { cwd: dir });
  assert.equal(c.code, 0, c.stderr);
}

/** Copies the served drive-scsi0 with nbdcopy over four connections; it must equal `disk`. */
async function assertNbdCopy(sock: string, dir: string, disk: Uint8Array): Promise<void> {
  const r = await run("nbdcopy", ["--connections=4", uri(sock, "drive-scsi0"), `${dir}/out.raw`]);
  assert.equal(r.code, 0, r.stderr);
  const out = await Deno.readFile(`${dir}/out.raw`);
  assert.equal(out.length, disk.length);
  // The first differing byte (a deepEqual of 256 MiB would print a huge diff).
  assert.equal(out.findIndex((b, k) => b !== disk[k]), -1);
}

Deno.test("serve: nbdcopy over several connections at once (multi-conn) copies the device exactly", async () => {
  if (skip(NO_NBD)) return;
  const dir = await Deno.makeTempDir({ prefix: "vma-serve-test-" });
  // nbdcopy gives each connection 128 MiB of the export: data at the start of
  // two such slices, every 4-byte word different, so that a read answered
  // from another client's offset shows.
  const disk = new Uint8Array(256 * 2 ** 20);
  const words = new DataView(disk.buffer);
  for (const start of [0, 128 * 2 ** 20]) {
    for (let i = start; i < start + 16 * 2 ** 20; i += 4) {
      words.setUint32(i, (i * 2654435761 + 1) >>> 0);
    }
  }
  await createArchive(dir, disk);
  const sock = `${dir}/s.sock`;
  const server = await startServe(["--socket", sock, "d.vma"], dir);
  try {
    await assertNbdCopy(sock, dir, disk);
  } finally {
    assert.equal((await server.stop()).code, 0);
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("serve: a seekable .vma.zst is served in place (no spool file), several connections at once", async () => {
  if (skip(NO_NBD)) return;
  const dir = await Deno.makeTempDir({ prefix: "vma-serve-test-" });
  const disk = new Uint8Array(24 * 2 ** 20);
  const words = new DataView(disk.buffer);
  for (let i = 0; i < disk.length; i += 4) {
    if ((i >> 16) % 5 !== 4) words.setUint32(i, (i * 2654435761 + 7) >>> 0);
  }
  await createArchive(dir, disk);
  const plain = await Deno.readFile(`${dir}/d.vma`);
  await Deno.writeFile(`${dir}/d.vma.zst`, seekableFile(framesOf(plain, 1 << 20)));
  const sock = `${dir}/s.sock`;
  const server = await startServe(["--socket", sock, "d.vma.zst"], dir);
  try {
    assert.deepEqual(
      [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.startsWith(".vma-spool")),
      [],
    );
    await assertNbdCopy(sock, dir, disk);
  } finally {
    assert.equal((await server.stop()).code, 0);
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("serve: a seekable frame rewritten as a frame and junk while serving is an NBD I/O error, the server stays up", async () => {
  if (skip(NO_NBD)) return;
  const dir = await Deno.makeTempDir({ prefix: "vma-serve-test-" });
  const disk = new Uint8Array(24 * 2 ** 20);
  const words = new DataView(disk.buffer);
  for (let i = 0; i < disk.length; i += 4) words.setUint32(i, (i * 2654435761 + 7) >>> 0);
  await createArchive(dir, disk);
  const entries = framesOf(await Deno.readFile(`${dir}/d.vma`), 1 << 20);
  await Deno.writeFile(`${dir}/d.vma.zst`, seekableFile(entries));
  const sock = `${dir}/s.sock`;
  const server = await startServe(["--socket", sock, "d.vma.zst"], dir);
  try {
    // Frame 0 (long out of the cache once indexed) becomes a valid frame of
    // its size followed by junk: Deno's zlib used to throw out of reach.
    const valid = new Uint8Array(zstdCompressSync(new Uint8Array(entries[0].decompressed)));
    const patch = new Uint8Array(entries[0].compressed.length).fill(0x41);
    patch.set(valid);
    const file = await Deno.open(`${dir}/d.vma.zst`, { write: true });
    await file.write(patch);
    file.close();
    const r = await run("nbdcopy", [uri(sock, "drive-scsi0"), `${dir}/out.raw`]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /Input\/output error/);
    // Still serving: the same read fails alike, and a new client is answered.
    const again = await run("nbdcopy", [uri(sock, "drive-scsi0"), `${dir}/out.raw`]);
    assert.match(again.stderr, /Input\/output error/);
    const info = await run("nbdinfo", ["--size", uri(sock, "drive-scsi0")]);
    assert.equal(info.code, 0, info.stderr);
    assert.equal(info.stdout.trim(), String(disk.length));
  } finally {
    const stopped = await server.stop();
    assert.equal(stopped.code, 0);
    // Whoever runs the server is told of each failed read, on one line.
    const failed = stopped.stderr.split("\n").filter((l) => l.includes("failed"));
    assert.ok(failed.length >= 2, stopped.stderr);
    for (const line of failed) {
      assert.match(line, /^vma: read of "drive-scsi0" at \d+ \(\d+ bytes\) failed - \S/);
    }
  }
  await Deno.remove(dir, { recursive: true });
});
