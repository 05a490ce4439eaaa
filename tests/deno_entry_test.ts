// The Deno-only entry (deno.ts): a PositionedReader over a file.
import assert from "node:assert/strict";
import { openPositionedReader } from "../deno.ts";
import { openDiskImage } from "../mod.ts";
import { pseudoRandom } from "./_helpers.ts";

Deno.test("openPositionedReader reads at any position, short only at the end, in order when concurrent", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const bytes = pseudoRandom(200_000, 3);
    await Deno.writeFile(`${dir}/f`, bytes);
    const reader = await openPositionedReader(`${dir}/f`);
    assert.equal(reader.size, bytes.length);
    const reads = await Promise.all([
      reader.read(0, 10),
      reader.read(150_000, 100_000),
      reader.read(12_345, 65536),
      reader.read(200_000, 5),
    ]);
    assert.deepEqual(reads[0], bytes.subarray(0, 10));
    assert.deepEqual(reads[1], bytes.subarray(150_000));
    assert.deepEqual(reads[2], bytes.subarray(12_345, 12_345 + 65536));
    assert.equal(reads[3].length, 0);
    await assert.rejects(reader.read(-1, 1), {
      name: "RangeError",
      message: "Cannot read at -1: not a byte offset",
    });
    const image = await openDiskImage(reader, { format: "raw" });
    assert.equal(image.size, bytes.length);
    await image.close();
    await assert.rejects(openPositionedReader(dir), {
      name: "TypeError",
      message: `Cannot read ${JSON.stringify(dir)}: it is a directory`,
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
