// Standard streams for the CLI: whole writes to stdout/stderr, a closed stdout
// turned into BrokenPipeError.
import { BrokenPipeError, isBrokenPipe } from "./_errors.ts";
import { oneLine } from "./_quote.ts";

const encoder = new TextEncoder();

async function writeAllTo(
  w: { write(p: Uint8Array): Promise<number> },
  data: Uint8Array,
): Promise<void> {
  let off = 0;
  while (off < data.length) off += await w.write(data.subarray(off));
}

/** Writes all of `data` (bytes or text) to stdout; a closed pipe throws BrokenPipeError. */
export async function writeStdout(data: Uint8Array | string): Promise<void> {
  const bytes = typeof data === "string" ? encoder.encode(data) : data;
  try {
    await writeAllTo(Deno.stdout, bytes);
  } catch (e) {
    if (isBrokenPipe(e)) throw new BrokenPipeError(e);
    throw e;
  }
}

/** Whether a status line (the progress bar) is on the terminal's current line. */
let statusLine = false;

/**
 * Draws `text` as the status line (the progress bar) at the start of the
 * terminal's current line, erasing the rest of the line.
 */
export function drawStatusLine(text: string): void {
  statusLine = false; // redrawn in place: no need to erase it first
  writeStderr(`\r${text}\x1b[K`);
  statusLine = true;
}

/**
 * Writes text to stderr, ignoring a closed stderr. A status line is erased
 * first (carriage return, erase to end of line), so the text starts a clean
 * line; `writeStderr("")` just erases it.
 */
export function writeStderr(text: string): void {
  if (statusLine) {
    statusLine = false;
    text = `\r\x1b[K${text}`;
  }
  const bytes = encoder.encode(text);
  try {
    let off = 0;
    while (off < bytes.length) off += Deno.stderr.writeSync(bytes.subarray(off));
  } catch {
    // Nowhere left to report to.
  }
}

/** Prints `vma: warning: <message>` on stderr. */
export function warn(message: string): void {
  writeStderr(`vma: warning: ${oneLine(message)}\n`);
}

/** Whether stderr is a terminal (for the progress bar). */
export function stderrIsTerminal(): boolean {
  try {
    return Deno.stderr.isTerminal();
  } catch {
    return false;
  }
}

/** Columns of the terminal on stderr, or 80. */
export function terminalColumns(): number {
  try {
    return Deno.consoleSize().columns || 80;
  } catch {
    return 80;
  }
}

/**
 * A WritableStream onto stdout that writes whole chunks and turns a closed pipe
 * into BrokenPipeError. Does not close stdout.
 */
export function stdoutWritable(): WritableStream<Uint8Array> {
  return new WritableStream<Uint8Array>({
    async write(chunk) {
      await writeStdout(chunk);
    },
  });
}

/** Writes text to stdout synchronously (for progress lines inside callbacks). */
export function writeStdoutSync(text: string): void {
  const bytes = encoder.encode(text);
  try {
    let off = 0;
    while (off < bytes.length) off += Deno.stdout.writeSync(bytes.subarray(off));
  } catch (e) {
    if (isBrokenPipe(e)) throw new BrokenPipeError(e);
    throw e;
  }
}
