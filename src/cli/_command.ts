// A subcommand as one record, as Go's cmd/go declares them: its synopsis, help,
// options and positionals beside `run`. main.ts handles `--help`, the number of
// positionals and usage errors for all of them.
import type { parseArgs } from "node:util";
import { type Options, parseCommandArgs } from "./_args.ts";
import { UsageError } from "./_errors.ts";
import { shownQuoted } from "./_quote.ts";
import { writeStdout } from "./_stdio.ts";

/** The typed option values of a command with options `O`. */
export type Values<O extends Options> = ReturnType<
  typeof parseArgs<{ options: O; allowPositionals: true; strict: true }>
>["values"];

/** A subcommand: what `vma <name> --help` shows and what it runs. */
export interface Command<O extends Options = Options> {
  /** The word after `vma`. */
  readonly name: string;
  /** The usage line, shown after a usage error. */
  readonly synopsis: string;
  /** The whole `--help` text. */
  readonly help: string;
  /** node:util parseArgs options (`-h, --help` is added). */
  readonly options: O;
  /** The required positionals, in order, such as `["<filename>", "<targetdir>"]`. */
  readonly positionals: readonly string[];
  /** Whether more positionals may follow (create's deprecated disk list). */
  readonly morePositionals?: boolean;
  /** Runs the command; returns the exit status. */
  run(values: Values<O>, positionals: string[]): Promise<number>;
}

/** Declares a command, keeping its option types. */
export function defineCommand<O extends Options>(command: Command<O>): Command<O> {
  return command;
}

/** Checks the number of positionals: `missing <a> and <b>`, `unexpected argument 'x'`. */
export function checkPositionals(command: Command, positionals: readonly string[]): void {
  const wanted = command.positionals;
  if (positionals.length < wanted.length) {
    throw new UsageError(`missing ${wanted.slice(positionals.length).join(" and ")}`, command.name);
  }
  if (positionals.length > wanted.length && !command.morePositionals) {
    throw new UsageError(
      `unexpected argument ${shownQuoted(positionals[wanted.length])}`,
      command.name,
    );
  }
}

/** Parses `args` for `command`, prints its help or checks its positionals, and runs it. */
export async function runCommand<O extends Options>(
  command: Command<O>,
  args: string[],
): Promise<number> {
  const { values, positionals } = parseCommandArgs(command.name, args, command.options);
  if (values.help) {
    await writeStdout(command.help);
    return 0;
  }
  checkPositionals(command as unknown as Command, positionals);
  return await command.run(values as Values<O>, positionals);
}
