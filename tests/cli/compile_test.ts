// The compiled binary (`deno task compile`): a create/verify/extract round
// trip. `deno compile` downloads `denort` unless DENORT_BIN points at one, so
// without DENORT_BIN this test is skipped, and says so.
import assert from "node:assert/strict";
import { fixtureDir, ROOT } from "../_cli_run.ts";

let denort: string | undefined;
try {
  denort = Deno.env.get("DENORT_BIN") || undefined;
} catch {
  denort = undefined;
}
if (!denort) {
  console.log(
    "cli_compile_test: SKIPPED the compiled-binary round trip: DENORT_BIN is not set, and " +
      "`deno compile` would download denort from a host this machine cannot reach. " +
      "Set DENORT_BIN to a denort binary of this Deno version to run it.",
  );
}

Deno.test({
  name: "deno task compile builds dist/vma, whose create/verify/extract round trip works",
  ignore: !denort,
  async fn() {
    const build = await new Deno.Command(Deno.execPath(), {
      args: ["task", "compile"],
      cwd: ROOT,
      env: { DENORT_BIN: denort! },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(build.success, new TextDecoder().decode(build.stderr));
    const bin = `${ROOT}dist/vma${Deno.build.os === "windows" ? ".exe" : ""}`;
    const dir = await fixtureDir();
    try {
      const run = async (...args: string[]) => {
        const out = await new Deno.Command(bin, { args, cwd: dir, env: { TZ: "UTC" } }).output();
        return {
          code: out.code,
          stdout: new TextDecoder().decode(out.stdout),
          stderr: new TextDecoder().decode(out.stderr),
        };
      };
      const c = await run(
        "create",
        "b.vma.zst",
        "-c",
        "qemu-server.conf",
        "-d",
        "format=raw:drive-scsi0=disk0.raw",
        "-d",
        "format=raw:drive-scsi1=disk1.raw",
      );
      assert.equal(c.code, 0, c.stderr);
      const v = await run("verify", "-v", "b.vma.zst");
      assert.equal(v.code, 0, v.stderr);
      assert.match(v.stdout, /total bytes read 5308416, sparse bytes 3080192 \(58%\)/);
      const x = await run("extract", "b.vma.zst", "out");
      assert.equal(x.code, 0, x.stderr);
      assert.deepEqual(
        await Deno.readFile(`${dir}/out/disk-drive-scsi0.raw`),
        await Deno.readFile(`${dir}/disk0.raw`),
      );
      assert.deepEqual(
        await Deno.readFile(`${dir}/out/disk-drive-scsi1.raw`),
        await Deno.readFile(`${dir}/disk1.raw`),
      );
      const l = await run("list", "small.vma");
      assert.match(l.stdout, /^CTIME: Tue Nov 24 14:21:54 2026$/m);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
