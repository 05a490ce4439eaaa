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
import { oneLine, shownQuoted } from "./_quote.ts";

/**
 * The commands, each loaded only when it runs: `vma --version` or `vma list`
 * does not compile the other commands' modules (image readers, NBD, ...).
 */
const COMMANDS: Record<string, () => Promise<Command>> = {
  list: async () => (await import("./list.ts")).list as unknown as Command,
  config: async () => (await import("./config.ts")).config as unknown as Command,
  verify: async () => (await import("./verify.ts")).verify as unknown as Command,
  create: async () => (await import("./create.ts")).create as unknown as Command,
  extract: async () => (await import("./extract.ts")).extract as unknown as Command,
  cat: async () => (await import("./cat.ts")).cat as unknown as Command,
  repack: async () => (await import("./repack.ts")).repack as unknown as Command,
  serve: async () => (await import("./serve.ts")).serve as unknown as Command,
};

/** The record of the command that runs, once loaded (for its synopsis in usage errors). */
let running: Command | undefined;

function synopsis(command: string): string {
  return (running?.name === command ? running.synopsis : undefined) ?? `usage: vma ${command}`;
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
    const load = Object.hasOwn(COMMANDS, command) ? COMMANDS[command] : undefined;
    if (!load) throw new UsageError(`unknown command ${shownQuoted(command)}`);
    running = await load();
    return await runCommand(running, rest);
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
