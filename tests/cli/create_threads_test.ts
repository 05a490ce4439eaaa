// `vma create --threads <n>`: zstd frames compressed on workers, the same
// bytes whatever the thread count, readable by zstd and by vmakit, in bounded
// memory; a bad count is a usage error.
import assert from "node:assert/strict";
import { have, makeDisk, vma } from "../_cli_run.ts";
import { NO_CONF } from "./_warnings.ts";
import { measureVma, NO_PEAK_RSS } from "./_peak_rss.ts";

const FIXED = ["--uuid", "0d7f1bb4-6d53-4c8e-9d1a-51b1e0c6bd7e", "--ctime", "1700000000"];

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "vmakit-create-threads-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("vma create --threads 1, 2, 3 and 4 write the same archive, uncompressed and zstd", async () => {
  await withDir(async (dir) => {
    // 12 MiB + 512 of disks: seven 2 MiB frames of archive, the last one short.
    await Deno.writeFile(`${dir}/a.raw`, makeDisk(9 * 2 ** 20 + 512, 3));
    await Deno.writeFile(`${dir}/b.raw`, makeDisk(3 * 2 ** 20, 4));
    const disks = ["-d", "format=raw:drive-scsi0=a.raw", "-d", "format=raw:drive-scsi1=b.raw"];
    const outputs = new Map<string, Uint8Array>();
    for (const threads of ["1", "2", "3", "4"]) {
      for (const ext of ["vma", "vma.zst"]) {
        const name = `t${threads}.${ext}`;
        const r = await vma(
          ["create", name, "--threads", threads, "--ordered", ...FIXED, ...disks],
          {
            cwd: dir,
          },
        );
        assert.equal(
          r.stderr,
          (ext === "vma"
            ? "vma: warning: --threads applies to zstd only, and the archive is not compressed: ignored\n"
            : "") + NO_CONF,
        );
        assert.equal(r.code, 0);
        const bytes = await Deno.readFile(`${dir}/${name}`);
        const first = outputs.get(ext);
        if (first === undefined) outputs.set(ext, bytes);
        else {assert.ok(
            first.length === bytes.length && first.every((b, i) => b === bytes[i]),
            name,
          );}
      }
    }
    // vmakit's own reader takes the multi-frame zstd archive.
    const v = await vma(["verify", "-v", "t2.vma.zst"], { cwd: dir });
    assert.equal(v.code, 0, v.stderr);
    const x = await vma(["extract", "t4.vma.zst", "out"], { cwd: dir });
    assert.equal(x.code, 0, x.stderr);
    assert.deepEqual(
      await Deno.readFile(`${dir}/out/disk-drive-scsi0.raw`),
      await Deno.readFile(`${dir}/a.raw`),
    );
  });
});

Deno.test({
  name: "vma create --compress zstd output passes zstd -t and decodes to the uncompressed archive",
  ignore: !have("zstd"),
  async fn() {
    await withDir(async (dir) => {
      await Deno.writeFile(`${dir}/a.raw`, makeDisk(9 * 2 ** 20, 5));
      for (const [name, threads] of [["p.vma", "1"], ["p.vma.zst", "2"]]) {
        const r = await vma(
          ["create", name, "--threads", threads, ...FIXED, "-d", "format=raw:drive-scsi0=a.raw"],
          { cwd: dir },
        );
        assert.equal(r.code, 0, r.stderr);
      }
      const t = await new Deno.Command("zstd", { args: ["-t", "-q", "p.vma.zst"], cwd: dir })
        .output();
      assert.equal(t.code, 0, new TextDecoder().decode(t.stderr));
      const d = await new Deno.Command("zstd", { args: ["-dc", "p.vma.zst"], cwd: dir }).output();
      assert.deepEqual(d.stdout, await Deno.readFile(`${dir}/p.vma`));
    });
  },
});
if (!have("zstd")) {
  console.log("zstd -t test of vma create skipped: the zstd tool is not installed");
}

for (const bad of ["0", "65", "two", "1.5"]) {
  Deno.test(`vma create --threads ${bad} is a usage error`, async () => {
    await withDir(async (dir) => {
      const r = await vma(["create", "x.vma", "--threads", bad, "-d", "format=raw:a=/dev/null"], {
        cwd: dir,
      });
      assert.equal(r.code, 2);
      assert.match(
        r.stderr,
        new RegExp(
          `^vma: invalid --threads '${bad.replace(".", "\\.")}': use a number from 1 to 64\n`,
        ),
      );
      assert.deepEqual([...Deno.readDirSync(dir)], []);
    });
  });
}

Deno.test("vma create --compress zstd of 256 MiB of random data keeps its memory bounded", async () => {
  if (NO_PEAK_RSS) {
    console.log(`skipped: ${NO_PEAK_RSS}`);
    return;
  }
  await withDir(async (dir) => {
    const file = await Deno.open(`${dir}/r.raw`, { write: true, create: true });
    const piece = new Uint8Array(2 ** 20);
    for (let i = 0; i < 256; i++) {
      for (let j = 0; j < piece.length; j += 65536) {
        crypto.getRandomValues(piece.subarray(j, j + 65536));
      }
      await file.write(piece);
    }
    file.close();
    // In this thread: under 100 MiB. With a worker: one more isolate (about 20 MiB).
    for (const [threads, limit] of [["1", 100], ["2", 125]] as const) {
      const r = await measureVma(
        [
          "create",
          `r${threads}.vma.zst`,
          "--threads",
          threads,
          "-d",
          "format=raw:drive-scsi0=r.raw",
        ],
        dir,
      ).result();
      assert.equal(r.stderr, NO_CONF);
      assert.equal(r.code, 0);
      console.log(`--threads ${threads}: peak RSS ${(r.peakRss / 2 ** 20).toFixed(1)} MiB`);
      assert.ok(r.peakRss < limit * 2 ** 20, `--threads ${threads}: peak RSS ${r.peakRss} bytes`);
    }
  });
});

Deno.test("vma create: a failing zstd worker ends in one error line and leaves no file", async () => {
  const { createOptions } = await import("../../src/cli/_create_options.ts");
  const { openInputs, planOutput, runPipeline } = await import("../../src/cli/create.ts");
  const { CliError } = await import("../../src/cli/_errors.ts");
  const { VmaWriter } = await import("../../src/vma/vma_writer.ts");
  const { SeekableZstdCompressor } = await import("../../src/compress/_seekable_zstd.ts");
  await withDir(async (dir) => {
    await Deno.writeFile(`${dir}/a.raw`, makeDisk(3 * 2 ** 20, 6));
    const options = createOptions(
      { device: [`format=raw:drive-scsi0=${dir}/a.raw`], "no-progress": true, threads: "2" },
      [`${dir}/x.vma.zst`],
    );
    const writer = new VmaWriter();
    const inputs = await openInputs(writer, options, []);
    const failing = () =>
      new SeekableZstdCompressor({
        level: 3,
        workers: 1,
        workerUrl: new URL("../compress/_failing_zstd_worker.ts", import.meta.url),
      });
    await assert.rejects(
      runPipeline(writer, inputs, planOutput(options, writer.ctime), options, failing),
      (e: Error) => {
        assert.ok(e instanceof CliError, String(e));
        assert.equal(e.message, "creating vma archive failed - the zstd worker failed on purpose");
        return true;
      },
    );
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["a.raw"]);
  });
});

Deno.test("vma create --threads 3 without read access to the worker modules compresses on one thread and says so", async () => {
  await withDir(async (dir) => {
    await Deno.writeFile(`${dir}/a.raw`, makeDisk(5 * 2 ** 20, 5));
    const args = ["create", "--threads", "3", ...FIXED, "-d", "format=raw:drive-scsi0=a.raw"];
    const limited = await vma([...args, "limited.vma.zst"], {
      cwd: dir,
      permissions: [`--allow-read=${dir}`, `--allow-write=${dir}`],
    });
    assert.equal(limited.code, 0, limited.stderr);
    const compress = new URL("../../src/compress/", import.meta.url).pathname;
    assert.equal(
      limited.stderr,
      `vma: warning: compressing on one thread: the zstd workers need read access to ${compress}\n` +
        NO_CONF,
    );
    const full = await vma([...args, "full.vma.zst"], { cwd: dir });
    assert.equal(full.stderr, NO_CONF);
    assert.deepEqual(
      await Deno.readFile(`${dir}/limited.vma.zst`),
      await Deno.readFile(`${dir}/full.vma.zst`),
    );
  });
});
