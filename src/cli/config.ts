/**
 * `vma config <filename> [-c <name>]`: one config file of an archive on stdout.
 *
 * @module
 */
import { lastString, parseCommandArgs } from "./_args.ts";
import { openArchive } from "./_archive.ts";
import { CliError, UsageError } from "./_errors.ts";
import { writeStdout } from "./_stdio.ts";
import { HELP } from "./_usage.ts";
import { shownQuoted } from "./_quote.ts";

/** Runs `vma config`; returns the exit status (255 when the config is not there, as Proxmox). */
export async function configCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs("config", args, {
    config: { type: "string", short: "c", multiple: true },
  });
  if (values.help) {
    await writeStdout(HELP.config);
    return 0;
  }
  if (positionals.length !== 1) {
    throw new UsageError(
      positionals.length === 0
        ? "missing <filename>"
        : `unexpected argument ${shownQuoted(positionals[1])}`,
      "config",
    );
  }
  const name = lastString(values.config) ?? "qemu-server.conf";
  const { reader, header } = await openArchive(positionals[0]);
  await reader.cancel().catch(() => {});
  const config = header.configs.find((c) => c.name === name);
  if (!config) {
    throw new CliError(`unable to find configuration data ${shownQuoted(name)}`, {
      exitCode: 255,
      bare: true,
    });
  }
  await writeStdout(config.data);
  return 0;
}
