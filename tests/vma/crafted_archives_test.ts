// Hostile archives made byte by byte (tests/_craft.ts): each must end in a
// clear VmaFormatError (class and message pinned), or in success where the
// format allows it, from both verifyVma and extractVma.
import assert from "node:assert/strict";
import { createGunzip, createZstdDecompress } from "node:zlib";
import { extractVma, verifyVma, VmaFormatError, VmaReader } from "../../mod.ts";
import { nodeTransformToWeb } from "../../src/cli/_node_stream.ts";
import {
  BLOCK_SIZE,
  CLUSTER_SIZE,
  concat,
  craftExtent,
  craftHeader,
  type CraftHeaderOptions,
  craftZeroExtent,
  DEV_INFO_SIZE,
  fixHeaderMd5,
  OFF_BLOB_OFFSET,
  OFF_BLOB_SIZE,
  OFF_CONFIG_DATA,
  OFF_CONFIG_NAMES,
  OFF_DEV_INFO,
  OFF_HEADER_SIZE,
  splitArchive,
  streamOf,
} from "../_craft.ts";
import { checkingTarget } from "../_fuzz.ts";

const enc = new TextEncoder();

/** verifyVma and extractVma both reject `bytes` with exactly `message`. */
async function assertFormatError(bytes: Uint8Array, message: string): Promise<void> {
  for (const [what, run] of runners) {
    await assert.rejects(run(bytes), (error: unknown) => {
      assert.ok(error instanceof VmaFormatError, `${what}: ${error}`);
      assert.equal(error.message, message, what);
      assert.ok(Number.isSafeInteger(error.offset) && error.offset >= 0, what);
      return true;
    });
  }
}

/** verifyVma and extractVma both accept `bytes`; returns what extract wrote. */
async function assertAccepted(bytes: Uint8Array): Promise<Map<string, Uint8Array>> {
  await verifyVma(new VmaReader(streamOf(bytes)));
  const disks = new Map<string, Uint8Array>();
  const checking = checkingTarget(bytes.length);
  await extractVma(new VmaReader(streamOf(bytes)), {
    config: checking.target.config,
    async device(device) {
      const sink = (await checking.target.device(device))!;
      const disk = new Uint8Array(device.size);
      disks.set(device.name, disk);
      return {
        async write(offset, data) {
          await sink.write(offset, data);
          disk.set(data, offset);
        },
        close: sink.close,
      };
    },
  });
  checking.finish();
  return disks;
}

const runners: [string, (bytes: Uint8Array) => Promise<unknown>][] = [
  ["verifyVma", (bytes) => verifyVma(new VmaReader(streamOf(bytes)))],
  ["extractVma", async (bytes) => {
    const checking = checkingTarget(bytes.length);
    await extractVma(new VmaReader(streamOf(bytes)), checking.target);
    checking.finish();
  }],
];

/** One 2-cluster disk, every cluster present (cluster 0 with data, cluster 1 zero). */
function oneDisk(options: Partial<CraftHeaderOptions> = {}): Uint8Array {
  const { bytes } = craftHeader({
    configs: [{ name: "qemu-server.conf", data: "memory: 512\n" }],
    devices: [{ name: "drive-scsi0", size: 2 * CLUSTER_SIZE }],
    ...options,
  });
  return concat(
    bytes,
    craftExtent({
      slots: [{ devId: 1, cluster: 0, mask: 0xffff }, { devId: 1, cluster: 1, mask: 0 }],
    }),
  );
}

Deno.test("crafted: the well-formed base archive is accepted", async () => {
  const disks = await assertAccepted(oneDisk());
  assert.equal(disks.get("drive-scsi0")![0], 1);
  assert.equal(disks.get("drive-scsi0")![CLUSTER_SIZE], 0);
});

// ---------------------------------------------------------------------------
// Names

const unsafeNames: [string, string | Uint8Array, string][] = [
  ["with /", "a/b", 'it contains "/"'],
  ["..", "..", 'it is ".."'],
  [".", ".", 'it is "."'],
  ["an absolute path", "/etc/passwd", 'it contains "/"'],
  ["a parent path", "../../etc/cron.d/x", 'it contains "/"'],
  ["with a backslash", "..\\x", 'it contains "\\"'],
  ["with a control character", "a\nb", "it contains a control character"],
  ["with DEL", "a\x7fb", "it contains a control character"],
  ["with a C1 control (NEL)", "a\u0085b", "it contains a control character"],
  ["with a C1 control (CSI)", "a\u009b2J", "it contains a control character"],
  ["with a line separator", "a\u2028b", "it contains a line separator"],
  ["empty (a lone NUL)", "", "it is empty"],
];

/** How messages quote a name: JSON, with DEL, C1 controls and line separators escaped. */
function quoted(name: string | Uint8Array): string {
  return JSON.stringify(name).replace(
    /[\u007f-\u009f\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

for (const [what, name, reason] of unsafeNames) {
  Deno.test(`crafted: a config name ${what} is rejected`, async () => {
    const bytes = oneDisk({ configs: [{ name, data: "x" }] });
    await assertFormatError(
      bytes,
      `vma contains config name ${quoted(name)}, unsafe as a file name: ${reason}`,
    );
  });
  Deno.test(`crafted: a device name ${what} is rejected`, async () => {
    const bytes = oneDisk({ devices: [{ name, size: 2 * CLUSTER_SIZE }] });
    await assertFormatError(
      bytes,
      `vma contains device name ${quoted(name)}, unsafe as a file name: ${reason}`,
    );
  });
}

const invalidNameBlobs: [string, Uint8Array][] = [
  ["with a NUL inside", enc.encode("a\0b\0")],
  ["without its terminating NUL", enc.encode("drive-scsi0")],
  ["of 0 bytes", new Uint8Array(0)],
];

for (const [what, blob] of invalidNameBlobs) {
  Deno.test(`crafted: a config name blob ${what} is rejected`, async () => {
    await assertFormatError(
      oneDisk({ configs: [{ name: blob, data: "x" }] }),
      "vma contains invalid data pointers",
    );
  });
  Deno.test(`crafted: a device name blob ${what} is rejected`, async () => {
    await assertFormatError(
      oneDisk({ devices: [{ name: blob, size: 2 * CLUSTER_SIZE }] }),
      "vma contains an invalid device name pointer for dev_id 1",
    );
  });
}

Deno.test("crafted: two configs of the same name are rejected", async () => {
  await assertFormatError(
    oneDisk({ configs: [{ name: "a.conf", data: "1" }, { name: "a.conf", data: "2" }] }),
    'vma contains config name "a.conf" twice',
  );
});

Deno.test("crafted: a config with 0 bytes of data is accepted", async () => {
  const bytes = oneDisk({ configs: [{ name: "qemu-server.fw", data: new Uint8Array(0) }] });
  const header = await new VmaReader(streamOf(bytes)).header();
  assert.deepEqual(header.configs, [{ name: "qemu-server.fw", data: new Uint8Array(0) }]);
  await assertAccepted(bytes);
});

// ---------------------------------------------------------------------------
// header_size and blob pointers

for (
  const [what, size, message] of [
    ["12,288 (no blob area)", 12288, "wrong vma header size 12288"],
    ["below 12,288", 12287, "wrong vma header size 12287"],
    ["0", 0, "wrong vma header size 0"],
    ["2^32-1 (negative as a C int)", 0xffffffff, "wrong vma header size -1"],
    ["2^31 (negative as a C int)", 0x80000000, "wrong vma header size -2147483648"],
    ["2^31-1, more than the reader takes", 0x7fffffff, "wrong vma header size 2147483647"],
    ["100 MiB, more than the reader takes", 100 * 2 ** 20, "wrong vma header size 104857600"],
  ] as const
) {
  Deno.test(`crafted: header_size ${what} is rejected before reading it`, async () => {
    const bytes = oneDisk({ edit: (view) => view.setUint32(OFF_HEADER_SIZE, size) });
    await assertFormatError(bytes, message);
  });
}

Deno.test("crafted: header_size past the end of a short stream is rejected", async () => {
  const { bytes } = craftHeader({
    devices: [{ name: "drive-scsi0", size: CLUSTER_SIZE }],
    edit: (view) => view.setUint32(OFF_HEADER_SIZE, 32 * 2 ** 20),
    md5: false,
  });
  await assertFormatError(bytes.subarray(0, 12800), "can't read vma header data - got EOF");
});

Deno.test("crafted: blob_buffer_offset below 12,288 is rejected", async () => {
  await assertFormatError(
    oneDisk({ edit: (view) => view.setUint32(OFF_BLOB_OFFSET, 4096) }),
    "wrong vma blob buffer offset 4096",
  );
});

Deno.test("crafted: a blob buffer reaching past header_size is rejected", async () => {
  await assertFormatError(
    oneDisk({ edit: (view) => view.setUint32(OFF_BLOB_SIZE, 513) }),
    "wrong vma blob buffer size 12288/513",
  );
  // 12288 + (2^32-1) wraps to 12287 in 32 bits, as in Proxmox's C: the size
  // check passes, the blob walk finds nothing, and the first name fails.
  await assertFormatError(
    oneDisk({ edit: (view) => view.setUint32(OFF_BLOB_SIZE, 0xffffffff) }),
    "vma contains an invalid device name pointer for dev_id 1",
  );
});

Deno.test("crafted: a config pointer past the blob buffer is rejected", async () => {
  await assertFormatError(
    oneDisk({ edit: (view) => view.setUint32(OFF_CONFIG_NAMES, 400) }),
    "vma contains invalid data pointers",
  );
  await assertFormatError(
    oneDisk({ edit: (view) => view.setUint32(OFF_CONFIG_DATA, 0x7fffffff) }),
    "vma contains invalid data pointers",
  );
});

Deno.test("crafted: a config pointer into the middle of a blob is rejected", async () => {
  // config_names[0] = 1 ("qemu-server.conf\0" at 1..19): 3 points inside it.
  await assertFormatError(
    oneDisk({ edit: (view) => view.setUint32(OFF_CONFIG_NAMES, 3) }),
    "vma contains invalid data pointers",
  );
  await assertFormatError(
    oneDisk({
      edit: (view, _, layout) => view.setUint32(OFF_CONFIG_DATA, layout.configData[0] + 1),
    }),
    "vma contains invalid data pointers",
  );
});

Deno.test("crafted: a device name pointer past the blob buffer or into a blob is rejected", async () => {
  await assertFormatError(
    oneDisk({ edit: (view) => view.setUint32(OFF_DEV_INFO + DEV_INFO_SIZE, 60000) }),
    "vma contains an invalid device name pointer for dev_id 1",
  );
  await assertFormatError(
    oneDisk({
      edit: (view, _, layout) =>
        view.setUint32(OFF_DEV_INFO + DEV_INFO_SIZE, layout.deviceNames.get(1)! + 2),
    }),
    "vma contains an invalid device name pointer for dev_id 1",
  );
});

Deno.test("crafted: a blob length running past the blob buffer hides the blobs after it", async () => {
  // The config name's length claims 600 bytes: the walk stops, so no pointer
  // resolves (devices are checked first).
  await assertFormatError(
    oneDisk({ edit: (_, bytes) => bytes.set([0x58, 0x02], 12288 + 1) }),
    "vma contains an invalid device name pointer for dev_id 1",
  );
  await assertFormatError(
    oneDisk({ devices: [], edit: (_, bytes) => bytes.set([0x58, 0x02], 12288 + 1) }),
    "vma contains invalid data pointers",
  );
});

// ---------------------------------------------------------------------------
// dev_id

Deno.test("crafted: blockinfo slots with dev_id 0 are skipped wherever they are", async () => {
  const { bytes: header } = craftHeader({ devices: [{ name: "drive-scsi0", size: CLUSTER_SIZE }] });
  const data = new Uint8Array(BLOCK_SIZE).fill(7);
  const bytes = concat(
    header,
    // Slot 0: dev_id 0 with a mask and a cluster number past the end; slot 5: the real one.
    craftExtent({
      slots: [
        { devId: 0, cluster: 99, mask: 0xffff },
        { at: 5, devId: 1, cluster: 0, mask: 0x0001 },
        { at: 58, devId: 0, cluster: 0, mask: 0x0001 },
      ],
      data,
    }),
  );
  const disks = await assertAccepted(bytes);
  assert.deepEqual(disks.get("drive-scsi0")!.subarray(0, BLOCK_SIZE), data);
});

Deno.test("crafted: a device declared in dev_info slot 255 is rejected", async () => {
  await assertFormatError(
    oneDisk({ devices: [{ id: 255, name: "drive-scsi0", size: 2 * CLUSTER_SIZE }] }),
    "vma contains a device with dev_id 255, past 254",
  );
});

Deno.test("crafted: a dev_info slot with a size but no name is ignored, and data for it rejected", async () => {
  const { bytes: header } = craftHeader({
    devices: [{ name: "drive-scsi0", size: CLUSTER_SIZE }],
    edit: (view) => view.setBigUint64(OFF_DEV_INFO + 2 * DEV_INFO_SIZE + 8, 65536n),
  });
  const ok = concat(header, craftZeroExtent(1, 0, 1));
  assert.deepEqual((await new VmaReader(streamOf(ok)).header()).devices.map((d) => d.id), [1]);
  await assertAccepted(ok);
  await assertFormatError(concat(ok, craftZeroExtent(2, 0, 1)), "got wrong dev id 2");
});

for (const devId of [2, 254, 255]) {
  Deno.test(`crafted: data for undeclared dev_id ${devId} is rejected`, async () => {
    await assertFormatError(
      concat(oneDisk(), craftExtent({ slots: [{ devId, cluster: 0, mask: 0 }] })),
      `got wrong dev id ${devId}`,
    );
  });
}

// ---------------------------------------------------------------------------
// Cluster numbers, masks and block_count

for (const cluster of [2, 3, 65536, 0xffffffff]) {
  Deno.test(`crafted: cluster ${cluster} of a 2-cluster device is rejected`, async () => {
    await assertFormatError(
      concat(oneDisk(), craftExtent({ slots: [{ devId: 1, cluster, mask: 0 }] })),
      "got wrong block address - write beyond end",
    );
  });
}

Deno.test("crafted: a mask bit for a block past the device end is rejected; 0xffff is clamped", async () => {
  const size = CLUSTER_SIZE + BLOCK_SIZE; // cluster 1 holds one block
  const { bytes: header } = craftHeader({ devices: [{ name: "drive-scsi0", size }] });
  const first = craftExtent({ slots: [{ devId: 1, cluster: 0, mask: 0 }] });
  await assertFormatError(
    concat(header, first, craftExtent({ slots: [{ devId: 1, cluster: 1, mask: 0x0003 }] })),
    "got wrong block address - write beyond end",
  );
  const disks = await assertAccepted(
    concat(header, first, craftExtent({ slots: [{ devId: 1, cluster: 1, mask: 0xffff }] })),
  );
  assert.equal(disks.get("drive-scsi0")!.length, size);
  assert.equal(disks.get("drive-scsi0")![size - 1], 1);
});

Deno.test("crafted: block_count above the masks' blocks is rejected", async () => {
  const [header] = [craftHeader({ devices: [{ name: "drive-scsi0", size: CLUSTER_SIZE }] }).bytes];
  await assertFormatError(
    concat(
      header,
      craftExtent({
        slots: [{ devId: 1, cluster: 0, mask: 0xffff }],
        data: new Uint8Array(17 * BLOCK_SIZE).fill(1),
      }),
    ),
    "vma extent error - missing blocks",
  );
});

Deno.test("crafted: block_count below the masks' blocks is rejected", async () => {
  const { bytes: header } = craftHeader({ devices: [{ name: "drive-scsi0", size: CLUSTER_SIZE }] });
  await assertFormatError(
    concat(
      header,
      craftExtent({
        slots: [{ devId: 1, cluster: 0, mask: 0xffff }],
        data: new Uint8Array(15 * BLOCK_SIZE).fill(1),
      }),
    ),
    "short vma extent - too many blocks",
  );
});

Deno.test("crafted: block_count past the largest extent is rejected without reading it", async () => {
  const { bytes: header } = craftHeader({ devices: [{ name: "drive-scsi0", size: CLUSTER_SIZE }] });
  await assertFormatError(
    concat(
      header,
      craftExtent({
        slots: [{ devId: 1, cluster: 0, mask: 0 }],
        blockCount: 0xffff,
        data: new Uint8Array(0),
      }),
    ),
    "short vma extent (512 < 268431872)",
  );
});

Deno.test("crafted: an extent cut short is rejected", async () => {
  const archive = oneDisk();
  const { header, extents } = splitArchive(archive);
  assert.equal(extents.length, 1);
  await assertFormatError(
    concat(header, extents[0].subarray(0, 512 + 8 * BLOCK_SIZE)),
    "short vma extent (33280 < 66048)",
  );
  await assertFormatError(
    concat(header, extents[0].subarray(0, 100)),
    "read short extent (100 bytes)",
  );
  await assertFormatError(
    concat(header, extents[0].subarray(0, 511)),
    "read short extent (511 bytes)",
  );
});

Deno.test("crafted: trailing bytes after the last extent are rejected", async () => {
  await assertFormatError(concat(oneDisk(), new Uint8Array(1)), "read short extent (1 bytes)");
  await assertFormatError(concat(oneDisk(), new Uint8Array(511)), "read short extent (511 bytes)");
  await assertFormatError(
    concat(oneDisk(), new Uint8Array(512)),
    "wrong vma extent header chechsum",
  );
  await assertFormatError(
    concat(oneDisk(), new Uint8Array(600).fill(0x41)),
    "wrong vma extent header chechsum",
  );
});

Deno.test("crafted: an empty extent after the last is accepted (it is a no-op)", async () => {
  await assertAccepted(concat(oneDisk(), craftExtent({ slots: [] })));
});

Deno.test("crafted: a duplicated cluster is rejected, in one extent or across two", async () => {
  const { bytes: header } = craftHeader({
    devices: [{ name: "drive-scsi0", size: 2 * CLUSTER_SIZE }],
  });
  await assertFormatError(
    concat(
      header,
      craftExtent({
        slots: [{ devId: 1, cluster: 1, mask: 0 }, { devId: 1, cluster: 1, mask: 0xffff }],
      }),
    ),
    "found duplicated cluster 1 for stream drive-scsi0",
  );
  await assertFormatError(
    concat(header, craftZeroExtent(1, 0, 2), craftZeroExtent(1, 0, 1)),
    "found duplicated cluster 0 for stream drive-scsi0",
  );
});

Deno.test("crafted: an archive cut at an extent boundary fails (Proxmox's verify passes it)", async () => {
  const { bytes: header } = craftHeader({
    devices: [{ name: "drive-scsi0", size: 100 * CLUSTER_SIZE }, {
      name: "drive-scsi1",
      size: 512,
    }],
  });
  const extents = [
    craftZeroExtent(1, 0, 59),
    craftZeroExtent(1, 59, 100),
    craftZeroExtent(2, 0, 1),
  ];
  await assertAccepted(concat(header, ...extents));
  await assertFormatError(
    concat(header, extents[0], extents[2]),
    "detected missing cluster 59 for stream drive-scsi0",
  );
  await assertFormatError(
    concat(header, extents[0], extents[1]),
    "detected missing cluster 0 for stream drive-scsi1",
  );
  await assertFormatError(header, "detected missing cluster 0 for stream drive-scsi0");
});

Deno.test("crafted: a device larger than 2^53 bytes is rejected", async () => {
  await assertFormatError(
    oneDisk({ devices: [{ name: "drive-scsi0", size: 2n ** 64n - 1n }] }),
    'vma device "drive-scsi0" has an unsupported size 18446744073709551615',
  );
});

// ---------------------------------------------------------------------------
// Compressed streams

async function fixture(name: string): Promise<Uint8Array> {
  return await Deno.readFile(new URL(`../testdata/${name}`, import.meta.url));
}

function flipped(bytes: Uint8Array, at: number): Uint8Array {
  const out = bytes.slice();
  out[at] ^= 0x55;
  return out;
}

function gunzipWeb(bytes: Uint8Array): ReadableStream<Uint8Array> {
  return ReadableStream.from([bytes]).pipeThrough(
    new DecompressionStream("gzip") as unknown as TransformStream<Uint8Array, Uint8Array>,
  );
}

Deno.test("crafted: a corrupt gzip stream through DecompressionStream fails with its error", async () => {
  const gz = await fixture("small.vma.gz");
  await assert.rejects(
    verifyVma(new VmaReader(gunzipWeb(flipped(gz, gz.length >> 1)))),
    TypeError,
    "corrupt gzip stream does not have a matching checksum",
  );
});

Deno.test("crafted: a truncated gzip stream through DecompressionStream fails with its error", async () => {
  const gz = await fixture("small.vma.gz");
  await assert.rejects(
    verifyVma(new VmaReader(gunzipWeb(gz.subarray(0, gz.length >> 1)))),
    TypeError,
    "corrupt gzip stream does not have a matching checksum",
  );
});

Deno.test("crafted: a corrupt gzip stream through node:zlib fails with its error", async () => {
  const gz = await fixture("small.vma.gz");
  await assert.rejects(
    verifyVma(
      new VmaReader(
        ReadableStream.from([flipped(gz, gz.length >> 1)]).pipeThrough(
          nodeTransformToWeb(createGunzip()),
        ),
      ),
    ),
    (error: Error & { code?: string }) => {
      assert.equal(error.message, "incorrect data check");
      assert.equal(error.code, "Z_DATA_ERROR");
      return true;
    },
  );
});

Deno.test("crafted: a truncated gzip stream through node:zlib fails with its error", async () => {
  const gz = await fixture("small.vma.gz");
  await assert.rejects(
    verifyVma(
      new VmaReader(
        ReadableStream.from([gz.subarray(0, gz.length >> 1)]).pipeThrough(
          nodeTransformToWeb(createGunzip()),
        ),
      ),
    ),
    (error: Error & { code?: string }) => {
      assert.equal(error.message, "unexpected end of file");
      assert.equal(error.code, "Z_BUF_ERROR");
      return true;
    },
  );
});

Deno.test("crafted: a truncated zstd stream through node:zlib ends in a VmaFormatError", async () => {
  // Deno's zstd decoder ends a cut stream without an error; the reader sees
  // the archive end inside an extent.
  const zst = await fixture("small.vma.zst");
  for (
    const [length, message] of [[zst.length >> 1, "short vma extent (309760 < 733696)"], [
      100,
      "can't read vma header - got EOF",
    ]] as const
  ) {
    await assert.rejects(
      verifyVma(
        new VmaReader(
          ReadableStream.from([zst.subarray(0, length)]).pipeThrough(
            nodeTransformToWeb(createZstdDecompress()),
          ),
        ),
      ),
      VmaFormatError,
      message,
    );
  }
});

Deno.test("crafted: a truncated archive inside a valid gzip stream ends in a VmaFormatError", async () => {
  await assert.rejects(
    verifyVma(new VmaReader(gunzipWeb(await fixture("small-truncated.vma.gz")))),
    VmaFormatError,
  );
});

Deno.test("crafted: the reader does not hang on a stream that errors mid-archive", async () => {
  const archive = oneDisk();
  const failure = new RangeError("the disk went away");
  let at = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (at >= 13000) return controller.error(failure);
      controller.enqueue(archive.slice(at, at + 1000));
      at += 1000;
    },
  });
  await assert.rejects(verifyVma(new VmaReader(stream)), (e) => e === failure);
});

// Keep fixHeaderMd5 in use for a header edited after crafting.
Deno.test("crafted: an edited header with its MD5 recomputed is read with the edit", async () => {
  const bytes = oneDisk();
  new DataView(bytes.buffer).setBigUint64(OFF_DEV_INFO + DEV_INFO_SIZE + 8, BigInt(CLUSTER_SIZE));
  fixHeaderMd5(bytes);
  await assertFormatError(bytes, "got wrong block address - write beyond end");
});

Deno.test("crafted: clusters scattered one per 4 GiB do not make the reader allocate a bitmap each", async () => {
  // 1,000 extents of 59 slots, each slot in another 65,536-cluster page of a
  // 256 TiB device: 0.5 MiB of archive. With a bitmap page per slot the
  // reader allocated 466 MiB here; now a page lists its first clusters.
  const { bytes: header } = craftHeader({ devices: [{ name: "drive-scsi0", size: 2 ** 48 }] });
  const extents: Uint8Array[] = [];
  for (let e = 0, page = 1; e < 1000; e++) {
    const slots = [];
    for (let s = 0; s < 59; s++) slots.push({ devId: 1, cluster: page++ * 65536, mask: 0 });
    extents.push(craftExtent({ slots }));
  }
  let peak = 0;
  const base = Deno.memoryUsage();
  await assert.rejects(
    verifyVma(new VmaReader(streamOf(concat(header, ...extents))), {
      onProgress({ clustersRead }) {
        if (clustersRead % 5000 === 0 || clustersRead === 59000) {
          const m = Deno.memoryUsage();
          peak = Math.max(peak, m.heapUsed + m.external - base.heapUsed - base.external);
        }
      },
    }),
    VmaFormatError,
    "detected missing cluster 0 for stream drive-scsi0",
  );
  assert.ok(peak < 64 * 2 ** 20, `memory grew by ${Math.round(peak / 2 ** 20)} MiB`);
});
