// The page of `deno task web` in real headless Chromium: it lists a
// Proxmox-made archive, verifies it, extracts it into the origin-private file
// system (the `?target=opfs` hook) with the sources' sha256, shows one error
// per corrupt archive and leaves no file behind, cancels, stays within 360 px,
// and logs no errors. Skipped, saying why, when Chromium is not installed.
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createZstdCompress, gunzipSync, zstdCompressSync } from "node:zlib";
import { TESTDATA } from "../_cli_run.ts";
import { VmaReader, VmaWriter } from "../../mod.ts";
import { Chromium, findChromium, type Page, rendererRss } from "./_chromium.ts";
import { serveSite, type Site } from "./_site.ts";

const chromium = await findChromium();
if (chromium === undefined) {
  console.log(
    "tests/web/page_test.ts: skipped, no Chromium on PATH (apt-get install chromium, or set CHROMIUM)",
  );
}

/** The sources' sha256 by extracted file name (SHA256SUMS names disk0.raw, disk1.raw). */
async function expectedSums(): Promise<Record<string, string>> {
  const sums = Object.fromEntries(
    (await Deno.readTextFile(`${TESTDATA}SHA256SUMS`)).trim().split("\n").map((line) => {
      const [sum, name] = line.split(/\s+/);
      return [name, sum];
    }),
  );
  return {
    "qemu-server.conf": sums["qemu-server.conf"],
    "qemu-server.fw": sums["qemu-server.fw"],
    "disk-drive-scsi0.raw": sums["disk0.raw"],
    "disk-drive-scsi1.raw": sums["disk1.raw"],
  };
}

/** The browser of the test running (for its process id). */
let current: Chromium | undefined;

/**
 * Runs `fn` on the built page in a fresh browser (fresh profile: an empty
 * private file system), loaded from `url(site)` (default: over http with the
 * `?target=opfs` hook).
 */
async function withPage(
  fn: (page: Page) => Promise<void>,
  url = (site: Site) => `${site.url}?target=opfs`,
): Promise<void> {
  await using site = await serveSite();
  await using browser = await Chromium.launch(chromium!);
  current = browser;
  const page = await browser.newPage();
  await page.goto(url(site));
  await fn(page);
  assert.deepEqual(page.errors, [], "the page logged errors");
}

/** Waits until the page's state is one of `states`; returns it. */
function settle(page: Page, ...states: string[]): Promise<string> {
  return page.waitFor<string>(
    `${
      JSON.stringify(states)
    }.includes(document.body.dataset.state) && document.body.dataset.state`,
  );
}

const text = (page: Page, id: string) =>
  page.eval<string>(`document.getElementById(${JSON.stringify(id)}).innerText`);

/** The error lines the page shows. */
const errors = (page: Page) =>
  page.eval<string[]>(`[...document.querySelectorAll("#error li")].map((li) => li.textContent)`);

/** sha256 of every file in the private file system's `extracted` folder, by name. */
const extractedSums = (page: Page) =>
  page.eval<Record<string, string>>(`(async () => {
    const root = await navigator.storage.getDirectory();
    const dir = await root.getDirectoryHandle("extracted", { create: true });
    const out = {};
    for await (const [name, handle] of dir.entries()) {
      const bytes = await (await handle.getFile()).arrayBuffer();
      const sum = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
      out[name] = [...sum].map((b) => b.toString(16).padStart(2, "0")).join("");
    }
    return out;
  })()`);

/** Chooses `path` in the file input and waits for the header (or an error). */
async function open(page: Page, path: string): Promise<string> {
  await page.setFiles("#file", [path]);
  return await settle(page, "ready", "error");
}

async function run(page: Page, button: "verify" | "extract"): Promise<string> {
  await page.eval(`document.getElementById("${button}").click()`);
  return await settle(page, "done", "error", "cancelled");
}

Deno.test({
  name:
    "the web page lists, verifies and extracts a Proxmox-made .vma.zst with the sources' sha256",
  ignore: chromium === undefined,
  async fn() {
    await withPage(async (page) => {
      assert.equal(await open(page, `${TESTDATA}small.vma.zst`), "ready");
      assert.equal(await text(page, "archive-name"), "small.vma.zst");
      const summary = await text(page, "summary");
      assert.match(summary, /2026-11-24T14:21:54\.000Z/);
      assert.match(summary, /Compression\s+zstd/);
      assert.match(summary, /000c3804-7a21-4bcd-8806-1ca23a06d458/);
      const devices = await page.eval<[string, string][]>(
        `[...document.querySelectorAll("#devices tr")].map((tr) => [tr.cells[0].innerText.trim(), tr.cells[1].dataset.bytes])`,
      );
      assert.deepEqual(devices, [["drive-scsi0", "4194304"], ["drive-scsi1", "1053184"]]);
      // The configs are viewable, byte for byte.
      const configs = await page.eval<[string, string][]>(
        `[...document.querySelectorAll("#configs details")].map((d) => [d.querySelector("summary").textContent, d.querySelector("pre").textContent])`,
      );
      assert.deepEqual(configs, [
        ["qemu-server.conf (317 bytes)", await Deno.readTextFile(`${TESTDATA}qemu-server.conf`)],
        ["qemu-server.fw (15 bytes)", await Deno.readTextFile(`${TESTDATA}qemu-server.fw`)],
      ]);

      assert.equal(await run(page, "verify"), "done");
      assert.match(await text(page, "status"), /^Verified: the archive is sound\. 81 clusters/);
      assert.deepEqual(await page.eval(`[progress.value, progress.max]`), [1, 1]);

      assert.equal(await run(page, "extract"), "done");
      assert.deepEqual(await extractedSums(page), await expectedSums());
      const links = await page.eval<string[]>(
        `[...document.querySelectorAll("#downloads a")].map((a) => a.download)`,
      );
      assert.deepEqual(links.sort(), Object.keys(await expectedSums()).sort());
    });
  },
});

Deno.test({
  name: "the web page extracts the .vma.gz and .vma.lzo fixtures and only the chosen disk",
  ignore: chromium === undefined,
  async fn() {
    await withPage(async (page) => {
      const sums = await expectedSums();
      assert.equal(await open(page, `${TESTDATA}small.vma.gz`), "ready");
      assert.match(await text(page, "summary"), /Compression\s+gzip/);
      assert.equal(await run(page, "extract"), "done");
      assert.deepEqual(await extractedSums(page), sums);

      assert.equal(await open(page, `${TESTDATA}small.vma.lzo`), "ready");
      assert.match(await text(page, "summary"), /Compression\s+lzop/);
      // The page's storage keeps the last extraction only: the gz files are gone.
      await page.eval(`document.getElementById("device-1").checked = false;
        document.getElementById("with-configs").checked = false;`);
      assert.equal(await run(page, "extract"), "done");
      assert.deepEqual(await extractedSums(page), {
        "disk-drive-scsi1.raw": sums["disk-drive-scsi1.raw"],
      });
    });
  },
});

/**
 * Opens `name` of the private file system's `extracted` folder with the
 * site's vmakit.js (imported by the page as an ES module, as other pages
 * would): its format and the sha256 of its virtual disk.
 */
function imageSum(page: Page, name: string): Promise<{ format: string; sum: string }> {
  return page.eval(`(async () => {
    const { openDiskImage } = await import("./vmakit.js");
    const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle("extracted");
    const file = await (await dir.getFileHandle(${JSON.stringify(name)})).getFile();
    const image = await openDiskImage({
      size: file.size,
      read: async (at, n) => new Uint8Array(await file.slice(at, at + n).arrayBuffer()),
      close: async () => {},
    });
    const data = await image.read(0, image.size);
    await image.close();
    const sum = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
    return { format: image.format, sum: [...sum].map((b) => b.toString(16).padStart(2, "0")).join("") };
  })()`);
}

Deno.test({
  name: "the web page extracts every offered image format, each reading back as the source disk",
  ignore: chromium === undefined,
  async fn() {
    const sum = (await expectedSums())["disk-drive-scsi0.raw"];
    await withPage(async (page) => {
      assert.equal(await open(page, `${TESTDATA}small.vma.zst`), "ready");
      const offered = await page.eval<string[]>(
        `[...document.getElementById("format").options].map((o) => o.value)`,
      );
      assert.deepEqual(offered, ["raw", "qcow2", "vmdk", "vhdx", "vdi", "vpc"]);
      const formats = [["qcow2", "qcow2"], ["vmdk", "vmdk"], ["vhdx", "vhdx"], ["vdi", "vdi"], [
        "vpc",
        "vhd",
      ]];
      for (const [format, ext] of formats) {
        await page.eval(`document.getElementById("format").value = "${format}";
          document.getElementById("device-2").checked = false;
          document.getElementById("with-configs").checked = false;`);
        assert.equal(await run(page, "extract"), "done", format);
        assert.deepEqual(await imageSum(page, `disk-drive-scsi0.${ext}`), { format, sum });
      }
    });
  },
});

/** zstd frames of `data` cut into `parts`, with a skippable frame between each (as pzstd writes). */
function multiFrameZstd(data: Uint8Array, parts: number): Uint8Array {
  const skippable = new Uint8Array([0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 1, 2, 3, 4]);
  const out: Uint8Array[] = [];
  const step = Math.ceil(data.length / parts);
  for (let at = 0; at < data.length; at += step) {
    out.push(skippable, zstdCompressSync(data.subarray(at, at + step)));
  }
  return new Uint8Array(Buffer.concat(out));
}

Deno.test({
  name: "the web page decodes a multi-frame .vma.zst with skippable frames",
  ignore: chromium === undefined,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const plain = gunzipSync(await Deno.readFile(`${TESTDATA}small.vma.gz`));
      await Deno.writeFile(`${dir}/frames.vma.zst`, multiFrameZstd(plain, 3));
      await withPage(async (page) => {
        assert.equal(await open(page, `${dir}/frames.vma.zst`), "ready");
        assert.equal(await run(page, "extract"), "done");
        assert.deepEqual(await extractedSums(page), await expectedSums());
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "the web page shows the reader's error, once, for a corrupt archive and leaves no file",
  ignore: chromium === undefined,
  async fn() {
    await withPage(async (page) => {
      // A bad header checksum: the header is refused when the file is chosen.
      assert.equal(await open(page, `${TESTDATA}small-bad-header-md5.vma.gz`), "error");
      assert.deepEqual(await errors(page), ["wrong vma header chechsum"]);
      assert.equal(await page.eval(`document.getElementById("archive").hidden`), true);

      // A cut archive: the header reads, extraction fails at the end, nothing is left.
      assert.equal(await open(page, `${TESTDATA}small-truncated.vma.gz`), "ready");
      assert.deepEqual(await errors(page), []);
      assert.equal(await run(page, "extract"), "error");
      assert.deepEqual(await errors(page), ["short vma extent (987200 < 1712640)"]);
      assert.deepEqual(await extractedSums(page), {});
      assert.equal(await run(page, "verify"), "error");
      assert.deepEqual(await errors(page), ["short vma extent (987200 < 1712640)"]);
    });
  },
});

Deno.test({
  name: "the web page fails a zstd bomb (a valid header, then 1 GiB of zeros) with one error",
  ignore: chromium === undefined,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const plain = gunzipSync(await Deno.readFile(`${TESTDATA}small.vma.gz`));
      const header = await new VmaReader(ReadableStream.from([plain])).header();
      const head = plain.subarray(0, header.headerSize);
      const zeros = new Uint8Array(1 << 20);
      const compressor = createZstdCompress();
      const file = await Deno.open(`${dir}/bomb.vma.zst`, { write: true, create: true });
      const done = ReadableStream.from(compressor as AsyncIterable<Uint8Array>).pipeTo(
        file.writable,
      );
      for (let i = 0; i <= 1024; i++) {
        if (!compressor.write(i === 0 ? head : zeros)) {
          await new Promise((r) => compressor.once("drain", r));
        }
      }
      compressor.end();
      await done;
      assert.ok((await Deno.stat(`${dir}/bomb.vma.zst`)).size < 1 << 20, "a bomb compresses well");
      await withPage(async (page) => {
        assert.equal(await open(page, `${dir}/bomb.vma.zst`), "ready");
        assert.equal(await run(page, "verify"), "error");
        assert.deepEqual(await errors(page), ["wrong vma extent header chechsum"]);
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** Writes a plain archive of one `size`-byte device of pseudo-random bytes. */
async function randomArchive(path: string, size: number): Promise<void> {
  const writer = new VmaWriter();
  writer.addConfig("qemu-server.conf", "memory: 512\n");
  const device = writer.addDevice("drive-scsi0", size);
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  const written = writer.readable.pipeTo(file.writable);
  const chunk = new Uint8Array(1 << 20);
  let x = 1;
  for (let at = 0; at < size; at += chunk.length) {
    for (let i = 0; i < chunk.length; i += 4096) {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      // A non-zero byte per 4 KiB block (never a zero block, which is not stored).
      chunk.fill((x >>> 24) | 1, i, i + 4096);
    }
    await device.write(at, chunk);
  }
  await writer.close();
  await written;
}

Deno.test({
  name: "the web page cancels an extraction and leaves no file",
  ignore: chromium === undefined,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      await randomArchive(`${dir}/big.vma`, 64 << 20);
      await withPage(async (page) => {
        assert.equal(await open(page, `${dir}/big.vma`), "ready");
        // Cancel as soon as the extraction has started (64 MiB take the worker a while).
        await page.eval(`document.getElementById("extract").click()`);
        await page.waitFor(
          `document.getElementById("status").textContent.startsWith("Extracting")`,
        );
        await page.eval(`document.getElementById("cancel").click()`);
        assert.equal(await settle(page, "done", "error", "cancelled"), "cancelled");
        assert.equal(await text(page, "status"), "Cancelled. Nothing was saved.");
        assert.deepEqual(await errors(page), []);
        assert.deepEqual(await extractedSums(page), {});
        // The page is usable again.
        assert.equal(await run(page, "verify"), "done");
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "the web page fits 360 px, labels its controls and runs Verify from the keyboard",
  ignore: chromium === undefined,
  async fn() {
    await withPage(async (page) => {
      await page.send("Emulation.setDeviceMetricsOverride", {
        width: 360,
        height: 740,
        deviceScaleFactor: 1,
        mobile: true,
      });
      assert.equal(await open(page, `${TESTDATA}small.vma.zst`), "ready");
      const width = await page.eval<number>(`document.documentElement.scrollWidth`);
      assert.ok(width <= 360, `the page is ${width} px wide`);
      // Every control is a native, focusable element with a label.
      const controls = await page.eval<string[]>(`[...document.querySelectorAll(
        "input, select, button")].filter((e) => !e.labels?.length && !e.textContent.trim())
        .map((e) => e.outerHTML)`);
      assert.deepEqual(controls, []);
      const tab = await page.eval<string[]>(`[...document.querySelectorAll(
        "input, select, button, summary")].filter((e) => e.tabIndex < 0).map((e) => e.id)`);
      assert.deepEqual(tab, []);
      // With the keyboard alone: Tab to Verify, press Enter.
      const key = async (key: string, code: number, text?: string) => {
        for (const type of [text ? "keyDown" : "rawKeyDown", "keyUp"]) {
          await page.send("Input.dispatchKeyEvent", {
            type,
            key,
            code: key,
            windowsVirtualKeyCode: code,
            text: type === "keyUp" ? undefined : text,
          });
        }
      };
      const visited: string[] = [];
      for (let i = 0; i < 30 && visited.at(-1) !== "verify"; i++) {
        await key("Tab", 9);
        visited.push(
          await page.eval<string>(`document.activeElement.id || document.activeElement.tagName`),
        );
      }
      assert.equal(visited.at(-1), "verify", `Tab went through ${visited.join(", ")}`);
      assert.ok(visited.includes("format") && visited.includes("device-1"), visited.join(", "));
      await key("Enter", 13, "\r");
      assert.equal(await settle(page, "done", "error"), "done");
    });
  },
});

Deno.test({
  name: "the web page works from file:// and takes a dropped archive",
  ignore: chromium === undefined,
  async fn() {
    await withPage(async (page) => {
      const box = await page.eval<{ x: number; y: number }>(`(() => {
        const r = document.getElementById("drop").getBoundingClientRect();
        return { x: r.x + r.width / 2, y: r.y + r.height / 2 };
      })()`);
      const data = { items: [], files: [`${TESTDATA}small.vma.lzo`], dragOperationsMask: 1 };
      for (const type of ["dragEnter", "dragOver", "drop"]) {
        await page.send("Input.dispatchDragEvent", { type, ...box, data });
      }
      assert.equal(await settle(page, "ready", "error"), "ready");
      assert.equal(await text(page, "archive-name"), "small.vma.lzo");
      assert.equal(await run(page, "verify"), "done");
      assert.match(await text(page, "status"), /^Verified: the archive is sound\. 81 clusters/);
    }, (site) => `file://${site.dir}/index.html`);
  },
});

Deno.test({
  name: "the web page extracts a 384 MiB disk without holding it: the renderer's RSS stays flat",
  ignore: chromium === undefined || Deno.build.os !== "linux",
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      await randomArchive(`${dir}/big.vma`, 384 << 20);
      await withPage(async (page) => {
        assert.equal(await open(page, `${dir}/big.vma`), "ready");
        const sample = () => Math.max(0, ...rendererRss(current!.pid).values());
        const before = sample();
        let peak = before;
        const timer = setInterval(() => peak = Math.max(peak, sample()), 50);
        try {
          assert.equal(await run(page, "extract"), "done");
        } finally {
          clearInterval(timer);
        }
        const size = await page.eval<number>(`(async () => {
          const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle("extracted");
          return (await (await dir.getFileHandle("disk-drive-scsi0.raw")).getFile()).size;
        })()`);
        assert.equal(size, 384 << 20);
        // Holding the disk would add 384 MiB; the page's own working set is a few MiB.
        const grew = (peak - before) / 1024;
        assert.ok(grew < 128, `the renderer grew by ${grew.toFixed(0)} MiB (from ${before} KiB)`);
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
