// The text formats of the CLI: C's %.3g, ctime(3), the list block, the
// summary lines, compression magic and qemu-server.conf map lines.
import assert from "node:assert/strict";
import {
  formatCtime,
  formatG,
  formatList,
  formatSummary,
  formatVzdumpTime,
} from "../../src/cli/_proxmox_text.ts";
import { detectCompression } from "../../src/cli/_archive_input.ts";
import { generateConfig, parseMapLines, restoreProblems } from "../../src/cli/_qemu_server_conf.ts";

Deno.test("formatG matches C's printf %.3g (glibc), ties to even on exact values", () => {
  const cases: [number, string][] = [
    [0, "0"],
    [58.02469135802469, "58"],
    [100, "100"],
    [99.96, "100"],
    [96.2, "96.2"],
    [0.207, "0.207"],
    [5.08, "5.08"],
    [12.5, "12.5"],
    [1.125, "1.12"], // exact tie: to even
    [1.375, "1.38"], // exact tie: to even
    [2.675, "2.67"], // 2.67499999... in binary
    [0.125, "0.125"],
    [0.0001234, "0.000123"],
    [0.00001, "1e-05"],
    [999.5, "1e+03"],
    [998.5, "998"],
    [1000, "1e+03"],
    [1234567, "1.23e+06"],
    [1e21, "1e+21"],
    [5e-324, "4.94e-324"],
    [33.333333333333336, "33.3"],
    [66.66666666666667, "66.7"],
  ];
  for (const [value, text] of cases) assert.equal(formatG(value), text, String(value));
});

Deno.test("formatCtime pads the day with a space, as ctime(3)", () => {
  // TZ=UTC is set by the CLI tests' runner only; compare with local getters.
  const d = new Date(2023, 8, 5, 15, 29, 21);
  assert.equal(formatCtime(d), "Tue Sep  5 15:29:21 2023");
  assert.equal(formatCtime(new Date(2026, 10, 24, 14, 21, 54)), "Tue Nov 24 14:21:54 2026");
  assert.equal(formatVzdumpTime(d), "2023_09_05-15_29_21");
});

Deno.test("formatList prints CFG, DEV and VMSTATE lines by slot and id", () => {
  const text = formatList({
    ctime: new Date(2026, 10, 24, 14, 21, 54),
    configs: [{ name: "qemu-server.conf", data: new Uint8Array(317) }],
    devices: [
      { id: 2, name: "vmstate", size: 1000, vmstate: true },
      { id: 1, name: "drive-scsi0", size: 4194304, vmstate: false },
    ],
  });
  assert.equal(
    text,
    "CFG: size: 317 name: qemu-server.conf\n" +
      "DEV: dev_id=1 size: 4194304 devname: drive-scsi0\n" +
      "VMSTATE: dev_id=2 memory: 1000\n" +
      "CTIME: Tue Nov 24 14:21:54 2026\n",
  );
});

Deno.test("formatSummary prints Proxmox's closing lines", () => {
  assert.equal(
    formatSummary({ bytes: 0, sparseBytes: 0, zeroBlockBytes: 0 }),
    "vma archive contains no image data\n",
  );
  assert.equal(
    formatSummary({ bytes: 5308416, sparseBytes: 3080192, zeroBlockBytes: 0 }),
    "total bytes read 5308416, sparse bytes 3080192 (58%)\nspace reduction due to 4K zero blocks 0%\n",
  );
  assert.equal(
    formatSummary({ bytes: 65536, sparseBytes: 65536, zeroBlockBytes: 0 }),
    "total bytes read 65536, sparse bytes 65536 (100%)\n",
  );
  assert.equal(
    formatSummary({ bytes: 3 * 65536, sparseBytes: 0, zeroBlockBytes: 4096 }),
    "total bytes read 196608, sparse bytes 0 (0%)\nspace reduction due to 4K zero blocks 2.08%\n",
  );
});

Deno.test("detectCompression knows zstd, gzip and lzop by magic", () => {
  assert.equal(detectCompression(Uint8Array.of(0x28, 0xb5, 0x2f, 0xfd, 0)), "zstd");
  assert.equal(detectCompression(Uint8Array.of(0x1f, 0x8b, 8)), "gzip");
  assert.equal(
    detectCompression(Uint8Array.of(0x89, 0x4c, 0x5a, 0x4f, 0, 0x0d, 0x0a, 0x1a, 0x0a)),
    "lzop",
  );
  assert.equal(detectCompression(Uint8Array.of(0x56, 0x4d, 0x41, 0)), "none");
  assert.equal(detectCompression(Uint8Array.of(0x1f)), "none");
});

Deno.test("restoreProblems names devices without map lines and map lines without devices", () => {
  const conf =
    "memory: 512\n#qmdump#map:scsi0:drive-scsi0:local-lvm:raw:\n#qmdump#map:efidisk0:drive-efidisk0:local:raw:\n";
  assert.deepEqual(parseMapLines(conf).map((m) => m.devname), ["drive-scsi0", "drive-efidisk0"]);
  assert.deepEqual(restoreProblems(conf, ["drive-scsi0", "drive-efidisk0"]), []);
  const problems = restoreProblems(conf, ["drive-scsi0", "drive-scsi1"]);
  assert.equal(problems.length, 2);
  assert.match(problems[0], /no '#qmdump#map' line for device 'drive-scsi1'/);
  assert.match(
    problems[1],
    /maps device 'drive-efidisk0' \(efidisk0\), which is not in the archive/,
  );
});

Deno.test("generateConfig keeps drive-<bus><n> names and numbers other disks as free scsi<n>", () => {
  const text = generateConfig(
    [
      { name: "disk0", size: 1 << 30 },
      { name: "drive-scsi0", size: 512 },
      { name: "drive-efidisk0", size: 540672 },
      { name: "drive-tpmstate0-backup", size: 4194304 },
    ],
    { storage: "local", vmid: "105" },
  );
  assert.deepEqual(parseMapLines(text), [
    { virtdev: "scsi1", devname: "disk0", storeid: "local", format: "raw" },
    { virtdev: "scsi0", devname: "drive-scsi0", storeid: "local", format: "raw" },
    { virtdev: "efidisk0", devname: "drive-efidisk0", storeid: "local", format: "raw" },
    { virtdev: "tpmstate0", devname: "drive-tpmstate0-backup", storeid: "local", format: "raw" },
  ]);
  assert.match(text, /^boot: order=scsi1$/m);
  assert.match(text, /^scsi1: local:vm-105-disk-0,size=1G$/m);
  assert.match(text, /^efidisk0: local:vm-105-disk-2,size=528K$/m);
});
