// The compiled binary (`deno task compile`): a create/verify/extract round
// trip. `deno compile` downloads `denort` unless DENORT_BIN points at one, so
// without DENORT_BIN this test is skipped, and says so.
import assert from "node:assert/strict";
import { fixtureDir, ROOT } from "../_cli_run.ts";
import { downloadFailureMessage, isRuntimeDownloadFailure } from "../../tools/compile.ts";

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

Deno.test("deno task compile without a reachable runtime download says what it needs in one line", async () => {
  const out = await Deno.makeTempDir({ prefix: "vmakit-compile-" });
  try {
    const env: Record<string, string> = { ...Deno.env.toObject() };
    delete env.DENORT_BIN;
    // A proxy that refuses connections: the denort download fails at once, as
    // it does where dl.deno.land cannot be resolved.
    Object.assign(env, { HTTPS_PROXY: "http://127.0.0.1:9", https_proxy: "http://127.0.0.1:9" });
    const build = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", `${ROOT}tools/compile.ts`, "--out", `${out}/dist`],
      cwd: ROOT,
      clearEnv: true,
      env,
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (build.success) {
      console.log("skipped: deno compile found denort in its cache, so nothing was downloaded");
      return;
    }
    assert.equal(build.code, 1);
    assert.equal(
      new TextDecoder().decode(build.stderr),
      downloadFailureMessage(Deno.version.deno) + "\n",
    );
    assert.match(downloadFailureMessage("2.9.6"), /DENORT_BIN/);
    // No empty dist/ is left behind.
    assert.deepEqual([...Deno.readDirSync(out)], []);
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("isRuntimeDownloadFailure tells a failed denort download from other compile errors", () => {
  const dns = `error: Writing deno compile executable to temporary file 'dist/vma.tmp-1'

Caused by:
    0: Setting up base binary.
    1: error sending request for url (https://dl.deno.land/release/v2.9.6/denort-x86_64-unknown-linux-gnu.zip): client error (Connect): dns error: failed to lookup address information: Name or service not known
    2: client error (Connect)`;
  assert.ok(isRuntimeDownloadFailure(dns));
  assert.ok(!isRuntimeDownloadFailure("error: TS2322 [ERROR]: Type 'string' is not assignable"));
});
