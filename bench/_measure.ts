/**
 * Runs one shell command as a whole process under `/usr/bin/time -v` (inside
 * `timeout`, which puts the command in its own process group so it can be
 * stopped as a whole), and reports its wall time, CPU time and peak RSS.
 *
 * @module
 */

/** One timed run of a command. */
export interface RunSample {
  /** Wall time in seconds, measured around the whole process. */
  readonly wallS: number;
  /** User CPU time in seconds (command and the children it waited for). */
  readonly userS: number;
  /** System CPU time in seconds. */
  readonly sysS: number;
  /** Peak resident set size of the largest process, in bytes. */
  readonly maxRssBytes: number;
}

/** A run either gives a sample or a one-line reason why it did not. */
export type RunOutcome =
  | { readonly ok: true; readonly sample: RunSample }
  | { readonly ok: false; readonly reason: string };

/** Median, minimum and maximum of a series. */
export interface Spread {
  readonly median: number;
  readonly min: number;
  readonly max: number;
}

/** What {@linkcode runMeasured} needs besides the command. */
export interface RunSettings {
  /** Working directory of the command. */
  readonly cwd: string;
  /** File that `/usr/bin/time -o` writes to (overwritten). */
  readonly timeFile: string;
  /** The command is stopped (SIGTERM, then SIGKILL 5 s later) after this many seconds. */
  readonly timeoutS: number;
  /** Called with the running process, so that Ctrl-C can stop it. */
  readonly track: (child: Deno.ChildProcess | undefined) => void;
}

/**
 * Median, minimum and maximum of `values`.
 *
 * @throws {RangeError} When `values` is empty.
 */
export function spread(values: readonly number[]): Spread {
  if (values.length === 0) throw new RangeError("Cannot summarise an empty series");
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 === 1
    ? sorted[middle]
    : (sorted[middle - 1] + sorted[middle]) / 2;
  return { median, min: sorted[0], max: sorted[sorted.length - 1] };
}

/** The fields of GNU `time -v` output that the benchmark uses. */
export interface TimeReport {
  readonly userS: number;
  readonly sysS: number;
  readonly maxRssBytes: number;
  /** Set when the command was killed by a signal. */
  readonly signal?: number;
}

/**
 * Parses the output of GNU `time -v`.
 *
 * @returns The report, or `undefined` when a required field is missing.
 */
export function parseTimeReport(text: string): TimeReport | undefined {
  const field = (name: string): number | undefined => {
    const line = text.split("\n").find((l) => l.trimStart().startsWith(`${name}: `));
    return line === undefined ? undefined : Number(line.slice(line.indexOf(": ") + 2));
  };
  const userS = field("User time (seconds)");
  const sysS = field("System time (seconds)");
  const maxRssKiB = field("Maximum resident set size (kbytes)");
  if (userS === undefined || sysS === undefined || maxRssKiB === undefined) return undefined;
  const signal = text.match(/Command terminated by signal (\d+)/)?.[1];
  return {
    userS,
    sysS,
    maxRssBytes: maxRssKiB * 1024,
    ...(signal === undefined ? {} : { signal: Number(signal) }),
  };
}

/** Quotes `word` for a POSIX shell. */
export function shellQuote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}

/** First non-empty line of `text`, at most 200 characters. */
export function firstLine(text: string): string {
  const line = text.split("\n").map((l) => l.trim()).find((l) => l !== "") ?? "";
  return line.length > 200 ? `${line.slice(0, 199)}…` : line;
}

function failureReason(
  code: number,
  stderr: string,
  report: TimeReport | undefined,
  s: RunSettings,
) {
  if (code === 124) return `timed out after ${s.timeoutS} s`;
  const message = firstLine(stderr);
  if (report?.signal !== undefined) return `killed by signal ${report.signal} ${message}`.trim();
  return message === "" ? `exit status ${code}, no message` : `exit status ${code}: ${message}`;
}

/**
 * Runs `script` with `sh -c` under `timeout` and `/usr/bin/time -v`, stdin and
 * stdout connected to `/dev/null` (the script redirects where it needs to).
 *
 * @returns The sample, or the reason the command failed: the first line of its
 *   stderr, a timeout or a signal.
 */
export async function runMeasured(script: string, settings: RunSettings): Promise<RunOutcome> {
  const args = [
    "-k",
    "5",
    String(settings.timeoutS),
    "/usr/bin/time",
    "-v",
    "-o",
    settings.timeFile,
    "sh",
    "-c",
    script,
  ];
  const command = new Deno.Command("timeout", {
    args,
    cwd: settings.cwd,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  });
  await Deno.remove(settings.timeFile).catch(() => {});
  const start = performance.now();
  const child = command.spawn();
  settings.track(child);
  const output = await child.output();
  const wallS = (performance.now() - start) / 1000;
  settings.track(undefined);
  const stderr = new TextDecoder().decode(output.stderr);
  const report = parseTimeReport(await Deno.readTextFile(settings.timeFile).catch(() => ""));
  if (output.code !== 0 || report === undefined || report.signal !== undefined) {
    return { ok: false, reason: failureReason(output.code, stderr, report, settings) };
  }
  return { ok: true, sample: { wallS, ...report } };
}

/** Runs a short helper command (not measured); throws with its stderr when it fails. */
export async function runQuiet(program: string, args: readonly string[]): Promise<string> {
  const output = await new Deno.Command(program, { args: [...args], stdin: "null" }).output();
  const text = new TextDecoder();
  if (!output.success) {
    throw new Error(
      `${program} ${args.join(" ")} failed: ${firstLine(text.decode(output.stderr))}`,
    );
  }
  return text.decode(output.stdout);
}
