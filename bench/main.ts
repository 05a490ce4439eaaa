/**
 * `deno task bench [--quick] [--vma <binary>] [--compare <results.json>]`: the
 * benchmark suite of issue 4.
 *
 * Generates its inputs in a temporary directory, times each vma command and
 * each baseline (`cat`, `cp && sync`, `zstd`) as a whole process under
 * `/usr/bin/time -v` (a warm-up run of every row, then rounds of timed runs
 * with a warm page cache; see `_schedule.ts`), prints a table of ratios
 * against the targets and writes the same as JSON under `bench/results/`. The temporary directory is removed at
 * the end, on failure and on Ctrl-C.
 *
 * @module
 */

import { FULL_SIZES, type Inputs, type InputSizes, makeInputs, QUICK_SIZES } from "./_inputs.ts";
import { firstLine, runQuiet, type RunSettings } from "./_measure.ts";
import { type BenchOptions, parseOptions, USAGE } from "./_options.ts";
import { type BenchResults, formatReport, judgeRss, judgeTargets } from "./_report.ts";
import { measureAll } from "./_schedule.ts";
import { formatSize, PROXMOX_MISSING, type ProxmoxVma, suiteRows, suiteTargets } from "./_suite.ts";

const REPO_DIR = decodeURIComponent(new URL("..", import.meta.url).pathname).replace(/\/$/, "");
const CLI_PATH = `${REPO_DIR}/cli.ts`;
const RESULTS_DIR = `${REPO_DIR}/bench/results`;
const TOOLS = [
  "/usr/bin/time",
  "timeout",
  "sh",
  "cat",
  "cp",
  "sync",
  "zstd",
  "cmp",
  "df",
  "stat",
  "mkfifo",
];

/** The vma command to measure, or why it cannot run. */
interface VmaCommand {
  readonly words: readonly string[];
  readonly display: string;
  readonly missing?: string;
}

/** State shared by the run and the Ctrl-C handler. */
class Session {
  tempDir: string | undefined;
  child: Deno.ChildProcess | undefined;
  readonly started = performance.now();

  readonly track = (child: Deno.ChildProcess | undefined): void => {
    this.child = child;
  };

  elapsedS(): number {
    return (performance.now() - this.started) / 1000;
  }

  /** Stops the running command (its whole process group) and waits up to 5 s. */
  async stopChild(): Promise<void> {
    const child = this.child;
    if (child === undefined) return;
    try {
      child.kill("SIGTERM");
    } catch {
      return; // Already gone.
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const grace = new Promise((resolve) => timer = setTimeout(resolve, 5000));
    await Promise.race([child.status, grace]);
    clearTimeout(timer);
  }

  removeTempDir(): void {
    if (this.tempDir === undefined) return;
    try {
      Deno.removeSync(this.tempDir, { recursive: true });
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) {
        console.error(`Cannot remove ${this.tempDir}: ${error}`);
      }
    }
    this.tempDir = undefined;
  }
}

function log(message: string): void {
  console.error(message);
}

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

async function vmaCommand(options: BenchOptions): Promise<VmaCommand> {
  if (options.vma !== undefined) {
    const path = await Deno.realPath(options.vma).catch(() => options.vma!);
    const missing = await exists(path) ? undefined : `vma binary not found: ${options.vma}`;
    return { words: [path], display: path, ...(missing === undefined ? {} : { missing }) };
  }
  const words = [Deno.execPath(), "run", "-A", CLI_PATH];
  const display = "deno run -A cli.ts";
  const missing = await exists(CLI_PATH) ? undefined : `cli.ts not found (${CLI_PATH})`;
  return { words, display, ...(missing === undefined ? {} : { missing }) };
}

/** Proxmox's `vma` (C) when given and runnable, or why its rows are skipped. */
async function proxmoxVma(options: BenchOptions): Promise<ProxmoxVma> {
  if (options.proxmoxVma === undefined) return { missing: PROXMOX_MISSING };
  const path = await Deno.realPath(options.proxmoxVma).catch(() => undefined);
  if (path === undefined) {
    return { missing: `skipped: Proxmox vma not found: ${JSON.stringify(options.proxmoxVma)}` };
  }
  // `vma` without arguments prints its usage (exit 255); a broken build fails to start.
  const probe = await new Deno.Command(path, { stdout: "piped", stderr: "piped" }).output()
    .catch(() => undefined);
  const usage = new TextDecoder().decode(probe?.stderr ?? new Uint8Array()) +
    new TextDecoder().decode(probe?.stdout ?? new Uint8Array());
  if (!usage.includes("vma create")) {
    return { missing: `skipped: ${JSON.stringify(path)} is not Proxmox's vma (no usage text)` };
  }
  return { command: [path] };
}

async function checkTools(): Promise<void> {
  for (const tool of TOOLS) {
    const found = await new Deno.Command("sh", {
      args: ["-c", `command -v "$1"`, "sh", tool],
      stdout: "null",
    }).output();
    if (!found.success) throw new Error(`The benchmark needs ${tool}, which is not installed`);
  }
}

async function checkSpace(dir: string, sizes: InputSizes): Promise<string> {
  const raw = sizes.rawRandom + sizes.rawZero;
  // Inputs (raw, its qcow2, VHDX and VMDK, mixed, four disks) plus the largest set of outputs alive at once.
  const needed = raw + 3 * sizes.rawRandom + 2 * sizes.mixed + 2 * raw;
  const available = Number((await runQuiet("df", ["-B1", "--output=avail", dir])).split("\n")[1]);
  if (available < needed) {
    throw new Error(
      `${dir} has ${formatSize(available)} free; the benchmark needs ${formatSize(needed)}`,
    );
  }
  return (await runQuiet("stat", ["-f", "-c", "%T", dir])).trim();
}

function loadAverage(): string {
  return Deno.loadavg().map((x) => x.toFixed(2)).join(" ");
}

async function machineInfo(
  fsType: string,
  loadBefore: string,
): Promise<Record<string, string | number>> {
  const cpuinfo = await Deno.readTextFile("/proc/cpuinfo").catch(() => "");
  const model = cpuinfo.match(/^model name\s*:\s*(.+)$/m)?.[1] ?? "unknown";
  return {
    cpu: model,
    cpus: navigator.hardwareConcurrency,
    memoryGiB: Math.round(Deno.systemMemoryInfo().total / 2 ** 30),
    kernel: Deno.osRelease(),
    deno: Deno.version.deno,
    fsType,
    // Other work on the machine skews the figures; the 1/5/15-minute load
    // averages before the inputs were made and after the last row tell.
    loadBefore,
    loadAfter: loadAverage(),
  };
}

async function gitCommit(): Promise<string> {
  return (await runQuiet("git", ["-C", REPO_DIR, "describe", "--always", "--dirty"]).catch(() =>
    "unknown"
  )).trim();
}

function resultsPath(options: BenchOptions, date: Date): string {
  if (options.out !== undefined) return options.out;
  const day = `${date.getFullYear()}-${String(date.getMonth() + 1).padStart(2, "0")}-${
    String(date.getDate()).padStart(2, "0")
  }`;
  return `${RESULTS_DIR}/${day}-${options.quick ? "quick" : "full"}.json`;
}

async function loadResults(path: string): Promise<BenchResults> {
  const parsed = JSON.parse(await Deno.readTextFile(path));
  if (parsed?.schema !== 1 || !Array.isArray(parsed.targets) || !Array.isArray(parsed.rows)) {
    throw new TypeError(`Cannot compare with "${path}": not a bench results file`);
  }
  return parsed as BenchResults;
}

async function prepareInputs(dir: string, sizes: InputSizes): Promise<Inputs> {
  const start = performance.now();
  log(`Generating inputs in ${dir} ...`);
  const inputs = await makeInputs(dir, sizes);
  log(`Inputs ready in ${((performance.now() - start) / 1000).toFixed(1)} s`);
  return inputs;
}

async function runBench(options: BenchOptions, session: Session): Promise<void> {
  const before = options.compare === undefined ? undefined : await loadResults(options.compare);
  await checkTools();
  const sizes = options.quick ? QUICK_SIZES : FULL_SIZES;
  const date = new Date();
  const vma = await vmaCommand(options);
  if (vma.missing !== undefined) log(`vma rows will be n/a: ${vma.missing}`);
  const proxmox = await proxmoxVma(options);
  if ("missing" in proxmox) log(`Proxmox rows: ${proxmox.missing}`);
  const dir = await Deno.makeTempDir({
    prefix: "vmakit-bench-",
    ...(options.dir ? { dir: options.dir } : {}),
  });
  session.tempDir = dir;
  const fsType = await checkSpace(dir, sizes);
  if (fsType === "tmpfs") {
    log("Warning: the temporary directory is on tmpfs; sync and fsync cost nothing there");
  }
  const loadBefore = loadAverage();
  if (Deno.loadavg()[0] > navigator.hardwareConcurrency / 2) {
    log(`Warning: the machine is busy (load average ${loadBefore}); figures will be noisy`);
  }
  const inputs = await prepareInputs(dir, sizes);
  const extras = { proxmox, threads: navigator.hardwareConcurrency };
  const rows = suiteRows(vma.words, inputs, extras).filter((r) =>
    options.only?.includes(r.id) ?? true
  );
  const settings: RunSettings = {
    cwd: dir,
    timeFile: `${dir}/time.txt`,
    timeoutS: options.timeoutS,
    track: session.track,
  };
  const measured = await measureAll(rows, {
    dir,
    settings,
    runs: options.runs,
    rowBudgetS: options.rowBudgetS,
    maxTotalS: options.maxTotalS,
    elapsedS: () => session.elapsedS(),
    log,
    ...(vma.missing === undefined ? {} : { vmaMissing: vma.missing }),
  });
  const results: BenchResults = {
    schema: 1,
    date: date.toISOString(),
    mode: options.quick ? "quick" : "full",
    vma: vma.display,
    proxmoxVma: "command" in proxmox ? proxmox.command.join(" ") : proxmox.missing,
    commit: await gitCommit(),
    machine: await machineInfo(fsType, loadBefore),
    sizes,
    runsPerRow: options.runs,
    rows: measured,
    targets: judgeTargets(suiteTargets(sizes), measured),
    rss: judgeRss(measured),
  };
  console.log(formatReport(results, before));
  if (!options.noSave) await saveResults(resultsPath(options, date), results);
  log(`Total ${session.elapsedS().toFixed(0)} s`);
}

async function saveResults(path: string, results: BenchResults): Promise<void> {
  await Deno.mkdir(path.slice(0, path.lastIndexOf("/")) || ".", { recursive: true });
  await Deno.writeTextFile(path, `${JSON.stringify(results, null, 2)}\n`);
  log(`Wrote ${path}`);
}

async function main(args: readonly string[]): Promise<number> {
  let options: BenchOptions;
  try {
    options = parseOptions(args, { PROXMOX_VMA: Deno.env.get("PROXMOX_VMA") });
  } catch (error) {
    log(`${error instanceof Error ? error.message : error}\n\n${USAGE}`);
    return 2;
  }
  if (options.help) {
    console.log(USAGE);
    return 0;
  }
  const session = new Session();
  const onSignal = () => {
    log("\nInterrupted: stopping the running command and removing the temporary directory");
    void session.stopChild().finally(() => {
      session.removeTempDir();
      Deno.exit(130);
    });
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  try {
    await runBench(options, session);
    return 0;
  } catch (error) {
    log(`Benchmark failed: ${firstLine(error instanceof Error ? error.message : String(error))}`);
    return 1;
  } finally {
    await session.stopChild();
    session.removeTempDir();
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
}

if (import.meta.main) Deno.exitCode = await main(Deno.args);
