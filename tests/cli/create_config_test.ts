// `vma create -c`: a config blob holds at most 65,535 bytes; a longer file,
// /dev/zero or an endless FIFO fails at once, without reading the rest.
import assert from "node:assert/strict";
import { NO_CONF } from "./_warnings.ts";
import { vma } from "../_cli_run.ts";
import { measureVma, NO_PEAK_RSS } from "./_peak_rss.ts";

const TOO_LONG = (file: string, name = file) =>
  `vma: Unable to append config data ${file} (len > 65535) - Cannot add config "${name}": the data is more than 65535 bytes\n`;

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "vmakit-create-config-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function list(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
}

Deno.test("vma create -c takes a config of 65,535 bytes and refuses 65,536", async () => {
  await withDir(async (dir) => {
    await Deno.writeFile(`${dir}/max.conf`, new Uint8Array(65535).fill(0x61));
    await Deno.writeFile(`${dir}/big.conf`, new Uint8Array(65536).fill(0x61));
    let r = await vma(["create", "ok.vma", "-c", "max.conf"], { cwd: dir });
    assert.equal(r.stderr, NO_CONF);
    assert.equal(r.code, 0);
    r = await vma(["list", "ok.vma"], { cwd: dir });
    assert.match(r.stdout, /^CFG: size: 65535 name: max.conf\n/);
    r = await vma(["create", "bad.vma", "-c", "big.conf"], { cwd: dir });
    assert.equal(r.stderr, TOO_LONG("big.conf"));
    assert.equal(r.code, 1);
    assert.deepEqual(list(dir), ["big.conf", "max.conf", "ok.vma"]);
  });
});

Deno.test("vma create -c /dev/zero fails without reading on", async () => {
  await withDir(async (dir) => {
    const r = await vma(["create", "bad.vma", "-c", "/dev/zero"], { cwd: dir });
    assert.equal(r.stderr, TOO_LONG("/dev/zero", "zero"));
    assert.equal(r.code, 1);
    assert.deepEqual(list(dir), []);
  });
});

Deno.test("vma create -c <fifo> stops reading an endless FIFO", async () => {
  await withDir(async (dir) => {
    assert.ok((await new Deno.Command("mkfifo", { args: [`${dir}/c.fifo`] }).output()).success);
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("../../cli.ts", import.meta.url).pathname, "create", "bad.vma"]
        .concat(["-c", "c.fifo"]),
      cwd: dir,
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const total = 64 * 2 ** 20;
    let written = 0;
    const f = await Deno.open(`${dir}/c.fifo`, { write: true });
    try {
      while (written < total) written += await f.write(new Uint8Array(65536));
    } catch (e) {
      assert.ok(e instanceof Deno.errors.BrokenPipe, String(e));
    } finally {
      f.close();
    }
    const out = await child.output();
    assert.equal(new TextDecoder().decode(out.stderr), TOO_LONG("c.fifo"));
    assert.equal(out.code, 1);
    assert.ok(written < total, `the CLI read all ${written} bytes`);
    assert.deepEqual(list(dir), ["c.fifo"]);
  });
});

Deno.test("vma create -c of a 10 GiB file fails at once in little memory", async () => {
  if (NO_PEAK_RSS) {
    console.log(`skipped: ${NO_PEAK_RSS}`);
    return;
  }
  await withDir(async (dir) => {
    const file = await Deno.open(`${dir}/huge.conf`, { write: true, create: true });
    await file.truncate(10 * 2 ** 30); // sparse
    file.close();
    const r = await measureVma(["create", "bad.vma", "-c", "huge.conf"], dir).result();
    assert.equal(r.stderr, TOO_LONG("huge.conf"));
    assert.equal(r.code, 1);
    assert.ok(r.peakRss < 150 * 2 ** 20, `peak RSS ${r.peakRss} bytes`);
    console.log(`peak RSS ${(r.peakRss / 2 ** 20).toFixed(1)} MiB`);
    assert.deepEqual(list(dir), ["huge.conf"]);
  });
});
