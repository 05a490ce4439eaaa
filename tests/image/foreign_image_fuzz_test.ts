// A bounded, seeded run of the VHDX, VHD and VDI readers' fuzzer
// (tests/image/_foreign_fuzz_main.ts) in a child process (tests/image/_fuzz_run.ts).
import assert from "node:assert/strict";
import { qemuMissing } from "../_disk_image_helpers.ts";
import { runImageFuzz } from "./_fuzz_run.ts";

const CASES = Number(Deno.env.get("VMAKIT_FOREIGN_FUZZ_CASES") ?? 2000);
const SEED = Number(Deno.env.get("VMAKIT_FOREIGN_FUZZ_SEED") ?? 20261202);
const main = new URL("./_foreign_fuzz_main.ts", import.meta.url).pathname;

Deno.test({
  name: `image fuzz: ${CASES} mutated VHDX, VHD and VDI images end in a read or a documented error`,
  ignore: qemuMissing !== undefined,
  async fn() {
    const cases = await runImageFuzz(main, CASES, SEED, (b) => `${b.base}: ${b.steps.join("; ")}`);
    for (const format of ["vhdx", "vpc", "vdi"]) {
      assert.ok(
        cases.some((c) => c.kind === "ok" && c.base.startsWith(format)),
        `no ${format} case read through`,
      );
      assert.ok(
        cases.some((c) => c.message?.startsWith(`SyntaxError: Corrupt ${format} image`)),
        `no ${format} case ended as corrupt`,
      );
    }
  },
});
