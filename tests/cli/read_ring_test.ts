// verify and extract read archives through the reader's ring (several 4 MiB
// windows read ahead): from a pipe, whose source closes with its last bytes,
// and from a file, with the same results as the library's plain path.
import assert from "node:assert/strict";
import { vma } from "../_cli_run.ts";
import { extractAll, pseudoRandom, writeArchive } from "../_helpers.ts";

const MiB = 1024 * 1024;
const disk = pseudoRandom(21 * MiB, 7);
disk.fill(0, 5 * MiB, 9 * MiB);
const archive = await writeArchive([{ name: "drive-scsi0", data: disk }]);

Deno.test("vma verify - reads a 21 MiB archive from a pipe to its end", async () => {
  const result = await vma(["verify", "-"], { stdin: archive });
  assert.equal(result.stderr, "");
  assert.equal(result.code, 0);
});

Deno.test("vma verify - of a cut archive fails with one line from a pipe", async () => {
  const result = await vma(["verify", "-"], { stdin: archive.subarray(0, 17 * MiB + 5) });
  assert.equal(result.code, 1);
  assert.match(result.stderr, /^vma: verify failed - short vma extent \(\d+ < \d+\)\n$/);
});

Deno.test("vma extract of a 21 MiB archive, from a file and from a pipe, gives the disk", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(`${dir}/a.vma`, archive);
    const fromFile = await vma(["extract", "a.vma", "out1"], { cwd: dir });
    assert.equal(fromFile.code, 0, fromFile.stderr);
    const fromPipe = await vma(["extract", "-", "out2"], { cwd: dir, stdin: archive });
    assert.equal(fromPipe.code, 0, fromPipe.stderr);
    const expected = (await extractAll(archive)).disks.get("drive-scsi0")!;
    assert.deepEqual(await Deno.readFile(`${dir}/out1/disk-drive-scsi0.raw`), expected);
    assert.deepEqual(await Deno.readFile(`${dir}/out2/disk-drive-scsi0.raw`), expected);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
