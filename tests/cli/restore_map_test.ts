// `vma extract -r <fifo>`: qmrestore's map protocol, its parser and errors.
import assert from "node:assert/strict";
import { MAX_MAP_LINE, parseMap, parseMapLine, readMap } from "../../src/cli/_restore_map.ts";
import { measureVma, NO_PEAK_RSS } from "./_peak_rss.ts";
import { CliError } from "../../src/cli/_errors.ts";
import { fixtureDir, makeDisk, readOrUndefined, vma } from "../_cli_run.ts";
import { CLI } from "../_cli_run.ts";

const dir = await fixtureDir();
globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(dir, { recursive: true });
  } catch {
    // gone
  }
});

Deno.test("parseMapLine reads qmrestore's map lines", () => {
  assert.deepEqual(parseMapLine("format=raw:throttling.bps=0x10:cache=none:0:drive-scsi0=/dev/x"), {
    devname: "drive-scsi0",
    path: "/dev/x",
    format: "raw",
    throttlingBps: 16,
    throttlingGroup: undefined,
    cache: "none",
    writeZero: false,
    skip: false,
  });
  assert.equal(parseMapLine("1:a=b=c").path, "b=c");
  assert.equal(parseMapLine("1:a=b").writeZero, true);
  assert.deepEqual(parseMapLine("skip=drive-scsi1").skip, true);
  assert.deepEqual(
    [...parseMap("0:a=x\n1:b=y\ndone\n0:c=z\n").keys()],
    ["a", "b"],
  );
  assert.deepEqual([...parseMap("0:a=x\n\n0:c=z\n").keys()], ["a"]);
});

Deno.test("parseMapLine rejects bad lines with Proxmox's messages", () => {
  const cases: [string, string][] = [
    ["skip", "read map failed - option 'skip' has no value ('skip')"],
    ["skip=", "read map failed - option 'skip' has no value ('skip=')"],
    ["format=raw:format=raw:0:a=b", "read map failed - duplicate value for option 'format'"],
    ["format=raw", "read map failed - option 'format' not terminated ('format=raw')"],
    ["throttling.bps=12k:0:a=b", "read map failed - not a number: 12k"],
    ["2:a=b", "read map failed - parse error ('2:a=b')"],
    ["0:/dev/x", "read map failed - no dev name specified ('0:/dev/x')"],
  ];
  for (const [line, message] of cases) {
    assert.throws(
      () => parseMapLine(line),
      (e: unknown) => e instanceof CliError && e.message === message,
      line,
    );
  }
  // A "done" without its newline at EOF is not the end marker (fgets + strcmp).
  assert.throws(() => parseMap("0:a=x\ndone"), /parse error \('done'\)/);
});

/** Runs `vma extract -r <fifo>`, writing `map` into the FIFO once the list block is out. */
async function restore(args: string[], map: string) {
  const fifo = `${dir}/map-${crypto.randomUUID()}.fifo`;
  const mk = await new Deno.Command("mkfifo", { args: [fifo] }).output();
  assert.ok(mk.success);
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, "extract", "-r", fifo, ...args],
    cwd: dir,
    env: { TZ: "UTC" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // Like qmrestore: wait for the CTIME line, then write the map.
  const reader = child.stdout.getReader();
  let stdout = "";
  const decoder = new TextDecoder();
  while (!stdout.includes("CTIME: ")) {
    const { done, value } = await reader.read();
    if (done) break;
    stdout += decoder.decode(value);
  }
  if (stdout.includes("CTIME: ")) {
    const f = await Deno.open(fifo, { write: true });
    await f.write(new TextEncoder().encode(map));
    f.close();
  }
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    stdout += decoder.decode(value);
  }
  const stderr = new TextDecoder().decode(await new Response(child.stderr).bytes());
  const { code } = await child.status;
  await Deno.remove(fifo);
  return { code, stdout, stderr };
}

Deno.test("vma extract -r restores into existing volumes as the map says, zeroing with 1:", async () => {
  // Old data in both targets: 0: leaves zero blocks alone, 1: zeroes them.
  await Deno.writeFile(`${dir}/vol0.raw`, new Uint8Array(4194304).fill(0xee));
  await Deno.writeFile(`${dir}/vol1.raw`, makeDisk(1053184 + 65536, 9)); // larger, within the slack
  const r = await restore(
    ["-v", "small.vma", "tmp-r1"],
    "format=raw:throttling.bps=1000000:0:drive-scsi0=vol0.raw\nformat=raw:1:drive-scsi1=vol1.raw\ndone\n",
  );
  assert.equal(r.stderr, "");
  assert.equal(r.code, 0);
  assert.match(
    r.stdout,
    /^CFG: size: 317 name: qemu-server.conf\n.*\nCTIME: Tue Nov 24 14:21:54 2026\nprogress 1% /s,
  );
  assert.doesNotMatch(r.stdout, /DEVINFO/);
  assert.match(r.stdout, /total bytes read 5308416, sparse bytes 3080192 \(58%\)\n/);
  const disk1 = await Deno.readFile(`${dir}/disk1.raw`);
  const vol1 = await Deno.readFile(`${dir}/vol1.raw`);
  assert.deepEqual(vol1.subarray(0, disk1.length), disk1);
  const disk0 = await Deno.readFile(`${dir}/disk0.raw`);
  const vol0 = await Deno.readFile(`${dir}/vol0.raw`);
  for (let i = 0; i < disk0.length; i += 4096) {
    const block = disk0.subarray(i, i + 4096);
    const expected = block.some((b) => b !== 0) ? block : new Uint8Array(4096).fill(0xee);
    assert.deepEqual(vol0.subarray(i, i + 4096), expected, `block at ${i}`);
  }
  // The configs are in the target directory.
  assert.deepEqual(
    await Deno.readFile(`${dir}/tmp-r1/qemu-server.fw`),
    await Deno.readFile(`${dir}/qemu-server.fw`),
  );
});

Deno.test("vma extract -r skips devices named by skip=", async () => {
  await Deno.writeFile(`${dir}/vol2.raw`, new Uint8Array(1053184));
  const r = await restore(["small.vma", "tmp-r2"], "skip=drive-scsi0\n0:drive-scsi1=vol2.raw\n");
  assert.equal(r.stderr, "");
  assert.equal(r.code, 0);
  assert.deepEqual(await Deno.readFile(`${dir}/vol2.raw`), await Deno.readFile(`${dir}/disk1.raw`));
});

Deno.test("vma extract -r fails on a missing mapping, a wrong size, a vmdk target and a bad line", async () => {
  await Deno.writeFile(`${dir}/small-vol.raw`, new Uint8Array(65536));
  const cases: [string, string][] = [
    ["0:drive-scsi0=vol0.raw\n", "vma: no device name mapping for drive-scsi1\n"],
    [
      "0:drive-scsi0=small-vol.raw\nskip=drive-scsi1\n",
      "vma: vma_reader_register_bs for stream drive-scsi0 failed - unexpected size 65536 != 4194304\n",
    ],
    [
      "format=vmdk:0:drive-scsi0=vol0.vmdk\nskip=drive-scsi1\n",
      "vma: can't open file vol0.vmdk - format 'vmdk' is not supported (only raw and qcow2 targets)\n",
    ],
    [
      "0:drive-scsi0=nope.raw\nskip=drive-scsi1\n",
      "vma: can't open file nope.raw - Could not open 'nope.raw': No such file or directory\n",
    ],
    ["cache=fast:0:drive-scsi0=vol0.raw\nskip=drive-scsi1\n", "vma: invalid cache option: fast\n"],
    ["7:drive-scsi0=vol0.raw\n", "vma: read map failed - parse error ('7:drive-scsi0=vol0.raw')\n"],
  ];
  for (const [map, stderr] of cases) {
    const target = `tmp-fail-${crypto.randomUUID()}`;
    const r = await restore(["small.vma", target], map);
    assert.equal(r.stderr, stderr, map);
    assert.equal(r.code, 1);
    assert.equal(await readOrUndefined(`${dir}/${target}`), undefined);
  }
});

Deno.test("vma extract -r reports a map it cannot open", async () => {
  const r = await vma(["extract", "-r", "no-such.fifo", "small.vma", "tmp-r3"], { cwd: dir });
  assert.equal(r.code, 1);
  assert.equal(r.stderr, "vma: unable to open fifo no-such.fifo - No such file or directory\n");
});

Deno.test("readMap takes lines up to 8,191 bytes with the newline and refuses longer ones", async () => {
  const file = `${dir}/map-${crypto.randomUUID()}.txt`;
  const fits = `0:d=${"x".repeat(MAX_MAP_LINE - 5)}`; // 8,190 bytes + newline
  await Deno.writeTextFile(file, `${fits}\n0:e=y\n`);
  const map = await readMap(file);
  assert.equal(map.get("d")?.path?.length, MAX_MAP_LINE - 5);
  assert.equal(map.get("e")?.path, "y");
  await Deno.writeTextFile(file, `${fits}x\n0:e=y\n`);
  await assert.rejects(
    () => readMap(file),
    (e: unknown) =>
      e instanceof CliError &&
      e.message ===
        `read map failed - parse error: line longer than 8191 bytes ('0:d=${"x".repeat(76)}...')`,
  );
  // Errors echo at most 80 characters of the line.
  await Deno.writeTextFile(file, `9:${"z".repeat(5000)}\n`);
  await assert.rejects(
    () => readMap(file),
    (e: unknown) =>
      e instanceof CliError &&
      e.message === `read map failed - parse error ('9:${"z".repeat(78)}...')`,
  );
  await Deno.remove(file);
});

Deno.test("vma extract -r stops reading a huge map line at 8,191 bytes, in little memory", async () => {
  if (NO_PEAK_RSS) {
    console.log(`skipped: ${NO_PEAK_RSS}`);
    return;
  }
  const fifo = `${dir}/map-${crypto.randomUUID()}.fifo`;
  assert.ok((await new Deno.Command("mkfifo", { args: [fifo] }).output()).success);
  const run = measureVma(["extract", "-r", fifo, "small.vma", "tmp-huge"], dir);
  // 100 MiB without a newline; the CLI must give up long before the end.
  const total = 100 * 2 ** 20;
  const chunk = new Uint8Array(2 ** 20).fill(0x61);
  let written = 0;
  const f = await Deno.open(fifo, { write: true });
  try {
    while (written < total) written += await f.write(chunk);
  } catch (e) {
    assert.ok(e instanceof Deno.errors.BrokenPipe, String(e));
  } finally {
    f.close();
  }
  const r = await run.result();
  await Deno.remove(fifo);
  assert.equal(
    r.stderr,
    `vma: read map failed - parse error: line longer than 8191 bytes ('${"a".repeat(80)}...')\n`,
  );
  assert.equal(r.code, 1);
  assert.ok(written < total, `the CLI read all ${written} bytes`);
  assert.ok(r.peakRss < 150 * 2 ** 20, `peak RSS ${r.peakRss} bytes`);
  console.log(
    `peak RSS ${(r.peakRss / 2 ** 20).toFixed(1)} MiB; ${written} of ${total} bytes written`,
  );
  assert.equal(await readOrUndefined(`${dir}/tmp-huge`), undefined);
});

Deno.test("vma extract -r refuses the archive itself and one target for two devices", async () => {
  await Deno.writeFile(`${dir}/vol-dup.raw`, new Uint8Array(4194304));
  await Deno.symlink(`${dir}/vol-dup.raw`, `${dir}/vol-dup-link.raw`);
  const before = await Deno.readFile(`${dir}/small.vma`);
  const cases: [string, string][] = [
    [
      "format=raw:0:drive-scsi0=small.vma\nskip=drive-scsi1\n",
      'vma: refusing to restore device "drive-scsi0" to "small.vma": it is the archive being read\n',
    ],
    [
      "0:drive-scsi0=vol-dup.raw\n0:drive-scsi1=vol-dup-link.raw\n",
      'vma: refusing to restore device "drive-scsi1" to "vol-dup-link.raw": device "drive-scsi0" is restored there too\n',
    ],
  ];
  for (const [map, stderr] of cases) {
    const target = `tmp-fail-${crypto.randomUUID()}`;
    const r = await restore(["small.vma", target], map);
    assert.equal(r.stderr, stderr, map);
    assert.equal(r.code, 1);
    assert.equal(await readOrUndefined(`${dir}/${target}`), undefined);
  }
  assert.deepEqual(await Deno.readFile(`${dir}/small.vma`), before);
  assert.deepEqual(await Deno.readFile(`${dir}/vol-dup.raw`), new Uint8Array(4194304));
});
