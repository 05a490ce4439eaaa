// Keeps the memory of a long run near its live size while compressed data
// streams through node:zlib, whose codecs allocate a fresh buffer per output
// chunk (256 MiB of .vma.zst make 256 MiB of such buffers). V8 frees them
// late: those still queued at a scavenge move to the old generation, which
// external memory only forces to be collected past 64 MiB of growth, so
// `vma repack` of a .vma.zst peaked at 135-180 MB. The pacer runs a full
// collection when external memory is over FLOOR and has grown by GROWTH since
// the last one (checked every TICK ms): about 100 MB peak, at the price of
// some 8 collections (30-90 ms each on a busy machine) per 100 MiB of
// compressed data. Plain archives make little garbage and never trigger it.
//
// `gc` comes from `--expose-gc`, set at run time; where the runtime refuses
// the flag (or has no node:v8), the pacer does nothing.
import * as v8 from "node:v8";
import * as vm from "node:vm";

/** External memory growth, in bytes, that starts a collection. */
const GROWTH = 16 * 1024 * 1024;
/** External memory below which no collection is started. */
const FLOOR = 24 * 1024 * 1024;
/** How often external memory is looked at, in ms. */
const TICK = 5;

let gc: (() => void) | undefined | null = null;

function collector(): (() => void) | undefined {
  if (gc !== null) return gc;
  try {
    v8.setFlagsFromString("--expose-gc");
    const found: unknown = vm.runInNewContext("typeof gc === 'function' ? gc : undefined");
    gc = typeof found === "function" ? () => (found as () => void)() : undefined;
  } catch {
    gc = undefined;
  }
  return gc;
}

/**
 * Starts pacing collections; returns the function that stops it. The timer
 * does not keep the process alive.
 */
export function paceGarbageCollection(): () => void {
  const collect = collector();
  if (collect === undefined) return () => {};
  let base: number | undefined = Deno.memoryUsage().external;
  const timer = setInterval(() => {
    const external = Deno.memoryUsage().external;
    // The live size is taken a tick after a collection: the freed buffers
    // are swept concurrently, and counted until then.
    if (base === undefined) {
      base = external;
      return;
    }
    if (external < Math.max(FLOOR, base + GROWTH)) return;
    collect();
    base = undefined;
  }, TICK);
  Deno.unrefTimer(timer);
  return () => clearInterval(timer);
}
