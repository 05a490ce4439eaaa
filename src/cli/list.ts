/**
 * `vma list <filename> [--json]`: the configs, devices and creation time of an
 * archive, as Proxmox's `vma list` prints them.
 *
 * @module
 */
import type { VmaHeader } from "../vma/vma_reader.ts";
import { openArchive } from "./_archive.ts";
import { defineCommand } from "./_command.ts";
import { formatList } from "./_proxmox_text.ts";
import { writeStdout } from "./_stdio.ts";

const SYNOPSIS = "usage: vma list <filename> [--json]";

/** The header as `vma list --json` prints it. */
function headerJson(header: VmaHeader): string {
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
  return JSON.stringify(json, null, 2) + "\n";
}

/** `vma list`. */
export const list = defineCommand({
  name: "list",
  synopsis: SYNOPSIS,
  help: `${SYNOPSIS}

Prints the configs, devices and creation time of an archive, as Proxmox's vma:
  CFG: size: <bytes> name: <name>
  DEV: dev_id=<id> size: <bytes> devname: <name>
  CTIME: <ctime(3) date in the local time zone>
Reads only the header.

Options:
      --json      print the header as JSON instead: uuid, ctime (ISO 8601),
                  ctimeSeconds, headerSize, configs [{name, size}], devices
                  [{id, name, size, vmstate}]
  -h, --help      show this help
`,
  options: { json: { type: "boolean" } },
  positionals: ["<filename>"],
  async run({ json }, [filename]) {
    const { reader, header } = await openArchive(filename);
    await reader.cancel().catch(() => {});
    await writeStdout(json ? headerJson(header) : formatList(header));
    return 0;
  },
});
