// `vma create --vm-config`: a VM config as Proxmox keeps it becomes the
// qemu-server.conf vzdump stores, with its `#qmdump#map` lines, so qmrestore
// accepts the archive; the warnings for configs qmrestore would not find.
import assert from "node:assert/strict";
import { vma } from "../_cli_run.ts";
import { parseVmConfig, vmConfigPlan } from "../../src/cli/_vm_config.ts";
import { parseMapLines, restoreProblems } from "../../src/cli/_qemu_server_conf.ts";
import { NO_CONF } from "./_warnings.ts";
import { measureVma, NO_PEAK_RSS } from "./_peak_rss.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A VM config as /etc/pve/qemu-server/100.conf holds it, snapshot and all. */
const VM_CONF = `boot: order=scsi0;ide2;net0
bios: ovmf
cores: 2
efidisk0: local-lvm:vm-100-disk-1,efitype=4m,pre-enrolled-keys=1,size=4M
ide2: local:iso/debian-12.iso,media=cdrom,size=600M
memory: 4096
name: web
net0: virtio=BC:24:11:00:00:01,bridge=vmbr0
parent: before-upgrade
scsi0: local-lvm:vm-100-disk-0,iothread=1,size=32G
scsi1: nas:100/vm-100-disk-2.qcow2,size=8G
scsihw: virtio-scsi-single
virtio0: /dev/disk/by-id/ata-X,backup=0
lock: backup
unused0: local-lvm:vm-100-disk-9
#qmdump#map:scsi0:drive-scsi0:stale:raw:

[before-upgrade]
scsi0: local-lvm:vm-100-disk-0,size=32G
snaptime: 1700000000
`;

/** What vzdump keeps of it: the current config without parent:, lock:, unusedN: and old map lines. */
const KEPT = `boot: order=scsi0;ide2;net0
bios: ovmf
cores: 2
efidisk0: local-lvm:vm-100-disk-1,efitype=4m,pre-enrolled-keys=1,size=4M
ide2: local:iso/debian-12.iso,media=cdrom,size=600M
memory: 4096
name: web
net0: virtio=BC:24:11:00:00:01,bridge=vmbr0
scsi0: local-lvm:vm-100-disk-0,iothread=1,size=32G
scsi1: nas:100/vm-100-disk-2.qcow2,size=8G
scsihw: virtio-scsi-single
virtio0: /dev/disk/by-id/ata-X,backup=0

`;

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "vmakit-vm-config-" });
  try {
    await Deno.writeTextFile(`${dir}/100.conf`, VM_CONF);
    await Deno.writeFile(`${dir}/a.raw`, new Uint8Array(65536 * 3).fill(7));
    await Deno.writeFile(`${dir}/b.raw`, new Uint8Array(4096 * 5).fill(9));
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function files(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
}

Deno.test("parseVmConfig keeps what vzdump keeps and finds the disks, CD-ROMs left out", () => {
  const vm = parseVmConfig(encoder.encode(VM_CONF));
  assert.equal(decoder.decode(vm.stored), KEPT);
  assert.deepEqual(vm.disks, [
    {
      key: "efidisk0",
      volume: "local-lvm:vm-100-disk-1",
      storage: "local-lvm",
      format: "raw",
      devname: "drive-efidisk0",
      excluded: undefined,
    },
    {
      key: "scsi0",
      volume: "local-lvm:vm-100-disk-0",
      storage: "local-lvm",
      format: "raw",
      devname: "drive-scsi0",
      excluded: undefined,
    },
    {
      key: "scsi1",
      volume: "nas:100/vm-100-disk-2.qcow2",
      storage: "nas",
      format: "qcow2",
      devname: "drive-scsi1",
      excluded: undefined,
    },
    {
      key: "virtio0",
      volume: "/dev/disk/by-id/ata-X",
      storage: "",
      format: "raw",
      devname: "drive-virtio0",
      excluded: "backup=0",
    },
  ]);
});

Deno.test("parseVmConfig: format= wins over the extension, file= works, tpmstate0 is drive-tpmstate0-backup", () => {
  const vm = parseVmConfig(encoder.encode(
    "sata0: file=dir:100/vm-100-disk-0.vmdk,size=1G\n" +
      "virtio3: dir:100/vm-100-disk-1.raw,format=qcow2\n" +
      "tpmstate0: local-lvm:vm-100-disk-3,size=4M,version=v2.0\n" +
      "efidisk0: local-lvm:vm-100-disk-4,size=4M\n" +
      "ide0: none,media=cdrom\n" +
      "scsi2: cdrom,media=cdrom",
  ));
  assert.deepEqual(
    vm.disks.map((d) => [d.key, d.storage, d.format, d.devname, d.excluded]),
    [
      ["sata0", "dir", "vmdk", "drive-sata0", undefined],
      ["virtio3", "dir", "qcow2", "drive-virtio3", undefined],
      ["tpmstate0", "local-lvm", "raw", "drive-tpmstate0-backup", undefined],
      ["efidisk0", "local-lvm", "raw", "drive-efidisk0", "efidisk but no OVMF BIOS"],
    ],
  );
  // A last line without a newline gets one, so the map lines start a line.
  assert.ok(decoder.decode(vm.stored).endsWith("scsi2: cdrom,media=cdrom\n"));
});

Deno.test("parseVmConfig keeps the bytes of a line that is not UTF-8", () => {
  const data = new Uint8Array([...encoder.encode("name: x"), 0xff, 0x0a]);
  assert.deepEqual(parseVmConfig(data).stored, data);
});

Deno.test("vmConfigPlan maps the -d devices named drive-<key> and warns for the rest", () => {
  const vm = parseVmConfig(encoder.encode(VM_CONF));
  const plan = vmConfigPlan("100.conf", vm, ["drive-scsi1", "drive-scsi0", "disk2", "vmstate"]);
  const text = decoder.decode(plan.data);
  assert.equal(
    text,
    KEPT +
      "#qmdump#map:scsi1:drive-scsi1:nas:qcow2:\n#qmdump#map:scsi0:drive-scsi0:local-lvm:raw:\n",
  );
  assert.deepEqual(plan.warnings, [
    "device 'disk2' is not a disk of --vm-config '100.conf' (its disks are devices drive-<key>, such as drive-scsi0): qmrestore will refuse the archive (found no device mapping information for device 'disk2')",
    `disk 'efidisk0' ("local-lvm:vm-100-disk-1") of --vm-config '100.conf' is not in the archive (no -d 'drive-efidisk0'): qmrestore keeps its config line, which still names the original volume`,
    `disk 'virtio0' ("/dev/disk/by-id/ata-X") of --vm-config '100.conf' is not in the archive (no -d 'drive-virtio0'), as vzdump would leave it out (backup=0): qmrestore comments its config line out`,
  ]);
  // What qmrestore checks: a map line per device and a device per map line.
  assert.deepEqual(restoreProblems(text, ["drive-scsi0", "drive-scsi1"]), []);
});

Deno.test("vma create --vm-config stores qemu-server.conf with vzdump's map lines", async () => {
  await withDir(async (dir) => {
    const r = await vma([
      "create",
      "x.vma",
      "--vm-config",
      "100.conf",
      "-d",
      "format=raw:drive-scsi0=a.raw",
      "-d",
      "format=raw:drive-scsi1=b.raw",
      "-d",
      "format=raw:drive-efidisk0=b.raw",
      "-d",
      "format=raw:drive-virtio0=b.raw",
    ], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "");
    const list = await vma(["list", "x.vma"], { cwd: dir });
    assert.match(list.stdout, /^CFG: size: \d+ name: qemu-server.conf\nDEV: dev_id=1 /);
    const conf = await vma(["config", "x.vma"], { cwd: dir });
    assert.equal(
      conf.stdout,
      KEPT +
        "#qmdump#map:scsi0:drive-scsi0:local-lvm:raw:\n" +
        "#qmdump#map:scsi1:drive-scsi1:nas:qcow2:\n" +
        "#qmdump#map:efidisk0:drive-efidisk0:local-lvm:raw:\n" +
        "#qmdump#map:virtio0:drive-virtio0::raw:\n",
    );
    // Every DEV has its map line and every map line its DEV, as qmrestore requires.
    const devs = [...list.stdout.matchAll(/^DEV: dev_id=\d+ size: \d+ devname: (\S+)$/gm)]
      .map((m) => m[1]);
    assert.deepEqual(parseMapLines(conf.stdout).map((m) => m.devname), devs);
  });
});

Deno.test("vma create --vm-config warns for devices not in the config and disks not in the archive", async () => {
  await withDir(async (dir) => {
    const r = await vma([
      "create",
      "x.vma",
      "--vm-config",
      "100.conf",
      "-d",
      "format=raw:drive-scsi0=a.raw",
      "-d",
      "format=raw:b.raw",
    ], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stderr,
      "vma: warning: device 'disk1' is not a disk of --vm-config '100.conf' (its disks are devices drive-<key>, such as drive-scsi0): qmrestore will refuse the archive (found no device mapping information for device 'disk1')\n" +
        `vma: warning: disk 'efidisk0' ("local-lvm:vm-100-disk-1") of --vm-config '100.conf' is not in the archive (no -d 'drive-efidisk0'): qmrestore keeps its config line, which still names the original volume\n` +
        `vma: warning: disk 'scsi1' ("nas:100/vm-100-disk-2.qcow2") of --vm-config '100.conf' is not in the archive (no -d 'drive-scsi1'): qmrestore keeps its config line, which still names the original volume\n` +
        `vma: warning: disk 'virtio0' ("/dev/disk/by-id/ata-X") of --vm-config '100.conf' is not in the archive (no -d 'drive-virtio0'), as vzdump would leave it out (backup=0): qmrestore comments its config line out\n`,
    );
    const conf = await vma(["config", "x.vma"], { cwd: dir });
    assert.equal(conf.stdout, KEPT + "#qmdump#map:scsi0:drive-scsi0:local-lvm:raw:\n");
  });
});

Deno.test("vma create --vm-config: a file name with a newline stays on one warning line", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/x\ny.conf`, "scsi0: local:vm-1-disk-0\n");
    const r = await vma(["create", "x.vma", "--vm-config", "x\ny.conf"], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stderr,
      `vma: warning: disk 'scsi0' ("local:vm-1-disk-0") of --vm-config "x\\ny.conf" is not in the archive (no -d 'drive-scsi0'): qmrestore keeps its config line, which still names the original volume\n`,
    );
  });
});

Deno.test("vma create --vm-config warns only once the devices are good: a failure is one line", async () => {
  await withDir(async (dir) => {
    const r = await vma(
      ["create", "x.vma", "--vm-config", "100.conf", "-d", "format=raw:a b=a.raw"],
      { cwd: dir },
    );
    assert.equal(
      r.stderr,
      `vma: vma_writer_register_stream 'a b' failed - Cannot add device "a b": the name contains whitespace\n`,
    );
    assert.equal(r.code, 1);
    assert.deepEqual(files(dir), ["100.conf", "a.raw", "b.raw"]);
  });
});

Deno.test("vma create --vm-config of a missing or too big file fails in one line, leaving nothing", async () => {
  await withDir(async (dir) => {
    let r = await vma(["create", "x.vma", "--vm-config", "nope.conf"], { cwd: dir });
    assert.equal(
      r.stderr,
      "vma: Unable to read file: Failed to open file \u201cnope.conf\u201d: No such file or directory\n",
    );
    assert.equal(r.code, 1);
    await Deno.writeFile(`${dir}/big.conf`, new Uint8Array(65536).fill(0x23));
    r = await vma(["create", "x.vma", "--vm-config", "big.conf"], { cwd: dir });
    assert.equal(
      r.stderr,
      `vma: Unable to append config data big.conf (len > 65535) - Cannot add config "qemu-server.conf": the data is more than 65535 bytes\n`,
    );
    assert.equal(r.code, 1);
    r = await vma(["create", "x.vma", "--vm-config", "/dev/zero"], { cwd: dir });
    assert.equal(
      r.stderr,
      `vma: Unable to append config data /dev/zero (len > 65535) - Cannot add config "qemu-server.conf": the data is more than 65535 bytes\n`,
    );
    assert.equal(r.code, 1);
    // 65,500 bytes of config plus a map line: more than a blob holds.
    await Deno.writeTextFile(`${dir}/full.conf`, "#".repeat(65499) + "\nscsi0: s:v,size=1G\n");
    r = await vma(
      ["create", "x.vma", "--vm-config", "full.conf", "-d", "format=raw:drive-scsi0=a.raw"],
      { cwd: dir },
    );
    assert.match(
      r.stderr,
      /^vma: Unable to append config data full\.conf \(len = 655\d\d\) - Cannot add config "qemu-server\.conf": .*\n$/,
    );
    assert.equal(r.code, 1);
    assert.deepEqual(files(dir), ["100.conf", "a.raw", "b.raw", "big.conf", "full.conf"]);
  });
});

Deno.test("vma create warns for a -c file named <vmid>.conf and for an archive without qemu-server.conf", async () => {
  await withDir(async (dir) => {
    const r = await vma(["create", "x.vma", "-c", "100.conf", "-d", "format=raw:a.raw"], {
      cwd: dir,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stderr,
      "vma: warning: -c '100.conf' is stored as '100.conf', but qmrestore reads only qemu-server.conf: for a VM config from /etc/pve/qemu-server use --vm-config\n" +
        NO_CONF,
    );
    // With qemu-server.conf (or --make-config) there is no such warning.
    await Deno.writeTextFile(`${dir}/qemu-server.conf`, "memory: 512\n");
    const ok = await vma(["create", "y.vma", "-c", "qemu-server.conf"], { cwd: dir });
    assert.equal(ok.stderr, "");
    const made = await vma(["create", "z.vma", "--make-config", "-d", "format=raw:a.raw"], {
      cwd: dir,
    });
    assert.equal(made.stderr, "");
  });
});

Deno.test("vma create --vm-config of a 10 GiB file fails at once in little memory", async () => {
  if (NO_PEAK_RSS) {
    console.log(`skipped: ${NO_PEAK_RSS}`);
    return;
  }
  await withDir(async (dir) => {
    const file = await Deno.open(`${dir}/huge.conf`, { write: true, create: true });
    await file.truncate(10 * 2 ** 30); // sparse
    file.close();
    const r = await measureVma(["create", "bad.vma", "--vm-config", "huge.conf"], dir).result();
    assert.equal(
      r.stderr,
      `vma: Unable to append config data huge.conf (len > 65535) - Cannot add config "qemu-server.conf": the data is more than 65535 bytes\n`,
    );
    assert.equal(r.code, 1);
    assert.ok(r.peakRss < 150 * 2 ** 20, `peak RSS ${r.peakRss} bytes`);
    console.log(`peak RSS ${(r.peakRss / 2 ** 20).toFixed(1)} MiB`);
    assert.deepEqual(files(dir), ["100.conf", "a.raw", "b.raw", "huge.conf"]);
  });
});
