/**
 * The benchmark's rows (commands measured) and targets (ratios of a vma row to
 * its baseline, from issues 4 and 15). The rows of Proxmox's own `vma` (C) are
 * the baselines of issue 15; without it they are skipped, never faked.
 *
 * @module
 */

import { DISK_COUNT, type Inputs, type InputSizes } from "./_inputs.ts";
import { shellQuote } from "./_measure.ts";
import { accessRows, accessTargets } from "./_access_rows.ts";

/** Whether a row runs the vma command or a baseline tool. */
export type RowKind = "vma" | "baseline";

/** What an untimed check after a row's last run found. */
export interface CheckResult {
  /** False when the output is wrong (the row's figures are then suspect). */
  readonly ok: boolean;
  /** One line for the report: output size, allocation or the problem. */
  readonly note: string;
}

/** One command to measure. Paths are relative to the benchmark's directory. */
export interface RowSpec {
  /** Stable id, used in the JSON and by `--compare` and `--only`. */
  readonly id: string;
  readonly label: string;
  readonly kind: RowKind;
  /** The shell script that is timed (run with `sh -c`). */
  readonly script: string;
  /**
   * Inputs read again (untimed) before every run, so they are in the page
   * cache however long ago the row last ran. (The sparse image is not: its
   * holes would fill the cache with zero pages.)
   */
  readonly reads: readonly string[];
  /** Removed before every run, and after the row unless `keep` is set. */
  readonly outputs: readonly string[];
  /** Keep the outputs of the last run for later rows. */
  readonly keep?: boolean;
  /** A file an earlier row makes, and the id of that row. */
  readonly needs?: { readonly path: string; readonly row: string };
  /**
   * False to time the first run instead of discarding it as a warm-up: for the
   * sparse image, whose holes read through the page cache as zero pages that
   * 64 GiB cannot keep, so no run is warmer than the first.
   */
  readonly warmup?: boolean;
  /** Untimed check after the last run. */
  readonly check?: (dir: string) => Promise<CheckResult>;
  /** Why the row cannot run at all (it is n/a with this reason). */
  readonly skip?: string;
}

/** A ratio of a vma row's median wall time to its baseline's. */
export interface TargetSpec {
  readonly id: string;
  readonly label: string;
  /** The vma row. */
  readonly row: string;
  /** The row it is divided by; absent for rows shown for information only. */
  readonly baseline?: string;
  /** Pass when the ratio is at most this; absent for information only. */
  readonly maxRatio?: number;
}

/**
 * Proxmox's `vma` (the C tool) as a baseline: the shell words that start it,
 * or why the rows that need it are skipped.
 */
export type ProxmoxVma =
  | { readonly command: readonly string[] }
  | { readonly missing: string };

/** What the suite needs besides the vmakit command and the inputs. */
export interface SuiteExtras {
  /** Proxmox's C `vma`, or why it is absent. */
  readonly proxmox?: ProxmoxVma;
  /** Threads for `create --threads` (the machine's cores). */
  readonly threads?: number;
}

/** The reason shown for the Proxmox rows when its `vma` is not given. */
export const PROXMOX_MISSING = "skipped: Proxmox vma not found (--proxmox-vma)";

/** Peak RSS target for every vma command (100 MB). */
export const MAX_RSS_BYTES = 100e6;

/** Formats a byte count with a binary unit: `"2 GiB"`, `"512 MiB"`. */
export function formatSize(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${Number.isInteger(value) ? value : value.toFixed(2)} ${units[unit]}`;
}

const ARCHIVE = "archive.vma";
/** vmakit's zstd archive (seekable: frames and a seek table), from create-zstd-threads. */
const ZSTD_ARCHIVE = "archive-t.vma.zst";
const DEVICE = "drive-scsi0";

function device(index: number, image: string): string {
  return `-d ${shellQuote(`format=raw:drive-scsi${index}=${image}`)}`;
}

async function describeFile(dir: string, name: string): Promise<CheckResult> {
  const info = await Deno.stat(`${dir}/${name}`).catch(() => undefined);
  if (info === undefined) return { ok: false, note: `no output file ${name}` };
  return { ok: true, note: `output ${formatSize(info.size)}` };
}

async function checkExtract(
  dir: string,
  source: string,
  target = "extract",
): Promise<CheckResult> {
  const disk = `${target}/disk-${DEVICE}.raw`;
  const info = await Deno.stat(`${dir}/${disk}`).catch(() => undefined);
  if (info === undefined) return { ok: false, note: `no ${disk} in the target directory` };
  const cmp = await new Deno.Command("cmp", { args: [source, disk], cwd: dir, stdout: "null" })
    .output();
  if (!cmp.success) return { ok: false, note: `${disk} differs from ${source}` };
  const allocated = (info.blocks ?? 0) * 512;
  return { ok: true, note: `same bytes as ${source}, ${formatSize(allocated)} allocated` };
}

function baselineRows(inputs: Inputs): RowSpec[] {
  const raw = shellQuote(inputs.raw);
  return [
    {
      id: "cat-raw",
      label: "cat raw > /dev/null",
      kind: "baseline",
      script: `cat ${raw} > /dev/null`,
      reads: [inputs.raw],
      outputs: [],
    },
    {
      id: "cp-raw",
      label: "cp raw copy && sync",
      kind: "baseline",
      script: `cp ${raw} copy.img && sync`,
      reads: [inputs.raw],
      outputs: ["copy.img"],
    },
    {
      id: "zstd-raw",
      label: "zstd -1 -T1 -c raw > out",
      kind: "baseline",
      script: `zstd -q -1 -T1 -c ${raw} > raw.img.zst`,
      reads: [inputs.raw],
      outputs: ["raw.img.zst"],
    },
  ];
}

/**
 * The rows of Proxmox's `vma` (C), each the like-for-like twin of a vmakit
 * row: the same input, output on the same file system, and the output file
 * fsynced (`sync FILE`) as vmakit fsyncs its own. `pve-create-zstd` is vzdump's
 * pipeline: `vma create` into a FIFO that `zstd --threads=1 -3` reads.
 */
function proxmoxRows(pve: ProxmoxVma, inputs: Inputs): Record<string, RowSpec> {
  const skip = "missing" in pve ? { skip: pve.missing } : {};
  const cmd = "command" in pve ? pve.command.map(shellQuote).join(" ") : "vma";
  const raw = device(0, inputs.raw);
  const needs = { path: ARCHIVE, row: "create-file" };
  const zstdPipeline = (id: string, label: string, threads: string): RowSpec => ({
    id,
    label,
    kind: "baseline",
    // Proxmox's vma opens its output O_NONBLOCK, which fails (ENXIO) while no
    // reader has the FIFO open: the shell holds it open (fd 3, read-write)
    // until vma has finished, so zstd, started first, cannot lose that race;
    // neither child inherits fd 3, so zstd sees the end when the shell closes it.
    // When vma fails, zstd would wait forever: kill it.
    script: `mkfifo pve.fifo && exec 3<>pve.fifo && ` +
      `{ zstd -q ${threads} -3 -c < pve.fifo > archive-pve.vma.zst 3>&- & ` +
      `z=$!; ${cmd} create pve.fifo ${raw} 3>&- || { exec 3>&-; kill $z; exit 1; }; ` +
      `exec 3>&-; wait $z && sync archive-pve.vma.zst; }`,
    reads: [inputs.raw],
    outputs: ["pve.fifo", "archive-pve.vma.zst"],
    check: (dir) => describeFile(dir, "archive-pve.vma.zst"),
    ...skip,
  });
  return {
    create: {
      id: "pve-create",
      label: "Proxmox vma create raw to a file (fsync)",
      kind: "baseline",
      script: `${cmd} create archive-pve.vma ${raw} && sync archive-pve.vma`,
      reads: [inputs.raw],
      outputs: ["archive-pve.vma"],
      check: (dir) => describeFile(dir, "archive-pve.vma"),
      ...skip,
    },
    zstd: zstdPipeline(
      "pve-create-zstd",
      "Proxmox vma create <fifo> + zstd --threads=1 -3 (fsync)",
      "--threads=1",
    ),
    zstdThreads: zstdPipeline(
      "pve-create-zstd-t0",
      "Proxmox vma create <fifo> + zstd -T0 -3 (fsync)",
      "-T0",
    ),
    verify: {
      id: "pve-verify",
      label: "Proxmox vma verify archive",
      kind: "baseline",
      script: `${cmd} verify ${ARCHIVE}`,
      reads: [ARCHIVE],
      outputs: [],
      needs,
      ...skip,
    },
    extract: {
      id: "pve-extract",
      label: "Proxmox vma extract archive (fsync)",
      kind: "baseline",
      script: `${cmd} extract ${ARCHIVE} extract-pve && sync extract-pve/disk-${DEVICE}.raw`,
      reads: [ARCHIVE],
      outputs: ["extract-pve"],
      needs,
      check: (dir) => checkExtract(dir, inputs.raw, "extract-pve"),
      ...skip,
    },
  };
}

function createRows(
  vma: string,
  inputs: Inputs,
  pve: Record<string, RowSpec>,
  threads: number,
): RowSpec[] {
  const raw = device(0, inputs.raw);
  return [
    {
      id: "startup",
      label: "vma --version (process start-up)",
      kind: "vma",
      script: `${vma} --version`,
      reads: [],
      outputs: [],
    },
    {
      id: "create-file",
      label: "vma create raw to a file (fsync)",
      kind: "vma",
      script: `${vma} create ${ARCHIVE} ${raw}`,
      reads: [inputs.raw],
      outputs: [ARCHIVE],
      keep: true,
      check: (dir) => describeFile(dir, ARCHIVE),
    },
    pve.create,
    {
      id: "create-qcow2",
      label: "vma create qcow2 to a file (fsync)",
      kind: "vma",
      script: `${vma} create qcow2.vma -d ${
        shellQuote(`format=qcow2:drive-scsi0=${inputs.qcow2}`)
      }`,
      reads: inputs.qcow2Missing === undefined ? [inputs.qcow2] : [],
      outputs: ["qcow2.vma"],
      check: (dir) => describeFile(dir, "qcow2.vma"),
      ...(inputs.qcow2Missing === undefined ? {} : { skip: inputs.qcow2Missing }),
    },
    {
      id: "create-vhdx",
      label: "vma create VHDX to a file (fsync)",
      kind: "vma",
      script: `${vma} create vhdx.vma -d ${shellQuote(`format=vhdx:drive-scsi0=${inputs.vhdx}`)}`,
      reads: inputs.vhdxMissing === undefined ? [inputs.vhdx] : [],
      outputs: ["vhdx.vma"],
      check: (dir) => describeFile(dir, "vhdx.vma"),
      ...(inputs.vhdxMissing === undefined ? {} : { skip: inputs.vhdxMissing }),
    },
    {
      id: "create-vmdk",
      label: "vma create VMDK to a file (fsync)",
      kind: "vma",
      script: `${vma} create vmdk.vma -d ${shellQuote(`format=vmdk:drive-scsi0=${inputs.vmdk}`)}`,
      reads: inputs.vmdkMissing === undefined ? [inputs.vmdk] : [],
      outputs: ["vmdk.vma"],
      check: (dir) => describeFile(dir, "vmdk.vma"),
      ...(inputs.vmdkMissing === undefined ? {} : { skip: inputs.vmdkMissing }),
    },
    {
      id: "create-stdout",
      label: "vma create raw - > /dev/null",
      kind: "vma",
      script: `${vma} create - ${raw} > /dev/null`,
      reads: [inputs.raw],
      outputs: [],
    },
    {
      id: "create-zstd",
      label: "vma create --compress zstd --threads 1 raw",
      kind: "vma",
      script: `${vma} create --compress zstd --threads 1 archive.vma.zst ${raw}`,
      reads: [inputs.raw],
      outputs: ["archive.vma.zst"],
      check: (dir) => describeFile(dir, "archive.vma.zst"),
    },
    pve.zstd,
    {
      id: "create-zstd-threads",
      label: `vma create --compress zstd --threads ${threads} raw`,
      kind: "vma",
      script: `${vma} create --compress zstd --threads ${threads} archive-t.vma.zst ${raw}`,
      reads: [inputs.raw],
      outputs: [ZSTD_ARCHIVE],
      // Read by verify-zstd and cat-device-zstd.
      keep: true,
      check: (dir) => describeFile(dir, ZSTD_ARCHIVE),
    },
    pve.zstdThreads,
  ];
}

function readRows(vma: string, inputs: Inputs, pve: Record<string, RowSpec>): RowSpec[] {
  const needs = { path: ARCHIVE, row: "create-file" };
  return [
    {
      id: "cat-archive",
      label: "cat archive > /dev/null",
      kind: "baseline",
      script: `cat ${ARCHIVE} > /dev/null`,
      reads: [ARCHIVE],
      outputs: [],
      needs,
    },
    {
      id: "verify",
      label: "vma verify archive",
      kind: "vma",
      script: `${vma} verify ${ARCHIVE}`,
      reads: [ARCHIVE],
      outputs: [],
      needs,
    },
    pve.verify,
    {
      id: "extract",
      label: "vma extract archive (sparse, fsync)",
      kind: "vma",
      script: `${vma} extract ${ARCHIVE} extract`,
      reads: [ARCHIVE],
      outputs: ["extract"],
      needs,
      check: (dir) => checkExtract(dir, inputs.raw),
    },
    pve.extract,
    ...extractFormatRows(vma, inputs, needs),
    {
      id: "cat-device",
      label: "vma cat archive device > /dev/null (index pass + random reads)",
      kind: "vma",
      script: `${vma} cat ${ARCHIVE} ${DEVICE} > /dev/null`,
      reads: [ARCHIVE],
      outputs: [],
      needs,
    },
    {
      id: "verify-zstd",
      label: "vma verify archive.vma.zst (vmakit's)",
      kind: "vma",
      script: `${vma} verify ${ZSTD_ARCHIVE}`,
      reads: [ZSTD_ARCHIVE],
      outputs: [],
      needs: { path: ZSTD_ARCHIVE, row: "create-zstd-threads" },
    },
    {
      id: "cat-device-zstd",
      label: "vma cat archive.vma.zst device > /dev/null (in place, through the seek table)",
      kind: "vma",
      script: `${vma} cat ${ZSTD_ARCHIVE} ${DEVICE} > /dev/null`,
      reads: [ZSTD_ARCHIVE],
      outputs: [],
      needs: { path: ZSTD_ARCHIVE, row: "create-zstd-threads" },
    },
    {
      id: "repack",
      label: "vma repack --ordered archive (fsync)",
      kind: "vma",
      script: `${vma} repack --ordered ${ARCHIVE} repack.vma`,
      reads: [ARCHIVE],
      outputs: ["repack.vma"],
      needs,
      check: (dir) => describeFile(dir, "repack.vma"),
    },
  ];
}

/** `qemu-img compare` of a qcow2 output with the raw source (untimed). */
async function checkQcow2(dir: string, image: string, source: string): Promise<CheckResult> {
  const info = await Deno.stat(`${dir}/${image}`).catch(() => undefined);
  if (info === undefined) return { ok: false, note: `no ${image}` };
  const cmp = await new Deno.Command("qemu-img", {
    args: ["compare", "-q", "-f", "raw", "-F", "qcow2", source, image],
    cwd: dir,
    stdout: "null",
    stderr: "null",
  }).output().catch(() => undefined);
  if (!cmp?.success) {
    return { ok: false, note: `${image} differs from ${source} (qemu-img compare)` };
  }
  return { ok: true, note: `qemu-img compare: identical, ${formatSize(info.size)} file` };
}

/**
 * Extract straight to qcow2 (issue 12) against raw extraction and against the
 * workflow users run today: raw extraction, then `qemu-img convert -O qcow2`.
 */
function extractFormatRows(
  vma: string,
  inputs: Inputs,
  needs: { path: string; row: string },
): RowSpec[] {
  const qcow2 = `extract-qcow2/disk-${DEVICE}.qcow2`;
  const skip = inputs.qcow2Missing === undefined ? {} : { skip: inputs.qcow2Missing };
  return [
    {
      id: "extract-convert",
      label: "vma extract + qemu-img convert -O qcow2 (fsync)",
      kind: "baseline",
      script: `${vma} extract ${ARCHIVE} convert && qemu-img convert -f raw -O qcow2 ` +
        `convert/disk-${DEVICE}.raw convert.qcow2 && rm -r convert && sync`,
      reads: [ARCHIVE],
      outputs: ["convert", "convert.qcow2"],
      needs,
      ...skip,
    },
    {
      id: "extract-qcow2",
      label: "vma extract --format qcow2 archive (fsync)",
      kind: "vma",
      script: `${vma} extract --format qcow2 ${ARCHIVE} extract-qcow2`,
      reads: [ARCHIVE],
      outputs: ["extract-qcow2"],
      needs,
      check: (dir) => checkQcow2(dir, qcow2, inputs.raw),
      ...skip,
    },
    {
      id: "extract-qcow2-zstd",
      label: "vma extract --format qcow2 --compress zstd archive (fsync)",
      kind: "vma",
      script: `${vma} extract --format qcow2 --compress zstd ${ARCHIVE} extract-qcow2`,
      reads: [ARCHIVE],
      outputs: ["extract-qcow2"],
      needs,
      check: (dir) => checkQcow2(dir, qcow2, inputs.raw),
      ...skip,
    },
  ];
}

function mixedRows(vma: string, inputs: Inputs): RowSpec[] {
  const disks = inputs.disks.map((disk, i) => device(i, disk)).join(" ");
  return [
    {
      id: "cp-mixed",
      label: "cp mixed copy && sync",
      kind: "baseline",
      script: `cp ${shellQuote(inputs.mixed)} copy.img && sync`,
      reads: [inputs.mixed],
      outputs: ["copy.img"],
    },
    {
      id: "create-mixed",
      label: "vma create mixed to a file (fsync)",
      kind: "vma",
      script: `${vma} create mixed.vma ${device(0, inputs.mixed)}`,
      reads: [inputs.mixed],
      outputs: ["mixed.vma"],
      check: (dir) => describeFile(dir, "mixed.vma"),
    },
    {
      id: "create-disks",
      label: `vma create ${DISK_COUNT} disks (mixed, cut in ${DISK_COUNT})`,
      kind: "vma",
      script: `${vma} create disks.vma ${disks}`,
      reads: inputs.disks,
      outputs: ["disks.vma"],
      check: (dir) => describeFile(dir, "disks.vma"),
    },
  ];
}

function sparseRows(vma: string, inputs: Inputs): RowSpec[] {
  const sparse = shellQuote(inputs.sparse);
  return [
    {
      id: "cp-sparse",
      label: "cp sparse copy && sync (skips holes)",
      kind: "baseline",
      script: `cp ${sparse} copy.img && sync`,
      reads: [],
      outputs: ["copy.img"],
    },
    {
      id: "create-sparse",
      label: "vma create sparse to a file (fsync)",
      kind: "vma",
      script: `${vma} create sparse.vma ${device(0, inputs.sparse)}`,
      reads: [],
      outputs: ["sparse.vma"],
      warmup: false,
      check: (dir) => describeFile(dir, "sparse.vma"),
    },
  ];
}

/**
 * The rows in the order they run: each baseline next to the vma rows that are
 * compared with it, and the archive that `verify` and `extract` read made by
 * `create-file` just before.
 *
 * @param vma The words that start the vma command (program and arguments).
 * @param inputs The input file names.
 * @param extras Proxmox's `vma` and the thread count of `create --threads`.
 */
export function suiteRows(
  vma: readonly string[],
  inputs: Inputs,
  extras: SuiteExtras = {},
): RowSpec[] {
  const command = vma.map(shellQuote).join(" ");
  const pve = proxmoxRows(extras.proxmox ?? { missing: PROXMOX_MISSING }, inputs);
  return [
    ...baselineRows(inputs),
    ...createRows(command, inputs, pve, extras.threads ?? 2),
    ...readRows(command, inputs, pve),
    ...accessRows(command, inputs),
    ...mixedRows(command, inputs),
    ...sparseRows(command, inputs),
  ];
}

/** The targets of issue 15: vmakit against Proxmox's own `vma` (C). */
function proxmoxTargets(raw: string): TargetSpec[] {
  return [
    {
      id: "pve-create",
      label: `create to file vs Proxmox vma, ${raw} half-zero image, fsync`,
      row: "create-file",
      baseline: "pve-create",
      maxRatio: 0.6,
    },
    {
      id: "pve-extract",
      label: "extract (fsync) vs Proxmox vma extract (fsync)",
      row: "extract",
      baseline: "pve-extract",
      maxRatio: 0.6,
    },
    {
      id: "pve-verify",
      label: "verify vs Proxmox vma verify",
      row: "verify",
      baseline: "pve-verify",
      maxRatio: 1,
    },
    {
      id: "pve-create-zstd",
      label: "create --compress zstd vs Proxmox vma | zstd --threads=1 -3",
      row: "create-zstd",
      baseline: "pve-create-zstd",
      maxRatio: 0.8,
    },
    {
      id: "pve-create-zstd-threads",
      label: "create --compress zstd --threads <cores> vs Proxmox vma | zstd -T0 -3",
      row: "create-zstd-threads",
      baseline: "pve-create-zstd-t0",
      maxRatio: 1,
    },
  ];
}

/** The targets of issues 4, 6, 11, 12 and 15, with labels for the given input sizes. */
export function suiteTargets(sizes: InputSizes): TargetSpec[] {
  const raw = formatSize(sizes.rawRandom + sizes.rawZero);
  const mixed = formatSize(sizes.mixed);
  const disk = formatSize(sizes.mixed / DISK_COUNT);
  return [
    ...proxmoxTargets(raw),
    {
      id: "create-file",
      label: `create to file, ${raw} half-zero image, fsync`,
      row: "create-file",
      baseline: "cp-raw",
      maxRatio: 0.8,
    },
    {
      id: "create-qcow2",
      label: `create from qcow2 vs raw, same ${raw} image`,
      row: "create-qcow2",
      baseline: "create-file",
      maxRatio: 1.2,
    },
    {
      id: "create-vhdx",
      label: `create from VHDX vs raw, same ${raw} image`,
      row: "create-vhdx",
      baseline: "create-file",
      maxRatio: 1.5,
    },
    {
      id: "create-vmdk",
      label: `create from VMDK vs raw, same ${raw} image`,
      row: "create-vmdk",
      baseline: "create-file",
      maxRatio: 1.2,
    },
    {
      id: "create-stdout",
      label: `create to /dev/null, same image`,
      row: "create-stdout",
      baseline: "cat-raw",
      maxRatio: 4,
    },
    {
      id: "create-mixed",
      label: `create, ${mixed} mixed image`,
      row: "create-mixed",
      baseline: "cp-mixed",
      maxRatio: 1,
    },
    {
      id: "create-disks",
      label: `create, ${DISK_COUNT} x ${disk} disks vs 1 x ${mixed}`,
      row: "create-disks",
      baseline: "create-mixed",
      maxRatio: 1.1,
    },
    {
      id: "create-zstd",
      label: "create --compress zstd",
      row: "create-zstd",
      baseline: "zstd-raw",
      maxRatio: 1,
    },
    {
      id: "verify",
      label: "verify of the created archive",
      row: "verify",
      baseline: "cat-archive",
      maxRatio: 3,
    },
    {
      id: "extract",
      label: "extract (sparse output, fsync)",
      row: "extract",
      baseline: "cp-raw",
      maxRatio: 1,
    },
    {
      id: "extract-qcow2",
      label: "extract --format qcow2 vs extract + qemu-img convert",
      row: "extract-qcow2",
      baseline: "extract-convert",
      maxRatio: 1,
    },
    {
      id: "extract-qcow2-raw",
      label: "extract --format qcow2 vs raw extract",
      row: "extract-qcow2",
      baseline: "extract",
    },
    {
      id: "extract-qcow2-zstd",
      label: "extract --format qcow2 --compress zstd vs extract + qemu-img convert",
      row: "extract-qcow2-zstd",
      baseline: "extract-convert",
    },
    {
      id: "create-sparse",
      label: `create, ${formatSize(sizes.sparse)} sparse image`,
      row: "create-sparse",
      baseline: "cp-sparse",
    },
    {
      id: "cat-device",
      label: "cat of a device (index pass, then reads) vs verify",
      row: "cat-device",
      baseline: "verify",
    },
    {
      id: "verify-zstd",
      label: "verify of vmakit's .vma.zst vs of the plain archive",
      row: "verify-zstd",
      baseline: "verify",
    },
    {
      id: "cat-device-zstd",
      label: "cat of a device from vmakit's .vma.zst (in place) vs from the plain archive",
      row: "cat-device-zstd",
      baseline: "cat-device",
    },
    {
      id: "repack",
      label: "repack --ordered vs create of the same image",
      row: "repack",
      baseline: "create-file",
    },
    ...accessTargets(),
    { id: "startup", label: "start-up only (vma --version)", row: "startup" },
  ];
}
