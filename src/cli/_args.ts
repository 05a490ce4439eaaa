// node:util parseArgs with usage errors, getopt-style (options anywhere,
// `-` is a positional, `--` ends options).
import { parseArgs, type ParseArgsConfig } from "node:util";
import { UsageError } from "./_errors.ts";
import { shownQuoted } from "./_quote.ts";

/** node:util parseArgs options. */
export type Options = NonNullable<ParseArgsConfig["options"]>;

/** The parsed values and positionals of a subcommand's arguments. */
export interface Parsed {
  values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  positionals: string[];
}

/** Parses `args` for `command`; unknown options and missing values become UsageError. */
export function parseCommandArgs(command: string, args: string[], options: Options): Parsed {
  try {
    const { values, positionals } = parseArgs({
      args,
      options: { help: { type: "boolean", short: "h" }, ...options },
      allowPositionals: true,
      strict: true,
    });
    return { values: values as Parsed["values"], positionals };
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    const code = (e as { code?: string }).code;
    let m: RegExpExecArray | null;
    if (
      code === "ERR_PARSE_ARGS_UNKNOWN_OPTION" && (m = /Unknown option '([^']*)'/.exec(message))
    ) {
      throw new UsageError(`unknown option ${shownQuoted(m[1])}`, command);
    }
    if (
      code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE" &&
      (m = /Option '([^']*)' argument missing/.exec(message))
    ) {
      const flag = m[1].split(",")[0].replace(/ <value>$/, "");
      throw new UsageError(`option ${shownQuoted(flag)} needs a value`, command);
    }
    if (
      code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE" &&
      (m = /Option '([^']*)' argument is ambiguous/.exec(message))
    ) {
      // `--threads -1`: parseArgs takes -1 for an option, not a value.
      const flag = m[1].split(",")[0].replace(/ <value>$/, "");
      throw new UsageError(
        `option ${shownQuoted(flag)} needs a value (or use ${flag}=-...)`,
        command,
      );
    }
    throw new UsageError(message.split("\n")[0].replace(/\.$/, ""), command);
  }
}

/** The string values of a repeatable option. */
export function strings(value: unknown): string[] {
  if (value === undefined) return [];
  return (Array.isArray(value) ? value : [value]).map(String);
}

/** The last string value of an option, or undefined. */
export function lastString(value: unknown): string | undefined {
  const all = strings(value);
  return all.length ? all[all.length - 1] : undefined;
}
