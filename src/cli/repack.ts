/**
 * `vma repack [--ordered] [--uuid U] [--ctime T] [--compress C] [--zstd-level L]
 * [--threads N] <in> <out>`:
 * rewrites an archive, every config and device byte for byte.
 *
 * @module
 */
import { VmaWriter } from "../vma/vma_writer.ts";
import { defineCommand } from "./_command.ts";
import { BrokenPipeError, CliError, describeError, UsageError } from "./_errors.ts";
import { openIndexedArchive } from "./_indexed_archive.ts";
import { shown, shownQuoted } from "./_quote.ts";
import { type Compress, compressor, openSink, pumpArchive } from "./_archive_sink.ts";
import {
  parseThreads,
  parseZstdLevel,
  warnZstdOptionsIgnored,
  zstdOptionsGiven,
} from "./_create_options.ts";
import { lstatOrUndefined } from "./_output.ts";
import type { VmaDiskImage } from "../vma/vma_index.ts";
import type { VmaDeviceWriter } from "../vma/vma_writer.ts";

const SYNOPSIS = `usage: vma repack [--ordered] [--uuid <uuid>] [--ctime <time>]
                  [--compress zstd|gzip|none] [--zstd-level <1-19>]
                  [--threads <n>] [--tmpdir <dir>] [--save-index] <in> <out>`;

/** `vma repack`. */
export const repack = defineCommand({
  name: "repack",
  synopsis: SYNOPSIS,
  help: `${SYNOPSIS}

Rewrites the archive <in> (plain or compressed, clusters in any order) as
<out>, keeping every config and every device byte for byte (devices get ids
1, 2, ... in the order of their old ids). The uuid and time stay those of
<in> unless given. With --ordered and a fixed --uuid and --ctime, two backups
of the same disks give the same bytes, whatever order they were written in,
so deduplicating backup tools (borg, restic) store them once.

<in> is read twice at most: once whole, checked as verify does, to index it,
then at random. A .vma.zst with a seek table is read in place; any other
compressed <in> (or standard input) is spooled, decompressed, to a temporary
file next to it or in --tmpdir, removed on exit. <out> is written under a
temporary name and renamed when complete; '-' is standard output (not a
terminal).

Options:
      --ordered          write clusters in device and cluster order
      --uuid <uuid>      the new archive uuid (default: the input's)
      --ctime <time>     the new archive time: seconds since the epoch or an
                         ISO 8601 date (default: the input's)
      --compress <kind>  zstd, gzip or none (default: from <out>'s name:
                         .zst, .gz, else none); zstd is written with a seek
                         table, as vma create writes it
      --zstd-level <1-19>
                         zstd compression level (default: 3)
      --threads <n>      threads for zstd, as for vma create (default: the
                         number of cores, at most 4); the bytes are the same
                         whatever <n>
      --tmpdir <dir>     where to spool a compressed <in>
      --save-index       save the index of a plain <in> as <in>.vmaidx, used
                         by later runs while <in> is unchanged
  -h, --help             show this help
`,
  options: {
    ordered: { type: "boolean" },
    uuid: { type: "string" },
    ctime: { type: "string" },
    compress: { type: "string" },
    "zstd-level": { type: "string" },
    threads: { type: "string" },
    tmpdir: { type: "string" },
    "save-index": { type: "boolean" },
  },
  positionals: ["<in>", "<out>"],
  async run(values, [input, output]) {
    const compress = parseCompress(values.compress, output);
    const zstdLevel = parseZstdLevel(values["zstd-level"], "repack");
    const threads = parseThreads(values.threads, "repack");
    warnZstdOptionsIgnored(zstdOptionsGiven(values), compress);
    const ctime = values.ctime === undefined ? undefined : parseTime(values.ctime);
    if (values.uuid !== undefined) {
      try {
        new VmaWriter({ uuid: values.uuid });
      } catch (e) {
        throw new UsageError(
          `invalid --uuid ${shownQuoted(values.uuid)}: ${describeError(e)}`,
          "repack",
        );
      }
    }
    if (output !== "-" && lstatOrUndefined(output)?.isFile) {
      throw new CliError(`can't open file ${shown(output)} - File exists`);
    }
    const archive = await openIndexedArchive(input, "repack", {
      tmpdir: values.tmpdir,
      saveIndex: values["save-index"] === true,
    });
    try {
      const header = archive.index.header;
      const writer = new VmaWriter({
        uuid: values.uuid ?? header.uuid,
        ctime: ctime ?? header.ctime,
        ordered: values.ordered === true,
      });
      for (const config of header.configs) writer.addConfig(config.name, config.data);
      const devices = header.devices.map((d) => writer.addDevice(d.name, d.size));
      const sink = await openSink(output);
      const transform = compressor(compress, zstdLevel, threads);
      const pump = pumpArchive(writer, transform, sink);
      const feed = async () => {
        for (const device of devices) {
          const image = await archive.openDisk(device.name);
          try {
            await feedDevice(image, device);
          } finally {
            await image.close();
          }
        }
        await writer.close();
      };
      try {
        await Promise.all([feed(), pump]);
        await sink.commit();
      } catch (e) {
        await writer.abort(e).catch(() => {});
        sink.discard();
        if (e instanceof CliError) throw e;
        throw new CliError(`repack failed - ${describeError(e)}`, { cause: e });
      }
    } catch (e) {
      if (e instanceof BrokenPipeError || e instanceof CliError) throw e;
      throw new CliError(`repack failed - ${describeError(e)}`, { cause: e });
    } finally {
      archive.close();
    }
    return 0;
  },
});

function parseCompress(text: string | undefined, output: string): Compress {
  if (text === undefined) {
    if (output.endsWith(".zst")) return "zstd";
    if (output.endsWith(".gz")) return "gzip";
    return "none";
  }
  if (text === "zstd" || text === "gzip" || text === "none") return text;
  throw new UsageError(
    `invalid --compress ${shownQuoted(text)}: give zstd, gzip or none`,
    "repack",
  );
}

/** `--ctime`: seconds since the epoch or an ISO 8601 date (as create takes it). */
function parseTime(text: string): Date {
  const t = text.trim();
  let ms: number;
  if (/^-?\d+$/.test(t)) ms = Number(t) * 1000;
  else if (/^\d{4}-\d\d-\d\d/.test(t)) ms = Date.parse(t);
  else ms = NaN;
  if (!Number.isFinite(ms) || Math.abs(ms) > 8.64e15) {
    throw new UsageError(
      `invalid --ctime ${shownQuoted(text)}: give seconds since the epoch or an ISO 8601 date`,
      "repack",
    );
  }
  return new Date(ms);
}

/** Bytes per read of a device. */
const PIECE = 4 * 1024 * 1024;
const CLUSTER = 65536;

/**
 * Copies `image` into `device`: whole zero clusters as zero clusters without
 * reading, the rest through one buffer (the writer is done with it when its
 * promise settles).
 */
async function feedDevice(image: VmaDiskImage, device: VmaDeviceWriter): Promise<void> {
  const buffer = new Uint8Array(PIECE);
  let at = 0; // next byte to write
  const copy = async (end: number) => {
    while (at < end) {
      const n = Math.min(PIECE, end - at);
      const view = buffer.subarray(0, n);
      await image.readInto(at, view);
      await device.write(at, view);
      at += n;
    }
  };
  for await (const region of image.regions()) {
    if (!region.zero) continue;
    const regionEnd = region.offset + region.length;
    const start = Math.ceil(region.offset / CLUSTER) * CLUSTER;
    const end = regionEnd === image.size ? regionEnd : Math.floor(regionEnd / CLUSTER) * CLUSTER;
    if (end <= start) continue;
    await copy(start);
    await device.writeZeroes(start, end - start);
    at = end;
  }
  await copy(image.size);
  await device.close();
}
