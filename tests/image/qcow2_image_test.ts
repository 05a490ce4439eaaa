import assert from "node:assert/strict";
import { join } from "node:path";
import type { DiskImageRegion } from "../../src/image/disk_image.ts";
import { openQcow2Image } from "../../src/image/qcow2_image.ts";
import {
  checkAgainstQemu,
  cliOptions,
  equalBytes,
  knownData,
  openFileReader,
  openPath,
  qemuMissing,
  qemuSource,
  rejectsWith,
  run,
  zeroBytes,
} from "../_disk_image_helpers.ts";

const ignore = qemuMissing !== undefined;
/** 3 MiB and a bit: not a multiple of any cluster size. */
const SIZE = 3 * 1024 * 1024 + 12345;
const data = knownData(SIZE, 7);
const { dir, convert } = await qemuSource("qcow2", data);

/** Converts, checks against qemu-img, and checks the start is the known data. */
async function roundTrip(name: string, ...args: string[]) {
  const path = await convert(name, ...args);
  const regions = await checkAgainstQemu(path, dir, "qcow2");
  const image = await openPath(path);
  try {
    assert.ok(equalBytes(await image.read(0, SIZE), data), "reads back the source data");
  } finally {
    await image.close();
  }
  return regions;
}

/** Whole clusters of zeros: some zero regions must show. Extended L2: some shorter than 64 KiB. */
const ZERO_CLUSTERS = 1;
const ZERO_SUBCLUSTERS = 2;
for (
  const [title, args, expect] of [
    ["version 2 (compat=0.10)", ["-o", "compat=0.10"], ZERO_CLUSTERS],
    ["version 3 (compat=1.1)", ["-o", "compat=1.1"], ZERO_CLUSTERS],
    ["zlib compressed clusters", ["-c", "-o", "compat=1.1"], ZERO_CLUSTERS],
    ["zlib compressed clusters in a version 2 image", ["-c", "-o", "compat=0.10"], ZERO_CLUSTERS],
    ["zstd compressed clusters", ["-c", "-o", "compression_type=zstd"], ZERO_CLUSTERS],
    [
      "extended L2 entries with 64 KiB clusters",
      ["-o", "extended_l2=on,cluster_size=64k"],
      ZERO_SUBCLUSTERS,
    ],
    [
      "extended L2 entries with 16 KiB clusters",
      ["-o", "extended_l2=on,cluster_size=16k"],
      ZERO_CLUSTERS,
    ],
    [
      "extended L2 entries and zstd compression",
      ["-c", "-o", "extended_l2=on,cluster_size=32k,compression_type=zstd"],
      ZERO_CLUSTERS,
    ],
    ["512-byte clusters", ["-o", "cluster_size=512"], ZERO_CLUSTERS],
    // No 2 MiB cluster of the source is all zeros.
    ["2 MiB clusters", ["-o", "cluster_size=2M"], 0],
    ["2 MiB compressed clusters", ["-c", "-o", "cluster_size=2M"], 0],
  ] as const
) {
  Deno.test({
    name: `openQcow2Image reads ${title} exactly like qemu-img`,
    ignore,
    async fn() {
      const regions = await roundTrip(`${title.replaceAll(/\W+/g, "-")}.qcow2`, ...args);
      if (expect & ZERO_CLUSTERS) {
        assert.ok(zeroBytes(regions) >= 65536, "unallocated clusters are zero regions");
      }
      if (expect & ZERO_SUBCLUSTERS) {
        assert.ok(
          regions.some((r) => r.zero && r.length < 65536),
          "unallocated subclusters are zero regions",
        );
      }
    },
  });
}

Deno.test({
  name: "openQcow2Image reports unallocated subclusters as zero regions",
  ignore,
  async fn() {
    // 4 KiB of data, 4 KiB of zeros, repeated: every other pair of 2 KiB subclusters is unallocated.
    const path = join(dir, "subclusters.raw");
    const bytes = knownData(1 << 20, 3).map((b, i) => (i & 4096 ? 0 : b | 1));
    await Deno.writeFile(path, bytes);
    const image = join(dir, "subclusters.qcow2");
    await run("qemu-img", "convert", "-O", "qcow2", "-o", "extended_l2=on", path, image);
    const regions = await checkAgainstQemu(image, dir, "qcow2");
    assert.equal(regions.length, 256);
    assert.deepEqual(regions[1], { offset: 4096, length: 4096, zero: true });
  },
});

Deno.test({
  name: "openQcow2Image reports zero clusters written with write -z as zero regions",
  ignore,
  async fn() {
    const path = await convert("zero-clusters.qcow2", "-o", "compat=1.1");
    await run("qemu-io", "-c", "write -z 0 1M", "-c", "write -z 2M 64k", path);
    const regions = await checkAgainstQemu(path, dir, "qcow2");
    assert.equal(regions[0].zero, true);
    assert.ok(regions[0].length >= 1024 * 1024);
  },
});

Deno.test({
  name: "openQcow2Image follows a backing chain through openBacking",
  ignore,
  async fn() {
    await convert("chain-base.qcow2");
    const middle = join(dir, "chain-middle.qcow2");
    const top = join(dir, "chain-top.qcow2");
    await run("qemu-img", "create", "-f", "qcow2", "-b", "chain-base.qcow2", "-F", "qcow2", middle);
    await run("qemu-io", "-c", "write -P 0x5a 1M 64k", "-c", "write -z 0 64k", middle);
    // The top image is larger than its backing (the tail reads as zeros) and
    // has subclusters, some written, the others left to the backing.
    await run(
      "qemu-img",
      "create",
      "-f",
      "qcow2",
      "-o",
      "extended_l2=on",
      "-b",
      "chain-middle.qcow2",
      "-F",
      "qcow2",
      top,
      "5M",
    );
    await run("qemu-io", "-c", "write -P 0xa5 1028k 4k", "-c", "write -P 0x33 4M 4k", top);
    const regions = await checkAgainstQemu(top, dir, "qcow2");
    assert.ok(zeroBytes(regions) >= 1024 * 1024, "the backing's zero regions show through");
    const image = await openPath(top);
    try {
      const bytes = await image.read(1024 * 1024, 64 * 1024);
      assert.equal(bytes[0], 0x5a, "from the middle image");
      assert.equal(bytes[4096], 0xa5, "from the top image's subcluster");
      assert.equal(bytes[8192], 0x5a, "a subcluster left to the backing");
      assert.ok(equalBytes(await image.read(65536, 65536), data.subarray(65536, 131072)));
      assert.ok((await image.read(0, 65536)).every((b) => b === 0), "zero cluster over data");
    } finally {
      await image.close();
    }
  },
});

Deno.test({
  name: "openQcow2Image passes the backing format recorded in the header to openBacking",
  ignore,
  async fn() {
    const path = join(dir, "over-raw.qcow2");
    await run("qemu-img", "create", "-f", "qcow2", "-b", "source.raw", "-F", "raw", path);
    await run("qemu-io", "-c", "write -P 0x11 64k 64k", path);
    const calls: [string, string | undefined][] = [];
    const options = cliOptions(path);
    const image = await openQcow2Image(await openFileReader(path), {
      ...options,
      openBacking: (name, format) => {
        calls.push([name, format]);
        return options.openBacking!(name, format);
      },
    });
    await image.close();
    assert.deepEqual(calls, [["source.raw", "raw"]]);
    await checkAgainstQemu(path, dir, "qcow2");
  },
});

Deno.test({
  name: "openQcow2Image maps a mostly empty 100 GiB image without reading data",
  ignore,
  async fn() {
    const path = join(dir, "big.qcow2");
    await run("qemu-img", "create", "-f", "qcow2", path, "100G");
    await run("qemu-io", "-c", "write -P 0x77 50G 1M", path);
    const reader = await openFileReader(path);
    const image = await openQcow2Image(reader);
    try {
      assert.equal(image.size, 100 * 1024 ** 3);
      const regions = coalesce(await Array.fromAsync(image.regions()));
      assert.deepEqual(regions, [
        { offset: 0, length: 50 * 1024 ** 3, zero: true },
        { offset: 50 * 1024 ** 3, length: 1024 * 1024, zero: false },
        { offset: 50 * 1024 ** 3 + 1024 * 1024, length: 50 * 1024 ** 3 - 1024 * 1024, zero: true },
      ]);
      const before = reader.reads;
      const bytes = await image.read(50 * 1024 ** 3 - 4096, 4 * 1024 * 1024);
      assert.ok(bytes.subarray(0, 4096).every((b) => b === 0));
      assert.ok(bytes.subarray(4096, 4096 + 1024 * 1024).every((b) => b === 0x77));
      assert.ok(bytes.subarray(4096 + 1024 * 1024).every((b) => b === 0));
      assert.equal(reader.reads - before, 1, "16 contiguous clusters in one positioned read");
    } finally {
      await image.close();
    }
  },
});

/** Merges adjacent regions of the same kind (regions() may split long runs). */
function coalesce(regions: DiskImageRegion[]): DiskImageRegion[] {
  const out: DiskImageRegion[] = [];
  for (const region of regions) {
    const last = out.at(-1);
    if (last !== undefined && last.zero === region.zero) {
      out[out.length - 1] = { ...last, length: last.length + region.length };
    } else out.push(region);
  }
  return out;
}

// Hand-corrupted images: a small valid image, modified.

async function smallImage(): Promise<Uint8Array> {
  const path = await convert(`small-${crypto.randomUUID()}.qcow2`, "-o", "compat=1.1");
  return await Deno.readFile(path);
}

function memoryReader(bytes: Uint8Array) {
  return {
    size: bytes.length,
    read: (position: number, length: number) =>
      Promise.resolve(bytes.slice(position, position + length)),
    close: () => Promise.resolve(),
  };
}

async function readAll(bytes: Uint8Array): Promise<void> {
  const image = await openQcow2Image(memoryReader(bytes), {});
  try {
    for (let at = 0; at < image.size; at += 1 << 20) {
      await image.read(at, Math.min(1 << 20, image.size - at));
    }
  } finally {
    await image.close();
  }
}

function patch(bytes: Uint8Array, edit: (view: DataView) => void): Uint8Array {
  const copy = bytes.slice();
  edit(new DataView(copy.buffer));
  return copy;
}

Deno.test({
  name: "openQcow2Image rejects corrupt and unsupported headers with clear errors",
  ignore,
  async fn() {
    const good = await smallImage();
    await readAll(good);
    const cases: [string, Uint8Array, typeof Error, RegExp][] = [
      [
        "bad magic",
        patch(good, (v) => v.setUint32(0, 0x514649fc)),
        SyntaxError,
        /^Not a qcow2 image: the file does not start with "QFI\\xfb"$/,
      ],
      [
        "version 1",
        patch(good, (v) => v.setUint32(4, 1)),
        TypeError,
        /^Unsupported qcow2 image: version 1 is not supported$/,
      ],
      [
        "version 4",
        patch(good, (v) => v.setUint32(4, 4)),
        TypeError,
        /^Unsupported qcow2 image: version 4 is not supported$/,
      ],
      [
        "encrypted",
        patch(good, (v) => v.setUint32(32, 2)),
        TypeError,
        /^Unsupported qcow2 image: encrypted images are not supported$/,
      ],
      [
        "external data file",
        patch(good, (v) => v.setUint32(76, v.getUint32(76) | 4)),
        TypeError,
        /^Unsupported qcow2 image: external data files are not supported$/,
      ],
      [
        "unknown incompatible feature",
        patch(good, (v) => v.setUint32(76, v.getUint32(76) | 0x20)),
        TypeError,
        /^Unsupported qcow2 image: unknown incompatible features 0x20 are set$/,
      ],
      [
        "corrupt bit",
        patch(good, (v) => v.setUint32(76, v.getUint32(76) | 2)),
        SyntaxError,
        /^Corrupt qcow2 image: the image is marked corrupt; repair it with "qemu-img check -r all"$/,
      ],
      [
        "cluster bits 22",
        patch(good, (v) => v.setUint32(20, 22)),
        TypeError,
        /^Unsupported qcow2 image: cluster size 2\^22 is not supported \(2\^9 to 2\^21 are\)$/,
      ],
      [
        "huge L1 size",
        patch(good, (v) => v.setUint32(36, 0xffffffff)),
        RangeError,
        /^Oversized qcow2 image: the L1 table has 4294967295 entries, more than 4194304$/,
      ],
      [
        "L1 table too small",
        patch(good, (v) => v.setBigUint64(24, 1n << 40n)),
        SyntaxError,
        /^Corrupt qcow2 image: the L1 table has 1 entries, 2048 are needed for the virtual size 1099511627776$/,
      ],
      [
        "L1 offset past the end",
        patch(good, (v) => v.setBigUint64(40, 1n << 40n)),
        SyntaxError,
        /^Corrupt qcow2 image: L1 table offset 0x10000000000 is past the end of the file$/,
      ],
      [
        "zstd without a decompressor",
        patch(good, (v) => {
          v.setUint32(76, v.getUint32(76) | 8);
          v.setUint8(104, 1);
        }),
        TypeError,
        /^Unsupported qcow2 image: the image is zstd-compressed and no zstd decompressor was given \(the zstd option\)$/,
      ],
      [
        "truncated header",
        good.slice(0, 60),
        SyntaxError,
        /^Corrupt qcow2 image: the header is truncated$/,
      ],
      [
        "truncated file",
        good.slice(0, 4 * 65536),
        SyntaxError,
        /^Corrupt qcow2 image: (L1 table offset|L2 table offset) 0x[0-9a-f]+ is past the end of the file$/,
      ],
    ];
    for (const [what, bytes, Class, message] of cases) {
      await rejectsWith(readAll(bytes), Class, message).catch((error) => {
        throw new Error(`${what}: ${error.message}`);
      });
    }
  },
});

Deno.test({
  name: "openQcow2Image rejects L2 entries and compressed data that point past the end",
  ignore,
  async fn() {
    const good = await smallImage();
    const view = new DataView(good.buffer);
    const l1Offset = Number(view.getBigUint64(40));
    const l2Offset = Number(view.getBigUint64(l1Offset) & 0x00fffffffffffe00n);
    // Find an allocated data cluster entry.
    let index = 0;
    while (view.getBigUint64(l2Offset + index * 8) === 0n) index++;
    const pastEnd = patch(good, (v) => v.setBigUint64(l2Offset + index * 8, 1n << 40n));
    await rejectsWith(
      readAll(pastEnd),
      SyntaxError,
      /^Corrupt qcow2 image: data cluster offset 0x10000000000 is past the end of the file$/,
    );
    const unaligned = patch(good, (v) => v.setBigUint64(l2Offset + index * 8, 0x10200n));
    await rejectsWith(
      readAll(unaligned),
      SyntaxError,
      /^Corrupt qcow2 image: data cluster offset 0x10200 is not aligned to a cluster$/,
    );
    // A compressed cluster whose data is not deflate data (the header bytes).
    const garbage = patch(good, (v) => v.setBigUint64(l2Offset + index * 8, (1n << 62n) | 0n));
    await rejectsWith(
      readAll(garbage),
      SyntaxError,
      /^Corrupt qcow2 image: compressed cluster at 0x0 cannot be decompressed: Invalid deflate data: /,
    );
    // An L1 entry pointing past the end of the file.
    const l1Past = patch(good, (v) => v.setBigUint64(l1Offset, 1n << 40n));
    await rejectsWith(
      readAll(l1Past),
      SyntaxError,
      /^Corrupt qcow2 image: L2 table offset 0x10000000000 is past the end of the file$/,
    );
  },
});

Deno.test({
  name: "openQcow2Image names a backing file it cannot open",
  ignore,
  async fn() {
    const path = join(dir, "orphan.qcow2");
    await run(
      "qemu-img",
      "create",
      "-f",
      "qcow2",
      "-b",
      "base.qcow2",
      "-F",
      "qcow2",
      "-u",
      path,
      "1M",
    );
    const reader = await openFileReader(path);
    await rejectsWith(
      openQcow2Image(reader),
      TypeError,
      'Cannot open the backing file "base.qcow2": no openBacking option was given',
    );
    await rejectsWith(
      openQcow2Image(reader, cliOptions(path)),
      Error,
      /^Cannot open the backing file "base.qcow2": No such file or directory/,
    );
    await reader.close();
  },
});

Deno.test({
  name: "openQcow2Image rejects reads outside the disk",
  ignore,
  async fn() {
    const image = await openQcow2Image(memoryReader(await smallImage()));
    await rejectsWith(
      image.read(SIZE - 10, 4096),
      RangeError,
      `Cannot read 4096 bytes at offset ${SIZE - 10}: the disk is ${image.size} bytes long`,
    );
    await image.close();
  },
});
