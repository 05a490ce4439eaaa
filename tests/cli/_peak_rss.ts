// Runs the CLI under /usr/bin/time (Debian package `time`) to learn its peak
// resident set size, for tests of bounded memory.
import { CLI } from "../_cli_run.ts";

/** Why peak RSS cannot be measured here, or undefined when it can. */
export const NO_PEAK_RSS: string | undefined = (() => {
  try {
    Deno.statSync("/usr/bin/time");
    return Deno.build.os === "linux" ? undefined : "peak RSS is measured on Linux only";
  } catch {
    return "/usr/bin/time is missing (apt-get install time)";
  }
})();

/** A CLI run under /usr/bin/time. */
export interface MeasuredRun {
  readonly child: Deno.ChildProcess;
  /** Waits for the end: exit code, stdout, stderr and peak RSS in bytes. */
  result(): Promise<{ code: number; stdout: string; stderr: string; peakRss: number }>;
}

/** Starts `vma ...args` in `cwd` under /usr/bin/time, stdin piped. */
export function measureVma(args: string[], cwd: string): MeasuredRun {
  const report = Deno.makeTempFileSync({ prefix: "vmakit-rss-" });
  const child = new Deno.Command("/usr/bin/time", {
    args: ["-f", "%M", "-o", report, Deno.execPath(), "run", "-A", "--no-prompt", CLI, ...args],
    cwd,
    env: { TZ: "UTC", NO_COLOR: "1" },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  return {
    child,
    async result() {
      try {
        await child.stdin.close();
      } catch {
        // closed or in use by the caller
      }
      const out = await child.output();
      const text = Deno.readTextFileSync(report).trim().split("\n");
      Deno.removeSync(report);
      const decoder = new TextDecoder();
      return {
        code: out.code,
        stdout: decoder.decode(out.stdout),
        // /usr/bin/time adds "Command exited with non-zero status N" to -o only.
        stderr: decoder.decode(out.stderr),
        peakRss: Number(text[text.length - 1]) * 1024,
      };
    },
  };
}
