// The worker module of the parallel zstd compressor (_seekable_zstd.ts): each
// job is one frame's input and a buffer for its output; both come back (for
// reuse) with the frame's length. Private to the library.
import { serveJobs } from "../vma/_worker_pool.ts";
import { ZstdFrameEncoder } from "./_zstd_frame.ts";

/** One frame to compress: `input[0 .. length)` at `level`, into `output`. */
export interface ZstdJob {
  input: ArrayBuffer;
  length: number;
  output: ArrayBuffer;
  level: number;
}

/** The buffers, handed back, and the frame's length in `output`. */
export interface ZstdResult {
  input: ArrayBuffer;
  output: ArrayBuffer;
  frameLength: number;
}

const encoders = new Map<number, ZstdFrameEncoder>();

serveJobs<ZstdJob, ZstdResult>(({ input, length, output, level }) => {
  let encoder = encoders.get(level);
  if (encoder === undefined) encoders.set(level, encoder = new ZstdFrameEncoder(level));
  const frameLength = encoder.encode(new Uint8Array(input, 0, length), new Uint8Array(output));
  return { result: { input, output, frameLength }, transfer: [input, output] };
});
