// `deno task compile` and `deno task release`: `deno compile` of cli.ts with
// the least permissions the CLI needs. `deno compile` downloads the Deno
// runtime (denort) unless DENORT_BIN names one; when that download fails, this
// says so in one line instead of Deno's DNS error chain, and removes the empty
// output directory it would leave.
//
//   deno run --allow-run --allow-read --allow-write --allow-env tools/compile.ts \
//     [--release] [--out <dir>]
//
// `--out` (default: dist) is the output directory, relative to the repository.

export const PERMISSIONS: readonly string[] = [
  "--allow-read",
  "--allow-write",
  "--allow-env=SOURCE_DATE_EPOCH",
  "--allow-run=sh",
  "--allow-ffi",
];

/** Modules loaded only as Workers, which `deno compile` does not find by itself. */
export const WORKER_MODULES: readonly string[] = ["src/compress/_zstd_worker.ts"];

const RELEASE_TARGETS: [string, string][] = [
  ["x86_64-unknown-linux-gnu", "vma-linux-x86_64"],
  ["aarch64-unknown-linux-gnu", "vma-linux-aarch64"],
  ["x86_64-apple-darwin", "vma-macos-x86_64"],
  ["aarch64-apple-darwin", "vma-macos-aarch64"],
  ["x86_64-pc-windows-msvc", "vma-windows-x86_64.exe"],
];

const root = new URL("../", import.meta.url).pathname;

/** Whether Deno's error output says the runtime could not be downloaded. */
export function isRuntimeDownloadFailure(stderr: string): boolean {
  return /Setting up base binary|denort/.test(stderr) &&
    /error sending request|dns error|Connect|connection|timed out|certificate|status code|404/i
      .test(stderr);
}

/** The one line printed when the runtime download failed. */
export function downloadFailureMessage(version: string): string {
  return `vma compile: cannot download the Deno runtime (denort ${version}) that deno compile ` +
    "needs: set DENORT_BIN to a denort binary of this Deno version, or allow network access " +
    "to dl.deno.land";
}

function isEmptyDir(path: string): boolean {
  try {
    for (const _ of Deno.readDirSync(path)) return false;
    return true;
  } catch {
    return false;
  }
}

/** Compiles cli.ts to `output`; returns whether it worked (having printed why not). */
async function compile(output: string, target?: string): Promise<boolean> {
  const dir = output.slice(0, output.lastIndexOf("/"));
  let existed = true;
  try {
    Deno.statSync(dir);
  } catch {
    existed = false;
  }
  const args = ["compile", ...PERMISSIONS];
  for (const module of WORKER_MODULES) args.push("--include", module);
  if (target) args.push("--target", target);
  args.push("--output", output, "cli.ts");
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: root,
    env: { NO_COLOR: "1" },
    stdout: "inherit",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  if (out.success) {
    await Deno.stderr.write(out.stderr);
    return true;
  }
  if (!existed && isEmptyDir(dir)) Deno.removeSync(dir);
  if (isRuntimeDownloadFailure(stderr)) {
    console.error(downloadFailureMessage(Deno.version.deno));
  } else {
    await Deno.stderr.write(out.stderr);
  }
  return false;
}

if (import.meta.main) {
  const release = Deno.args.includes("--release");
  const at = Deno.args.indexOf("--out");
  const out = (at >= 0 ? Deno.args[at + 1] : undefined) ?? "dist";
  const dist = out.startsWith("/") ? out : `${root}${out}`;
  const jobs = (release ? RELEASE_TARGETS : [[undefined, "vma"]] as const).map((
    [target, name],
  ) => [target, `${dist.replace(/\/+$/, "")}/${name}`] as const);
  let ok = true;
  for (const [target, output] of jobs) {
    if (!(await compile(output, target))) {
      ok = false;
      break;
    }
  }
  Deno.exitCode = ok ? 0 : 1;
}
