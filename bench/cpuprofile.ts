/**
 * Summarises a V8 `.cpuprofile` (from `deno run --cpu-prof`): the functions
 * with the most self time and the most total (inclusive) time.
 *
 * ```sh
 * deno run -A --cpu-prof --cpu-prof-dir=/tmp/prof cli.ts create - -d format=raw:drive-scsi0=raw.img > /dev/null
 * deno run -A bench/cpuprofile.ts /tmp/prof/*.cpuprofile [--top 15]
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
}

interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
  readonly children?: readonly number[];
}

/** The parts of a `.cpuprofile` this summary reads. */
export interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

/** Self and total time of one function, in milliseconds. */
export interface FunctionTime {
  readonly name: string;
  readonly selfMs: number;
  readonly totalMs: number;
}

function frameName(frame: CallFrame): string {
  const name = frame.functionName || "(anonymous)";
  if (frame.url === "") return name;
  const file = frame.url
    .replace(/^file:\/\/.*\/(?=(src|bench|tests)\/|cli\.ts$)/, "")
    .replace(/^file:\/\/.*\//, "");
  return `${name} ${file}:${frame.lineNumber + 1}`;
}

/**
 * Adds up the sample time of each function: self time where it was on top of
 * the stack, total time where it was anywhere on the stack (counted once per
 * sample, so recursion does not inflate it).
 */
export function summarise(profile: CpuProfile): FunctionTime[] {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) {
    for (const child of node.children ?? []) parent.set(child, node.id);
  }
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  profile.samples.forEach((id, i) => {
    const ms = (profile.timeDeltas[i + 1] ?? 0) / 1000;
    const top = byId.get(id);
    if (top === undefined) return;
    self.set(frameName(top.callFrame), (self.get(frameName(top.callFrame)) ?? 0) + ms);
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const name = frameName(byId.get(at)!.callFrame);
      if (!seen.has(name)) total.set(name, (total.get(name) ?? 0) + ms);
      seen.add(name);
    }
  });
  return [...total.entries()].map(([name, totalMs]) => ({
    name,
    totalMs,
    selfMs: self.get(name) ?? 0,
  }));
}

function table(
  rows: readonly FunctionTime[],
  key: "selfMs" | "totalMs",
  top: number,
  sumMs: number,
) {
  return [...rows].sort((a, b) => b[key] - a[key]).slice(0, top).map((r) =>
    `${r[key].toFixed(0).padStart(7)} ms ${
      (100 * r[key] / sumMs).toFixed(1).padStart(5)
    }%  ${r.name}`
  ).join("\n");
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    options: { top: { type: "string", default: "15" } },
    allowPositionals: true,
  });
  for (const path of positionals) {
    const profile = JSON.parse(await Deno.readTextFile(path)) as CpuProfile;
    const rows = summarise(profile);
    const sumMs = profile.timeDeltas.reduce((a, b) => a + b, 0) / 1000;
    const top = Number(values.top);
    console.log(
      `${path}: ${sumMs.toFixed(0)} ms sampled\n\nself time:\n${table(rows, "selfMs", top, sumMs)}`,
    );
    console.log(`\ntotal time:\n${table(rows, "totalMs", top, sumMs)}\n`);
  }
}
