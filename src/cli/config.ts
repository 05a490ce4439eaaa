/**
 * `vma config <filename> [-c <name>]`: one config file of an archive on stdout.
 *
 * @module
 */
import { lastString } from "./_args.ts";
import { openArchive } from "./_archive.ts";
import { defineCommand } from "./_command.ts";
import { CliError } from "./_errors.ts";
import { writeStdout } from "./_stdio.ts";
import { shownQuoted } from "./_quote.ts";

const SYNOPSIS = "usage: vma config <filename> [-c <config>]";

/** `vma config`: exit status 255 when the config is not there, as Proxmox's. */
export const config = defineCommand({
  name: "config",
  synopsis: SYNOPSIS,
  help: `${SYNOPSIS}

Writes the raw bytes of one config file of the archive to standard output.
Reads only the header. When the archive has no such config, prints Proxmox's
line "unable to find configuration data '<name>'" on stderr, byte for byte
(the one failure without the 'vma: ' prefix, as Proxmox's vma prints it),
and exits with status 255.

Options:
  -c, --config <name>   the config to print (default: qemu-server.conf)
  -h, --help            show this help
`,
  options: { config: { type: "string", short: "c", multiple: true } },
  positionals: ["<filename>"],
  async run(values, [filename]) {
    const name = lastString(values.config) ?? "qemu-server.conf";
    const { reader, header } = await openArchive(filename);
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
  },
});
