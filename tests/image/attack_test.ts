// Backing chains as a careless user or an attacker makes them: loops through
// other images and symlinks end in one line naming the loop; a long chain of
// small images is read, not refused for memory it never uses.
import assert from "node:assert/strict";
import { have, makeDisk, sh } from "../_cli_run.ts";

const SKIP = !have("qemu-img");
if (SKIP) console.log("attack_test: SKIPPED: qemu-img is missing (apt-get install qemu-utils)");

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "vma-chain-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function errorLines(stderr: string): string[] {
  return stderr.split("\n").filter((l) => l !== "" && !l.startsWith("vma: warning: "));
}

Deno.test({
  name: "vma create names a backing chain loop through two images and a symlink",
  ignore: SKIP,
  async fn() {
    await withDir(async (dir) => {
      const r = await sh(
        [
          "qemu-img create -q -f qcow2 a.qcow2 1M",
          "qemu-img create -q -f qcow2 -F qcow2 -b a.qcow2 b.qcow2",
          "ln -s b.qcow2 link.qcow2",
          "qemu-img rebase -q -u -F qcow2 -b link.qcow2 a.qcow2",
          "timeout -s KILL 60 $VMA create out.vma -d format=qcow2:drive-scsi0=b.qcow2",
        ].join(" && "),
        dir,
      );
      assert.equal(r.code, 1);
      assert.deepEqual(errorLines(r.stderr), [
        `vma: bdrv_open 'b.qcow2' failed - Cannot open the backing file "a.qcow2": ` +
        `Cannot open the backing file "link.qcow2": the backing chain is a loop: ` +
        `'link.qcow2' is an image above it`,
      ]);
      await assert.rejects(Deno.lstat(`${dir}/out.vma`), Deno.errors.NotFound);
    });
  },
});

Deno.test({
  name: "vma create reads a chain of 16 small qcow2 images and refuses a 17th",
  ignore: SKIP,
  async fn() {
    await withDir(async (dir) => {
      await Deno.writeFile(`${dir}/base.raw`, makeDisk(1024 * 1024, 7));
      const steps = ["qemu-img convert -q -f raw -O qcow2 base.raw c0.qcow2"];
      for (let i = 1; i <= 16; i++) {
        steps.push(`qemu-img create -q -f qcow2 -F qcow2 -b c${i - 1}.qcow2 c${i}.qcow2`);
      }
      steps.push(
        "qemu-io -c 'write -P 0x5a 65536 4096' c15.qcow2 >/dev/null",
        "$VMA create ok.vma -d format=qcow2:drive-scsi0=c15.qcow2",
        "$VMA extract ok.vma x",
      );
      const r = await sh(steps.join(" && "), dir);
      assert.equal(r.code, 0, r.stderr);
      const expected = makeDisk(1024 * 1024, 7);
      expected.fill(0x5a, 65536, 65536 + 4096);
      assert.deepEqual(await Deno.readFile(`${dir}/x/disk-drive-scsi0.raw`), expected);

      const long = await sh("$VMA create long.vma -d format=qcow2:drive-scsi0=c16.qcow2", dir);
      assert.equal(long.code, 1);
      const lines = errorLines(long.stderr);
      assert.equal(lines.length, 1);
      assert.match(lines[0], /: the backing chain is longer than 16 images$/);
    });
  },
});
