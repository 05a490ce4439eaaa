// `vma create`: round trips through `vma extract` compared byte for byte,
// compression, stdout, reproducibility, vzdump names, restore checks, errors
// and cleanup.
import assert from "node:assert/strict";
import { NO_CONF } from "./_warnings.ts";
import { CLI, fixtureDir, have, makeDisk, readOrUndefined, sh, vma } from "../_cli_run.ts";

const dir = await fixtureDir();
globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(dir, { recursive: true });
  } catch {
    // gone
  }
});

const MAP_CONF = "memory: 512\nscsi0: local:vm-100-disk-0,size=4M\n" +
  "#qmdump#map:scsi0:drive-scsi0:local:raw:\n#qmdump#map:scsi1:drive-scsi1:local:raw:\n";
await Deno.writeTextFile(`${dir}/mapped/qemu-server.conf`, MAP_CONF).catch(async () => {
  await Deno.mkdir(`${dir}/mapped`);
  await Deno.writeTextFile(`${dir}/mapped/qemu-server.conf`, MAP_CONF);
});
if (!have("qemu-img")) {
  console.log(
    "create_test: SKIPPED the qcow2/VMDK tests: qemu-img is missing (apt-get install qemu-utils)",
  );
}

const PROXMOX_ARGS = [
  "-c",
  "qemu-server.conf",
  "-c",
  "qemu-server.fw",
  "-d",
  "format=raw:drive-scsi0=disk0.raw",
  "-d",
  "format=raw:drive-scsi1=disk1.raw",
];

function files(path: string): string[] {
  return [...Deno.readDirSync(path)].map((e) => e.name).sort();
}

async function assertExtractsTo(archive: string, expected: Record<string, string>) {
  const out = `${dir}/x-${crypto.randomUUID()}`;
  const r = await vma(["extract", archive, out], { cwd: dir });
  assert.equal(r.stderr, "");
  assert.equal(r.code, 0);
  assert.deepEqual(await files(out), Object.keys(expected).sort());
  for (const [name, source] of Object.entries(expected)) {
    assert.deepEqual(
      await Deno.readFile(`${out}/${name}`),
      await Deno.readFile(`${dir}/${source}`),
      name,
    );
  }
}

Deno.test("vma create writes what Proxmox's vma writes for the fixtures, and extract reads it back", async () => {
  const r = await vma(["create", "rt.vma", ...PROXMOX_ARGS], { cwd: dir });
  assert.equal(r.code, 0);
  assert.equal(r.stdout, "");
  // The fixture's config has no map lines: two restore warnings.
  assert.equal(
    r.stderr,
    "vma: warning: qemu-server.conf has no '#qmdump#map' line for device 'drive-scsi0': qmrestore will refuse the archive (found no device mapping information for device 'drive-scsi0')\n" +
      "vma: warning: qemu-server.conf has no '#qmdump#map' line for device 'drive-scsi1': qmrestore will refuse the archive (found no device mapping information for device 'drive-scsi1')\n",
  );
  // Same size as the archive Proxmox's vma wrote from these inputs.
  assert.equal((await Deno.stat(`${dir}/rt.vma`)).size, (await Deno.stat(`${dir}/small.vma`)).size);
  const list = await vma(["list", "rt.vma"], { cwd: dir });
  assert.match(
    list.stdout,
    /^CFG: size: 317 name: qemu-server.conf\nCFG: size: 15 name: qemu-server.fw\nDEV: dev_id=1 size: 4194304 devname: drive-scsi0\nDEV: dev_id=2 size: 1053184 devname: drive-scsi1\nCTIME: /,
  );
  await assertExtractsTo("rt.vma", {
    "disk-drive-scsi0.raw": "disk0.raw",
    "disk-drive-scsi1.raw": "disk1.raw",
    "qemu-server.conf": "qemu-server.conf",
    "qemu-server.fw": "qemu-server.fw",
  });
  // No temporary file is left in the directory.
  assert.deepEqual((await files(dir)).filter((n) => n.includes("vma-tmp")), []);
});

Deno.test("vma create -v prints Proxmox's progress and image lines on stderr", async () => {
  const r = await vma(["create", "-v", "verbose.vma", ...PROXMOX_ARGS.slice(4)], { cwd: dir });
  assert.equal(r.code, 0);
  assert.equal(r.stdout, "");
  assert.ok(r.stderr.endsWith(NO_CONF), r.stderr);
  const lines = r.stderr.slice(0, -NO_CONF.length).trimEnd().split("\n");
  // Proxmox's vma create -v prints these for disk0.raw/disk1.raw: the padding
  // blocks of drive-scsi1's partial last cluster count as zeros.
  assert.deepEqual(lines.slice(-2), [
    "image drive-scsi0: size=4194304 zeros=2097152 saved=2097152",
    "image drive-scsi1: size=1053184 zeros=1040384 saved=12800",
  ]);
  for (const line of lines.slice(0, -2)) assert.match(line, /^progress \d+% \d+\/5247488 \d+$/);
  assert.equal(lines[lines.length - 3], "progress 100% 5247488/5247488 3137536");
});

Deno.test("vma create round trips odd disks: unaligned sizes are padded, zeros kept sparse", async () => {
  await Deno.writeFile(`${dir}/odd.raw`, makeDisk(3 * 65536 + 4096 + 700, 7));
  await Deno.writeFile(`${dir}/big.raw`, makeDisk(9 * 1024 * 1024, 3));
  const r = await vma(
    ["create", "odd.vma", "-d", "format=raw:drive-virtio0=odd.raw", "-d", "format=raw:big.raw"],
    { cwd: dir },
  );
  assert.equal(r.code, 0);
  assert.equal(
    r.stderr,
    "vma: warning: image 'odd.raw' size 201404 is not a multiple of 512: padded with 324 zero bytes to 201728\n" +
      NO_CONF,
  );
  const out = `${dir}/x-odd`;
  assert.equal((await vma(["extract", "odd.vma", out], { cwd: dir })).code, 0);
  const odd = await Deno.readFile(`${out}/disk-drive-virtio0.raw`);
  assert.equal(odd.length, 201728);
  assert.deepEqual(odd.subarray(0, 201404), await Deno.readFile(`${dir}/odd.raw`));
  assert.ok(odd.subarray(201404).every((b) => b === 0));
  // The second disk has no name: disk1 (numbered among all disks).
  assert.deepEqual(
    await Deno.readFile(`${out}/disk-disk1.raw`),
    await Deno.readFile(`${dir}/big.raw`),
  );
});

for (
  const [option, name, magic] of [
    [["--compress", "zstd"], "c1.vma", [0x28, 0xb5, 0x2f, 0xfd]],
    [["--compress", "gzip"], "c2.vma", [0x1f, 0x8b]],
    [[], "c3.vma.zst", [0x28, 0xb5, 0x2f, 0xfd]],
    [[], "c4.vma.gz", [0x1f, 0x8b]],
    [["--compress", "none"], "c5.vma.zst", [0x56, 0x4d, 0x41, 0x00]],
  ] as const
) {
  Deno.test(`vma create ${option.join(" ")} ${name} writes ${name.endsWith("zst") || option[1] === "zstd" ? "" : ""}the right format, readable back`, async () => {
    const r = await vma(["create", ...option, name, ...PROXMOX_ARGS.slice(4)], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    const bytes = await Deno.readFile(`${dir}/${name}`);
    assert.deepEqual([...bytes.subarray(0, magic.length)], [...magic]);
    await assertExtractsTo(name, {
      "disk-drive-scsi0.raw": "disk0.raw",
      "disk-drive-scsi1.raw": "disk1.raw",
    });
  });
}

Deno.test({
  name: "vma create output compressed with zstd/gzip is readable by zstd -d and gzip -d",
  ignore: !have("zstd") || !have("gzip"),
  async fn() {
    const args = [
      "--uuid",
      "11111111-2222-4333-8444-555555555555",
      "--ctime",
      "1700000000",
      "--ordered",
    ];
    for (const name of ["p.vma", "p.vma.zst", "p.vma.gz"]) {
      const r = await vma(["create", ...args, name, ...PROXMOX_ARGS.slice(4)], { cwd: dir });
      assert.equal(r.code, 0, r.stderr);
    }
    const r = await sh(
      "zstd -dc p.vma.zst | cmp - p.vma && gzip -dc p.vma.gz | cmp - p.vma && echo same",
      dir,
    );
    assert.equal(r.stdout, "same\n", r.stderr);
  },
});

Deno.test({
  name: "vma create --zstd-level changes the zstd output, not the archive inside it",
  ignore: !have("zstd"),
  async fn() {
    const args = ["--uuid", "11111111-2222-4333-8444-555555555555", "--ctime", "1700000000"];
    for (const [level, name] of [["1", "l1.vma.zst"], ["19", "l19.vma.zst"]]) {
      const r = await vma(
        ["create", ...args, "--ordered", "--zstd-level", level, name, ...PROXMOX_ARGS],
        { cwd: dir },
      );
      assert.equal(r.code, 0, r.stderr);
    }
    const plain = await vma(["create", ...args, "--ordered", "l.vma", ...PROXMOX_ARGS], {
      cwd: dir,
    });
    assert.equal(plain.code, 0, plain.stderr);
    const r = await sh(
      "cmp -s l1.vma.zst l19.vma.zst && echo equal; zstd -dc l1.vma.zst | cmp - l.vma && zstd -dc l19.vma.zst | cmp - l.vma && echo same",
      dir,
    );
    assert.equal(r.stdout, "same\n", r.stderr);
  },
});

Deno.test("vma create warns that --zstd-level and --threads are ignored without zstd, and writes the same archive", async () => {
  const args = ["--uuid", "11111111-2222-4333-8444-555555555555", "--ctime", "1700000000"];
  const cases: [string[], string, string][] = [
    [
      ["--zstd-level", "7"],
      "w1.vma.gz",
      "--zstd-level applies to zstd only, and the archive is gzip-compressed: ignored",
    ],
    [
      ["--threads", "2", "--zstd-level", "1"],
      "w2.vma",
      "--zstd-level and --threads apply to zstd only, and the archive is not compressed: ignored",
    ],
    [
      ["--threads", "3", "--compress", "none"],
      "w3.vma.zst",
      "--threads applies to zstd only, and the archive is not compressed: ignored",
    ],
  ];
  for (const [extra, name, message] of cases) {
    const r = await vma(["create", ...args, "--ordered", ...extra, name, ...PROXMOX_ARGS], {
      cwd: dir,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stderr.split("\n").filter((l) => l.includes("zstd only")).join("\n"),
      `vma: warning: ${message}`,
    );
  }
  const plain = await vma(["create", ...args, "--ordered", "w.vma", ...PROXMOX_ARGS], { cwd: dir });
  assert.equal(plain.code, 0, plain.stderr);
  assert.ok(!plain.stderr.includes("zstd only"), plain.stderr);
  const same = await sh(
    "gzip -dc w1.vma.gz | cmp - w.vma && cmp w2.vma w.vma && cmp w3.vma.zst w.vma && echo same",
    dir,
  );
  assert.equal(same.stdout, "same\n", same.stderr);
});

Deno.test("vma create - writes the archive to stdout, and vma extract - reads it back through a pipe", async () => {
  const r = await sh(
    `set -e -o pipefail; $VMA create - -c mapped/qemu-server.conf -d format=raw:drive-scsi0=disk0.raw -d format=raw:drive-scsi1=disk1.raw | $VMA extract - x-pipe >/dev/null; cmp x-pipe/disk-drive-scsi0.raw disk0.raw; cmp x-pipe/disk-drive-scsi1.raw disk1.raw; cmp x-pipe/qemu-server.conf mapped/qemu-server.conf; echo ok`,
    dir,
  );
  assert.equal(r.stderr, "");
  assert.equal(r.stdout, "ok\n");
});

Deno.test({
  name: "vma create - --compress zstd | zstd -d | vma verify -v -",
  ignore: !have("zstd"),
  async fn() {
    const r = await sh(
      `set -o pipefail; $VMA create - --compress zstd ${
        PROXMOX_ARGS.join(" ")
      } 2>/dev/null | zstd -dc | $VMA verify -v - | tail -2`,
      dir,
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout,
      "total bytes read 5308416, sparse bytes 3080192 (58%)\nspace reduction due to 4K zero blocks 0%\n",
    );
  },
});

Deno.test("vma create to a closed stdout pipe ends quietly with status 1", async () => {
  const r = await sh(
    `$VMA create - -d format=raw:disk0.raw | head -c 100 >/dev/null; echo "status \${PIPESTATUS[0]}"`,
    dir,
  );
  assert.equal(r.stdout, "status 1\n");
  assert.equal(r.stderr, "");
});

Deno.test("vma create --uuid --ctime --ordered makes byte-identical archives; SOURCE_DATE_EPOCH sets ctime", async () => {
  const uuid = "0f0e0d0c-0b0a-4908-8706-050403020100";
  const a = await vma([
    "create",
    "--uuid",
    uuid,
    "--ctime",
    "2023-09-05T15:29:21Z",
    "--ordered",
    "r1.vma",
    ...PROXMOX_ARGS.slice(4),
  ], { cwd: dir });
  const b = await vma(["create", "--uuid", uuid, "--ordered", "r2.vma", ...PROXMOX_ARGS.slice(4)], {
    cwd: dir,
    env: { SOURCE_DATE_EPOCH: "1693927761" },
  });
  assert.equal(a.code, 0, a.stderr);
  assert.equal(b.code, 0, b.stderr);
  assert.deepEqual(await Deno.readFile(`${dir}/r1.vma`), await Deno.readFile(`${dir}/r2.vma`));
  const list = await vma(["list", "--json", "r1.vma"], { cwd: dir });
  const json = JSON.parse(list.stdout);
  assert.equal(json.uuid, uuid);
  assert.equal(json.ctime, "2023-09-05T15:29:21Z");
  const text = await vma(["list", "r1.vma"], { cwd: dir });
  assert.ok(text.stdout.includes("\nCTIME: Tue Sep  5 15:29:21 2023\n"), text.stdout);
});

Deno.test("vma create --vmid names the archive vzdump-qemu-<vmid>-<time>.vma[.zst] and prints it", async () => {
  await Deno.mkdir(`${dir}/dump`);
  const r = await vma(
    [
      "create",
      "--vmid",
      "123",
      "--ctime",
      "1693927761",
      "--compress",
      "zstd",
      "dump",
      ...PROXMOX_ARGS.slice(4),
    ],
    { cwd: dir },
  );
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, "dump/vzdump-qemu-123-2023_09_05-15_29_21.vma.zst\n");
  assert.deepEqual(await files(`${dir}/dump`), ["vzdump-qemu-123-2023_09_05-15_29_21.vma.zst"]);
  const plain = await vma([
    "create",
    "--vmid",
    "123",
    "--ctime",
    "1693927762",
    "dump",
    "-d",
    "format=raw:disk1.raw",
  ], { cwd: dir });
  assert.equal(plain.stdout, "dump/vzdump-qemu-123-2023_09_05-15_29_22.vma\n");
  const notDir = await vma(["create", "--vmid", "123", "disk0.raw", "-d", "format=raw:disk1.raw"], {
    cwd: dir,
  });
  assert.equal(notDir.code, 1);
  assert.equal(notDir.stderr, "vma: --vmid: 'disk0.raw' is not a directory\n");
});

Deno.test("vma create --make-config adds a restorable qemu-server.conf with map lines", async () => {
  const r = await vma(
    [
      "create",
      "--make-config",
      "--storage",
      "tank",
      "mk.vma",
      "-d",
      "format=raw:drive-scsi0=disk0.raw",
      "-d",
      "format=raw:data=disk1.raw",
    ],
    { cwd: dir },
  );
  assert.equal(r.code, 0);
  assert.equal(r.stderr, "");
  const conf = await vma(["config", "mk.vma"], { cwd: dir });
  assert.equal(
    conf.stdout,
    [
      "# Generated by vmakit (vma create --make-config)",
      "boot: order=scsi0",
      "cores: 1",
      "memory: 2048",
      "ostype: l26",
      "scsihw: virtio-scsi-pci",
      "scsi0: tank:vm-100-disk-0,size=4M",
      "scsi1: tank:vm-100-disk-1,size=1053184",
      "#qmdump#map:scsi0:drive-scsi0:tank:raw:",
      "#qmdump#map:scsi1:data:tank:raw:",
      "",
    ].join("\n"),
  );
});

Deno.test("vma create warns about map lines for devices not in the archive", async () => {
  const r = await vma([
    "create",
    "warn.vma",
    "-c",
    "mapped/qemu-server.conf",
    "-d",
    "format=raw:drive-scsi0=disk0.raw",
  ], { cwd: dir });
  assert.equal(r.code, 0);
  assert.equal(
    r.stderr,
    "vma: warning: qemu-server.conf maps device 'drive-scsi1' (scsi1), which is not in the archive: qmrestore will refuse the archive (archive does not contain data for drive 'scsi1')\n",
  );
  const ok = await vma([
    "create",
    "nowarn.vma",
    "-c",
    "mapped/qemu-server.conf",
    ...PROXMOX_ARGS.slice(4),
  ], { cwd: dir });
  assert.equal(ok.stderr, "");
});

Deno.test("vma create accepts the legacy positional disks with Proxmox's deprecation warning", async () => {
  const r = await vma(["create", "legacy.vma", "drive-scsi0=disk0.raw", "disk1.raw"], { cwd: dir });
  assert.equal(r.code, 0);
  assert.equal(
    r.stderr,
    "vma: warning: Specifying a device without a format is deprecated - use '-d format=<format>:drive-scsi0=disk0.raw'\n" +
      "vma: warning: Specifying a device without a format is deprecated - use '-d format=<format>:disk1.raw'\n" +
      NO_CONF,
  );
  const list = await vma(["list", "legacy.vma"], { cwd: dir });
  assert.match(list.stdout, /devname: drive-scsi0\nDEV: dev_id=2 size: 1053184 devname: disk1\n/);
});

Deno.test("vma create with only configs writes a config-only archive", async () => {
  const r = await vma(["create", "cfg.vma", "-c", "qemu-server.conf"], { cwd: dir });
  assert.equal(r.code, 0);
  const v = await vma(["verify", "-v", "cfg.vma"], { cwd: dir });
  assert.match(
    v.stdout,
    /^CFG: size: 317 name: qemu-server.conf\nCTIME: .*\nvma archive contains no image data\n$/,
  );
});

Deno.test("vma create fails cleanly: existing archive, missing config or disk, other formats, mixed forms", async () => {
  const cases: [string[], string, number][] = [
    [
      ["create", "small.vma", "-d", "format=raw:disk0.raw"],
      "vma: can't open file small.vma - File exists\n",
      1,
    ],
    [
      ["create", "e1.vma", "-c", "nope.conf"],
      "vma: Unable to read file: Failed to open file \u201cnope.conf\u201d: No such file or directory\n",
      1,
    ],
    [
      ["create", "e2.vma", "-d", "format=raw:nope.raw"],
      "vma: bdrv_open 'nope.raw' failed - Could not open 'nope.raw': No such file or directory\n",
      1,
    ],
    [
      ["create", "e3.vma", "-d", "format=qed:disk0.raw"],
      "vma: bdrv_open 'disk0.raw' failed - format 'qed' is not supported yet (raw, qcow2, vmdk, vhdx, vpc and vdi are)\n",
      1,
    ],
    [
      ["create", "e4.vma", "-d", "disk0.raw"],
      "vma: No format specified for device: 'disk0.raw'\n",
      1,
    ],
    [
      ["create", "e5.vma", "-d", "format=raw:a=disk0.raw", "disk1.raw"],
      "vma: Unexpected extra argument - specify all devices via '-d'\n",
      2,
    ],
    [
      ["create", "e6.vma", "-d", "format=raw:bad name=disk0.raw"],
      `vma: vma_writer_register_stream 'bad name' failed - Cannot add device "bad name": the name contains whitespace\n`,
      1,
    ],
    [
      ["create", "e7.vma", "-d", "format=raw:x=disk0.raw", "-d", "format=raw:x=disk1.raw"],
      `vma: vma_writer_register_stream 'x' failed - Cannot add device "x": the name is already used\n`,
      1,
    ],
  ];
  for (const [args, stderr, code] of cases) {
    const r = await vma(args, { cwd: dir });
    assert.equal(r.stderr.split("\n")[0] + "\n", stderr, args.join(" "));
    assert.equal(r.code, code, args.join(" "));
    if (args[1] !== "small.vma") {
      assert.equal(await readOrUndefined(`${dir}/${args[1]}`), undefined);
    }
  }
  assert.deepEqual((await files(dir)).filter((n) => n.includes("vma-tmp")), []);
});

Deno.test("vma create rejects bad --uuid, --ctime, --compress and --vmid values as usage errors", async () => {
  for (
    const args of [
      ["--uuid", "nope"],
      ["--ctime", "yesterday"],
      ["--compress", "xz"],
      ["--vmid", "abc"],
      ["--zstd-level", "0"],
      ["--zstd-level", "20"],
      ["--zstd-level", "fast"],
    ]
  ) {
    const r = await vma(["create", ...args, "u.vma", "-d", "format=raw:disk0.raw"], { cwd: dir });
    assert.equal(r.code, 2, args.join(" "));
    assert.match(r.stderr, new RegExp(`^vma: invalid ${args[0]} '${args[1]}'`));
  }
  const sde = await vma(["create", "u.vma", "-d", "format=raw:disk0.raw"], {
    cwd: dir,
    env: { SOURCE_DATE_EPOCH: "soon" },
  });
  assert.equal(sde.code, 2);
  assert.match(sde.stderr, /^vma: invalid SOURCE_DATE_EPOCH 'soon'/);
});

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  Deno.test(`vma create stopped by ${signal} leaves nothing under the final name nor a temp file`, async () => {
    // A large sparse disk keeps create busy for a few seconds.
    const disk = `${dir}/huge-${signal}.raw`;
    const f = await Deno.open(disk, { write: true, create: true });
    await f.truncate(64 * 1024 * 1024 * 1024);
    f.close();
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("../../cli.ts", import.meta.url).pathname,
        "create",
        `killed-${signal}.vma`,
        "-d",
        `format=raw:${disk}`,
      ],
      cwd: dir,
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    // Wait until the temporary file exists, then stop the process.
    for (let i = 0; i < 100; i++) {
      if ((await files(dir)).some((n) => n.includes(`killed-${signal}.vma.vma-tmp`))) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(
      (await files(dir)).some((n) => n.includes(`killed-${signal}.vma.vma-tmp`)),
      "no temp file seen",
    );
    child.kill(signal);
    const out = await child.output();
    await Deno.remove(disk);
    assert.equal(out.code, signal === "SIGTERM" ? 143 : 130);
    assert.equal(new TextDecoder().decode(out.stderr), `vma: interrupted by ${signal}\n`);
    assert.deepEqual((await files(dir)).filter((n) => n.includes("killed")), []);
  });
}

Deno.test({
  name: "vma create exec:<command> pipes the archive into a shell command",
  ignore: Deno.build.os === "windows",
  async fn() {
    const r = await vma(["create", "exec:cat > exec.vma", ...PROXMOX_ARGS.slice(4)], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    await assertExtractsTo("exec.vma", {
      "disk-drive-scsi0.raw": "disk0.raw",
      "disk-drive-scsi1.raw": "disk1.raw",
    });
    const fail = await vma(["create", "exec:exit 3", "-c", "qemu-server.conf"], { cwd: dir });
    assert.equal(fail.code, 1);
    assert.equal(fail.stderr, "vma: command 'exit 3' failed with exit status 3\n");
  },
});

Deno.test({
  name:
    "vma create of qcow2 and VMDK images larger than its 4 MiB read buffers (reused) and of several raw disks (buffers shared) extracts byte for byte",
  ignore: !have("qemu-img"),
  async fn() {
    // 18 MiB: every 4 MiB piece differs, with zero runs and an unaligned end,
    // so a read buffer reused too early, or a stale tail, shows up in the output.
    // Random bytes (no zero cluster to split the reads) except one zero run.
    const random = (size: number) => {
      const bytes = new Uint8Array(size);
      for (let i = 0; i < size; i += 65536) {
        crypto.getRandomValues(bytes.subarray(i, Math.min(size, i + 65536)));
      }
      return bytes;
    };
    const data = random(18 * 1024 * 1024 + 512);
    data.fill(0, 9 * 1024 * 1024, 10 * 1024 * 1024 + 4096);
    await Deno.writeFile(`${dir}/pool.raw`, data);
    await Deno.writeFile(`${dir}/pool2.raw`, random(13 * 1024 * 1024));
    const made = await sh(
      "set -e; qemu-img convert -q -f raw -O qcow2 pool.raw pool.qcow2; qemu-img convert -q -f raw -O vmdk pool2.raw pool2.vmdk",
      dir,
    );
    assert.equal(made.code, 0, made.stderr);
    const r = await vma([
      "create",
      "pool.vma",
      "-d",
      "format=qcow2:drive-scsi0=pool.qcow2",
      "-d",
      "format=vmdk:drive-scsi1=pool2.vmdk",
      "-d",
      "format=raw:drive-scsi2=pool2.raw",
      "-d",
      "format=raw:drive-scsi3=pool.raw",
    ], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    // cmp, not assert.deepEqual: a diff of two 18 MiB arrays takes gigabytes.
    const x = await sh(
      "set -e; $VMA extract pool.vma x-pool >/dev/null; cmp x-pool/disk-drive-scsi0.raw pool.raw; cmp x-pool/disk-drive-scsi1.raw pool2.raw; cmp x-pool/disk-drive-scsi2.raw pool2.raw; cmp x-pool/disk-drive-scsi3.raw pool.raw; echo same",
      dir,
    );
    assert.equal(x.stdout, "same\n", x.stderr);
  },
});

Deno.test({
  name:
    "vma create reads qcow2 (plain, compressed, with a backing file) and VMDK images made by qemu-img",
  ignore: !have("qemu-img"),
  async fn() {
    const script = [
      "set -e",
      "qemu-img convert -q -f raw -O qcow2 disk0.raw img0.qcow2",
      "qemu-img convert -q -c -f raw -O qcow2 disk1.raw img1c.qcow2",
      "qemu-img create -q -f qcow2 -b img0.qcow2 -F qcow2 overlay.qcow2",
      "qemu-img convert -q -f raw -O vmdk disk1.raw img1.vmdk",
      "qemu-img convert -q -f raw -O vmdk -o subformat=streamOptimized disk0.raw img0s.vmdk",
    ].join("\n");
    const made = await sh(script, dir);
    assert.equal(made.code, 0, made.stderr);
    const r = await vma([
      "create",
      "images.vma",
      "-d",
      "format=qcow2:drive-scsi0=img0.qcow2",
      "-d",
      "format=qcow2:drive-scsi1=img1c.qcow2",
      "-d",
      "format=qcow2:drive-scsi2=overlay.qcow2",
      "-d",
      "format=vmdk:drive-scsi3=img1.vmdk",
      "-d",
      "format=auto:drive-scsi4=img0s.vmdk",
    ], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, NO_CONF);
    await assertExtractsTo("images.vma", {
      "disk-drive-scsi0.raw": "disk0.raw",
      "disk-drive-scsi1.raw": "disk1.raw",
      "disk-drive-scsi2.raw": "disk0.raw",
      "disk-drive-scsi3.raw": "disk1.raw",
      "disk-drive-scsi4.raw": "disk0.raw",
    });
    const bad = await vma(["create", "bad.vma", "-d", "format=qcow2:disk0.raw"], { cwd: dir });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^vma: bdrv_open 'disk0.raw' failed - .+\n$/);
  },
});

Deno.test({
  name: "vma create writes into an existing FIFO directly, as Proxmox's vma",
  ignore: Deno.build.os === "windows",
  async fn() {
    const r = await sh(
      `mkfifo out.fifo && { cat out.fifo > from-fifo.vma & } && $VMA create out.fifo ${
        PROXMOX_ARGS.slice(4).join(" ")
      } && wait && rm out.fifo && echo ok`,
      dir,
    );
    assert.equal(r.stderr, NO_CONF);
    assert.equal(r.stdout, "ok\n");
    await assertExtractsTo("from-fifo.vma", {
      "disk-drive-scsi0.raw": "disk0.raw",
      "disk-drive-scsi1.raw": "disk1.raw",
    });
  },
});

Deno.test({
  name: "vma create - refuses to write the archive to a terminal",
  ignore: Deno.build.os !== "linux" || !have("script"),
  async fn() {
    const out = await new Deno.Command("script", {
      args: [
        "-qec",
        `${Deno.execPath()} run -A ${CLI} create - -d format=raw:disk0.raw`,
        "/dev/null",
      ],
      cwd: dir,
      stdout: "piped",
    }).output();
    assert.equal(
      new TextDecoder().decode(out.stdout),
      "vma: refusing to write the archive to a terminal (redirect standard output or give a file name)\r\n",
    );
  },
});

Deno.test({
  name: "vma create writes to an existing character device (/dev/null) directly",
  ignore: Deno.build.os === "windows",
  async fn() {
    const r = await vma(["create", "/dev/null", ...PROXMOX_ARGS.slice(4)], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, NO_CONF);
  },
});
