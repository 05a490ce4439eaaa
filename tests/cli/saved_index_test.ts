// --save-index: cat, serve and repack save the index of a plain archive as
// <archive>.vmaidx and reuse it while the archive is unchanged (size, times,
// inode, file system, header uuid); a stale or damaged one is ignored with a
// note and rebuilt.
// A .vma.zst with a seek table is read in place, without a spool.
import assert from "node:assert/strict";
import { VmaWriter } from "../../mod.ts";
import { vma } from "../_cli_run.ts";
import { framesOf, seekableFile } from "../compress/_seekable.ts";
import { measureVma, NO_PEAK_RSS } from "./_peak_rss.ts";

const UUID_A = "11111111-2222-4333-8444-555555555555";
const UUID_B = "99999999-8888-4777-8666-555555555555";

/** 20 clusters, every one different, some blocks zero. */
function disk(): Uint8Array {
  const d = new Uint8Array(20 * 65536);
  let x = 7;
  for (let i = 0; i < d.length; i += 4) {
    if ((i >> 12) % 3 === 2) continue;
    x = (x * 1103515245 + 12345) >>> 0;
    new DataView(d.buffer).setUint32(i, x | 1);
  }
  return d;
}

async function writeArchive(path: string, data: Uint8Array, uuid: string): Promise<void> {
  const writer = new VmaWriter({ uuid, ctime: new Date(1e12) });
  const device = writer.addDevice("drive-scsi0", data.length);
  const out = new Response(writer.readable).bytes();
  await device.write(0, data);
  await writer.close();
  await Deno.writeFile(path, await out);
}

/** Damages the MD5 of the first extent's header, keeping the file's size and time. */
async function damageFirstExtent(path: string): Promise<void> {
  const info = await Deno.stat(path);
  const bytes = await Deno.readFile(path);
  const magic = new TextEncoder().encode("VMAE");
  let at = 12288;
  while (!magic.every((b, k) => bytes[at + k] === b)) at++;
  bytes[at + 24] ^= 0xff; // the extent header's MD5
  await Deno.writeFile(path, bytes);
  await Deno.utime(path, info.atime!, info.mtime!);
}

/**
 * Gives the saved index at `indexPath` the inode, file system and ctime the
 * archive has now (and signs it anew), as if saved after the last change.
 */
async function restamp(indexPath: string, archivePath: string): Promise<void> {
  const info = await Deno.stat(archivePath);
  const bytes = await Deno.readFile(indexPath);
  const view = new DataView(bytes.buffer);
  [info.ino, info.dev, info.ctime?.getTime()].forEach((v, k) =>
    view.setFloat64(80 + 8 * k, v ?? -1, true)
  );
  const end = bytes.length - 32;
  bytes.set(
    new Uint8Array(await crypto.subtle.digest("SHA-256", bytes.subarray(0, end))),
    end,
  );
  await Deno.writeFile(indexPath, bytes);
}

/**
 * Waits until the clock is past the second of the ctime of `path` (Deno's
 * stat gives ctime to the second), so that a change now gives another ctime.
 */
async function nextCtimeSecond(path: string): Promise<void> {
  const second = Math.floor((await Deno.stat(path)).ctime!.getTime() / 1000);
  while (Math.floor(Date.now() / 1000) <= second) await new Promise((r) => setTimeout(r, 50));
}

const note = (kind: string, why = "") =>
  kind === "saved"
    ? 'vma: cat: saved the index to "a.vma.vmaidx"\n'
    : kind === "using"
    ? 'vma: cat: using the saved index "a.vma.vmaidx"\n'
    : `vma: cat: ignoring the saved index "a.vma.vmaidx": ${why}; indexing anew\n`;

Deno.test("vma cat --save-index saves the index; later runs use it without reading the archive whole", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vma-saved-index-" });
  try {
    const data = disk();
    await writeArchive(`${dir}/a.vma`, data, UUID_A);
    // No index file unless asked for.
    let r = await vma(["cat", "a.vma", "drive-scsi0"], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "");
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["a.vma"]);
    r = await vma(["cat", "--save-index", "a.vma", "drive-scsi0"], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, note("saved"));
    assert.deepEqual(r.stdoutBytes, data);
    assert.deepEqual(
      [...Deno.readDirSync(dir)].map((e) => e.name).sort(),
      ["a.vma", "a.vma.vmaidx"],
    );
    // The proof that the archive is not read whole again: with its first
    // extent header damaged (size and time kept, the index given the new
    // ctime), a full read fails, a run with the saved index reads the
    // (intact) data.
    await nextCtimeSecond(`${dir}/a.vma`);
    await damageFirstExtent(`${dir}/a.vma`);
    const r0 = await vma(["cat", "a.vma", "drive-scsi0"], { cwd: dir });
    assert.equal(r0.code, 1);
    assert.equal(
      r0.stderr,
      note(
        "ignoring",
        "the archive file was replaced, copied or moved since it was saved (inode, file system or ctime)",
      ) + "vma: cat failed - wrong vma extent header chechsum\n",
    );
    await restamp(`${dir}/a.vma.vmaidx`, `${dir}/a.vma`);
    r = await vma(["cat", "a.vma", "drive-scsi0"], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, note("using"));
    assert.deepEqual(r.stdoutBytes, data);
    r = await vma(["repack", "a.vma", "b.vma"], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, 'vma: repack: using the saved index "a.vma.vmaidx"\n');
    const check = await vma(["cat", "b.vma", "drive-scsi0"], { cwd: dir });
    assert.deepEqual(check.stdoutBytes, data);
    await Deno.remove(`${dir}/a.vma.vmaidx`);
    r = await vma(["cat", "a.vma", "drive-scsi0"], { cwd: dir });
    assert.equal(r.code, 1);
    assert.equal(r.stderr, "vma: cat failed - wrong vma extent header chechsum\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("vma cat ignores a stale saved index (time, size or uuid changed) and rebuilds it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vma-saved-index-" });
  try {
    const data = disk();
    const path = `${dir}/a.vma`;
    await writeArchive(path, data, UUID_A);
    let r = await vma(["cat", "--save-index", "a.vma", "drive-scsi0"], { cwd: dir });
    assert.equal(r.stderr, note("saved"));
    // Touched: another modification time.
    const info = await Deno.stat(path);
    await Deno.utime(path, info.atime!, new Date(info.mtime!.getTime() + 5000));
    const changed = "the archive file changed since it was saved (size or time)";
    r = await vma(["cat", "a.vma", "drive-scsi0"], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, note("ignoring", changed));
    assert.deepEqual(r.stdoutBytes, data);
    // --save-index replaces it; the next run uses it.
    r = await vma(["cat", "--save-index", "a.vma", "drive-scsi0"], { cwd: dir });
    assert.equal(r.stderr, note("ignoring", changed) + note("saved"));
    r = await vma(["cat", "a.vma", "drive-scsi0"], { cwd: dir });
    assert.equal(r.stderr, note("using"));
    // Rewritten in place (same inode) with another archive of the same size,
    // same time (touch -r): the ctime tells.
    const replaced =
      "the archive file was replaced, copied or moved since it was saved (inode, file system or ctime)";
    // No wait here: --save-index waited for the second of the last change
    // to pass, so a change now has another ctime (Deno gives it to the second).
    const now = await Deno.stat(path);
    const other = disk().reverse();
    await writeArchive(path, other, UUID_B);
    await Deno.utime(path, now.atime!, now.mtime!);
    assert.equal((await Deno.stat(path)).size, now.size);
    r = await vma(["cat", "a.vma", "drive-scsi0"], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, note("ignoring", replaced));
    assert.deepEqual(r.stdoutBytes, other);
    // Another file (cp -p) with the same size, time and uuid: the inode tells.
    r = await vma(["cat", "--save-index", "a.vma", "drive-scsi0"], { cwd: dir });
    assert.equal(r.stderr, note("ignoring", replaced) + note("saved"));
    await writeArchive(`${dir}/c.vma`, data, UUID_B);
    await Deno.utime(`${dir}/c.vma`, now.atime!, now.mtime!);
    await Deno.rename(`${dir}/c.vma`, path);
    r = await vma(["cat", "a.vma", "drive-scsi0"], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, note("ignoring", replaced));
    assert.deepEqual(r.stdoutBytes, data);
    // Given the new stamp, the header still tells another uuid.
    await writeArchive(path, data, UUID_A);
    await Deno.utime(path, now.atime!, now.mtime!);
    await restamp(`${dir}/a.vma.vmaidx`, path);
    const saved = await Deno.readFile(`${dir}/a.vma.vmaidx`);
    saved.set(new TextEncoder().encode(UUID_B), 40);
    const end = saved.length - 32;
    saved.set(new Uint8Array(await crypto.subtle.digest("SHA-256", saved.subarray(0, end))), end);
    await Deno.writeFile(`${dir}/a.vma.vmaidx`, saved);
    r = await vma(["cat", "a.vma", "drive-scsi0"], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stderr,
      note("ignoring", `it is for the archive "${UUID_B}", not "${UUID_A}"`),
    );
    assert.deepEqual(r.stdoutBytes, data);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("vma cat ignores a damaged or foreign saved index with a note, and never --save-index a compressed archive", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vma-saved-index-" });
  try {
    const data = disk();
    await writeArchive(`${dir}/a.vma`, data, UUID_A);
    await vma(["cat", "--save-index", "a.vma", "drive-scsi0"], { cwd: dir });
    const saved = await Deno.readFile(`${dir}/a.vma.vmaidx`);
    saved[saved.length - 40] ^= 1;
    await Deno.writeFile(`${dir}/a.vma.vmaidx`, saved);
    let r = await vma(["cat", "a.vma", "drive-scsi0"], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, note("ignoring", "the checksum does not match (damaged)"));
    assert.deepEqual(r.stdoutBytes, data);
    await Deno.writeFile(`${dir}/a.vma.vmaidx`, new TextEncoder().encode("hello\n".repeat(20)));
    r = await vma(["cat", "a.vma", "drive-scsi0"], { cwd: dir });
    assert.equal(r.stderr, note("ignoring", "not a vmakit index file"));
    assert.deepEqual(r.stdoutBytes, data);
    await Deno.remove(`${dir}/a.vma.vmaidx`);
    await Deno.mkdir(`${dir}/a.vma.vmaidx`);
    r = await vma(["cat", "a.vma", "drive-scsi0"], { cwd: dir });
    assert.equal(r.stderr, note("ignoring", "not a regular file"));
    assert.deepEqual(r.stdoutBytes, data);
    await Deno.remove(`${dir}/a.vma.vmaidx`);
    // Compressed: the spool is made anew each time, nothing is saved.
    const gz = new Deno.Command("gzip", { args: ["-k", "a.vma"], cwd: dir }).outputSync();
    assert.equal(gz.code, 0);
    r = await vma(["cat", "--save-index", "a.vma.gz", "drive-scsi0"], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stderr,
      /vma: cat: warning: index not saved to "a\.vma\.gz\.vmaidx": only the index of a plain \(uncompressed\) archive file is saved\n$/,
    );
    assert.deepEqual(r.stdoutBytes, data);
    assert.deepEqual(
      [...Deno.readDirSync(dir)].map((e) => e.name).sort(),
      ["a.vma", "a.vma.gz"],
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("vma cat and repack read a seekable .vma.zst in place (no spool); a bad seek table is noted and the file spooled", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vma-seekable-" });
  try {
    const data = disk();
    await writeArchive(`${dir}/a.vma`, data, UUID_A);
    const plain = await Deno.readFile(`${dir}/a.vma`);
    const file = seekableFile(framesOf(plain, 100_000));
    await Deno.writeFile(`${dir}/s.vma.zst`, file);
    let r = await vma(["cat", "s.vma.zst", "drive-scsi0"], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "");
    assert.deepEqual(r.stdoutBytes, data);
    r = await vma(["repack", "s.vma.zst", "b.vma"], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "");
    assert.deepEqual((await vma(["cat", "b.vma", "drive-scsi0"], { cwd: dir })).stdoutBytes, data);
    // A table whose sizes do not add up: noted, then spooled as any .vma.zst.
    const v = new DataView(file.buffer);
    const firstEntry = file.length - 9 - 8 * Math.ceil(plain.length / 100_000);
    v.setUint32(firstEntry, v.getUint32(firstEntry, true) - 1, true);
    await Deno.writeFile(`${dir}/s.vma.zst`, file);
    r = await vma(["cat", "s.vma.zst", "drive-scsi0"], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stderr.split("\n");
    assert.match(
      lines[0],
      /^vma: cat: ignoring the seek table of "s\.vma\.zst": Cannot read the seekable zstd file: the seek table covers \d+ bytes of frames, the file has \d+ before the table$/,
    );
    assert.match(lines[1], /^vma: cat: zstd archive: spooling it decompressed to /);
    assert.deepEqual(r.stdoutBytes, data);
    assert.deepEqual(
      [...Deno.readDirSync(dir)].map((e) => e.name).sort(),
      ["a.vma", "b.vma", "s.vma.zst"],
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("vma cat reads no more of a saved index than its magic when it is not one, nor a larger one than the archive can need", async () => {
  if (NO_PEAK_RSS) {
    console.log(`skipped: ${NO_PEAK_RSS}`);
    return;
  }
  const dir = await Deno.makeTempDir({ prefix: "vma-saved-index-" });
  try {
    const data = disk();
    await writeArchive(`${dir}/a.vma`, data, UUID_A);
    const size = (await Deno.stat(`${dir}/a.vma`)).size;
    const max = 1024 * 1024 + 18 * Math.ceil(size / 4096);
    // 256 MiB (sparse): of zeros, then starting with the magic.
    for (const magic of ["", "VMAKITIX"]) {
      const file = await Deno.open(`${dir}/a.vma.vmaidx`, { write: true, create: true });
      await file.write(new TextEncoder().encode(magic));
      await file.truncate(256 * 2 ** 20);
      file.close();
      const r = await measureVma(["cat", "a.vma", "drive-scsi0"], dir).result();
      assert.equal(r.code, 0, r.stderr);
      assert.equal(
        r.stderr,
        note(
          "ignoring",
          magic === ""
            ? "not a vmakit index file"
            : `${256 * 2 ** 20} bytes is more than an index of this archive can need (${max})`,
        ),
      );
      assert.ok(r.peakRss < 150 * 2 ** 20, `peak RSS ${r.peakRss} bytes`);
      console.log(`${magic || "zeros"}: peak RSS ${(r.peakRss / 2 ** 20).toFixed(1)} MiB`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an archive whose name is too long for <archive>.vmaidx has no saved index: silent, and --save-index says why", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vma-saved-index-" });
  try {
    const data = disk();
    const name = `${"a".repeat(246)}.vma`; // 250 bytes: 257 with .vmaidx
    await writeArchive(`${dir}/${name}`, data, UUID_A);
    let r = await vma(["cat", name, "drive-scsi0"], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "");
    assert.deepEqual(r.stdoutBytes, data);
    r = await vma(["repack", name, "b.vma"], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "");
    r = await vma(["cat", "--save-index", name, "drive-scsi0"], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stderr,
      `vma: cat: warning: index not saved to "${name}.vmaidx": the archive's name is too long ` +
        "for the file system with .vmaidx added\n",
    );
    assert.deepEqual(r.stdoutBytes, data);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), [name, "b.vma"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
