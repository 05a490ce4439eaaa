import assert from "node:assert/strict";
import { join } from "node:path";
import type { PositionedReader } from "../../src/image/disk_image.ts";
import { openVmdkImage } from "../../src/image/vmdk_image.ts";
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
/** 3 MiB and a bit: not a multiple of the 64 KiB grain. */
const SIZE = 3 * 1024 * 1024 + 12345;
const data = knownData(SIZE, 11);
const source = await qemuSource("vmdk", data);
const dir = source.dir;

function convert(name: string, subformat: string): Promise<string> {
  return source.convert(name, "-o", `subformat=${subformat}`);
}

function memoryReader(bytes: Uint8Array): PositionedReader {
  return {
    size: bytes.length,
    read: (position, length) => Promise.resolve(bytes.slice(position, position + length)),
    close: () => Promise.resolve(),
  };
}

async function readsSource(path: string): Promise<void> {
  const image = await openPath(path);
  try {
    assert.ok(equalBytes(await image.read(0, SIZE), data), "reads back the source data");
  } finally {
    await image.close();
  }
}

for (
  const subformat of [
    "monolithicSparse",
    "streamOptimized",
    "monolithicFlat",
    "twoGbMaxExtentSparse",
    "twoGbMaxExtentFlat",
  ]
) {
  Deno.test({
    name: `openVmdkImage reads ${subformat} images exactly like qemu-img`,
    ignore,
    async fn() {
      const path = await convert(`${subformat}.vmdk`, subformat);
      const regions = await checkAgainstQemu(path, dir, "vmdk");
      await readsSource(path);
      if (!subformat.endsWith("Flat")) {
        assert.ok(zeroBytes(regions) >= 65536, "unallocated grains are zero regions");
      }
    },
  });
}

/**
 * Moves a streamOptimized file's grain directory pointer to a footer, as
 * VMware writes them (OVAs): header gdOffset = GD_AT_END, then a footer
 * marker, the footer (the header with the real gdOffset) and an end-of-stream
 * marker.
 */
function withFooter(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(bytes.length + 3 * 512);
  out.set(bytes);
  const footer = bytes.slice(0, 512);
  const view = new DataView(out.buffer);
  view.setBigUint64(56, 0xffffffffffffffffn, true);
  const marker = bytes.length;
  view.setBigUint64(marker, 1n, true); // one sector of metadata
  view.setUint32(marker + 8, 0, true);
  view.setUint32(marker + 12, 3, true); // MARKER_FOOTER
  out.set(footer, marker + 512);
  // The end-of-stream marker is all zeros.
  return out;
}

Deno.test({
  name: "openVmdkImage reads a streamOptimized image whose grain directory is in the footer",
  ignore,
  async fn() {
    const source = await convert("stream-source.vmdk", "streamOptimized");
    const path = join(dir, "stream-footer.vmdk");
    await Deno.writeFile(path, withFooter(await Deno.readFile(source)));
    await checkAgainstQemu(path, dir, "vmdk");
    await readsSource(path);

    const broken = withFooter(await Deno.readFile(source));
    broken[broken.length - 1024] = 0; // the footer's magic
    await rejectsWith(
      openVmdkImage(memoryReader(broken)),
      SyntaxError,
      "Corrupt vmdk image: the grain directory is at the end but there is no valid footer",
    );
  },
});

Deno.test({
  name: "openVmdkImage reads several grain tables and zeroed grains",
  ignore,
  async fn() {
    const path = join(dir, "zeroed.vmdk");
    const MiB = 1024 * 1024;
    // 40 MiB: two grain tables of 512 grains of 64 KiB.
    await run("qemu-img", "create", "-f", "vmdk", "-o", "zeroed_grain=on", path, "40M");
    await run(
      "qemu-io",
      "-c",
      "write -P 0x42 8M 1M",
      "-c",
      "write -P 0x43 34M 128k",
      "-c",
      "write -z 8M 256k",
      path,
    );
    const regions = await checkAgainstQemu(path, dir, "vmdk");
    assert.deepEqual(regions, [
      { offset: 0, length: 8 * MiB + 256 * 1024, zero: true },
      { offset: 8 * MiB + 256 * 1024, length: 768 * 1024, zero: false },
      { offset: 9 * MiB, length: 25 * MiB, zero: true },
      { offset: 34 * MiB, length: 128 * 1024, zero: false },
      { offset: 34 * MiB + 128 * 1024, length: 6 * MiB - 128 * 1024, zero: true },
    ]);
    // The zeroed grains really are GTE 1 (not unallocated).
    const bytes = await Deno.readFile(path);
    const view = new DataView(bytes.buffer);
    const gd = Number(view.getBigUint64(56, true)) * 512;
    const gt = view.getUint32(gd, true) * 512;
    assert.equal(view.getUint32(gt + 4 * 128, true), 1, "grain 128 (8 MiB) is zeroed");
  },
});

Deno.test({
  name: "openVmdkImage reads a descriptor that mixes sparse, flat and zero extents",
  ignore,
  async fn() {
    const sparse = await convert("mix.vmdk", "twoGbMaxExtentSparse");
    const flat = await convert("mixflat.vmdk", "monolithicFlat");
    void sparse;
    void flat;
    const sectors = Math.ceil(SIZE / 512);
    const descriptor = [
      "# Disk DescriptorFile",
      "version=1",
      "CID=12345678",
      "parentCID=ffffffff",
      'createType="custom"',
      "",
      "# Extent description",
      `RW ${sectors} SPARSE "mix-s001.vmdk"`,
      "RW 200 ZERO",
      `RDONLY 100 FLAT "mixflat-flat.vmdk" 8`,
      "",
      'ddb.adapterType = "lsilogic"',
      "",
    ].join("\r\n");
    const path = join(dir, "mixed.vmdk");
    await Deno.writeTextFile(path, descriptor);
    const image = await openPath(path);
    try {
      assert.equal(image.size, (sectors + 300) * 512);
      const expected = new Uint8Array(image.size);
      expected.set(data);
      expected.set(data.subarray(8 * 512, 108 * 512), (sectors + 200) * 512);
      for (const piece of [1 << 20, 65536 + 3]) {
        for (let at = 0; at < image.size; at += piece) {
          const length = Math.min(piece, image.size - at);
          assert.ok(equalBytes(await image.read(at, length), expected.subarray(at, at + length)));
        }
      }
      const regions = await Array.fromAsync(image.regions());
      assert.deepEqual(regions.at(-1), {
        offset: (sectors + 200) * 512,
        length: 51200,
        zero: false,
      });
      assert.deepEqual(regions.at(-2), {
        offset: regions.at(-2)!.offset,
        length: (sectors + 200) * 512 - regions.at(-2)!.offset,
        zero: true,
      });
    } finally {
      await image.close();
    }
  },
});

Deno.test({
  name: "openVmdkImage refuses unsupported descriptors and names missing extent files",
  ignore,
  async fn() {
    const descriptor = (createType: string, extent: string, extra = "") =>
      new TextEncoder().encode(
        `# Disk DescriptorFile\nversion=1\nparentCID=ffffffff\n${extra}createType="${createType}"\n${extent}\n`,
      );
    const flat = await convert("named.vmdk", "monolithicFlat");
    const options = cliOptions(flat);
    const cases: [string, Uint8Array, typeof Error, string][] = [
      [
        "no openFile",
        descriptor("monolithicFlat", 'RW 10 FLAT "disk-flat.vmdk" 0'),
        TypeError,
        'Cannot open the extent file "disk-flat.vmdk": no openFile option was given',
      ],
      [
        "delta disk",
        descriptor(
          "monolithicSparse",
          'RW 10 SPARSE "delta.vmdk"',
          'parentCID=1234abcd\nparentFileNameHint="base.vmdk"\n',
        ),
        TypeError,
        'Unsupported vmdk image: delta disks with a parent ("base.vmdk") are not supported',
      ],
      [
        "vmfsSparse",
        descriptor("vmfsSparse", 'RW 10 VMFSSPARSE "x-delta.vmdk"'),
        TypeError,
        'Unsupported vmdk image: createType "vmfsSparse" is not supported',
      ],
      [
        "seSparse extent",
        descriptor("custom", 'RW 10 SESPARSE "x.vmdk"'),
        TypeError,
        'Unsupported vmdk image: extent type "SESPARSE" is not supported',
      ],
      [
        "no extents",
        descriptor("monolithicFlat", ""),
        SyntaxError,
        "Corrupt vmdk image: the descriptor lists no extents",
      ],
      [
        "no createType",
        new TextEncoder().encode('# Disk DescriptorFile\nRW 10 FLAT "a" 0\n'),
        SyntaxError,
        "Corrupt vmdk image: the descriptor has no createType",
      ],
      [
        "flat extent too short",
        descriptor("monolithicFlat", 'RW 100000 FLAT "named-flat.vmdk" 0'),
        SyntaxError,
        `Corrupt vmdk image: the flat extent is ${
          Math.ceil(SIZE / 512) * 512
        } bytes, 51200000 are needed (extent file "named-flat.vmdk")`,
      ],
      [
        "not a vmdk",
        new TextEncoder().encode("hello"),
        SyntaxError,
        'Not a vmdk image: the file starts with neither "KDMV" nor "# Disk DescriptorFile"',
      ],
      [
        "COWD",
        new TextEncoder().encode("COWD\x01\0\0\0"),
        TypeError,
        "Unsupported vmdk image: the COWD sparse format (ESX Server 2) is not supported",
      ],
    ];
    for (const [what, bytes, Class, message] of cases) {
      const opts = what === "no openFile" ? {} : options;
      await rejectsWith(openVmdkImage(memoryReader(bytes), opts), Class, message).catch(
        (error) => {
          throw new Error(`${what}: ${error.message}`);
        },
      );
    }
    await rejectsWith(
      openVmdkImage(
        memoryReader(descriptor("monolithicFlat", 'RW 10 FLAT "missing-flat.vmdk" 0')),
        options,
      ),
      Error,
      /^Cannot open the extent file "missing-flat.vmdk": No such file or directory/,
    );
  },
});

Deno.test({
  name: "openVmdkImage rejects corrupt sparse extents with clear errors",
  ignore,
  async fn() {
    const good = await Deno.readFile(await convert("corrupt.vmdk", "monolithicSparse"));
    const stream = await Deno.readFile(await convert("corrupt-stream.vmdk", "streamOptimized"));
    const patch = (bytes: Uint8Array, edit: (view: DataView) => void) => {
      const copy = bytes.slice();
      edit(new DataView(copy.buffer));
      return copy;
    };
    const gdOffset = Number(new DataView(good.buffer).getBigUint64(56, true)) * 512;
    const gtOffset = new DataView(good.buffer).getUint32(gdOffset, true) * 512;
    const cases: [string, Uint8Array, typeof Error, string | RegExp][] = [
      [
        "version 4",
        patch(good, (v) => v.setUint32(4, 4, true)),
        TypeError,
        "Unsupported vmdk image: sparse extent version 4 is not supported",
      ],
      [
        "huge grain",
        patch(good, (v) => v.setBigUint64(20, 1n << 40n, true)),
        RangeError,
        "Oversized vmdk image: the grain size 1099511627776 sectors is not supported (1 to 131072 are)",
      ],
      [
        "too many grain table entries",
        patch(good, (v) => v.setUint32(44, 1 << 20, true)),
        RangeError,
        "Oversized vmdk image: 1048576 grain table entries are not supported (1 to 512 are)",
      ],
      [
        "grain directory past the end",
        patch(good, (v) => v.setBigUint64(56, 1n << 40n, true)),
        SyntaxError,
        "Corrupt vmdk image: the grain directory offset 0x2000000000000 is past the end of the file",
      ],
      [
        "grain table past the end",
        patch(good, (v) => v.setUint32(gdOffset, 0x7fffffff, true)),
        SyntaxError,
        "Corrupt vmdk image: grain table offset 0xfffffffe00 is past the end of the file",
      ],
      [
        "grain past the end",
        patch(good, (v) => {
          for (let i = 0; i < 512; i++) v.setUint32(gtOffset + 4 * i, 0x7fffffff, true);
        }),
        SyntaxError,
        "Corrupt vmdk image: grain offset 0xfffffffe00 is past the end of the file",
      ],
      [
        "truncated",
        good.slice(0, 256 * 1024 + 1000),
        SyntaxError,
        /^Corrupt vmdk image: the data at 0x40000\.\.0x[0-9a-f]+ runs past the end of the file$/,
      ],
      [
        "compression algorithm 2",
        patch(good, (v) => v.setUint16(77, 2, true)),
        TypeError,
        "Unsupported vmdk image: compression algorithm 2 is not supported",
      ],
      [
        "compressed grain that is not zlib data",
        patch(stream, (v) => {
          const gd = Number(v.getBigUint64(56, true)) * 512;
          const gt = v.getUint32(gd, true) * 512;
          let i = 0;
          while (v.getUint32(gt + 4 * i, true) === 0) i++;
          const grain = v.getUint32(gt + 4 * i, true) * 512;
          v.setUint32(grain + 12, 0xdeadbeef);
        }),
        SyntaxError,
        /^Corrupt vmdk image: the compressed grain at 0x[0-9a-f]+ cannot be decompressed: Invalid zlib data: bad header$/,
      ],
      [
        "grain marker with a huge size",
        patch(stream, (v) => {
          const gd = Number(v.getBigUint64(56, true)) * 512;
          const gt = v.getUint32(gd, true) * 512;
          let i = 0;
          while (v.getUint32(gt + 4 * i, true) === 0) i++;
          v.setUint32(v.getUint32(gt + 4 * i, true) * 512 + 8, 0x7fffffff, true);
        }),
        SyntaxError,
        /^Corrupt vmdk image: the grain marker at 0x[0-9a-f]+ gives the invalid size 2147483647$/,
      ],
    ];
    for (const [what, bytes, Class, message] of cases) {
      const read = async () => {
        const image = await openVmdkImage(memoryReader(bytes));
        try {
          await image.read(0, image.size);
        } finally {
          await image.close();
        }
      };
      await rejectsWith(read(), Class, message).catch((error) => {
        throw new Error(`${what}: ${error.message}`);
      });
    }
  },
});

Deno.test({
  name: "openVmdkImage closes the extent files it opened when it closes",
  ignore,
  async fn() {
    const path = await convert("closing.vmdk", "twoGbMaxExtentFlat");
    const opened: string[] = [];
    const closed: string[] = [];
    const image = await openVmdkImage(await openFileReader(path), {
      openFile: async (name) => {
        opened.push(name);
        const reader = await openFileReader(join(dir, name));
        return { ...reader, close: () => (closed.push(name), reader.close()) };
      },
    });
    assert.deepEqual(opened, ["closing-f001.vmdk"]);
    assert.deepEqual(closed, []);
    await image.close();
    assert.deepEqual(closed, ["closing-f001.vmdk"]);
  },
});
