// The progress bar on stderr (only when stderr is a terminal): percent, bytes,
// rate and ETA, redrawn at most every 200 ms, erased at the end. It always
// fits the terminal's width: fields are dropped whole (ETA, then the rate,
// then the bytes), never cut. Any other stderr line first clears it (see
// `_stdio.ts`), so a warning or "interrupted by SIGINT" gets a line of its own.
import { formatBytes, formatDuration } from "./_proxmox_text.ts";
import { drawStatusLine, stderrIsTerminal, terminalColumns, writeStderr } from "./_stdio.ts";

/** A progress display; the no-op one when stderr is not a terminal. */
export interface Progress {
  /** Reports `done` of `total` units (bytes). */
  update(done: number, total: number): void;
  /** Erases the bar. */
  finish(): void;
}

const noop: Progress = { update() {}, finish() {} };

/** A bar on stderr when `enabled` and stderr is a terminal, else a no-op. */
export function createProgress(label: string, enabled: boolean): Progress {
  if (!enabled || !stderrIsTerminal()) return noop;
  return new ProgressBar(label);
}

/** The widest bar, in `#`/`-` cells. */
const MAX_CELLS = 40;
/** The narrowest bar worth drawing. */
const MIN_CELLS = 10;

/**
 * The bar's text for a terminal `columns` wide: at most `columns - 1`
 * characters (the last column would wrap on some terminals). The fields that
 * do not fit are dropped whole, the ETA first; at the very narrowest only the
 * percentage is left, or nothing.
 */
export function formatBar(
  label: string,
  done: number,
  total: number,
  seconds: number,
  columns: number,
): string {
  const rate = seconds > 0 ? done / seconds : 0;
  const fraction = total > 0 ? Math.min(1, done / total) : 0;
  const eta = rate > 0 && total > done ? formatDuration((total - done) / rate) : "--:--";
  const percent = `${(fraction * 100).toFixed(0).padStart(3)}%`;
  const fields = [
    ` ${percent}`,
    ` ${formatBytes(done)} / ${formatBytes(total)}`,
    `  ${formatBytes(rate)}/s`,
    `  ETA ${eta}`,
  ];
  const room = columns - 1;
  for (let n = fields.length; n >= 1; n--) {
    const text = fields.slice(0, n).join("");
    const cells = Math.min(MAX_CELLS, room - label.length - 3 - text.length);
    if (cells >= MIN_CELLS) {
      const filled = Math.round(fraction * cells);
      return `${label} [${"#".repeat(filled)}${"-".repeat(cells - filled)}]${text}`;
    }
  }
  const short = `${label}${fields[0]}`;
  if (short.length <= room) return short;
  return percent.trimStart().length <= room ? percent.trimStart() : "";
}

class ProgressBar implements Progress {
  #label: string;
  #start = performance.now();
  #last = 0;
  #drawn = false;

  constructor(label: string) {
    this.#label = label;
  }

  update(done: number, total: number): void {
    const now = performance.now();
    if (now - this.#last < 200 && done < total) return;
    this.#last = now;
    const line = formatBar(
      this.#label,
      done,
      total,
      (now - this.#start) / 1000,
      terminalColumns(),
    );
    drawStatusLine(line);
    this.#drawn = true;
  }

  finish(): void {
    if (this.#drawn) writeStderr("");
    this.#drawn = false;
  }
}
