// A zstd worker module for the tests: it fails every job ("job") or fails to
// load at all ("load"), as the URL's hash says.
import { serveJobs } from "../../src/vma/_worker_pool.ts";

if (new URL(import.meta.url).hash === "#load") {
  throw new Error("this worker module does not load");
}
serveJobs(() => {
  throw new RangeError("the zstd worker failed on purpose");
});
