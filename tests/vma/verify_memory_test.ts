// The reader's bookkeeping under a hostile cluster layout, measured on the
// CLI as a subprocess: peak RSS of `vma verify`.
import assert from "node:assert/strict";
import { CLI } from "../_cli_run.ts";
import { craftHeader, EXT_OFF_BLOCKINFO, EXT_OFF_UUID, fixExtentMd5 } from "../_craft.ts";

const hasGnuTime = await Deno.stat("/usr/bin/time").then(() => true, () => false);
if (!hasGnuTime) console.log("verify_memory_test: skipped, /usr/bin/time (GNU time) is missing");

const DEVICES = 12;
const DEVICE_SIZE = 2 ** 44; // 16 TiB: 2^28 clusters, 4,096 pages of 65,536
const PAGES = DEVICE_SIZE / 65536 / 65536;
const PER_PAGE = 129;

/**
 * Streams the archive to `path`: a header with 12 devices of 16 TiB, then
 * extents of 59 zero clusters listing 129 clusters (508 apart) of every page
 * of every device: 6,340,608 clusters in 107,468 extents, 55 MB. The devices
 * are incomplete, so verify ends with "detected missing cluster 1".
 */
async function writeArchive(path: string): Promise<number> {
  const devices = Array.from({ length: DEVICES }, (_, i) => ({
    name: `drive-scsi${i}`,
    size: DEVICE_SIZE,
  }));
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  const header = craftHeader({ devices }).bytes;
  await file.write(header);
  const batch = new Uint8Array(512 * 256);
  let used = 0;
  let slot = 0;
  let extent = batch.subarray(0, 512);
  const view = () => new DataView(batch.buffer, used, 512);
  let written = header.length;
  const finish = async () => {
    extent.set([0x56, 0x4d, 0x41, 0x45], 0);
    extent.set(header.subarray(8, 24), EXT_OFF_UUID);
    fixExtentMd5(extent);
    used += 512;
    slot = 0;
    if (used === batch.length) {
      await file.write(batch);
      written += used;
      batch.fill(0);
      used = 0;
    }
    extent = batch.subarray(used, used + 512);
  };
  for (let d = 1; d <= DEVICES; d++) {
    for (let page = 0; page < PAGES; page++) {
      for (let k = 0; k < PER_PAGE; k++) {
        const v = view();
        v.setUint8(EXT_OFF_BLOCKINFO + 8 * slot + 3, d);
        v.setUint32(EXT_OFF_BLOCKINFO + 8 * slot + 4, page * 65536 + k * 508);
        if (++slot === 59) await finish();
      }
    }
  }
  if (slot > 0) await finish();
  await file.write(batch.subarray(0, used));
  written += used;
  file.close();
  return written;
}

Deno.test({
  name: "vma verify keeps its bookkeeping small for 129 clusters in every page of 12 16-TiB disks",
  ignore: !hasGnuTime,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "vmakit-verify-memory-" });
    try {
      const size = await writeArchive(`${dir}/hostile.vma`);
      assert.equal(size, 12800 + 107468 * 512);
      const out = await new Deno.Command("/usr/bin/time", {
        args: [
          "-f",
          "%M",
          Deno.execPath(),
          "run",
          "-A",
          "--no-prompt",
          CLI,
          "verify",
          "hostile.vma",
        ],
        cwd: dir,
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(out.stderr).trim().split("\n");
      const peakKb = Number(stderr.pop());
      assert.equal(out.code, 1);
      assert.deepEqual(stderr, [
        "vma: verify failed - detected missing cluster 1 for stream drive-scsi0",
        "Command exited with non-zero status 1", // GNU time's line
      ]);
      // 6.3 million clusters at under 5 bytes each: about 30 MB over the runtime's own.
      console.log(`verify peak RSS ${peakKb} KB for a ${size}-byte archive`);
      assert.ok(peakKb < 150_000, `verify peak RSS ${peakKb} KB`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
