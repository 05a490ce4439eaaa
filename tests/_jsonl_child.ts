// Runs a Deno script in a child process that reports one JSON object per
// line on stdout (the fuzzers), with a watchdog: no line for `watchdogMs`
// means the child hung, and it is killed. A child process, so a busy loop no
// timer can interrupt is still caught, and its memory is measured apart.

/** What {@linkcode runJsonlChild} saw. */
export interface JsonlRun<T> {
  /** The child's stdout lines, parsed, in order (blank lines skipped). */
  lines: T[];
  /** Set (by `onHang`) when the watchdog killed the child. */
  hung?: string;
  stderr: string;
  code: number;
}

/**
 * Runs `deno <args>` (in `cwd`), parsing its stdout as JSON lines; when no
 * line comes for `watchdogMs`, `hung` is `onHang(lines so far)` and the child
 * is killed.
 */
export async function runJsonlChild<T>(
  args: string[],
  options: { watchdogMs: number; onHang: (lines: T[]) => string; cwd?: string },
): Promise<JsonlRun<T>> {
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd: options.cwd,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const lines: T[] = [];
  let hung: string | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      hung = options.onHang(lines);
      try {
        child.kill("SIGKILL");
      } catch {
        // Already gone.
      }
    }, options.watchdogMs);
  };
  arm();
  let pending = "";
  for await (const text of child.stdout.pipeThrough(new TextDecoderStream())) {
    pending += text;
    let nl: number;
    while ((nl = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      if (line.trim() !== "") lines.push(JSON.parse(line));
      arm();
    }
  }
  const status = await child.status;
  clearTimeout(timer);
  return { lines, hung, stderr: await stderr, code: status.code };
}
