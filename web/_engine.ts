/// <reference no-default-lib="true" />
/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
/// <reference lib="dom.asynciterable" />
/// <reference lib="esnext" />
// The page's engine: opens, verifies and extracts an archive with the
// library, reading a `File` as a stream and writing through File System
// Access handles. It runs in a dedicated Worker (web/worker.ts) so that the
// page stays responsive, or on the page itself where a Worker cannot start
// (file:// in Chromium). It speaks only through `Request`/`Reply` messages.

import { Decompress } from "npm:fzstd@0.1.1";
import {
  createQcow2Writer,
  createRawWriter,
  createVdiWriter,
  createVhdxWriter,
  createVmdkWriter,
  createVpcWriter,
  type DiskImageWriter,
  extractVma,
  type PositionedWriter,
  verifyVma,
  type VmaProgress,
  VmaReader,
  type ZstdFrameDecoder,
} from "../mod.ts";

/** What the page asks. */
export type Request =
  | { type: "open"; file: File }
  | { type: "verify"; file: File }
  | {
    type: "extract";
    file: File;
    dir: FileSystemDirectoryHandle;
    /** Device names to write. */
    devices: string[];
    configs: boolean;
    /** A key of FORMATS. */
    format: string;
    /** The folder is the page's own (origin-private) one: replace what is there. */
    replace: boolean;
  }
  | { type: "cancel" };

/** A config as the page shows it. */
export interface ConfigInfo {
  name: string;
  size: number;
  text: string;
}

/** A device as the page lists it. */
export interface DeviceInfo {
  id: number;
  name: string;
  size: number;
  vmstate: boolean;
}

/** What the engine answers. */
export type Reply =
  | {
    type: "header";
    compression: string;
    uuid: string;
    ctime: string;
    configs: ConfigInfo[];
    devices: DeviceInfo[];
  }
  /** Clusters read of the clusters the devices hold (Proxmox's `vma verify -v` progress). */
  | { type: "progress"; done: number; total: number }
  | {
    type: "done";
    job: "verify" | "extract";
    clusters: number;
    sparseBytes: number;
    /** Archive bytes read (decompressed). */
    archiveBytes: number;
    /** Archive bytes per second, over the whole job. */
    rate: number;
    seconds: number;
    files: string[];
  }
  | { type: "error"; message: string }
  | { type: "cancelled" };

/** The output formats offered, by QEMU's name: file extension and writer. */
export const FORMATS: Record<
  string,
  { ext: string; create: (t: PositionedWriter, size: number) => Promise<DiskImageWriter> }
> = {
  raw: { ext: "raw", create: createRawWriter },
  qcow2: { ext: "qcow2", create: (t, s) => createQcow2Writer(t, s) },
  vmdk: { ext: "vmdk", create: (t, s) => createVmdkWriter(t, s) },
  vhdx: { ext: "vhdx", create: (t, s) => createVhdxWriter(t, s) },
  vdi: { ext: "vdi", create: (t, s) => createVdiWriter(t, s) },
  vpc: { ext: "vhd", create: (t, s) => createVpcWriter(t, s) },
};

/**
 * zstd for the reader: Chromium 156's DecompressionStream has no "zstd", so
 * each frame goes through fzstd's streaming decoder. The reader's frame
 * scanner caps a frame's window at 128 MiB (fzstd's largest allocation) and
 * feeds at most 4 MiB of output at a time, so a zstd bomb cannot grow memory.
 */
export const fzstdFrameDecoder: ZstdFrameDecoder = () => {
  let out!: TransformStreamDefaultController<Uint8Array>;
  const decoder = new Decompress((chunk) => {
    if (chunk.length > 0) out.enqueue(chunk);
  });
  return new TransformStream<Uint8Array, Uint8Array>({
    start(controller) {
      out = controller;
    },
    transform(chunk) {
      push(decoder, chunk, false);
    },
    flush() {
      push(decoder, new Uint8Array(0), true);
    },
  });
};

/**
 * Feeds fzstd; whatever it throws on corrupt input (its own "invalid zstd
 * data", or a RangeError from a typed array it overruns) becomes one
 * SyntaxError, which the reader reports as `zstd decompression failed - ...`.
 */
function push(decoder: Decompress, chunk: Uint8Array, final: boolean): void {
  try {
    decoder.push(chunk, final);
  } catch (error) {
    const why = error instanceof Error ? error.message : String(error);
    throw new SyntaxError(why === "invalid zstd data" ? why : `invalid zstd data (${why})`);
  }
}

/** The zstd option: the browser's own decoder where it has one, else fzstd. */
function zstdOption(): ZstdFrameDecoder | undefined {
  try {
    new DecompressionStream("zstd" as CompressionFormat);
    return undefined;
  } catch {
    return fzstdFrameDecoder;
  }
}

/** A PositionedWriter over a File System Access writable (its swap file until close). */
function positioned(writable: FileSystemWritableFileStream): PositionedWriter {
  return {
    // The library's buffers are plain ArrayBuffers; TypeScript's DOM lib wants that said.
    write: (position, data) =>
      writable.write({ type: "write", position, data: data as Uint8Array<ArrayBuffer> }),
    truncate: (size) => writable.truncate(size),
  };
}

/** Raised (and recognised) when the user cancels. */
class Cancelled extends Error {
  constructor() {
    super("Cancelled");
    this.name = "Cancelled";
  }
}

/** Runs the page's requests one at a time; `post` sends the replies. */
export class Engine {
  #post: (reply: Reply) => void;
  #reader: VmaReader | undefined;
  #cancelled = false;

  constructor(post: (reply: Reply) => void) {
    this.#post = post;
  }

  /** Handles one request; never throws (failures become an error reply). */
  async handle(request: Request): Promise<void> {
    if (request.type === "cancel") {
      this.#cancelled = true;
      this.#reader?.cancel(new Cancelled()).catch(() => {});
      return;
    }
    this.#cancelled = false;
    try {
      if (request.type === "open") await this.#open(request.file);
      else if (request.type === "verify") await this.#verify(request.file);
      else await this.#extract(request);
    } catch (error) {
      if (this.#cancelled) this.#post({ type: "cancelled" });
      else this.#post({ type: "error", message: messageOf(error) });
    } finally {
      this.#reader = undefined;
    }
  }

  /** A reader over `file` (`File.stream()` as it is: a counting pipe in between made verify slower). */
  #openReader(file: File): VmaReader {
    this.#reader = new VmaReader(file.stream(), { zstd: zstdOption() });
    return this.#reader;
  }

  /** Progress in clusters, posted at most every 100 ms; throws once cancelled. */
  #progress(): (progress: VmaProgress) => void {
    let last = 0;
    return ({ clustersRead, clustersTotal }) => {
      if (this.#cancelled) throw new Cancelled();
      const now = performance.now();
      if (now - last < 100) return;
      last = now;
      this.#post({ type: "progress", done: clustersRead, total: clustersTotal });
    };
  }

  async #open(file: File): Promise<void> {
    const reader = this.#openReader(file);
    try {
      const header = await reader.header();
      const text = new TextDecoder();
      this.#post({
        type: "header",
        compression: reader.compression ?? "none",
        uuid: header.uuid,
        ctime: header.ctime.toISOString(),
        configs: header.configs.map((c) => ({
          name: c.name,
          size: c.data.length,
          text: text.decode(c.data),
        })),
        devices: header.devices.map((d) => ({
          id: d.id,
          name: d.name,
          size: d.size,
          vmstate: d.vmstate,
        })),
      });
    } finally {
      await reader.cancel().catch(() => {});
    }
  }

  async #verify(file: File): Promise<void> {
    const reader = this.#openReader(file);
    const start = performance.now();
    const summary = await verifyVma(reader, { onProgress: this.#progress() });
    this.#done("verify", reader, start, summary, []);
  }

  async #extract(request: Extract<Request, { type: "extract" }>): Promise<void> {
    const { file, dir } = request;
    const format = FORMATS[request.format];
    if (format === undefined) {
      throw new TypeError(`Unknown format ${JSON.stringify(request.format)}`);
    }
    const chosen = new Set(request.devices);
    const reader = this.#openReader(file);
    const start = performance.now();
    /** Files being written: until close(), each is a swap file beside an empty file of its name. */
    const open: { name: string; writable: FileSystemWritableFileStream }[] = [];
    const create = async (name: string) => {
      const exists = await dir.getFileHandle(name).then(() => true, () => false);
      if (exists && !request.replace) {
        throw new Error(
          `Cannot extract: ${JSON.stringify(name)} already exists in the chosen folder`,
        );
      }
      // getFileHandle(create) makes an empty file at once; it is removed on failure.
      const handle = await dir.getFileHandle(name, { create: true });
      const writable = await handle.createWritable({ keepExistingData: false });
      open.push({ name, writable });
      return writable;
    };
    try {
      const summary = await extractVma(reader, {
        config: async (config) => {
          if (!request.configs) return;
          const writable = await create(config.name);
          await writable.write(config.data as Uint8Array<ArrayBuffer>);
        },
        device: async (device) => {
          if (!chosen.has(device.name)) return undefined;
          const writable = await create(`disk-${device.name}.${format.ext}`);
          return await format.create(positioned(writable), device.size);
        },
      }, { onProgress: this.#progress() });
      // Only now do the names get their contents (close() swaps the swap files in).
      for (const { writable } of open) await writable.close();
      this.#done("extract", reader, start, summary, open.map((o) => o.name));
    } catch (error) {
      for (const { name, writable } of open) {
        await writable.abort().catch(() => {});
        await dir.removeEntry(name).catch(() => {});
      }
      throw error;
    }
  }

  #done(
    job: "verify" | "extract",
    reader: VmaReader,
    start: number,
    summary: { clusters: number; sparseBytes: number },
    files: string[],
  ): void {
    const seconds = (performance.now() - start) / 1000;
    this.#post({ type: "progress", done: 1, total: 1 });
    this.#post({
      type: "done",
      job,
      clusters: summary.clusters,
      sparseBytes: summary.sparseBytes,
      archiveBytes: reader.bytesRead,
      rate: reader.bytesRead / Math.max(seconds, 1e-6),
      seconds,
      files,
    });
  }
}

/** One line for the page: the error's own message (the reader's wording). */
function messageOf(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.split("\n")[0] || String(error);
}
