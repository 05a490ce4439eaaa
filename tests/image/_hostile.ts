// Hostile disk images crafted byte by byte for the image reader tests, and a
// runner for `vma create` that measures the peak RSS of the CLI process.
import { CLI } from "../_cli_run.ts";

const C = 65536;

/** A qcow2 (version 3, 64 KiB clusters) from its parts. */
export interface Qcow2Parts {
  size: number;
  /** The L1 entries (host offsets of L2 tables, 0 for none). */
  l1: number[];
  /** Clusters after the header and L1: index 0 is at `dataStart`. */
  clusters: Uint8Array[];
  backing?: string;
  backingFormat?: string;
  zstd?: boolean;
}

/** Where `clusters[0]` lands for `l1Entries` L1 entries. */
export function dataStart(l1Entries: number): number {
  return C + Math.ceil(Math.max(l1Entries * 8, 1) / C) * C;
}

/** Lays out a qcow2: header cluster (with backing name and format), L1, then the clusters. */
export function qcow2(parts: Qcow2Parts): Uint8Array {
  const start = dataStart(parts.l1.length);
  const tail = parts.clusters.reduce((n, c) => n + c.length, 0);
  const file = new Uint8Array(start + tail);
  const v = new DataView(file.buffer);
  v.setUint32(0, 0x514649fb);
  v.setUint32(4, 3);
  v.setUint32(20, 16);
  v.setBigUint64(24, BigInt(parts.size));
  v.setUint32(36, parts.l1.length);
  v.setBigUint64(40, BigInt(C));
  v.setUint32(76, parts.zstd ? 8 : 0);
  v.setUint32(100, 112);
  file[104] = parts.zstd ? 1 : 0;
  let at = 112;
  if (parts.backingFormat !== undefined) {
    const format = new TextEncoder().encode(parts.backingFormat);
    v.setUint32(at, 0xe2792aca);
    v.setUint32(at + 4, format.length);
    file.set(format, at + 8);
    at += 8 + Math.ceil(format.length / 8) * 8;
  }
  at += 8; // end-of-extensions
  if (parts.backing !== undefined) {
    const name = new TextEncoder().encode(parts.backing);
    v.setBigUint64(8, BigInt(at));
    v.setUint32(16, name.length);
    file.set(name, at);
  }
  parts.l1.forEach((offset, i) => v.setBigUint64(C + i * 8, BigInt(offset)));
  let pos = start;
  for (const cluster of parts.clusters) {
    file.set(cluster, pos);
    pos += cluster.length;
  }
  return file;
}

/** An L2 table (64 KiB, 8192 standard entries) from a function of the index. */
export function l2Table(entry: (i: number) => bigint): Uint8Array {
  const table = new Uint8Array(C);
  const v = new DataView(table.buffer);
  for (let i = 0; i < C / 8; i++) v.setBigUint64(i * 8, entry(i));
  return table;
}

/** What a `vma create` run printed, how it ended, and its peak RSS. */
export interface CreateResult {
  code: number;
  stderr: string;
  /** Peak resident set of the CLI process in bytes (GNU time's %M). */
  peakRss: number;
}

/** How long a run may go without finishing before it counts as hung. */
const HANG_SECONDS = 120;

/** Runs `vma create <archive> -d format=<fmt>:drive-scsi0=<image>` under /usr/bin/time. */
export async function vmaCreate(
  archive: string,
  format: string,
  image: string,
  cwd?: string,
): Promise<CreateResult> {
  const out = await new Deno.Command("/usr/bin/time", {
    args: [
      "-f",
      "peak-rss-kib %M",
      // A hang detector, not a speed check: a run that hangs is killed.
      "timeout",
      "-s",
      "KILL",
      String(HANG_SECONDS),
      Deno.execPath(),
      "run",
      "-A",
      "--no-prompt",
      CLI,
      "create",
      archive,
      "-d",
      `format=${format}:drive-scsi0=${image}`,
    ],
    cwd,
    env: { TZ: "UTC", NO_COLOR: "1" },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stderr);
  const m = /peak-rss-kib (\d+)\n?$/.exec(text);
  if (m === null) throw new Error(`no peak RSS in ${JSON.stringify(text)}`);
  if (out.code === 137) {
    throw new Error(`vma create ${image} hung (killed after ${HANG_SECONDS} s)`);
  }
  const stderr = text.slice(0, m.index).replace(/Command exited with non-zero status \d+\n$/, "");
  return { code: out.code, stderr, peakRss: Number(m[1]) * 1024 };
}

/** The peak-RSS bound every hostile run must stay far below 300 MB under. */
export const RSS_BOUND = 200 * 1024 * 1024;

/** A hosted sparse VMDK extent header (one sector). */
export function vmdkHeader(h: {
  capacitySectors: number;
  grainSectors: number;
  gtes: number;
  gdSector: number;
  compressed?: boolean;
}): Uint8Array {
  const sector = new Uint8Array(512);
  const v = new DataView(sector.buffer);
  v.setUint32(0, 0x564d444b, true);
  v.setUint32(4, h.compressed ? 3 : 1, true);
  v.setUint32(8, h.compressed ? (1 << 17) | (1 << 16) | 3 : 3, true);
  v.setBigUint64(12, BigInt(h.capacitySectors), true);
  v.setBigUint64(20, BigInt(h.grainSectors), true);
  v.setUint32(44, h.gtes, true);
  v.setBigUint64(56, BigInt(h.gdSector), true);
  sector.set([0x0a, 0x20, 0x0d, 0x0a], 73);
  v.setUint16(77, h.compressed ? 1 : 0, true);
  return sector;
}

/** Writes `text` to `path`. */
export async function writeText(path: string, text: string): Promise<void> {
  await Deno.writeTextFile(path, text);
}
