// Usage and help texts. The general usage is Proxmox's, word for word.

/** The version printed by `vma --version` (kept equal to deno.json's by a test). */
export const VERSION = "0.1.0";

/** Proxmox's usage text. */
export const USAGE = `usage: vma command [command options]

vma list <filename>
vma config <filename> [-c <config>]
vma create <filename> [-c <config>] [-d format=<format>:<device name>=<path> [-d ...]]
vma extract <filename> [-d <drive-list>] [-r <fifo>] <targetdir>
vma verify <filename> [-v]
`;

/** `vma --help`. */
export const MAIN_HELP = `${USAGE}
vmakit's vma: a drop-in replacement for Proxmox VE's vma tool.
Every <filename> read may be '-' (standard input) and may be compressed with
zstd, gzip or lzop (found by its magic bytes, as vzdump writes .vma.zst,
.vma.gz and .vma.lzo).

  vma <command> --help   options of a command
  vma --version          print the version

Exit status: 0 success, 1 failure, 2 usage error, 255 'vma config' found no
such config (as Proxmox's vma), 130/143 interrupted by SIGINT/SIGTERM.
`;

/** Per-command synopsis lines (shown after a usage error). */
export const SYNOPSIS: Record<string, string> = {
  list: "usage: vma list <filename> [--json]",
  config: "usage: vma config <filename> [-c <config>]",
  create:
    "usage: vma create <filename> [-v] [-c <config>]... [-d format=<format>:[<device name>=]<path>]...",
  extract: "usage: vma extract <filename> [-v] [-d <drive-list>] [-r <fifo>] <targetdir>",
  verify: "usage: vma verify <filename> [-v]",
};

/** `vma <command> --help`. */
export const HELP: Record<string, string> = {
  list: `${SYNOPSIS.list}

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
  config: `${SYNOPSIS.config}

Writes the raw bytes of one config file of the archive to standard output.
Reads only the header. Exit status 255 when the archive has no such config.

Options:
  -c, --config <name>   the config to print (default: qemu-server.conf)
  -h, --help            show this help
`,
  verify: `${SYNOPSIS.verify}

Reads the whole archive and checks every header, extent and cluster, without
writing anything. Unlike Proxmox's vma verify, it also fails when a cluster
of a device is missing (Proxmox notices that only at extract time) and on
bytes after the last extent.

Options:
  -v, --verbose   print the list block, then Proxmox's progress lines and
                  summary on standard output
      --no-progress  no progress bar (it is shown on stderr only when stderr
                  is a terminal and -v is not given)
  -h, --help      show this help
`,
  extract: `${SYNOPSIS.extract}

Extracts an archive into <targetdir>, which must not exist yet: one file per
config, and disk-<devname>.raw per device (exact size, sparse: zero regions
are not written). Prints 'DEVINFO <targetdir>/tmp-disk-<devname>.raw <size>'
per device, as Proxmox's vma; each disk is written under that temporary name,
fsynced and renamed when the archive has been read completely. On failure or
on SIGINT/SIGTERM, the target directory is removed again.

Options:
  -d, --drives <drive-list>  extract only these devices (comma-separated
                  device names); the others are still read and checked
  -r, --readmap <fifo>  qmrestore's map protocol: write the configs, print the
                  list block, read map lines from <fifo> ('[format=raw:]
                  <0|1>:<devname>=<path>' or 'skip=<devname>', up to 'done'),
                  and write each disk into its existing volume (raw files and
                  block devices only; throttling.* and cache= are accepted
                  and ignored)
  -v, --verbose   print Proxmox's progress lines and summary on standard output
      --no-progress  no progress bar (see verify)
  -h, --help      show this help
`,
  create: `${SYNOPSIS.create}
       vma create <filename> [options] [<device name>=]<path>...   (deprecated)

Writes a VMA archive of config files and disk images (raw files, block
devices, qcow2 or VMDK images). <filename> must not exist yet: the archive is written under a
temporary name in the same directory, fsynced and renamed at the end, and
nothing is left behind on failure or SIGINT/SIGTERM. '-' writes the archive
to standard output; an existing FIFO or character device is written to
directly; 'exec:<command>' pipes it into a shell command (as vzdump does).

Options:
  -c, --config <file>   add a config file, stored under its base name
                        (repeatable)
  -d, --device format=<format>:[<device name>=]<path>
                        add a disk (repeatable): format raw (files and block
                        devices), qcow2 (backing files, compressed clusters),
                        vmdk, or auto (detect). Without a name the disk is
                        called disk<N> (N counts from 0). A size not a multiple
                        of 512 is padded with zeros, with a warning, as QEMU
                        does. Disks are read one after the other.
  -v, --verbose         print Proxmox's progress lines and per-image summary
                        on stderr
      --compress <zstd|gzip|none>
                        compress the archive (default: zstd for a name ending
                        in .zst, gzip for .gz, else none)
      --zstd-level <1-19>
                        zstd compression level (default: 3, as vzdump and the
                        zstd tool; 1 is faster, and on incompressible data
                        about as small)
      --uuid <uuid>     the archive uuid (default: random)
      --ctime <time>    the archive time: seconds since the epoch or an ISO
                        8601 date (default: $SOURCE_DATE_EPOCH, else now)
      --ordered         write clusters in device and cluster order, so the same
                        inputs, uuid and ctime give the same bytes
      --vmid <vmid>     <filename> is a directory: write
                        vzdump-qemu-<vmid>-<YYYY_MM_DD-HH_MM_SS>.vma[.zst|.gz]
                        in it (the time is the archive's, local time; qmrestore
                        accepts only such names) and print its path
      --make-config     when no qemu-server.conf is given, add a minimal one
                        with a drive line and a '#qmdump#map' line per device
      --storage <id>    storage id for --make-config (default: local-lvm)
      --confine         backing files and VMDK extents must be regular files in
                        the image's own directory; use it for images you did
                        not make yourself
      --no-progress     no progress bar (shown on stderr only when stderr is
                        a terminal and -v is not given)
  -h, --help            show this help

Warnings (stderr) when qemu-server.conf lacks a '#qmdump#map' line for a
device, or has one for a device not in the archive: qmrestore refuses both.
`,
};
