/**
 * Quick start (`deno task example`): makes a small disk image with data and
 * zero regions and a `qemu-server.conf` with its `#qmdump#map` line, then runs
 * `vma create`, `vma list`, `vma verify` and `vma extract` on them, in-process,
 * and checks that the extracted disk is identical to the source.
 *
 * @module
 */
import { main } from "../cli.ts";

const dir = await Deno.makeTempDir({ prefix: "vmakit-example-" });
const disk = `${dir}/disk.raw`;
const conf = `${dir}/qemu-server.conf`;
const archive = `${dir}/vzdump-qemu-100-2026_01_01-00_00_00.vma.zst`;

// An 8 MiB disk: a "boot sector", 1 MiB of patterned data at 2 MiB, and a
// text block at 6 MiB; everything else is zeros (stored as zero clusters).
const image = new Uint8Array(8 * 1024 * 1024);
image.set(new TextEncoder().encode("vmakit quickstart boot sector"), 0);
image[510] = 0x55;
image[511] = 0xaa;
for (let i = 0; i < 1024 * 1024; i++) image[2 * 1024 * 1024 + i] = (i * 31 + 7) & 0xff;
image.set(new TextEncoder().encode("hello from a VMA archive\n".repeat(100)), 6 * 1024 * 1024);
await Deno.writeFile(disk, image);
await Deno.writeTextFile(
  conf,
  [
    "boot: order=scsi0",
    "cores: 1",
    "memory: 512",
    "name: quickstart",
    "ostype: l26",
    "scsi0: local-lvm:vm-100-disk-0,size=8M",
    "scsihw: virtio-scsi-pci",
    "#qmdump#map:scsi0:drive-scsi0:local-lvm:raw:",
    "",
  ].join("\n"),
);
console.log(`Made ${disk} (8 MiB, 5 MiB of it zeros) and ${conf} in ${dir}\n`);

async function run(args: string[]): Promise<void> {
  console.log(`$ vma ${args.map((a) => a.replace(`${dir}/`, "")).join(" ")}`);
  const code = await main(args);
  if (code !== 0) {
    console.error(`vma ${args[0]} failed with exit status ${code}`);
    Deno.exit(code);
  }
  console.log();
}

await run(["create", archive, "-c", conf, "-d", `format=raw:drive-scsi0=${disk}`]);
const size = (await Deno.stat(archive)).size;
console.log(`(the archive is ${size} bytes: zstd, chosen from the .zst name)\n`);
await run(["list", archive]);
await run(["verify", archive]);
console.log("(verify printed nothing: the archive is sound)\n");
await run(["extract", archive, `${dir}/restored`]);

const restored = await Deno.readFile(`${dir}/restored/disk-drive-scsi0.raw`);
const same = restored.length === image.length && restored.every((b, i) => b === image[i]);
console.log(
  same
    ? "The extracted disk-drive-scsi0.raw is identical to disk.raw."
    : "MISMATCH: the extracted disk differs from the source!",
);
console.log(`Everything is in ${dir} (remove it with: rm -r ${dir})`);
if (!same) Deno.exit(1);
