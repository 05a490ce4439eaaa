/**
 * `vma verify <filename> [-v]`: reads and checks a whole archive.
 *
 * @module
 */
import { verifyVma } from "../vma/verify_vma.ts";
import { parseCommandArgs } from "./_args.ts";
import { openArchive, toCliError } from "./_archive.ts";
import { BrokenPipeError, UsageError } from "./_errors.ts";
import { formatList, formatSummary } from "./_proxmox_text.ts";
import { writeStdout } from "./_stdio.ts";
import { readProgress } from "./_read_progress.ts";
import { HELP } from "./_usage.ts";

/** Runs `vma verify`; returns the exit status. */
export async function verifyCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs("verify", args, {
    verbose: { type: "boolean", short: "v" },
    "no-progress": { type: "boolean" },
  });
  if (values.help) {
    await writeStdout(HELP.verify);
    return 0;
  }
  if (positionals.length !== 1) {
    throw new UsageError(
      positionals.length === 0 ? "missing <filename>" : `unexpected argument '${positionals[1]}'`,
      "verify",
    );
  }
  const verbose = values.verbose === true;
  const { reader, header } = await openArchive(positionals[0]);
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
}
