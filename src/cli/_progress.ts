// The progress bar on stderr (only when stderr is a terminal): percent, bytes,
// rate and ETA, redrawn at most every 200 ms, erased at the end.
import { formatBytes, formatDuration } from "./_proxmox_text.ts";
import { stderrIsTerminal, terminalColumns, writeStderr } from "./_stdio.ts";

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
    const elapsed = (now - this.#start) / 1000;
    const rate = elapsed > 0 ? done / elapsed : 0;
    const fraction = total > 0 ? Math.min(1, done / total) : 0;
    const eta = rate > 0 && total > done ? formatDuration((total - done) / rate) : "--:--";
    const text = ` ${(fraction * 100).toFixed(0).padStart(3)}% ${formatBytes(done)} / ${
      formatBytes(total)
    }  ${formatBytes(rate)}/s  ETA ${eta}`;
    const columns = terminalColumns();
    const width = Math.max(10, Math.min(40, columns - text.length - this.#label.length - 4));
    const filled = Math.round(fraction * width);
    const line = `${this.#label} [${"#".repeat(filled)}${"-".repeat(width - filled)}]${text}`;
    writeStderr(`\r${line.slice(0, columns - 1)}\x1b[K`);
    this.#drawn = true;
  }

  finish(): void {
    if (this.#drawn) writeStderr("\r\x1b[K");
    this.#drawn = false;
  }
}
