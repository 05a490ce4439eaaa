// Verify throughput of the web page (headless Chromium) against the CLI on
// the same archives, in alternating runs: the medians and their ratio. Not a
// test (no timing assertions anywhere): a measurement for the README.
//
//   deno run -A tools/web_speed.ts [--runs 3] <archive>...
//
// Needs Chromium (as tests/web/page_test.ts does).
import { parseArgs } from "node:util";
import { Chromium, findChromium } from "../tests/web/_chromium.ts";
import { serveSite } from "../tests/web/_site.ts";

const root = new URL("../", import.meta.url).pathname;
const { values, positionals } = parseArgs({
  args: Deno.args,
  options: { runs: { type: "string", default: "3" } },
  allowPositionals: true,
});
const runs = Number(values.runs);
const chromium = await findChromium();
if (chromium === undefined) throw new Error("No Chromium on PATH");

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const mibps = (bytes: number, ms: number) => (bytes / 2 ** 20) / (ms / 1000);

await using site = await serveSite();
await using browser = await Chromium.launch(chromium);
const page = await browser.newPage();
await page.goto(site.url);

for (const path of positionals) {
  const size = (await Deno.stat(path)).size;
  const web: number[] = [];
  const cli: number[] = [];
  for (let i = 0; i < runs; i++) {
    // Choosing the same file again fires no change event: clear the input first.
    await page.eval(`document.getElementById("file").value = ""`);
    await page.setFiles("#file", [path]);
    await page.waitFor(`["ready", "error"].includes(document.body.dataset.state)`);
    let start = performance.now();
    await page.eval(`document.getElementById("verify").click()`);
    const state = await page.waitFor<string>(
      `["done", "error"].includes(document.body.dataset.state) && document.body.dataset.state`,
      3600,
    );
    if (state !== "done") throw new Error(`The page failed: ${await page.eval("error.innerText")}`);
    web.push(performance.now() - start);

    start = performance.now();
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", `${root}cli.ts`, "verify", path],
      stdout: "null",
      stderr: "inherit",
    }).output();
    if (!out.success) throw new Error("vma verify failed");
    cli.push(performance.now() - start);
  }
  const w = median(web);
  const c = median(cli);
  console.log(
    `${path} (${(size / 2 ** 20).toFixed(0)} MiB): page ${mibps(size, w).toFixed(0)} MiB/s ` +
      `(${(w / 1000).toFixed(2)} s), CLI ${mibps(size, c).toFixed(0)} MiB/s ` +
      `(${(c / 1000).toFixed(2)} s), page/CLI time ${(w / c).toFixed(2)}; ` +
      `runs page ${web.map((x) => (x / 1000).toFixed(2)).join(" ")}, ` +
      `CLI ${cli.map((x) => (x / 1000).toFixed(2)).join(" ")}`,
  );
}
