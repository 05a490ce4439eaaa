/**
 * Command-line options of `deno task bench`.
 *
 * @module
 */

import { parseArgs } from "node:util";

/** The parsed options. */
export interface BenchOptions {
  /** 256 MiB inputs and a 4 GiB sparse image instead of 2 GiB and 64 GiB. */
  readonly quick: boolean;
  /** A compiled vma binary; by default `deno run -A cli.ts` from this checkout. */
  readonly vma?: string;
  /** Proxmox's `vma` (C), the baseline of issue 15; `$PROXMOX_VMA` when not given. */
  readonly proxmoxVma?: string;
  /** An earlier results file to show next to this run. */
  readonly compare?: string;
  /** Timed runs per row, after one warm-up run. */
  readonly runs: number;
  /** Only these row ids (baselines included only when listed). */
  readonly only?: readonly string[];
  /** Parent of the temporary directory (by default the system's). */
  readonly dir?: string;
  /** Where to write the results JSON. */
  readonly out?: string;
  /** Do not write a results file. */
  readonly noSave: boolean;
  /** Seconds after which one command is stopped. */
  readonly timeoutS: number;
  /** Seconds of timed runs per row; slower rows do fewer runs (at least one). */
  readonly rowBudgetS: number;
  /** Rows that would start after this many seconds are skipped. */
  readonly maxTotalS: number;
  readonly help: boolean;
}

/** Usage text for `--help`. */
export const USAGE = `Usage: deno task bench [options]

Measures vma create/verify/extract against cat, cp && sync and zstd on inputs it
generates in a temporary directory, prints the table and writes
bench/results/<date>-<quick|full>.json.

Options:
  --quick            256 MiB inputs, 4 GiB sparse image (about a minute)
  --vma <path>       measure this compiled vma binary instead of deno run -A cli.ts
  --proxmox-vma <path>
                     Proxmox's vma (C) as the baseline of the pve-* rows (default:
                     $PROXMOX_VMA; without either, those rows are skipped)
  --compare <file>   show an earlier results file next to this run
  --runs <n>         timed runs per row after one warm-up run (default 3)
  --only <ids>       comma-separated row ids to run (e.g. cp-raw,create-file)
  --dir <path>       parent of the temporary directory (default: system temp)
  --out <file>       results file to write (default bench/results/<date>-<mode>.json)
  --no-save          do not write a results file
  --timeout <s>      stop one command after this many seconds (default 300, quick 60)
  --help             show this text
`;

function positiveNumber(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) {
    throw new RangeError(`Invalid value for --${name}: "${text}" is not a positive number`);
  }
  return value;
}

/**
 * Parses `deno task bench` arguments.
 *
 * @throws {TypeError} For an unknown option or a missing value.
 * @throws {RangeError} For a number that is not positive.
 */
export function parseOptions(
  args: readonly string[],
  env: { readonly PROXMOX_VMA?: string } = {},
): BenchOptions {
  const { values } = parseArgs({
    args: [...args],
    options: {
      quick: { type: "boolean", default: false },
      vma: { type: "string" },
      "proxmox-vma": { type: "string" },
      compare: { type: "string" },
      runs: { type: "string" },
      only: { type: "string" },
      dir: { type: "string" },
      out: { type: "string" },
      "no-save": { type: "boolean", default: false },
      timeout: { type: "string" },
      help: { type: "boolean", default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  const quick = values.quick ?? false;
  const proxmoxVma = values["proxmox-vma"] ?? (env.PROXMOX_VMA || undefined);
  return {
    quick,
    runs: Math.round(positiveNumber("runs", values.runs, 3)),
    timeoutS: positiveNumber("timeout", values.timeout, quick ? 60 : 300),
    rowBudgetS: quick ? 10 : 60,
    maxTotalS: quick ? 300 : 840,
    noSave: values["no-save"] ?? false,
    help: values.help ?? false,
    ...(values.vma === undefined ? {} : { vma: values.vma }),
    ...(proxmoxVma === undefined ? {} : { proxmoxVma }),
    ...(values.compare === undefined ? {} : { compare: values.compare }),
    ...(values.only === undefined ? {} : { only: values.only.split(",").map((s) => s.trim()) }),
    ...(values.dir === undefined ? {} : { dir: values.dir }),
    ...(values.out === undefined ? {} : { out: values.out }),
  };
}
