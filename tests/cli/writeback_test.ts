// Early writeback (sync_file_range through FFI) of files being written.
import assert from "node:assert/strict";
import { openWriteback } from "../../src/cli/_writeback.ts";
import { AtomicFile } from "../../src/cli/_output.ts";
import { pseudoRandom } from "../_helpers.ts";

const LINUX = Deno.build.os === "linux";

Deno.test({
  name: "openWriteback follows a file as it grows and leaves its bytes alone",
  ignore: !LINUX,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "vmakit-writeback-" });
    try {
      const path = `${dir}/f`;
      const file = await Deno.open(path, { write: true, createNew: true });
      const writeback = openWriteback(path);
      assert.ok(writeback !== undefined, "FFI is permitted (deno test -A) on Linux");
      const piece = pseudoRandom(5 << 20, 7);
      let end = 0;
      for (let i = 0; i < 20; i++) {
        for (let at = 0; at < piece.length;) at += await file.write(piece.subarray(at));
        end += piece.length;
        writeback.written(end);
      }
      await writeback.close();
      await writeback.close(); // twice is fine
      writeback.written(end + 1); // after close: ignored
      file.close();
      const back = await Deno.readFile(path);
      assert.equal(back.length, 100 << 20);
      for (let i = 0; i < 20; i++) {
        assert.ok(
          back.subarray(i * piece.length, (i + 1) * piece.length).every((b, k) => b === piece[k]),
        );
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("openWriteback gives undefined for a file it cannot open", () => {
  assert.equal(openWriteback("/no/such/dir/file"), undefined);
});

Deno.test("AtomicFile commits the same bytes with early writeback, and discards cleanly", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vmakit-writeback-" });
  try {
    const piece = pseudoRandom(3 << 20, 9);
    const file = await AtomicFile.create(`${dir}/a.vma`);
    for (let i = 0; i < 30; i++) await file.write(piece);
    await file.commit();
    const back = await Deno.readFile(`${dir}/a.vma`);
    assert.equal(back.length, 90 << 20);
    assert.ok(back.subarray(87 << 20).every((b, k) => b === piece[k]));
    const dropped = await AtomicFile.create(`${dir}/b.vma`);
    for (let i = 0; i < 12; i++) await dropped.write(piece);
    dropped.discard();
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["a.vma"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
