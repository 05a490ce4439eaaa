/**
 * `vma verify <filename> [-v]`: reads and checks a whole archive.
 *
 * @module
 */
import { verifyVma } from "../vma/verify_vma.ts";
import { openArchive, toCliError } from "./_archive.ts";
import { defineCommand } from "./_command.ts";
import { BrokenPipeError } from "./_errors.ts";
import { formatList, formatSummary } from "./_proxmox_text.ts";
import { writeStdout } from "./_stdio.ts";
import { readProgress } from "./_read_progress.ts";

const SYNOPSIS = "usage: vma verify <filename> [-v]";

/** `vma verify`. */
export const verify = defineCommand({
  name: "verify",
  synopsis: SYNOPSIS,
  help: `${SYNOPSIS}

Reads the whole archive and checks every header, extent and cluster, without
writing anything. Unlike Proxmox's vma verify, it also fails when a cluster
of a device is missing (Proxmox notices that only at extract time) and on
bytes after the last extent.

Options:
  -v, --verbose   print the list block, then Proxmox's progress lines and
                  summary on standard output
      --no-progress  no progress bar (it is shown on stderr only when stderr
                  is a terminal and -v is not given)
  -h, --help      show this help
`,
  options: {
    verbose: { type: "boolean", short: "v" },
    "no-progress": { type: "boolean" },
  },
  positionals: ["<filename>"],
  async run(values, [filename]) {
    const verbose = values.verbose === true;
    const { reader, header } = await openArchive(filename);
    if (verbose) await writeStdout(formatList(header));
    const progress = readProgress(verbose, values["no-progress"] !== true, "verify");
    try {
      const summary = await verifyVma(reader, { onProgress: progress.onProgress });
      progress.finish();
      if (verbose) await writeStdout(formatSummary(summary));
    } catch (e) {
      progress.finish();
      await reader.cancel().catch(() => {});
      if (e instanceof BrokenPipeError) throw e;
      throw toCliError(e, "verify failed - ");
    }
    return 0;
  },
});
