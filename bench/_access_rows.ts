/**
 * Rows of random access (issue 13): the index build alone against verify of
 * the same archive, and `nbdcopy` of the 2 GiB device served by `vma serve`
 * against `cat` of the raw image. (Repack against create, and cat of a
 * device, are in `_suite.ts`.) Every row's peak RSS is checked against the
 * 100 MB target with the others.
 *
 * Run as a script, `deno run -A bench/_access_rows.ts index <archive>` builds
 * the index of `<archive>` with the library and prints its size: the index
 * row's command.
 *
 * @module
 */
import type { Inputs } from "./_inputs.ts";
import { shellQuote } from "./_measure.ts";
import type { RowSpec, TargetSpec } from "./_suite.ts";

const ARCHIVE = "archive.vma";
const DEVICE = "drive-scsi0";

function have(program: string): boolean {
  try {
    return new Deno.Command("sh", { args: ["-c", `command -v ${program}`], stdout: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}

/** The rows, after `create-file` (whose archive they read). */
export function accessRows(vma: string, _inputs: Inputs): RowSpec[] {
  const needs = { path: ARCHIVE, row: "create-file" };
  const self = shellQuote(new URL(import.meta.url).pathname);
  const deno = shellQuote(Deno.execPath());
  const url = `nbd+unix:///${DEVICE}?socket=serve.sock`;
  return [
    {
      id: "index",
      label: "indexVma of the archive (library, one checked pass)",
      kind: "vma",
      script: `${deno} run -A ${self} index ${ARCHIVE} > /dev/null`,
      reads: [ARCHIVE],
      outputs: [],
      needs,
    },
    {
      id: "serve-nbdcopy",
      label: "vma serve + nbdcopy of the device to null: (index pass included)",
      kind: "vma",
      // serve indexes, then listens; nbdcopy waits for the socket, copies, and serve is stopped.
      script: `${vma} serve --socket serve.sock ${ARCHIVE} 2> serve.log & pid=$!; ` +
        `while [ ! -S serve.sock ]; do kill -0 $pid || exit 1; sleep 0.02; done; ` +
        `nbdcopy ${shellQuote(url)} null:; status=$?; kill -INT $pid; wait $pid; exit $status`,
      reads: [ARCHIVE],
      outputs: ["serve.sock", "serve.log"],
      needs,
      skip: have("nbdcopy") ? undefined : "nbdcopy is missing (apt-get install libnbd-bin)",
    },
  ];
}

/** The targets of these rows (information only: the issue sets no ratio). */
export function accessTargets(): TargetSpec[] {
  return [
    { id: "index", label: "index build vs verify, same archive", row: "index", baseline: "verify" },
    {
      id: "serve-nbdcopy",
      label: "nbdcopy of the served 2 GiB device vs cat of the raw image",
      row: "serve-nbdcopy",
      baseline: "cat-raw",
    },
  ];
}

if (import.meta.main) {
  const [what, path] = Deno.args;
  if (what !== "index" || path === undefined) {
    console.error("usage: deno run -A bench/_access_rows.ts index <archive>");
    Deno.exit(2);
  }
  const { indexVma } = await import("../mod.ts");
  const file = await Deno.open(path, { read: true });
  const index = await indexVma(file.readable);
  console.log(`${index.archiveSize} bytes indexed, index ${index.byteLength} bytes`);
}
