// Progress of verify/extract: Proxmox's `progress N% (read B bytes, duration S
// sec)` lines on stdout with -v, or the bar on a terminal's stderr.
import type { VmaProgress } from "../vma/vma_summary.ts";
import { writeStdoutSync } from "./_stdio.ts";
import { createProgress } from "./_progress.ts";

/** An onProgress callback (or undefined when nothing is shown) and a finisher. */
export function readProgress(
  verbose: boolean,
  bar: boolean,
  label: string,
): { onProgress: ((p: VmaProgress) => void) | undefined; finish(): void } {
  const start = Date.now();
  if (verbose) {
    let last = 0;
    return {
      onProgress(p) {
        if (p.clustersTotal === 0) return;
        const percent = Math.floor((p.clustersRead * 100) / p.clustersTotal);
        if (percent !== last) {
          last = percent;
          const duration = Math.floor((Date.now() - start) / 1000);
          writeStdoutSync(
            `progress ${percent}% (read ${p.bytesRead} bytes, duration ${duration} sec)\n`,
          );
        }
      },
      finish() {},
    };
  }
  const progress = createProgress(label, bar);
  if (progress.update === undefined || !bar) return { onProgress: undefined, finish() {} };
  return {
    onProgress(p) {
      progress.update(p.bytesRead, p.clustersTotal * 65536);
    },
    finish() {
      progress.finish();
    },
  };
}
