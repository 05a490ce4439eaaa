/**
 * `vma list <filename> [--json]`: the configs, devices and creation time of an
 * archive, as Proxmox's `vma list` prints them.
 *
 * @module
 */
import { parseCommandArgs } from "./_args.ts";
import { openArchive } from "./_archive.ts";
import { UsageError } from "./_errors.ts";
import { formatList } from "./_proxmox_text.ts";
import { writeStdout } from "./_stdio.ts";
import { HELP } from "./_usage.ts";
import { shownQuoted } from "./_quote.ts";

/** Runs `vma list`; returns the exit status. */
export async function listCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs("list", args, {
    json: { type: "boolean" },
  });
  if (values.help) {
    await writeStdout(HELP.list);
    return 0;
  }
  if (positionals.length !== 1) {
    throw new UsageError(
      positionals.length === 0
        ? "missing <filename>"
        : `unexpected argument ${shownQuoted(positionals[1])}`,
      "list",
    );
  }
  const { reader, header } = await openArchive(positionals[0]);
  await reader.cancel().catch(() => {});
  if (values.json) {
    const json = {
      uuid: header.uuid,
      ctime: header.ctime.toISOString().replace(".000Z", "Z"),
      ctimeSeconds: Math.floor(header.ctime.getTime() / 1000),
      headerSize: header.headerSize,
      configs: header.configs.map((c) => ({ name: c.name, size: c.data.length })),
      devices: header.devices.map((d) => ({
        id: d.id,
        name: d.name,
        size: d.size,
        vmstate: d.vmstate,
      })),
    };
    await writeStdout(JSON.stringify(json, null, 2) + "\n");
  } else {
    await writeStdout(formatList(header));
  }
  return 0;
}
