/**
 * The order of runs. Every row first runs once as a warm-up (discarded), in
 * suite order; then the timed runs go in rounds, one run of every row per
 * round, so that a change in the machine's load during the benchmark touches
 * a vma row and its baseline alike instead of skewing their ratio. Rows
 * without a warm-up (the sparse image, which evicts the page cache) run last,
 * on their own.
 *
 * @module
 */

import { runMeasured, runQuiet, type RunSample, type RunSettings } from "./_measure.ts";
import { type RowResult, rowResult } from "./_report.ts";
import type { CheckResult, RowSpec } from "./_suite.ts";

/** What the schedule needs from the run. */
export interface ScheduleContext {
  /** The benchmark's temporary directory (cwd of every command). */
  readonly dir: string;
  readonly settings: RunSettings;
  /** Timed runs per row. */
  readonly runs: number;
  /** Seconds of timed runs per row: a slower row does fewer runs (at least one). */
  readonly rowBudgetS: number;
  /** Runs that would start after this many seconds of the benchmark are skipped. */
  readonly maxTotalS: number;
  readonly elapsedS: () => number;
  /** Set when the vma command cannot run: its rows are n/a for this reason. */
  readonly vmaMissing?: string;
  /** Progress messages (stderr). */
  readonly log: (message: string) => void;
}

interface RowState {
  readonly row: RowSpec;
  readonly samples: RunSample[];
  /** Timed runs this row will do, decided by its first run. */
  runs: number;
  warmupS?: number;
  error?: string;
  check?: CheckResult;
  finished?: boolean;
}

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

async function removeOutputs(row: RowSpec, dir: string): Promise<void> {
  for (const output of row.outputs) {
    await Deno.remove(`${dir}/${output}`, { recursive: true }).catch((error) => {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    });
  }
}

/**
 * Reads the row's inputs so that the run starts with them in the page cache.
 * Kernels with proactive reclaim (such as DAMON's `pageout` scheme on the
 * machine this was written on: pages idle for 60 s) evict cache that no row
 * touched for a while, which would otherwise make a late run partly cold.
 */
async function readInputs(row: RowSpec, dir: string): Promise<void> {
  if (row.reads.length === 0) return;
  const cat = new Deno.Command("cat", { args: [...row.reads], cwd: dir, stdout: "null" });
  await cat.output();
}

/** Why the row cannot run now, if it cannot. */
async function blocker(state: RowState, ctx: ScheduleContext): Promise<string | undefined> {
  const { row } = state;
  if (row.skip !== undefined) return row.skip;
  if (row.kind === "vma" && ctx.vmaMissing !== undefined) return ctx.vmaMissing;
  if (row.needs !== undefined && !(await exists(`${ctx.dir}/${row.needs.path}`))) {
    return `needs ${row.needs.path}, which ${row.needs.row} did not make`;
  }
  if (ctx.elapsedS() > ctx.maxTotalS) return `skipped: the ${ctx.maxTotalS} s budget is used up`;
  return undefined;
}

/** Runs the row once; returns the sample, or records the error and returns undefined. */
async function runOnce(state: RowState, ctx: ScheduleContext): Promise<RunSample | undefined> {
  const blocked = await blocker(state, ctx);
  if (blocked !== undefined) {
    // A row that already has samples keeps them; it just does fewer runs.
    if (state.samples.length > 0) state.runs = state.samples.length;
    else state.error = blocked;
    return undefined;
  }
  await removeOutputs(state.row, ctx.dir);
  await readInputs(state.row, ctx.dir);
  // Dirty pages of earlier runs must not be flushed inside this run's sync or fsync.
  await runQuiet("sync", []);
  const outcome = await runMeasured(state.row.script, ctx.settings);
  if (outcome.ok) return outcome.sample;
  const run = state.samples.length + (state.warmupS === undefined ? 1 : 2);
  state.error = run === 1 ? outcome.reason : `run ${run}: ${outcome.reason}`;
  state.samples.length = 0;
  return undefined;
}

function done(state: RowState): boolean {
  return state.error !== undefined || state.samples.length >= state.runs;
}

/** After a row's last run: check its output, then delete it unless later rows need it. */
async function finish(state: RowState, ctx: ScheduleContext): Promise<void> {
  if (state.finished) return;
  state.finished = true;
  if (state.error === undefined && state.row.check !== undefined) {
    state.check = await state.row.check(ctx.dir);
  }
  if (!state.row.keep || state.error !== undefined) await removeOutputs(state.row, ctx.dir);
}

/** The first run: a discarded warm-up, or (rows with `warmup: false`) the first timed run. */
async function firstRun(state: RowState, ctx: ScheduleContext): Promise<void> {
  const sample = await runOnce(state, ctx);
  if (sample === undefined) return;
  if (state.row.warmup === false) state.samples.push(sample);
  else state.warmupS = sample.wallS;
  const fit = Math.floor(ctx.rowBudgetS / sample.wallS);
  state.runs = Math.max(1, Math.min(ctx.runs, fit));
}

/** One more timed run; finishes the row after its last. */
async function nextRun(state: RowState, ctx: ScheduleContext): Promise<void> {
  const sample = await runOnce(state, ctx);
  if (sample !== undefined) state.samples.push(sample);
  if (done(state)) await finish(state, ctx);
}

function result(state: RowState): RowResult {
  const { row, warmupS, error, check } = state;
  return rowResult({
    id: row.id,
    label: row.label,
    kind: row.kind,
    command: row.script,
    ...(warmupS === undefined ? {} : { warmupS }),
    ...(error === undefined ? {} : { error }),
    ...(check === undefined ? {} : { note: check.note, outputOk: check.ok }),
  }, error === undefined ? state.samples : []);
}

function firstRunLine(state: RowState): string {
  if (state.error !== undefined) return `n/a: ${state.error}`;
  const first = state.warmupS ?? state.samples[0].wallS;
  const what = state.warmupS === undefined ? "first timed run" : "warm-up";
  return `${what} ${first.toFixed(3)} s, ${state.runs} timed run(s)`;
}

/** A one-line summary of a finished row, for the progress log. */
export function summaryLine(r: RowResult): string {
  if (r.error !== undefined) return `${r.id}: n/a, ${r.error}`;
  const wall = r.wallS!;
  const rss = (r.maxRssBytes!.median / 1e6).toFixed(0);
  return `${r.id}: ${wall.median.toFixed(3)} s median of ${r.runs.length} ` +
    `(${wall.min.toFixed(3)}–${wall.max.toFixed(3)}), RSS ${rss} MB` +
    (r.note === undefined ? "" : `, ${r.note}`);
}

/**
 * Measures every row: warm-ups in suite order, then rounds of timed runs, then
 * the rows without a warm-up one after another.
 *
 * @returns One result per row, in suite order.
 */
export async function measureAll(
  rows: readonly RowSpec[],
  ctx: ScheduleContext,
): Promise<RowResult[]> {
  const states: RowState[] = rows.map((row) => ({ row, samples: [], runs: 0 }));
  const rounds = states.filter((s) => s.row.warmup !== false);
  const alone = states.filter((s) => s.row.warmup === false);
  for (const [i, state] of rounds.entries()) {
    await firstRun(state, ctx);
    if (state.error !== undefined) await finish(state, ctx);
    ctx.log(`[${i + 1}/${rows.length}] ${state.row.id.padEnd(14)} ${firstRunLine(state)}`);
  }
  for (let round = 1; rounds.some((s) => !done(s)); round++) {
    ctx.log(`Round ${round} of timed runs`);
    for (const state of rounds) if (!done(state)) await nextRun(state, ctx);
  }
  for (const state of alone) {
    await firstRun(state, ctx);
    ctx.log(`[${states.indexOf(state) + 1}/${rows.length}] ${state.row.id} ${firstRunLine(state)}`);
    while (!done(state)) await nextRun(state, ctx);
    await finish(state, ctx);
  }
  const results = states.map(result);
  for (const r of results) ctx.log(summaryLine(r));
  return results;
}
