// `deno task web`: builds the static site of web/ into dist/web/ (or --out):
//
//   index.html, style.css   copied from web/
//   vmakit.js               the library (mod.ts) as an ES module for browsers
//   app.js                  the page's script (classic script: it runs from file:// too)
//   worker.js               the Worker that reads the archive off the page's thread
//   *.js.map                their source maps
//
// No server code: any static host serves it, and nothing is fetched after
// loading. The page's scripts bundle fzstd (npm), the zstd decoder Chromium's
// DecompressionStream lacks; the library itself (vmakit.js) has no npm code.
//
//   deno run --allow-run --allow-read --allow-write --allow-env tools/build_web.ts [--out <dir>]

import { parseArgs } from "node:util";

const root = new URL("../", import.meta.url).pathname;

/** The files of the site, as `deno bundle` inputs or files to copy. */
const BUNDLES: [string, string, "esm" | "iife"][] = [
  ["mod.ts", "vmakit.js", "esm"],
  ["web/main.ts", "app.js", "iife"],
  ["web/worker.ts", "worker.js", "iife"],
];
const COPIES = ["web/index.html", "web/style.css"];

/** Builds the site into `out` (absolute or relative to the repository); returns the file names. */
export async function buildWeb(out: string): Promise<string[]> {
  const dir = out.startsWith("/") ? out : `${root}${out}`;
  await Deno.mkdir(dir, { recursive: true });
  const built: string[] = [];
  for (const [input, output, format] of BUNDLES) {
    const result = await new Deno.Command(Deno.execPath(), {
      args: [
        "bundle",
        "--quiet",
        "--platform",
        "browser",
        "--format",
        format,
        "--minify",
        "--sourcemap",
        "linked",
        "-o",
        `${dir}/${output}`,
        `${root}${input}`,
      ],
      cwd: root,
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!result.success) {
      const why = new TextDecoder().decode(result.stderr).trim().split("\n").at(-1);
      throw new Error(`Cannot bundle ${input}: ${why}`);
    }
    built.push(output);
  }
  for (const path of COPIES) {
    const name = path.slice(path.lastIndexOf("/") + 1);
    await Deno.copyFile(`${root}${path}`, `${dir}/${name}`);
    built.push(name);
  }
  return built;
}

if (import.meta.main) {
  const { values } = parseArgs({ args: Deno.args, options: { out: { type: "string" } } });
  const out = values.out ?? "dist/web";
  try {
    const files = await buildWeb(out);
    console.log(`web: built ${files.join(", ")} in ${out}/`);
  } catch (error) {
    console.error(`web: ${(error as Error).message}`);
    Deno.exitCode = 1;
  }
}
