// Every failure is exactly one line on stderr: a newline or escape sequence in
// a config name, a device name, a file path or a backing file name is quoted
// or escaped, so it can never forge a second `vma: ...` line.
import assert from "node:assert/strict";
import { concat, craftHeader, craftZeroExtent } from "../_craft.ts";
import { have, vma } from "../_cli_run.ts";
import { oneLine, quote, shown, shownQuoted } from "../../src/cli/_quote.ts";

const FORGED = "\nvma: forged\r\u001b[31m\u0085\u2028";

/** Asserts one line, no raw control characters, exit status 1; returns the line. */
function oneFailureLine(r: { code: number; stderr: string; stdout: string }): string {
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /^vma: [^\n]*\n$/);
  // deno-lint-ignore no-control-regex
  assert.doesNotMatch(r.stderr.slice(0, -1), /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/);
  return r.stderr.slice(0, -1);
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "vmakit-one-line-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("quote, shown and oneLine escape every control character and line separator", () => {
  assert.equal(quote("a\nb"), '"a\\nb"');
  assert.equal(quote("a\u0085b\u2028c\u009b"), '"a\\u0085b\\u2028c\\u009b"');
  assert.equal(shown("disk0.raw"), "disk0.raw");
  assert.equal(shown("a b"), "a b");
  assert.equal(shown(""), '""');
  assert.equal(shown("a'b"), '"a\'b"');
  assert.equal(shown("a\tb"), '"a\\tb"');
  assert.equal(shownQuoted("x.raw"), "'x.raw'");
  assert.equal(shownQuoted("x\n.raw"), '"x\\n.raw"');
  assert.equal(oneLine("a\nb\r\u001b\u2029"), "a\\u000ab\\u000d\\u001b\\u2029");
  for (let c = 0; c < 0x10000; c++) {
    const s = `x${String.fromCharCode(c)}y`;
    for (const f of [quote, shown, shownQuoted, oneLine]) {
      // deno-lint-ignore no-control-regex
      assert.doesNotMatch(f(s), /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/, `U+${c.toString(16)}`);
    }
  }
});

Deno.test("vma list and extract print one line for a config or device name with a newline", async () => {
  await withDir(async (dir) => {
    const configs = craftHeader({
      configs: [{ name: `qemu${FORGED}.conf`, data: "x" }],
      devices: [{ name: "drive-scsi0", size: 65536 }],
    });
    await Deno.writeFile(`${dir}/c.vma`, concat(configs.bytes, craftZeroExtent(1, 0, 1)));
    const devices = craftHeader({ devices: [{ name: `drive${FORGED}`, size: 65536 }] });
    await Deno.writeFile(`${dir}/d.vma`, concat(devices.bytes, craftZeroExtent(1, 0, 1)));
    for (const args of [["list", "c.vma"], ["extract", "c.vma", "out"], ["verify", "c.vma"]]) {
      assert.match(oneFailureLine(await vma(args, { cwd: dir })), /config name "qemu\\n/);
    }
    for (const args of [["list", "d.vma"], ["extract", "d.vma", "out"], ["config", "d.vma"]]) {
      assert.match(oneFailureLine(await vma(args, { cwd: dir })), /device name "drive\\n/);
    }
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), ["c.vma", "d.vma"]);
  });
});

Deno.test("vma prints one line for file paths with newlines and escape sequences", async () => {
  await withDir(async (dir) => {
    const conf = `q${FORGED}.conf`;
    await Deno.writeTextFile(`${dir}/${conf}`, "memory: 512\n");
    const cases: [string[], string | undefined][] = [
      [
        ["create", "o.vma", "-d", `format=raw:drive-scsi0=no${FORGED}.raw`],
        `vma: bdrv_open ${quote(`no${FORGED}.raw`)} failed - Could not open ${
          quote(`no${FORGED}.raw`)
        }: No such file or directory`,
      ],
      [
        ["create", "o.vma", "-c", `no${FORGED}.conf`],
        `vma: Unable to read file: Failed to open file \u201c${
          quote(`no${FORGED}.conf`)
        }\u201d: No such file or directory`,
      ],
      [["create", "o.vma", "-c", conf], undefined],
      [["list", `no${FORGED}.vma`], undefined],
      [["extract", `no${FORGED}.vma`, "out"], undefined],
      [
        ["create", `o${FORGED}`, "--vmid", "100"],
        `vma: --vmid: ${quote(`o${FORGED}`)} is not a directory`,
      ],
      [
        ["create", "o.vma", "-d", `format=qed:x=${FORGED}`],
        `vma: bdrv_open ${
          quote(FORGED)
        } failed - format 'qed' is not supported yet (raw, qcow2, vmdk, vhdx, vpc and vdi are)`,
      ],
    ];
    for (const [args, line] of cases) {
      const got = oneFailureLine(await vma(args, { cwd: dir }));
      if (line !== undefined) assert.equal(got, line);
    }
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), [conf]);
  });
});

Deno.test("vma create prints one line for a qcow2 backing file name with a newline", async () => {
  if (!have("qemu-img")) {
    console.log("skipped: qemu-img is missing (apt-get install qemu-utils)");
    return;
  }
  await withDir(async (dir) => {
    const made = await new Deno.Command("qemu-img", {
      args: [
        "create",
        "-q",
        "-f",
        "qcow2",
        "-u",
        "-b",
        `no${FORGED}`,
        "-F",
        "raw",
        "top.qcow2",
        "1M",
      ],
      cwd: dir,
    }).output();
    if (!made.success) {
      console.log("skipped: qemu-img refused a backing file name with a newline");
      return;
    }
    const line = oneFailureLine(
      await vma(["create", "o.vma", "-d", "format=qcow2:drive-scsi0=top.qcow2"], { cwd: dir }),
    );
    assert.match(line, /^vma: bdrv_open 'top.qcow2' failed - .*no\\(n|u000a)vma: forged/);
  });
});
