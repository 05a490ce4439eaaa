/**
 * The `vma` command line: dispatches to the subcommands and turns every
 * failure into one line on stderr and an exit status.
 *
 * @module
 */
import { BrokenPipeError, CliError, UsageError } from "./_errors.ts";
import { runCleanup } from "./_cleanup.ts";
import { writeStderr, writeStdout } from "./_stdio.ts";
import { MAIN_HELP, USAGE, VERSION } from "./_usage.ts";
import { type Command, runCommand } from "./_command.ts";
import { list } from "./list.ts";
import { config } from "./config.ts";
import { verify } from "./verify.ts";
import { extract } from "./extract.ts";
import { create } from "./create.ts";
import { serve } from "./serve.ts";
import { cat } from "./cat.ts";
import { repack } from "./repack.ts";
import { oneLine, shownQuoted } from "./_quote.ts";

/** The commands declared as records: main handles their help and positionals. */
const RECORDS: Record<string, Command> = Object.fromEntries(
  [list, config, verify, create, extract, cat, repack, serve].map((c) => [
    c.name,
    c as unknown as Command,
  ]),
);

function synopsis(command: string): string {
  return RECORDS[command]?.synopsis ?? `usage: vma ${command}`;
}

/**
 * Runs the `vma` command line with `args` (without the program name). A
 * failure is one line on stderr, whatever it says: control characters and line
 * separators in a message are escaped.
 *
 * @param args The command line arguments, such as `["list", "x.vma"]`.
 * @returns The exit status: 0 success, 1 failure, 2 usage error, 255 for
 *   `config` without such a config.
 */
export async function main(args: string[]): Promise<number> {
  try {
    const [command, ...rest] = args;
    if (command === undefined) throw new UsageError("missing command");
    if (command === "--help" || command === "-h" || command === "help") {
      // `vma help <command>` is `vma <command> --help`.
      if (command === "help" && rest.length > 0) return await main([rest[0], "--help"]);
      await writeStdout(MAIN_HELP);
      return 0;
    }
    if (command === "--version" || command === "-V") {
      await writeStdout(`vma (vmakit) ${VERSION}\n`);
      return 0;
    }
    const record = Object.hasOwn(RECORDS, command) ? RECORDS[command] : undefined;
    if (!record) throw new UsageError(`unknown command ${shownQuoted(command)}`);
    return await runCommand(record, rest);
  } catch (e) {
    runCleanup();
    if (e instanceof BrokenPipeError) return 1;
    if (e instanceof UsageError) {
      writeStderr(`vma: ${oneLine(e.message)}\n`);
      writeStderr(
        e.command ? `${synopsis(e.command)}\nTry 'vma ${e.command} --help' for more.\n` : USAGE,
      );
      return e.exitCode;
    }
    if (e instanceof CliError) {
      writeStderr(`${e.bare ? "" : "vma: "}${oneLine(e.message)}\n`);
      return e.exitCode;
    }
    const message = e instanceof Error ? e.message : String(e);
    writeStderr(`vma: ${oneLine(message)}\n`);
    return 1;
  }
}
