// `vma create --vm-config <file>`: a VM config as Proxmox keeps it
// (/etc/pve/qemu-server/<vmid>.conf) turned into the qemu-server.conf vzdump
// stores: the current config without snapshot, [PENDING] and [special:...]
// sections, `unusedN:`, `lock:` and `parent:` lines, then one
// `#qmdump#map:<key>:<devname>:<storage>:<format>:` line per disk in the
// archive (spec section 5.1; qemu-server's VZDump/QemuServer.pm `assemble`).
import { quote, shownQuoted } from "./_quote.ts";

/** A disk of a VM config (`scsi0: local-lvm:vm-100-disk-0,size=32G`). */
export interface VmDisk {
  /** The config key: `scsi0`, `virtio1`, `efidisk0`, `tpmstate0`... */
  readonly key: string;
  /** The volume: `local-lvm:vm-100-disk-0` or a path such as `/dev/sdb`. */
  readonly volume: string;
  /** The storage id of the volume, `""` for a path. */
  readonly storage: string;
  /** `format=`, else the volume's extension (raw, qcow2, vmdk), else `raw`. */
  readonly format: string;
  /** The device name vzdump gives it: `drive-<key>` (`drive-tpmstate0-backup`). */
  readonly devname: string;
  /** Why vzdump would leave it out (`backup=0`), if it would. */
  readonly excluded?: string;
}

/** A VM config: the text to store and its disks. */
export interface VmConfig {
  /** The config as vzdump stores it, before the map lines (ends with a newline). */
  readonly stored: Uint8Array;
  /** The disks of the current config (not of snapshots), CD-ROMs left out. */
  readonly disks: readonly VmDisk[];
}

const DISK_KEY = /^((?:ide|sata|scsi|virtio|efidisk|tpmstate)\d+):[ \t]*(\S+)[ \t]*$/;
/** PVE's storage id (`parse_volume_id`). */
const VOLUME_ID = /^([a-z][a-z0-9_.-]*[a-z0-9]):(.+)$/i;

/** The key=value options of a drive line; the first bare value is `file`. */
function driveOptions(value: string): Map<string, string> {
  const options = new Map<string, string>();
  for (const [i, part] of value.split(",").entries()) {
    const eq = part.indexOf("=");
    if (eq < 0) {
      if (i === 0) options.set("file", part);
      continue;
    }
    const key = part.slice(0, eq);
    if (!options.has(key)) options.set(key, part.slice(eq + 1));
  }
  return options;
}

/** The disk of one `<key>: <value>` config line, or undefined for a CD-ROM. */
function parseDisk(key: string, value: string, bios: string | undefined): VmDisk | undefined {
  const options = driveOptions(value);
  if (options.get("media") === "cdrom") return undefined;
  const volume = options.get("file") ?? "";
  if (volume === "" || volume === "none" || volume === "cdrom") return undefined;
  const id = VOLUME_ID.exec(volume);
  const storage = id ? id[1] : "";
  const ext = /\.(raw|qcow2|vmdk)$/.exec(id ? id[2] : volume);
  const format = options.get("format") ?? (ext ? ext[1] : "raw");
  const devname = key.startsWith("tpmstate") ? `drive-${key}-backup` : `drive-${key}`;
  let excluded: string | undefined;
  const backup = options.get("backup");
  if (backup === "0" || backup === "no" || backup === "off" || backup === "false") {
    excluded = "backup=0";
  } else if (key.startsWith("efidisk") && bios !== "ovmf") excluded = "efidisk but no OVMF BIOS";
  return { key, volume, storage, format, devname, excluded };
}

/** The byte ranges of the lines of `data` (each with its newline, if any). */
function lines(data: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  let start = 0;
  while (start < data.length) {
    const nl = data.indexOf(0x0a, start);
    const end = nl < 0 ? data.length : nl + 1;
    out.push(data.subarray(start, end));
    start = end;
  }
  return out;
}

/**
 * Reads a VM config as Proxmox keeps it: keeps what vzdump keeps (the bytes of
 * those lines unchanged) and finds the disks of the current config.
 */
export function parseVmConfig(data: Uint8Array): VmConfig {
  const decoder = new TextDecoder();
  const kept: Uint8Array[] = [];
  const drives: [string, string][] = [];
  let bios: string | undefined;
  for (const bytes of lines(data)) {
    const line = decoder.decode(bytes).replace(/\r?\n$/, "");
    if (/^\[.*\]\s*$/.test(line)) break; // a snapshot, [PENDING] or [special:...] section
    if (/^#(vzdump|qmdump)#/.test(line)) continue;
    if (/^(unused\d+|lock|parent):/.test(line)) continue;
    kept.push(bytes);
    const bm = /^bios:\s*(\S+)/.exec(line);
    if (bm) bios = bm[1];
    const m = DISK_KEY.exec(line);
    if (m) drives.push([m[1], m[2]]);
  }
  if (kept.length && kept[kept.length - 1].at(-1) !== 0x0a) kept.push(new Uint8Array([0x0a]));
  const stored = new Uint8Array(kept.reduce((n, b) => n + b.length, 0));
  let off = 0;
  for (const b of kept) {
    stored.set(b, off);
    off += b.length;
  }
  const disks = drives.map(([key, value]) => parseDisk(key, value, bios)).filter((d) =>
    d !== undefined
  );
  return { stored, disks };
}

/** What `--vm-config` stores and what it warns about. */
export interface VmConfigPlan {
  /** qemu-server.conf: the kept config and the map lines. */
  readonly data: Uint8Array;
  /** Warnings: devices that are not disks of the config and disks not in the archive. */
  readonly warnings: readonly string[];
}

/**
 * The qemu-server.conf of `config` for an archive with these device names:
 * a `#qmdump#map` line for each device `drive-<key>` whose key is a disk of
 * the config, and a warning for each device and each disk left unmatched.
 */
export function vmConfigPlan(
  file: string,
  config: VmConfig,
  devices: readonly string[],
): VmConfigPlan {
  const warnings: string[] = [];
  const maps: string[] = [];
  for (const name of devices) {
    if (name === "vmstate") continue;
    const disk = config.disks.find((d) => d.devname === name);
    if (disk) {
      maps.push(`#qmdump#map:${disk.key}:${name}:${disk.storage}:${disk.format}:\n`);
    } else {
      warnings.push(
        `device ${shownQuoted(name)} is not a disk of --vm-config ${
          shownQuoted(file)
        } (its disks are devices drive-<key>, such as drive-scsi0): qmrestore will refuse the archive (found no device mapping information for device ${
          shownQuoted(name)
        })`,
      );
    }
  }
  for (const disk of config.disks) {
    if (devices.includes(disk.devname)) continue;
    warnings.push(
      `disk ${shownQuoted(disk.key)} (${quote(disk.volume)}) of --vm-config ${
        shownQuoted(file)
      } is not in the archive (no -d ${shownQuoted(disk.devname)})${
        disk.excluded ? `, as vzdump would leave it out (${disk.excluded})` : ""
      }: qmrestore ${
        disk.excluded === "backup=0"
          ? "comments its config line out"
          : "keeps its config line, which still names the original volume"
      }`,
    );
  }
  const tail = new TextEncoder().encode(maps.join(""));
  const data = new Uint8Array(config.stored.length + tail.length);
  data.set(config.stored);
  data.set(tail, config.stored.length);
  return { data, warnings };
}
