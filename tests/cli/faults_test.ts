// The CLI under faults: a full disk during create and extract, SIGINT and
// SIGTERM during create, stdout closed early, an input that shrinks or grows
// while it is read, unreadable and missing inputs, existing and read-only
// targets, a corrupt zstd stream. Each must end with a clear one-line error,
// a non-zero status, and nothing left under a final (or temporary) name.
//
// Tests that need root (tmpfs mounts, an unprivileged user) print why they
// skip when that is not available.
import assert from "node:assert/strict";
import { CLI } from "../_cli_run.ts";
import { concat, craftHeader, craftZeroExtent } from "../_craft.ts";

const decoder = new TextDecoder();
const IS_ROOT = Deno.uid?.() === 0;

interface Run {
  code: number;
  signal: Deno.Signal | null;
  stdout: string;
  stderr: string;
}

function vmaCommand(
  args: string[],
  cwd: string,
  env: Record<string, string> = {},
  permissions: string[] = ["-A"],
): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", ...permissions, "--no-prompt", CLI, ...args],
    cwd,
    env: { TZ: "UTC", NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

const NO_FFI = ["--allow-read", "--allow-write", "--allow-env", "--allow-run"];

async function vma(args: string[], cwd: string): Promise<Run> {
  const out = await vmaCommand(args, cwd).output();
  return {
    code: out.code,
    signal: out.signal,
    stdout: decoder.decode(out.stdout),
    stderr: decoder.decode(out.stderr),
  };
}

async function sh(script: string, cwd: string): Promise<Run> {
  const out = await new Deno.Command("bash", {
    args: ["-c", script],
    cwd,
    env: { VMA: `${Deno.execPath()} run -A --no-prompt ${CLI}`, NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: out.code,
    signal: out.signal,
    stdout: decoder.decode(out.stdout),
    stderr: decoder.decode(out.stderr),
  };
}

function list(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
}

/** A temp dir with a 16 MiB disk of random bytes (so it does not compress or sparsify). */
async function withWorkDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "vmakit-faults-" });
  try {
    const disk = new Uint8Array(16 * 2 ** 20);
    for (let at = 0; at < disk.length; at += 65536) {
      crypto.getRandomValues(disk.subarray(at, at + 65536));
    }
    await Deno.writeFile(`${dir}/disk.raw`, disk);
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Mounts a tmpfs at `dir` for `fn`; false (with the reason printed) when mounting is not permitted. */
async function withTmpfs(
  dir: string,
  options: string,
  fn: () => Promise<void>,
): Promise<boolean> {
  await Deno.mkdir(dir, { recursive: true });
  const mount = await new Deno.Command("mount", {
    args: ["-t", "tmpfs", "-o", options, "tmpfs", dir],
    stdout: "null",
    stderr: "piped",
  }).output().catch((e) => ({ success: false, stderr: new TextEncoder().encode(String(e)) }));
  if (!mount.success) {
    console.log(`skipped: cannot mount a tmpfs (${decoder.decode(mount.stderr).trim()})`);
    return false;
  }
  try {
    await fn();
  } finally {
    await new Deno.Command("umount", { args: [dir] }).output();
  }
  return true;
}

/** Waits (polling) until `dir` has an entry matching `pattern`; a hang detector, not a timing check. */
async function waitForEntry(
  dir: string,
  pattern: RegExp,
  child: Deno.ChildProcess,
): Promise<string> {
  let exited = false;
  child.status.then(() => exited = true);
  for (let i = 0; i < 3000; i++) {
    const hit = list(dir).find((n) => pattern.test(n));
    if (hit) return hit;
    if (exited) throw new Error(`vma exited before ${pattern} appeared in ${dir}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`${pattern} never appeared in ${dir}`);
}

// ---------------------------------------------------------------------------
// Full disk

Deno.test("vma create onto a full disk fails cleanly and leaves no file", async () => {
  await withWorkDir(async (dir) => {
    const ran = await withTmpfs(`${dir}/full`, "size=4m", async () => {
      const r = await vma(["create", "full/a.vma", "-d", "format=raw:drive-scsi0=disk.raw"], dir);
      assert.equal(r.code, 1);
      assert.equal(
        r.stderr,
        "vma: creating vma archive failed - No space left on device\n",
      );
      assert.deepEqual(list(`${dir}/full`), []);
    });
    if (!ran) return;
  });
});

Deno.test("vma extract onto a full disk fails cleanly and removes the target directory", async () => {
  await withWorkDir(async (dir) => {
    const made = await vma(["create", "a.vma", "-d", "format=raw:drive-scsi0=disk.raw"], dir);
    assert.equal(made.code, 0, made.stderr);
    await withTmpfs(`${dir}/full`, "size=4m", async () => {
      const r = await vma(["extract", "a.vma", "full/x"], dir);
      assert.equal(r.code, 1);
      assert.equal(r.stdout, "DEVINFO full/x/tmp-disk-drive-scsi0.raw 16777216\n");
      assert.equal(r.stderr, "vma: restore failed - No space left on device\n");
      assert.deepEqual(list(`${dir}/full`), []);
    });
  });
});

// ---------------------------------------------------------------------------
// Signals and a closed stdout

for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143], ["SIGHUP", 129]] as const) {
  Deno.test(`vma create interrupted by ${signal} removes its temporary output`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "vmakit-faults-" });
    try {
      await Deno.writeFile(`${dir}/big.raw`, new Uint8Array(0));
      await Deno.truncate(`${dir}/big.raw`, 64 * 2 ** 30);
      // Without FFI (no SEEK_HOLE) the holes are read, which takes far longer than the test waits.
      const child = vmaCommand(
        ["create", "out.vma", "-d", "format=raw:drive-scsi0=big.raw"],
        dir,
        {},
        NO_FFI,
      ).spawn();
      const temp = await waitForEntry(dir, /^\.?out\.vma./, child);
      child.kill(signal);
      const out = await child.output();
      assert.equal(out.code, code, `${temp}: ${decoder.decode(out.stderr)}`);
      assert.equal(decoder.decode(out.stderr), `vma: interrupted by ${signal}\n`);
      assert.deepEqual(list(dir), ["big.raw"]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

const SCRIPT = (() => {
  try {
    Deno.statSync("/usr/bin/script");
    return undefined;
  } catch {
    return "script(1) is missing (apt-get install bsdutils)";
  }
})();
if (SCRIPT) console.log(`faults_test: the terminal test is skipped: ${SCRIPT}`);

Deno.test({
  name:
    "vma create on a terminal without --allow-ffi asks nothing (no permission prompt) and writes the archive",
  ignore: SCRIPT !== undefined || Deno.build.os !== "linux",
  async fn() {
    // (It used to stop at Deno's prompt for FFI, where Ctrl-C and SIGTERM
    // did nothing and the temporary file stayed.)
    const dir = await Deno.makeTempDir({ prefix: "vmakit-faults-" });
    try {
      await Deno.writeFile(`${dir}/d.raw`, new Uint8Array(1 << 20).fill(7));
      const command = [Deno.execPath(), "run", ...NO_FFI, CLI, "create", "out.vma", "-d"]
        .concat("format=raw:drive-scsi0=d.raw").map((w) => `'${w}'`).join(" ");
      // script(1) runs it on a pseudo-terminal, as a person would.
      const out = await new Deno.Command("script", {
        args: ["-qec", command, "/dev/null"],
        cwd: dir,
        env: { NO_COLOR: "1" },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
        signal: AbortSignal.timeout(60_000),
      }).output();
      const text = decoder.decode(out.stdout) + decoder.decode(out.stderr);
      assert.ok(!text.includes("Deno requests"), text);
      assert.equal(out.code, 0, text);
      assert.deepEqual(list(dir), ["d.raw", "out.vma"]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("vma create - | head -c 1000 ends quietly with a non-zero status", async () => {
  await withWorkDir(async (dir) => {
    for (const compress of ["none", "zstd"]) {
      const r = await sh(
        `$VMA create - --compress ${compress} -d format=raw:drive-scsi0=disk.raw 2>err.txt | head -c 1000 | wc -c; ` +
          `echo "status \${PIPESTATUS[0]}"; cat err.txt`,
        dir,
      );
      assert.equal(r.stdout, "1000\nstatus 1\n", `--compress ${compress}: ${r.stderr}`);
    }
  });
});

// ---------------------------------------------------------------------------
// Inputs that change, vanish or cannot be read

Deno.test("vma create fails when its input shrinks while it is read", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vmakit-faults-" });
  try {
    const size = 64 * 2 ** 30;
    await Deno.writeFile(`${dir}/in.raw`, new Uint8Array(0));
    await Deno.truncate(`${dir}/in.raw`, size);
    // Without FFI there is no SEEK_HOLE, so the sparse input is read (slowly
    // enough to change under it) instead of being skipped as one hole.
    const child = vmaCommand(
      ["create", "out.vma", "-d", "format=raw:drive-scsi0=in.raw"],
      dir,
      {},
      NO_FFI,
    ).spawn();
    await waitForEntry(dir, /^\.?out\.vma./, child);
    await Deno.truncate(`${dir}/in.raw`, 2 ** 30);
    const out = await child.output();
    assert.equal(out.code, 1);
    assert.match(
      decoder.decode(out.stderr),
      new RegExp(
        `^vma: read error on 'in.raw' - the image ended at \\d+ bytes, before its size ${size}\\n$`,
      ),
    );
    assert.deepEqual(list(dir), ["in.raw"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("vma create fails when its input grows while it is read", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vmakit-faults-" });
  try {
    // Small enough to be read to the end soon, big enough to be still reading when it grows.
    const size = 2 * 2 ** 30;
    await Deno.writeFile(`${dir}/in.raw`, new Uint8Array(0));
    await Deno.truncate(`${dir}/in.raw`, size);
    // Without FFI there is no SEEK_HOLE, so the sparse input is read (slowly
    // enough to change under it) instead of being skipped as one hole.
    const child = vmaCommand(
      ["create", "out.vma", "-d", "format=raw:drive-scsi0=in.raw"],
      dir,
      {},
      NO_FFI,
    ).spawn();
    await waitForEntry(dir, /^\.?out\.vma./, child);
    await Deno.truncate(`${dir}/in.raw`, size + 65536);
    const out = await child.output();
    assert.equal(out.code, 1);
    assert.equal(
      decoder.decode(out.stderr),
      `vma: read error on 'in.raw' - the image changed size while it was read (${size} bytes at the start, ${
        size + 65536
      } at the end)\n`,
    );
    assert.deepEqual(list(dir), ["in.raw"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("vma create refuses a missing input and a directory as input", async () => {
  await withWorkDir(async (dir) => {
    await Deno.mkdir(`${dir}/adir`);
    let r = await vma(["create", "a.vma", "-d", "format=raw:drive-scsi0=missing.raw"], dir);
    assert.equal(r.code, 1);
    assert.equal(
      r.stderr,
      "vma: bdrv_open 'missing.raw' failed - Could not open 'missing.raw': No such file or directory\n",
    );
    r = await vma(["create", "a.vma", "-d", "format=raw:drive-scsi0=adir"], dir);
    assert.equal(r.code, 1);
    assert.equal(
      r.stderr,
      "vma: bdrv_open 'adir' failed - Could not open 'adir': Is a directory\n",
    );
    r = await vma([
      "create",
      "a.vma",
      "-c",
      "missing.conf",
      "-d",
      "format=raw:drive-scsi0=disk.raw",
    ], dir);
    assert.equal(r.code, 1);
    assert.equal(
      r.stderr,
      "vma: Unable to read file: Failed to open file \u201cmissing.conf\u201d: No such file or directory\n",
    );
    assert.deepEqual(list(dir), ["adir", "disk.raw"]);
  });
});

Deno.test("vma create refuses an input it may not read", async () => {
  const setpriv = await new Deno.Command("setpriv", {
    args: ["--version"],
    stdout: "null",
    stderr: "null",
  })
    .output().then((o) => o.success, () => false);
  if (!IS_ROOT || !setpriv) {
    console.log("skipped: needs root and setpriv to run vma as an unprivileged user");
    return;
  }
  await withWorkDir(async (dir) => {
    // The unprivileged user needs a readable copy of Deno's cache and a writable directory.
    const info = JSON.parse(
      decoder.decode(
        (await new Deno.Command(Deno.execPath(), { args: ["info", "--json"] }).output()).stdout,
      ),
    );
    await new Deno.Command("cp", { args: ["-r", info.denoDir, `${dir}/deno`] }).output();
    await Deno.chmod(`${dir}/disk.raw`, 0o000);
    await new Deno.Command("chmod", { args: ["-R", "a+rwX", `${dir}/deno`] }).output();
    await Deno.chmod(dir, 0o777);
    const out = await new Deno.Command("setpriv", {
      args: [
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        Deno.execPath(),
        "run",
        "-A",
        "--no-prompt",
        CLI,
        "create",
        "a.vma",
        "-d",
        "format=raw:drive-scsi0=disk.raw",
      ],
      cwd: dir,
      env: { DENO_DIR: `${dir}/deno`, HOME: dir, NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 1, decoder.decode(out.stderr));
    assert.equal(
      decoder.decode(out.stderr),
      "vma: bdrv_open 'disk.raw' failed - Could not open 'disk.raw': Permission denied\n",
    );
    assert.deepEqual(list(dir), ["deno", "disk.raw"]);
  });
});

// ---------------------------------------------------------------------------
// Targets

Deno.test("vma create and extract refuse an existing target and leave it alone", async () => {
  await withWorkDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/a.vma`, "keep");
    let r = await vma(["create", "a.vma", "-d", "format=raw:drive-scsi0=disk.raw"], dir);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, "vma: can't open file a.vma - File exists\n");
    assert.equal(await Deno.readTextFile(`${dir}/a.vma`), "keep");

    r = await vma(["create", "b.vma", "-d", "format=raw:drive-scsi0=disk.raw"], dir);
    assert.equal(r.code, 0, r.stderr);
    await Deno.mkdir(`${dir}/x`);
    await Deno.writeTextFile(`${dir}/x/keep`, "keep");
    r = await vma(["extract", "b.vma", "x"], dir);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, "vma: unable to create target directory x - File exists\n");
    assert.deepEqual(list(`${dir}/x`), ["keep"]);
  });
});

Deno.test("vma create and extract refuse a read-only target", async () => {
  await withWorkDir(async (dir) => {
    const r0 = await vma(["create", "b.vma", "-d", "format=raw:drive-scsi0=disk.raw"], dir);
    assert.equal(r0.code, 0, r0.stderr);
    await withTmpfs(`${dir}/ro`, "ro,size=1m", async () => {
      let r = await vma(["create", "ro/a.vma", "-d", "format=raw:drive-scsi0=disk.raw"], dir);
      assert.equal(r.code, 1);
      assert.equal(r.stderr, "vma: can't open file ro/a.vma - Read-only file system\n");
      r = await vma(["extract", "b.vma", "ro/x"], dir);
      assert.equal(r.code, 1);
      assert.equal(
        r.stderr,
        "vma: unable to create target directory ro/x - Read-only file system\n",
      );
      assert.deepEqual(list(`${dir}/ro`), []);
    });
  });
});

// ---------------------------------------------------------------------------
// Corrupt compressed input

Deno.test("vma verify and extract report a corrupt .vma.zst and leave nothing behind", async () => {
  await withWorkDir(async (dir) => {
    const zst = await Deno.readFile(new URL("../testdata/small.vma.zst", import.meta.url));
    zst[zst.length >> 1] ^= 0x55;
    await Deno.writeFile(`${dir}/bad.vma.zst`, zst);
    let r = await vma(["verify", "bad.vma.zst"], dir);
    assert.equal(r.code, 1);
    assert.equal(
      r.stderr,
      "vma: verify failed - zstd decompression failed - Zstd decompress error: Restored data doesn't match checksum\n",
    );
    r = await vma(["extract", "bad.vma.zst", "x"], dir);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /^vma: .*zstd decompression failed - Zstd decompress error: Restored data doesn't match checksum\n$/,
    );
    assert.deepEqual(list(dir), ["bad.vma.zst", "disk.raw"]);
  });
});

// ---------------------------------------------------------------------------
// Hostile names

Deno.test("vma extract of an archive with path names in it writes nothing anywhere", async () => {
  await withWorkDir(async (dir) => {
    await Deno.mkdir(`${dir}/sub`);
    for (
      const [file, header, message] of [
        [
          "config.vma",
          craftHeader({
            configs: [{ name: "../../evil.conf", data: "x" }],
            devices: [{ name: "drive-scsi0", size: 65536 }],
          }),
          'vma: vma contains config name "../../evil.conf", unsafe as a file name: it contains "/"',
        ],
        [
          "device.vma",
          craftHeader({ devices: [{ name: "../evil", size: 65536 }] }),
          'vma: vma contains device name "../evil", unsafe as a file name: it contains "/"',
        ],
      ] as const
    ) {
      await Deno.writeFile(`${dir}/sub/${file}`, concat(header.bytes, craftZeroExtent(1, 0, 1)));
      const r = await vma(["extract", file, "x"], `${dir}/sub`);
      assert.equal(r.code, 1);
      assert.equal(r.stderr, `${message}\n`);
      assert.deepEqual(list(`${dir}/sub`), [file]);
      await Deno.remove(`${dir}/sub/${file}`);
    }
    assert.deepEqual(list(dir), ["disk.raw", "sub"]);
  });
});
