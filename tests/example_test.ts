// `deno task example` (examples/quickstart.ts) runs and round-trips its disk.
import assert from "node:assert/strict";
import { ROOT } from "./_cli_run.ts";

Deno.test("deno task example creates, lists, verifies and extracts an archive", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "example"],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  assert.match(stdout, /^CFG: size: 176 name: qemu-server.conf$/m);
  assert.match(stdout, /^DEV: dev_id=1 size: 8388608 devname: drive-scsi0$/m);
  assert.match(stdout, /The extracted disk-drive-scsi0.raw is identical to disk.raw./);
  const dir = /Everything is in (\S+)/.exec(stdout)![1];
  await Deno.remove(dir, { recursive: true });
});
