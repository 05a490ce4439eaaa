/**
 * `vma extract <filename> [-v] [-d <drive-list>] <targetdir>`: configs and
 * sparse raw disk images into a new directory.
 *
 * @module
 */
import * as fs from "node:fs";
import { extractVma } from "../extract_vma.ts";
import type { VmaConfig, VmaDevice } from "../vma_reader.ts";
import type { VmaDeviceSink } from "../extract_vma.ts";
import { parseCommandArgs, strings } from "./_args.ts";
import { openArchive, toCliError } from "./_archive.ts";
import { BrokenPipeError, CliError, describeError, UsageError } from "./_errors.ts";
import { formatSummary } from "./_format.ts";
import { writeStdout, writeStdoutSync } from "./_io.ts";
import { onCleanup } from "./_cleanup.ts";
import { readProgress } from "./_read_progress.ts";
import { HELP } from "./_usage.ts";

const BUFFER = 4 * 1024 * 1024;

/** Why `name` cannot be a file name in the target directory, or undefined. */
function unsafeName(name: string): string | undefined {
  if (name === "" || name === "." || name === "..") return `'${name}' is not a file name`;
  if (name.includes("/") || name.includes("\\")) return `'${name}' contains a path separator`;
  // deno-lint-ignore no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(name)) return `'${name}' contains a control character`;
  return undefined;
}

/**
 * A sparse file written with positioned writes; contiguous writes are
 * gathered into large ones.
 */
class SparseFileSink implements VmaDeviceSink {
  #fd: number;
  #buf = new Uint8Array(BUFFER);
  #start = 0;
  #used = 0;
  #closed = false;
  #sequential: boolean;
  #appendAt = 0;

  constructor(readonly path: string, size: number | undefined) {
    this.#fd = fs.openSync(path, "wx", 0o644);
    this.#sequential = size === undefined;
    if (size !== undefined) fs.ftruncateSync(this.#fd, size);
  }

  #pwrite(data: Uint8Array, position: number): void {
    let off = 0;
    while (off < data.length) {
      off += fs.writeSync(this.#fd, data, off, data.length - off, position + off);
    }
  }

  #flush(): void {
    if (this.#used === 0) return;
    this.#pwrite(this.#buf.subarray(0, this.#used), this.#start);
    this.#used = 0;
  }

  write(offset: number, data: Uint8Array): void {
    if (this.#sequential) offset = this.#appendAt, this.#appendAt += data.length;
    if (
      this.#used > 0 && offset === this.#start + this.#used && this.#used + data.length <= BUFFER
    ) {
      this.#buf.set(data, this.#used);
      this.#used += data.length;
      return;
    }
    this.#flush();
    if (data.length >= BUFFER / 2) {
      this.#pwrite(data, offset);
      return;
    }
    this.#start = offset;
    this.#buf.set(data, 0);
    this.#used = data.length;
  }

  close(): void {
    if (this.#closed) return;
    this.#flush();
    fs.fsyncSync(this.#fd);
    this.#closed = true;
    fs.closeSync(this.#fd);
  }

  abandon(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      fs.closeSync(this.#fd);
    } catch {
      // closed
    }
  }
}

/** Runs `vma extract`; returns the exit status. */
export async function extractCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs("extract", args, {
    verbose: { type: "boolean", short: "v" },
    drives: { type: "string", short: "d", multiple: true },
    readmap: { type: "string", short: "r" },
    "no-progress": { type: "boolean" },
  });
  if (values.help) {
    await writeStdout(HELP.extract);
    return 0;
  }
  if (values.readmap !== undefined) {
    throw new CliError(
      "extract -r <fifo> (qmrestore's map protocol) is not supported yet; extract to a directory instead",
    );
  }
  if (positionals.length !== 2) {
    throw new UsageError(
      positionals.length < 2
        ? `missing ${positionals.length === 0 ? "<filename> and " : ""}<targetdir>`
        : `unexpected argument '${positionals[2]}'`,
      "extract",
    );
  }
  const [filename, dir] = positionals;
  const driveList = strings(values.drives).flatMap((d) => d.split(","));
  const verbose = values.verbose === true;

  const { reader } = await openArchive(filename);
  // Registered first; removes the directory only once this process made it.
  let created = false;
  const sinks: SparseFileSink[] = [];
  const removeDir = onCleanup(() => {
    for (const s of sinks) s.abandon();
    if (created) Deno.removeSync(dir, { recursive: true });
  });
  try {
    fs.mkdirSync(dir, 0o777);
    created = true;
  } catch (e) {
    removeDir();
    await reader.cancel().catch(() => {});
    throw new CliError(`unable to create target directory ${dir} - ${describeError(e)}`, {
      cause: e,
    });
  }
  const renames: [string, string][] = [];
  const progress = readProgress(verbose, values["no-progress"] !== true, "extract");
  try {
    const summary = await extractVma(reader, {
      config(c: VmaConfig) {
        const bad = unsafeName(c.name);
        if (bad) throw new CliError(`unable to write file: config name ${bad}`);
        const path = `${dir}/${c.name}`;
        try {
          fs.writeFileSync(path, c.data, { flag: "wx", mode: 0o644 });
        } catch (e) {
          throw new CliError(
            `unable to write file: Failed to create file \u201c${path}\u201d: ${describeError(e)}`,
            { cause: e },
          );
        }
      },
      device(d: VmaDevice) {
        const bad = unsafeName(d.name);
        if (bad) throw new CliError(`unable to extract device: device name ${bad}`);
        if (d.vmstate) {
          const path = `${dir}/vmstate.bin`;
          try {
            const sink = new SparseFileSink(path, undefined);
            sinks.push(sink);
            return sink;
          } catch (e) {
            throw new CliError(`create vmstate file '${path}' failed - ${describeError(e)}`, {
              cause: e,
            });
          }
        }
        if (driveList.length > 0 && !driveList.includes(d.name)) return undefined;
        const tmp = `${dir}/tmp-disk-${d.name}.raw`;
        writeStdoutSync(`DEVINFO ${tmp} ${d.size}\n`);
        try {
          const sink = new SparseFileSink(tmp, d.size);
          sinks.push(sink);
          renames.push([tmp, `${dir}/disk-${d.name}.raw`]);
          return sink;
        } catch (e) {
          throw new CliError(`can't create file ${tmp}: ${describeError(e)}`, { cause: e });
        }
      },
    }, { onProgress: progress.onProgress });
    progress.finish();
    for (const [from, to] of renames) {
      try {
        fs.renameSync(from, to);
      } catch (e) {
        throw new CliError(`rename ${from} to ${to} failed - ${describeError(e)}`, { cause: e });
      }
    }
    if (verbose) await writeStdout(formatSummary(summary));
  } catch (e) {
    progress.finish();
    await reader.cancel().catch(() => {});
    if (e instanceof BrokenPipeError) throw e;
    if (e instanceof CliError && !(e.cause instanceof SyntaxError)) throw e;
    throw toCliError(e, "restore failed - ");
  }
  removeDir();
  return 0;
}
