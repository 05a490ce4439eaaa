// Usage and help texts. The general usage is Proxmox's, with vmakit's options
// (create -v, --vm-config, extract -v, list --json) and its own commands (cat,
// repack, serve), in at most 80 columns.

/** The version printed by `vma --version` (kept equal to deno.json's by a test). */
export const VERSION = "0.1.0";

/** The general usage: Proxmox's commands, with vmakit's options. */
export const USAGE = `usage: vma command [command options]

vma list <filename> [--json]
vma config <filename> [-c <config>]
vma create <filename> [-v] [-c <config>] [--vm-config <file>]
           [-d format=<format>:<device name>=<path> [-d ...]]
vma extract <filename> [-v] [-d <drive-list>] [-r <fifo>] <targetdir>
vma verify <filename> [-v]
vma cat [--tmpdir <dir>] <filename> <device>
vma repack [--ordered] [--uuid <uuid>] [--ctime <time>]
           [--compress zstd|gzip|none] <in> <out>
vma serve [--socket <path> | --listen <host>:<port>] <archive>
`;

/** `vma --help`. */
export const MAIN_HELP = `${USAGE}
vmakit's vma: a drop-in replacement for Proxmox VE's vma tool.
Every <filename> read may be '-' (standard input) and may be compressed with
zstd, gzip or lzop (found by its magic bytes, as vzdump writes .vma.zst,
.vma.gz and .vma.lzo).

  vma <command> --help   options of a command (also: vma help <command>)
  vma --version          print the version

Exit status: 0 success, 1 failure, 2 usage error, 255 'vma config' found no
such config (as Proxmox's vma), 129/130/143 interrupted by
SIGHUP/SIGINT/SIGTERM.
Every failure is one line on stderr, starting with 'vma: ', except the 255
one, which is Proxmox's line as it prints it: unable to find configuration
data '<name>'.
`;
