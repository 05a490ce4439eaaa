// `vma extract`: names in the archive that would land on the same file are
// refused before anything is written; a finished disk never replaces a file.
import assert from "node:assert/strict";
import { concat, craftHeader, craftZeroExtent } from "../_craft.ts";
import type { CraftConfig, CraftDevice } from "../_craft.ts";
import { vma } from "../_cli_run.ts";
import { renameNoReplace } from "../../src/cli/_output.ts";

function list(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
}

/** Writes a crafted archive (all clusters zero) to `<dir>/a.vma`. */
async function archive(dir: string, configs: CraftConfig[], devices: CraftDevice[]) {
  const header = craftHeader({ configs, devices });
  const extents = devices.map((_, i) => craftZeroExtent(i + 1, 0, 1));
  await Deno.writeFile(`${dir}/a.vma`, concat(header.bytes, ...extents));
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "vmakit-extract-names-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const DISK = { name: "drive-scsi0", size: 65536 };

Deno.test("vma extract refuses a config named like a file it writes, before writing anything", async () => {
  await withDir(async (dir) => {
    const cases: [CraftConfig[], CraftDevice[], string][] = [
      [
        [{ name: "disk-drive-scsi0.raw", data: "x" }],
        [DISK],
        'config "disk-drive-scsi0.raw" and device "drive-scsi0" would both be written to "disk-drive-scsi0.raw"',
      ],
      [
        [{ name: "TMP-Disk-drive-scsi0.RAW", data: "x" }],
        [DISK],
        'config "TMP-Disk-drive-scsi0.RAW" and device "drive-scsi0" would both be written to "tmp-disk-drive-scsi0.raw"',
      ],
      [
        [{ name: "VMState.bin", data: "x" }],
        [DISK, { name: "vmstate", size: 65536 }],
        'config "VMState.bin" and device "vmstate" would both be written to "vmstate.bin"',
      ],
      [
        [],
        [{ name: "Drive-A", size: 65536 }, { name: "drive-a", size: 65536 }],
        'device "Drive-A" and device "drive-a" would both be written to "tmp-disk-drive-a.raw"',
      ],
      [
        [{ name: "Qemu-Server.conf", data: "x" }, { name: "qemu-server.CONF", data: "y" }],
        [DISK],
        'config "Qemu-Server.conf" and config "qemu-server.CONF" would both be written to "qemu-server.CONF"',
      ],
    ];
    for (const [configs, devices, message] of cases) {
      await archive(dir, configs, devices);
      const r = await vma(["extract", "a.vma", "out"], { cwd: dir });
      assert.equal(r.stderr, `vma: refusing to extract: ${message}\n`, message);
      assert.equal(r.code, 1);
      assert.equal(r.stdout, "");
      assert.deepEqual(list(dir), ["a.vma"]);
    }
  });
});

Deno.test("vma extract writes a config named like a disk it does not extract (-d)", async () => {
  await withDir(async (dir) => {
    await archive(dir, [{ name: "disk-drive-scsi1.raw", data: "kept" }], [
      DISK,
      { name: "drive-scsi1", size: 65536 },
    ]);
    const r = await vma(["extract", "-d", "drive-scsi0", "a.vma", "out"], { cwd: dir });
    assert.equal(r.stderr, "");
    assert.equal(r.code, 0);
    assert.deepEqual(list(`${dir}/out`), ["disk-drive-scsi0.raw", "disk-drive-scsi1.raw"]);
    assert.equal(await Deno.readTextFile(`${dir}/out/disk-drive-scsi1.raw`), "kept");
  });
});

Deno.test("renameNoReplace never replaces an existing file", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/from`, "new");
    await Deno.writeTextFile(`${dir}/to`, "old");
    assert.throws(
      () => renameNoReplace(`${dir}/from`, `${dir}/to`),
      (e: unknown) => (e as { code?: string }).code === "EEXIST",
    );
    assert.equal(await Deno.readTextFile(`${dir}/to`), "old");
    assert.equal(await Deno.readTextFile(`${dir}/from`), "new");
    renameNoReplace(`${dir}/from`, `${dir}/moved`);
    assert.deepEqual(list(dir), ["moved", "to"]);
    assert.equal(await Deno.readTextFile(`${dir}/moved`), "new");
  });
});

Deno.test("vma extract -d with a name the archive lacks warns, naming the devices, and still exits 0", async () => {
  await withDir(async (dir) => {
    await archive(dir, [{ name: "qemu-server.conf", data: "x\n" }], [
      DISK,
      { name: "drive-scsi1", size: 65536 },
    ]);
    const r = await vma(["extract", "a.vma", "out", "-d", "drive-scsi1,scsi0,drive-scsi1"], {
      cwd: dir,
    });
    assert.equal(r.code, 0);
    assert.equal(
      r.stderr,
      "vma: warning: -d 'scsi0': the archive has no such device, so nothing is extracted for it (its devices: 'drive-scsi0', 'drive-scsi1')\n",
    );
    assert.equal(r.stdout, "DEVINFO out/tmp-disk-drive-scsi1.raw 65536\n");
    assert.deepEqual(list(`${dir}/out`), ["disk-drive-scsi1.raw", "qemu-server.conf"]);
    // Only unknown names: nothing but the configs, as Proxmox's vma, one line per name.
    const none = await vma(["extract", "a.vma", "none", "-d", "x\ny", "-d", ""], { cwd: dir });
    assert.equal(none.code, 0);
    assert.equal(
      none.stderr,
      `vma: warning: -d "x\\ny": the archive has no such device, so nothing is extracted for it (its devices: 'drive-scsi0', 'drive-scsi1')\n` +
        `vma: warning: -d "": the archive has no such device, so nothing is extracted for it (its devices: 'drive-scsi0', 'drive-scsi1')\n`,
    );
    assert.deepEqual(list(`${dir}/none`), ["qemu-server.conf"]);
    // Every name known: no warning.
    const all = await vma(["extract", "a.vma", "all", "-d", "drive-scsi0,drive-scsi1"], {
      cwd: dir,
    });
    assert.equal(all.stderr, "");
  });
});
