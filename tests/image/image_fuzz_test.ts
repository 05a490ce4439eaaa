// A bounded, seeded run of the qcow2 and VMDK readers' fuzzer
// (tests/image/_image_fuzz_main.ts) in a child process (tests/image/_fuzz_run.ts).
import assert from "node:assert/strict";
import { qemuMissing } from "../_disk_image_helpers.ts";
import { type FuzzCase, runImageFuzz } from "./_fuzz_run.ts";

const CASES = Number(Deno.env.get("VMAKIT_IMAGE_FUZZ_CASES") ?? 2000);
const SEED = Number(Deno.env.get("VMAKIT_IMAGE_FUZZ_SEED") ?? 20261202);
const main = new URL("./_image_fuzz_main.ts", import.meta.url).pathname;

/** A case of this fuzzer names the file it mutated: the image or an extent. */
interface CaseLine extends FuzzCase {
  target: string;
}

Deno.test({
  name: `image fuzz: ${CASES} mutated qcow2 and VMDK images end in a read or a documented error`,
  ignore: qemuMissing !== undefined,
  async fn() {
    const cases = await runImageFuzz<CaseLine>(
      main,
      CASES,
      SEED,
      (b) => `${b.base}, ${b.target}: ${b.steps.join("; ")}`,
    );
    assert.ok(
      cases.some((c) => /decompress/.test(c.message ?? "")),
      "no case reached a compressed cluster or grain",
    );
  },
});
