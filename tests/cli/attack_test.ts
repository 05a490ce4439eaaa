// Hostile and careless inputs to `vma create` found by the attack review: each
// ends in one clear line on stderr, a non-zero exit and no archive left behind.
import assert from "node:assert/strict";
import { makeDisk, sh } from "../_cli_run.ts";

const dir = await Deno.makeTempDir({ prefix: "vma-attack-" });
globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(dir, { recursive: true });
  } catch {
    // gone
  }
});
await Deno.writeFile(`${dir}/disk.raw`, makeDisk(65536));

/** Runs a create under `timeout`, so a hang fails the test instead of stalling it. */
async function create(args: string, cwd = dir) {
  const result = await sh(`timeout -s KILL 60 $VMA create out.vma ${args}`, cwd);
  assert.notEqual(result.code, 137, `vma create ${args} hung: ${result.stderr}`);
  return result;
}

function assertOneLine(stderr: string, line: string): void {
  const lines = stderr.split("\n").filter((l) => l !== "" && !l.startsWith("vma: warning: "));
  assert.deepEqual(lines, [line]);
}

async function assertNoArchive(cwd = dir): Promise<void> {
  const names = [];
  for await (const e of Deno.readDir(cwd)) names.push(e.name);
  assert.ok(!names.some((n) => n.startsWith("out.vma")), `left behind: ${names.join(", ")}`);
}

Deno.test("vma create refuses a FIFO without a writer as a raw disk at once", async () => {
  const cwd = await Deno.makeTempDir({ dir });
  await sh("mkfifo fifo", cwd);
  const r = await create("-d format=raw:drive-scsi0=fifo", cwd);
  assert.equal(r.code, 1);
  assertOneLine(
    r.stderr,
    "vma: bdrv_open 'fifo' failed - Could not open 'fifo': it is a FIFO, not a regular file or block device",
  );
  await assertNoArchive(cwd);
});

Deno.test("vma create refuses a character device as a raw disk", async () => {
  const r = await create("-d format=raw:drive-scsi0=/dev/zero");
  assert.equal(r.code, 1);
  assertOneLine(
    r.stderr,
    "vma: bdrv_open '/dev/zero' failed - Could not open '/dev/zero': it is a character device, not a regular file or block device",
  );
  await assertNoArchive();
});

Deno.test("vma create names a symlink loop with strerror's text on one line", async () => {
  const cwd = await Deno.makeTempDir({ dir });
  await Deno.symlink("loop\nvma: forged", `${cwd}/loop\nvma: forged`);
  for (const format of ["raw", "qcow2", "vmdk", "auto"]) {
    const r = await create(`-d 'format=${format}:drive-scsi0=loop\nvma: forged'`, cwd);
    assert.equal(r.code, 1);
    assertOneLine(
      r.stderr,
      String
        .raw`vma: bdrv_open "loop\nvma: forged" failed - Could not open "loop\nvma: forged": Too many levels of symbolic links`,
    );
  }
  const r = await create(`-c 'loop\nvma: forged' -d format=raw:drive-scsi0=${dir}/disk.raw`, cwd);
  assert.equal(r.code, 1);
  assertOneLine(
    r.stderr,
    String
      .raw`vma: Unable to read file: Failed to open file “"loop\nvma: forged"”: Too many levels of symbolic links`,
  );
  await assertNoArchive(cwd);
});

Deno.test("vma create names a socket given as a disk or config with strerror's text", async () => {
  const cwd = await Deno.makeTempDir({ dir });
  const listener = Deno.listen({ transport: "unix", path: `${cwd}/sock` });
  try {
    for (const format of ["raw", "qcow2"]) {
      const r = await create(`-d format=${format}:drive-scsi0=sock`, cwd);
      assert.equal(r.code, 1);
      assertOneLine(
        r.stderr,
        "vma: bdrv_open 'sock' failed - Could not open 'sock': No such device or address",
      );
    }
    const r = await create(`--vm-config sock -d format=raw:drive-scsi0=${dir}/disk.raw`, cwd);
    assert.equal(r.code, 1);
    assertOneLine(
      r.stderr,
      "vma: Unable to read file: Failed to open file \u201csock\u201d: No such device or address",
    );
  } finally {
    listener.close();
  }
  await assertNoArchive(cwd);
});

/** A 1 MiB tmpfs in a temp dir (root only), or why there is none. */
async function smallTmpfs(): Promise<{ path: string; unmount(): Promise<void> } | string> {
  const path = await Deno.makeTempDir({ dir });
  const r = await sh(`mount -t tmpfs -o size=1m tmpfs '${path}' 2>&1`, dir);
  if (r.code !== 0) return `mount -t tmpfs failed: ${r.stdout.trim()}`;
  return {
    path,
    async unmount() {
      await sh(`umount '${path}'`, dir);
    },
  };
}

Deno.test("vma create on a full disk: one line in strerror's words, no file left", async (t) => {
  const fs = await smallTmpfs();
  if (typeof fs === "string") {
    console.log(`attack_test: SKIPPED the full-disk test: ${fs}`);
    return;
  }
  try {
    // Incompressible: 1.5 MiB of random bytes fill the 1 MiB file system even as zstd.
    await sh("head -c 1572864 /dev/urandom > rnd.raw; head -c 60000 rnd.raw > cfg", dir);
    for (const name of ["out.vma", "out.vma.zst"]) {
      await t.step(name, async () => {
        const r = await sh(
          `timeout -s KILL 60 $VMA create '${fs.path}/${name}' -c cfg -d format=raw:drive-scsi0=rnd.raw`,
          dir,
        );
        assert.equal(r.code, 1, r.stderr);
        assertOneLine(r.stderr, "vma: creating vma archive failed - No space left on device");
        assert.deepEqual([...Deno.readDirSync(fs.path)], []);
      });
    }
  } finally {
    await fs.unmount();
  }
});

Deno.test("vma create into a FIFO nobody reads fails at once, as Proxmox's non-blocking open", async () => {
  const cwd = await Deno.makeTempDir({ dir });
  await sh("mkfifo out.fifo", cwd);
  const r = await sh(
    `timeout -s KILL 60 $VMA create out.fifo -d format=raw:drive-scsi0=${dir}/disk.raw`,
    cwd,
  );
  assert.notEqual(r.code, 137, "vma create waited for a reader");
  assert.equal(r.code, 1);
  assertOneLine(r.stderr, "vma: can't open file out.fifo - No such device or address");
  assert.ok((await Deno.lstat(`${cwd}/out.fifo`)).isFifo);
});
