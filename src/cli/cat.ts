/**
 * `vma cat <filename> <device>`: one device's bytes on standard output.
 *
 * @module
 */
import { defineCommand } from "./_command.ts";
import { CliError, describeError } from "./_errors.ts";
import { openIndexedArchive } from "./_indexed_archive.ts";
import { shownQuoted } from "./_quote.ts";
import { writeStdout } from "./_stdio.ts";

const SYNOPSIS = "usage: vma cat [--tmpdir <dir>] [--save-index] <filename> <device>";
/** Bytes per read of the device. */
const PIECE = 4 * 1024 * 1024;

/** `vma cat`. */
export const cat = defineCommand({
  name: "cat",
  synopsis: SYNOPSIS,
  help: `${SYNOPSIS}

Writes the bytes of one device of the archive (such as drive-scsi0) on
standard output, for pipes: vma cat backup.vma drive-scsi0 | ...
Standard output must not be a terminal.

The archive is first read once whole and checked, as verify does, to index
where each cluster is; the device is then read at random from the file. A
.vma.zst with a seek table (as vma create writes) is read in place; any
other compressed archive (.zst, .gz, .lzo) or standard input is spooled,
decompressed, to a temporary file (sparse where the archive has zeros) next
to the archive or in --tmpdir; it is removed on exit.

With --save-index, the index of a plain archive file is saved next to it as
<filename>.vmaidx; later runs (cat, serve, repack) use it instead of reading
the archive whole while the archive is the same file, unchanged (size,
times, inode and uuid).

Options:
      --tmpdir <dir>  where to spool a compressed archive
      --save-index    save the index as <filename>.vmaidx
  -h, --help          show this help
`,
  options: {
    tmpdir: { type: "string" },
    "save-index": { type: "boolean" },
  },
  positionals: ["<filename>", "<device>"],
  async run(values, [filename, device]) {
    if (stdoutIsTerminal()) {
      throw new CliError(
        "refusing to write the device to a terminal (redirect standard output)",
      );
    }
    const archive = await openIndexedArchive(filename, "cat", {
      tmpdir: values.tmpdir,
      saveIndex: values["save-index"] === true,
      check(header) {
        if (!header.devices.some((d) => d.name === device)) {
          throw new CliError(`no device ${shownQuoted(device)} in the archive`);
        }
      },
    });
    try {
      const image = await archive.openDisk(device);
      try {
        // One buffer for the data, one of zeros: no allocation per piece.
        const buffer = new Uint8Array(PIECE);
        const zeros = new Uint8Array(PIECE);
        for await (const region of image.regions()) {
          const end = region.offset + region.length;
          for (let at = region.offset; at < end; at += PIECE) {
            const n = Math.min(PIECE, end - at);
            if (region.zero) {
              await writeStdout(zeros.subarray(0, n));
            } else {
              await image.readInto(at, buffer.subarray(0, n));
              await writeStdout(buffer.subarray(0, n));
            }
          }
        }
      } finally {
        await image.close();
      }
    } catch (e) {
      if (e instanceof CliError) throw e;
      throw new CliError(`cat failed - ${describeError(e)}`, { cause: e });
    } finally {
      archive.close();
    }
    return 0;
  },
});

function stdoutIsTerminal(): boolean {
  try {
    return Deno.stdout.isTerminal();
  } catch {
    return false;
  }
}
