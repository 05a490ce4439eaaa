// The VDI, VHD (vpc), VMDK and VHDX writers, checked with qemu-img and vmakit's readers.
import assert from "node:assert/strict";
import { join } from "node:path";
import type { DiskImageWriter, PositionedWriter } from "../../src/image/disk_image_writer.ts";
import { createVdiWriter } from "../../src/image/vdi_writer.ts";
import { createVpcWriter } from "../../src/image/vpc_writer.ts";
import { createVmdkWriter } from "../../src/image/vmdk_writer.ts";
import { createVhdxWriter } from "../../src/image/vhdx_writer.ts";
import {
  checkAgainstQemu,
  knownData,
  openPath,
  qemuMissing,
  qemuRaw,
  rejectsWith,
  run,
} from "../_disk_image_helpers.ts";
import { openPositionedFile } from "./_positioned_file.ts";
import { extractVma, VmaReader, VmaWriter } from "../../mod.ts";
import { FIXED_CTIME, FIXED_UUID } from "../_helpers.ts";

const ignore = qemuMissing !== undefined;
const dir = await Deno.makeTempDir({ prefix: "vmakit-writers-" });
addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

type Factory = (target: PositionedWriter, size: number) => Promise<DiskImageWriter>;

interface FormatCase {
  format: string;
  create: Factory;
  subformat?: string;
  /** The factory's name, for test names and file names. */
  label: string;
  /** The largest virtual size. */
  limit: number;
  /** Whether `qemu-img check` can check the format. */
  checks: boolean;
}

const FORMATS: FormatCase[] = [
  {
    format: "vdi",
    label: "createVdiWriter",
    limit: 0x1fffff8000000,
    create: (t, s) => createVdiWriter(t, s),
    checks: true,
  },
  {
    format: "vpc",
    label: "createVpcWriter",
    limit: 0xff000000 * 512,
    create: (t, s) => createVpcWriter(t, s),
    checks: false,
  },
  {
    format: "vhdx",
    label: "createVhdxWriter",
    limit: 64 * 1024 ** 4,
    create: (t, s) => createVhdxWriter(t, s),
    checks: true,
  },
  {
    format: "vmdk",
    label: "createVmdkWriter",
    limit: 2040 * 1024 ** 3,
    create: (t, s) => createVmdkWriter(t, s),
    checks: true,
  },
  {
    format: "vmdk",
    label: "createVmdkWriter streamOptimized",
    limit: 2024 * 1024 ** 3,
    subformat: "streamOptimized",
    create: (t, s) => createVmdkWriter(t, s, { subformat: "streamOptimized" }),
    checks: true,
  },
];

const MiB = 1024 * 1024;

/** A seeded permutation of 0..n-1. */
function shuffled(n: number, seed: number): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  let s = seed >>> 0 || 1;
  for (let i = n - 1; i > 0; i--) {
    s = Math.imul(s ^ (s >>> 15), 2246822507) + 12345 >>> 0;
    const j = s % (i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

/**
 * Writes `data` the way `extractVma` does: 64 KiB clusters in a shuffled
 * order, each as runs of its non-zero 4 KiB blocks.
 */
async function writeLikeVma(writer: DiskImageWriter, data: Uint8Array, seed: number) {
  const CLUSTER = 65536;
  const BLOCK = 4096;
  for (const cluster of shuffled(Math.ceil(data.length / CLUSTER), seed)) {
    const end = Math.min(data.length, (cluster + 1) * CLUSTER);
    let run: number | undefined;
    for (let at = cluster * CLUSTER;; at += BLOCK) {
      const block = data.subarray(at, Math.min(at + BLOCK, end));
      const zero = at >= end || block.every((b) => b === 0);
      if (!zero && run === undefined) run = at;
      if (zero && run !== undefined) {
        await writer.write(run, data.slice(run, at));
        run = undefined;
      }
      if (at >= end) break;
    }
  }
}

async function qemuJson(...args: string[]): Promise<Record<string, unknown>> {
  const out = await new Deno.Command("qemu-img", { args, stdout: "piped", stderr: "piped" })
    .output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success && args[0] !== "check") {
    throw new Error(`qemu-img ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
  return JSON.parse(text);
}

/** Writes `data` to a new image and checks it with qemu-img: info, check, compare. */
async function writeAndCheck(c: FormatCase, name: string, data: Uint8Array, seed: number) {
  const path = join(dir, `${name}-${c.label.replace(" ", "-")}.${c.format}`);
  const file = await openPositionedFile(path);
  try {
    const writer = await c.create(file, data.length);
    assert.equal(writer.format, c.format);
    assert.equal(writer.size, Math.ceil(data.length / 512) * 512);
    await writeLikeVma(writer, data, seed);
    await writer.close();
  } finally {
    file.close();
  }
  const info = await qemuJson("info", "--output=json", "-f", c.format, path);
  assert.equal(info.format, c.format);
  assert.equal(info["virtual-size"], Math.ceil(data.length / 512) * 512);
  if (c.checks) {
    const check = await qemuJson("check", "--output=json", "-f", c.format, path);
    assert.equal(check["check-errors"], 0, JSON.stringify(check));
    assert.equal(check.corruptions ?? 0, 0, JSON.stringify(check));
    assert.equal(check.leaks ?? 0, 0, JSON.stringify(check));
  }
  if (c.format === "vmdk") {
    assert.equal(
      info["format-specific"] &&
        (info["format-specific"] as { data: { "create-type": string } }).data["create-type"],
      c.subformat ?? "monolithicSparse",
    );
    await checkAgainstQemu(path, dir, "vmdk"); // vmakit's own reader agrees with qemu-img
  }
  const raw = join(dir, `${name}.raw`);
  await Deno.writeFile(raw, data);
  await run("qemu-img", "compare", "-f", "raw", "-F", c.format, raw, path);
  const back = await qemuRaw(path, dir);
  assert.equal(back.length, Math.ceil(data.length / 512) * 512);
  assert.ok(back.subarray(0, data.length).every((b, i) => b === data[i]), `${name}: data differ`);
  return path;
}

async function writeEmptyVmdk(c: FormatCase) {
  const path = join(dir, `empty-${c.label.replace(" ", "-")}.vmdk`);
  const file = await openPositionedFile(path);
  try {
    const writer = await c.create(file, 0);
    await writer.close();
  } finally {
    file.close();
  }
  const image = await openPath(path);
  try {
    assert.equal(image.format, "vmdk");
    assert.equal(image.size, 0);
  } finally {
    await image.close();
  }
}

for (const c of FORMATS) {
  Deno.test({
    name: `${c.label}: out-of-order data, odd sizes and all-zero disks read back in qemu-img`,
    ignore,
    async fn() {
      await writeAndCheck(c, "odd", knownData(5 * MiB + 12345, 3), 1);
      await writeAndCheck(c, "sector", knownData(3 * MiB + 512, 4), 2);
      await writeAndCheck(c, "zero", new Uint8Array(7 * MiB + 4096), 3);
      await writeAndCheck(c, "tiny", knownData(1000, 5), 4);
      // qemu-img cannot open an empty VMDK, even one it made itself
      // ("Unsupported image type 'monolithicSparse'"), so those are read by vmakit only.
      if (c.format !== "vmdk") await writeAndCheck(c, "empty", new Uint8Array(0), 5);
      else await writeEmptyVmdk(c);
    },
  });
}

/** A target in memory that can be told to fail. */
function memoryTarget(): PositionedWriter & { fail?: Error; bytes: () => number } {
  let size = 0;
  const target = {
    fail: undefined as Error | undefined,
    bytes: () => size,
    write(position: number, data: Uint8Array): Promise<void> {
      if (target.fail) return Promise.reject(target.fail);
      size = Math.max(size, position + data.length);
      return Promise.resolve();
    },
    truncate(to: number): Promise<void> {
      size = to;
      return Promise.resolve();
    },
  };
  return target;
}

for (const c of FORMATS) {
  const f = c.format;
  Deno.test(`${c.label} rejects writes past the size, after close, and bad arguments`, async () => {
    const writer = await c.create(memoryTarget(), 3 * MiB + 100);
    assert.equal(writer.size, 3 * MiB + 512);
    await rejectsWith(
      writer.write(3 * MiB, new Uint8Array(1024)),
      RangeError,
      `Cannot write to the ${f} image: 1024 bytes at offset ${3 * MiB} end past the virtual size ${
        3 * MiB + 512
      }`,
    );
    await rejectsWith(
      writer.write(-1, new Uint8Array(1)),
      RangeError,
      `Cannot write to the ${f} image: the offset -1 is invalid`,
    );
    await rejectsWith(
      writer.write(0, [1, 2] as unknown as Uint8Array),
      TypeError,
      `Cannot write to the ${f} image: the data is not a Uint8Array`,
    );
    await writer.write(0, new Uint8Array(512).fill(1));
    await writer.close();
    await rejectsWith(
      writer.write(0, new Uint8Array(512)),
      TypeError,
      `Cannot write to the ${f} image: it is closed`,
    );
    await rejectsWith(
      writer.close(),
      TypeError,
      `Cannot close the ${f} image: it is already closed`,
    );
    const limit = c.limit;
    await rejectsWith(
      c.create(memoryTarget(), limit + 1),
      RangeError,
      `Cannot create a ${f} image of ${limit + 1} bytes: the format holds at most ${limit} bytes`,
    );
    await c.create(memoryTarget(), limit); // the limit itself is fine
    await rejectsWith(
      c.create(memoryTarget(), 1.5),
      RangeError,
      `Cannot create a ${f} image: the size 1.5 is not a byte count`,
    );
    await rejectsWith(
      c.create({} as PositionedWriter, 1),
      TypeError,
      `Cannot create a ${f} image: the target is not a PositionedWriter (write and truncate)`,
    );
  });

  Deno.test(`${c.label}: a failed target write is sticky`, async () => {
    const target = memoryTarget();
    const writer = await c.create(target, 8 * MiB);
    const failure = new Error("disk full");
    target.fail = failure;
    // A whole 64 KiB grain: streamOptimized compresses and writes it at once too.
    await assert.rejects(writer.write(0, new Uint8Array(65536).fill(1)), (e) => e === failure);
    target.fail = undefined;
    await assert.rejects(writer.write(4 * MiB, new Uint8Array(4096).fill(1)), (e) => e === failure);
    await assert.rejects(writer.close(), (e) => e === failure);
  });

  Deno.test({
    name: `${c.label}: overlapping writes, the last one wins`,
    ignore,
    async fn() {
      const path = join(dir, `overlap-${c.label.replace(" ", "-")}.${f}`);
      const file = await openPositionedFile(path);
      const expected = new Uint8Array(4 * MiB);
      try {
        const writer = await c.create(file, expected.length);
        const writes: [number, number, number][] = [[0, 2 * MiB, 1], [MiB, 1536 * 1024, 2], [
          MiB + 512,
          4096,
          3,
        ]];
        for (const [at, length, value] of writes) {
          const bytes = new Uint8Array(length).fill(value);
          expected.set(bytes, at);
          await writer.write(at, bytes);
        }
        await writer.close();
      } finally {
        file.close();
      }
      const raw = join(dir, `overlap-${c.label.replace(" ", "-")}.raw`);
      await Deno.writeFile(raw, expected);
      await run("qemu-img", "compare", "-f", "raw", "-F", f, raw, path);
    },
  });
}

Deno.test({
  name:
    "createVmdkWriter streamOptimized: partly written grains past the 16 MiB budget, then completed",
  ignore,
  async fn() {
    const size = 40 * MiB; // 640 grains, more than the 256 held
    const expected = new Uint8Array(size);
    const path = join(dir, "evicted-stream.vmdk");
    const file = await openPositionedFile(path);
    try {
      const writer = await createVmdkWriter(file, size, { subformat: "streamOptimized" });
      for (let grain = 0; grain < size / 65536; grain++) {
        const bytes = new Uint8Array(512).fill(grain & 0xff || 1);
        expected.set(bytes, grain * 65536);
        await writer.write(grain * 65536, bytes);
      }
      // the first grains were compressed to make room: these writes merge into them
      for (let grain = 0; grain < 8; grain++) {
        const bytes = new Uint8Array(4096).fill(0xee);
        expected.set(bytes, grain * 65536 + 8192);
        await writer.write(grain * 65536 + 8192, bytes);
      }
      await writer.close();
    } finally {
      file.close();
    }
    const raw = join(dir, "evicted-stream.raw");
    await Deno.writeFile(raw, expected);
    await run("qemu-img", "compare", "-f", "raw", "-F", "vmdk", raw, path);
    await checkAgainstQemu(path, dir, "vmdk");
  },
});

Deno.test("createVmdkWriter streamOptimized: a write into a compressed grain needs a readable target", async () => {
  const target = {
    write: () => Promise.resolve(),
    truncate: () => Promise.resolve(),
  };
  const writer = await createVmdkWriter(target, MiB, { subformat: "streamOptimized" });
  await writer.write(0, new Uint8Array(65536).fill(1));
  await rejectsWith(
    writer.write(4096, new Uint8Array(512)),
    TypeError,
    "Cannot write to the vmdk image: grain 0 is already compressed and the target cannot be read back",
  );
});

Deno.test("createVmdkWriter rejects an unknown subformat", async () => {
  await rejectsWith(
    createVmdkWriter(memoryTarget(), MiB, {
      subformat: "twoGbMaxExtentSparse" as "monolithicSparse",
    }),
    TypeError,
    'Cannot create a vmdk image: the subformat "twoGbMaxExtentSparse" is not supported ("monolithicSparse" and "streamOptimized" are)',
  );
});

/** Scale runs: format label for the script, size, format name, peak RSS limit. */
const SCALE: [string, number, string, number][] = [
  ["vdi", 16 * 1024 ** 4, "vdi", 100 * MiB],
  ["vpc", 0xff000000 * 512, "vpc", 100 * MiB],
  ["vhdx", 64 * 1024 ** 4, "vhdx", 100 * MiB],
  ["vmdk", 2040 * 1024 ** 3, "vmdk", 100 * MiB],
  ["vmdk-stream", 2024 * 1024 ** 3, "vmdk", 100 * MiB],
];

for (const [label, size, format, limit] of SCALE) {
  Deno.test({
    name: `${label} writer at its largest size: peak RSS of a subprocess stays under ${
      limit / MiB
    } MiB, and qemu-io reads the scattered writes`,
    ignore,
    async fn() {
      const path = join(dir, `scale-${label}.img`);
      const out = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          new URL("./_writer_memory_main.ts", import.meta.url).pathname,
          label,
          String(size),
          path,
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.ok(out.success, new TextDecoder().decode(out.stderr));
      const result = JSON.parse(new TextDecoder().decode(out.stdout)) as {
        peakRss: number;
        scattered: [number, number][];
      };
      console.log(`${label}: peak RSS ${Math.round(result.peakRss / MiB)} MiB`);
      assert.ok(result.peakRss < limit, `peak RSS ${result.peakRss} bytes`);
      const info = await qemuJson("info", "--output=json", "-f", format, path);
      assert.equal(info["virtual-size"], size);
      if (format !== "vpc") {
        const check = await qemuJson("check", "--output=json", "-f", format, path);
        assert.equal(check["check-errors"], 0, JSON.stringify(check));
      }
      const commands = result.scattered.filter((_, i) => i % 32 === 0).flatMap((
        [offset, value],
      ) => ["-c", `read -P ${value} ${offset} 65536`, "-c", `read -P 0 ${offset + 65536} 65536`]);
      const io = await new Deno.Command("qemu-io", {
        args: ["-r", "-f", format, ...commands, path],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(io.stdout) + new TextDecoder().decode(io.stderr);
      assert.ok(io.success, text);
      assert.doesNotMatch(text, /fail/i);
      assert.equal(text.match(/read 65536\/65536 bytes/g)?.length, commands.length / 2, text);
      await Deno.remove(path);
    },
  });
}

Deno.test({
  name: "Image writers are extractVma sinks: devices whose clusters came out of order",
  ignore,
  async fn() {
    const disks: [string, Uint8Array][] = [
      ["drive-scsi0", knownData(6 * MiB + 12800, 21)],
      ["drive-scsi1", new Uint8Array(3 * MiB + 4096)], // all zeros
      ["drive-virtio2", knownData(2 * MiB + 512, 22)],
    ];
    const vma = new VmaWriter({ uuid: FIXED_UUID, ctime: FIXED_CTIME });
    const devices = disks.map(([name, data]) => vma.addDevice(name, data.length));
    const archive = new Response(vma.readable).bytes();
    for (const [i, device] of devices.entries()) {
      const data = disks[i][1];
      for (const cluster of shuffled(Math.ceil(data.length / 65536), 40 + i)) {
        await device.write(cluster * 65536, data.slice(cluster * 65536, (cluster + 1) * 65536));
      }
      await device.close();
    }
    await vma.close();
    const bytes = await archive;
    for (const c of FORMATS) {
      const files = new Map<string, Awaited<ReturnType<typeof openPositionedFile>>>();
      const path = (name: string) =>
        join(dir, `vma-${name}-${c.label.replace(" ", "-")}.${c.format}`);
      try {
        await extractVma(new VmaReader(ReadableStream.from([bytes])), {
          async device(device) {
            const file = await openPositionedFile(path(device.name));
            files.set(device.name, file);
            return await c.create(file, device.size);
          },
        });
      } finally {
        for (const file of files.values()) file.close();
      }
      for (const [name, data] of disks) {
        const raw = join(dir, `vma-${name}.raw`);
        await Deno.writeFile(raw, data);
        await run("qemu-img", "compare", "-f", "raw", "-F", c.format, raw, path(name));
      }
    }
  },
});
