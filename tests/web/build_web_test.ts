// `deno task web` (tools/build_web.ts): the site's files, vmakit.js exporting
// what mod.ts exports, fzstd only in the page's scripts, and a page that
// loads nothing from another host.
import assert from "node:assert/strict";
import { buildWeb } from "../../tools/build_web.ts";
import * as mod from "../../mod.ts";

Deno.test("buildWeb writes the page, its scripts and vmakit.js, which exports what mod.ts exports", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const files = await buildWeb(dir);
    assert.deepEqual(files, ["vmakit.js", "app.js", "worker.js", "index.html", "style.css"]);
    const library = await import(`file://${dir}/vmakit.js`);
    assert.deepEqual(Object.keys(library).sort(), Object.keys(mod).sort());
    // The library bundle has no npm code; the page's scripts carry fzstd (its message).
    const text = (name: string) => Deno.readTextFile(`${dir}/${name}`);
    assert.doesNotMatch(await text("vmakit.js"), /invalid zstd data/);
    assert.match(await text("worker.js"), /invalid zstd data/);
    assert.match(await text("app.js"), /invalid zstd data/);
    // Nothing from another host: every src/href of the page is a file of the site (or data:).
    const html = await text("index.html");
    const refs = [...html.matchAll(/\b(?:src|href)="([^"]*)"/g)].map((m) => m[1]);
    assert.deepEqual(refs.filter((r) => !r.startsWith("data:") && !files.includes(r)), []);
    for (const name of ["app.js", "worker.js", "vmakit.js"]) {
      assert.doesNotMatch(await text(name), /https?:\/\//, `${name} names a URL`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
