/**
 * Results of a benchmark run: the JSON written under `bench/results/`, the
 * target verdicts, and the table printed at the end (optionally next to an
 * earlier run).
 *
 * @module
 */

import type { RunSample, Spread } from "./_measure.ts";
import { spread } from "./_measure.ts";
import type { InputSizes } from "./_inputs.ts";
import { MAX_RSS_BYTES, type RowKind, type TargetSpec } from "./_suite.ts";

/** The measured figures of one row. */
export interface RowResult {
  readonly id: string;
  readonly label: string;
  readonly kind: RowKind;
  /** The shell script that was timed. */
  readonly command: string;
  /** Wall time of the discarded first (warm-up) run, when there was one. */
  readonly warmupS?: number;
  /** The timed runs, warm-up excluded. */
  readonly runs: readonly RunSample[];
  readonly wallS?: Spread;
  /** User plus system CPU time. */
  readonly cpuS?: Spread;
  readonly maxRssBytes?: Spread;
  /** Why the row has no figures (`n/a`). */
  readonly error?: string;
  /** What the untimed check after the last run found. */
  readonly note?: string;
  /** False when that check found the output wrong. */
  readonly outputOk?: boolean;
}

/** Verdict on one target. */
export type Verdict = "pass" | "miss" | "n/a" | "info";

/** One target with its ratio and verdict. */
export interface TargetResult extends TargetSpec {
  /** Median wall time of the row divided by that of its baseline. */
  readonly ratio?: number;
  readonly verdict: Verdict;
}

/** The peak RSS target over every vma row. */
export interface RssResult {
  readonly limitBytes: number;
  /** The highest median peak RSS of the vma rows, and its row. */
  readonly maxBytes?: number;
  readonly row?: string;
  readonly verdict: Verdict;
}

/** Everything a run writes to `bench/results/*.json`. */
export interface BenchResults {
  readonly schema: 1;
  /** ISO date and time of the start of the run. */
  readonly date: string;
  readonly mode: "quick" | "full";
  /** The vma command that was measured. */
  readonly vma: string;
  /** Proxmox's `vma` (C) of the pve-* rows, or why they were skipped. */
  readonly proxmoxVma?: string;
  /** `git describe --always --dirty` of the checkout. */
  readonly commit: string;
  readonly machine: Readonly<Record<string, string | number>>;
  readonly sizes: InputSizes;
  /** Timed runs asked per row (a slow row may do fewer, see its `runs`). */
  readonly runsPerRow: number;
  readonly rows: readonly RowResult[];
  readonly targets: readonly TargetResult[];
  readonly rss: RssResult;
}

/** Builds a row's result from its timed runs. */
export function rowResult(
  base: Omit<RowResult, "runs" | "wallS" | "cpuS" | "maxRssBytes">,
  runs: readonly RunSample[],
): RowResult {
  if (runs.length === 0) return { ...base, runs };
  return {
    ...base,
    runs,
    wallS: spread(runs.map((r) => r.wallS)),
    cpuS: spread(runs.map((r) => r.userS + r.sysS)),
    maxRssBytes: spread(runs.map((r) => r.maxRssBytes)),
  };
}

/** Computes the ratio and verdict of each target. */
export function judgeTargets(
  specs: readonly TargetSpec[],
  rows: readonly RowResult[],
): TargetResult[] {
  const median = (id: string | undefined) => rows.find((r) => r.id === id)?.wallS?.median;
  return specs.map((spec) => {
    const value = median(spec.row);
    const base = median(spec.baseline);
    const ratio = value !== undefined && base !== undefined && base > 0 ? value / base : undefined;
    const verdict: Verdict = spec.maxRatio === undefined
      ? (value === undefined ? "n/a" : "info")
      : ratio === undefined
      ? "n/a"
      : ratio <= spec.maxRatio
      ? "pass"
      : "miss";
    return { ...spec, ...(ratio === undefined ? {} : { ratio }), verdict };
  });
}

/** Judges the peak RSS target: the median peak RSS of every vma row. */
export function judgeRss(rows: readonly RowResult[]): RssResult {
  const measured = rows.filter((r) => r.kind === "vma" && r.maxRssBytes !== undefined);
  if (measured.length === 0) return { limitBytes: MAX_RSS_BYTES, verdict: "n/a" };
  const top = measured.reduce((a, b) => a.maxRssBytes!.median >= b.maxRssBytes!.median ? a : b);
  const maxBytes = top.maxRssBytes!.median;
  return {
    limitBytes: MAX_RSS_BYTES,
    maxBytes,
    row: top.id,
    verdict: maxBytes <= MAX_RSS_BYTES ? "pass" : "miss",
  };
}

function seconds(value: number): string {
  return value >= 10 ? value.toFixed(1) : value >= 1 ? value.toFixed(2) : value.toFixed(3);
}

function spreadText(s: Spread | undefined): string {
  if (s === undefined) return "n/a";
  return s.min === s.max
    ? seconds(s.median)
    : `${seconds(s.median)} (${seconds(s.min)}–${seconds(s.max)})`;
}

function megabytes(bytes: number | undefined): string {
  return bytes === undefined ? "" : (bytes / 1e6).toFixed(0);
}

function ratioText(ratio: number | undefined): string {
  return ratio === undefined ? "" : `${ratio.toFixed(2)}x`;
}

function renderTable(header: readonly string[], body: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i].length)));
  const line = (cells: readonly string[]) =>
    `| ${cells.map((c, i) => c.padEnd(widths[i])).join(" | ")} |`;
  const rule = `| ${widths.map((w) => "-".repeat(w)).join(" | ")} |`;
  return [line(header), rule, ...body.map(line)].join("\n");
}

function rssVerdict(row: RowResult | undefined): string {
  const rss = row?.maxRssBytes?.median;
  return rss !== undefined && rss > MAX_RSS_BYTES ? ", RSS miss" : "";
}

/** Table columns; the `before` ones only with `--compare`. */
const COLUMNS = [
  ["what", "now"],
  ["vma s", "now"],
  ["before s", "before"],
  ["CPU s", "now"],
  ["RSS MB", "now"],
  ["baseline", "now"],
  ["baseline s", "now"],
  ["ratio", "now"],
  ["before", "before"],
  ["target", "now"],
  ["result", "now"],
] as const;

type Column = (typeof COLUMNS)[number][0];
type Cells = Partial<Record<Column, string>>;

function columns(before: BenchResults | undefined): Column[] {
  return COLUMNS.filter(([, when]) => when === "now" || before !== undefined).map(([c]) => c);
}

function targetCells(t: TargetResult, results: BenchResults, before?: BenchResults): Cells {
  const row = results.rows.find((r) => r.id === t.row);
  const base = results.rows.find((r) => r.id === t.baseline);
  const oldRow = before?.rows.find((r) => r.id === t.row);
  const measured = row?.error === undefined && row?.wallS !== undefined;
  return {
    what: t.label,
    "vma s": measured ? spreadText(row?.wallS) : "n/a",
    "before s": oldRow?.wallS === undefined ? "n/a" : seconds(oldRow.wallS.median),
    "CPU s": measured ? seconds(row!.cpuS!.median) : "",
    "RSS MB": megabytes(row?.maxRssBytes?.median),
    baseline: base?.label ?? "",
    "baseline s": t.baseline === undefined ? "" : spreadText(base?.wallS),
    ratio: ratioText(t.ratio),
    before: ratioText(before?.targets.find((o) => o.id === t.id)?.ratio),
    target: t.maxRatio === undefined ? "" : `<= ${t.maxRatio}x`,
    result: `${t.verdict}${rssVerdict(row)}${row?.outputOk === false ? ", WRONG OUTPUT" : ""}`,
  };
}

function rssCells(results: BenchResults, before?: BenchResults): Cells {
  const { rss } = results;
  const old = before?.rss.maxBytes;
  return {
    what: "peak RSS, highest vma row",
    "vma s": rss.maxBytes === undefined ? "n/a" : `${megabytes(rss.maxBytes)} MB (${rss.row})`,
    "before s": old === undefined ? "n/a" : `${megabytes(old)} MB`,
    target: `<= ${rss.limitBytes / 1e6} MB`,
    result: rss.verdict,
  };
}

/**
 * The table of targets: each vma figure (median and min–max wall seconds, CPU
 * seconds, peak RSS), its baseline, the ratio, the target and the verdict; with `before`, the
 * earlier run's figure and ratio next to them. Then one line per n/a reason and
 * per output check.
 */
export function formatReport(results: BenchResults, before?: BenchResults): string {
  const header = columns(before);
  const body = [
    ...results.targets.map((t) => targetCells(t, results, before)),
    rssCells(results, before),
  ].map((cells) => header.map((column) => cells[column] ?? ""));
  const notes = results.rows.flatMap((r) => [
    ...(r.error === undefined ? [] : [`- ${r.id}: n/a, ${r.error}`]),
    ...(r.note === undefined ? [] : [`- ${r.id}: ${r.note}`]),
    ...(r.runs.length > 0 && r.runs.length < results.runsPerRow
      ? [`- ${r.id}: ${r.runs.length} timed run(s) only (slow row)`]
      : []),
    ...(r.runs.length > 0 && r.warmupS === undefined ? [`- ${r.id}: no warm-up run`] : []),
  ]);
  const load =
    `load average ${results.machine.loadBefore} before, ${results.machine.loadAfter} after`;
  const title = `${results.mode} run, ${results.date}, ${results.commit}, vma: ${results.vma}\n` +
    (results.proxmoxVma === undefined ? "" : `Proxmox vma: ${results.proxmoxVma}\n`) +
    `${results.machine.cpus} CPUs, ${load}` +
    (before === undefined ? "" : `\nbefore: ${before.mode} run, ${before.date}, ${before.commit}`);
  const legend =
    "s = wall seconds, median (min–max) of the timed runs; CPU = user + system seconds (median);\n" +
    "RSS = median peak RSS, MB = 10^6 B; ratio = vma median / baseline median";
  return [title, "", renderTable(header, body), "", legend, ...notes].join("\n");
}
