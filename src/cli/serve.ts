/**
 * `vma serve [--socket <path> | --listen <host>:<port>] <archive>`: every
 * device of an archive exported read-only over NBD, each export named after
 * its device, until SIGINT or SIGTERM.
 *
 * @module
 */
import * as fs from "node:fs";
import { extractVma } from "../vma/extract_vma.ts";
import type { DiskImage, DiskImageRegion } from "../image/disk_image.ts";
import { openRawImage } from "../image/raw_image.ts";
import type { NbdExport } from "../nbd/nbd_export.ts";
import { serveNbd } from "../nbd/nbd_server.ts";
import { lastString } from "./_args.ts";
import { defineCommand } from "./_command.ts";
import { openArchive, toCliError } from "./_archive.ts";
import { CliError, describeError, UsageError } from "./_errors.ts";
import { onCleanup } from "./_cleanup.ts";
import { FileSink } from "./_file_sink.ts";
import { filePositionedReader } from "./_raw_source.ts";
import { quote } from "./_quote.ts";
import { writeStderr } from "./_stdio.ts";

const SYNOPSIS = "usage: vma serve [--socket <path> | --listen <host>:<port>] <archive>";
const DEFAULT_HOST = "127.0.0.1";
const DEFAULT_PORT = 10809;
/** Clients served at once; more are disconnected at once. */
const MAX_CLIENTS = 64;

/** Where to listen: a Unix socket or a TCP address. */
type Address = { socket: string } | { hostname: string; port: number };

function address(socket: string | undefined, listen: string | undefined): Address {
  if (socket !== undefined && listen !== undefined) {
    throw new UsageError("--socket and --listen cannot be used together", "serve");
  }
  if (socket !== undefined) {
    if (socket === "") throw new UsageError("invalid --socket '' (a path)", "serve");
    return { socket };
  }
  if (listen === undefined) return { hostname: DEFAULT_HOST, port: DEFAULT_PORT };
  const m = /^(?:\[([^\]]+)\]|([^:\[\]]*)):(\d{1,5})$/.exec(listen);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) {
    throw new UsageError(`invalid --listen ${quote(listen)} (<host>:<port>)`, "serve");
  }
  return { hostname: m[1] ?? (m[2] || DEFAULT_HOST), port };
}

/** The URL a client uses for `name` at `where`. */
function url(where: Address, name: string): string {
  const path = encodeURIComponent(name);
  if ("socket" in where) return `nbd+unix:///${path}?socket=${where.socket}`;
  const host = where.hostname.includes(":") ? `[${where.hostname}]` : where.hostname;
  return `nbd://${host}:${where.port}/${path}`;
}

/**
 * A raw file whose regions are found by reading it: every all-zero 64 KiB
 * block is a zero region. Part of the temporary-copy seam below.
 */
function scannedImage(image: DiskImage): DiskImage {
  const STEP = 65536;
  const CHUNK = 16 * STEP;
  return {
    format: image.format,
    size: image.size,
    read: (offset, length) => image.read(offset, length),
    close: () => image.close(),
    async *regions(): AsyncGenerator<DiskImageRegion> {
      let start = 0;
      let zero = true;
      for (let at = 0; at < image.size; at += CHUNK) {
        const bytes = await image.read(at, Math.min(CHUNK, image.size - at));
        for (let b = 0; b < bytes.length; b += STEP) {
          const piece = bytes.subarray(b, b + STEP);
          const isZero = piece.every((x) => x === 0);
          if (at + b === 0) zero = isZero;
          else if (isZero !== zero) {
            yield { offset: start, length: at + b - start, zero };
            start = at + b;
            zero = isZero;
          }
        }
      }
      if (image.size > start) yield { offset: start, length: image.size - start, zero };
    },
  };
}

/**
 * THE SEAM the index replaces: each device's `DiskImage`. For now the archive
 * (any compression) is extracted once into sparse temporary files under
 * `dir`, served as raw images. With the index (issue 13 part A) this becomes
 * `openVmaDisk(index, reader, device)` per device, without the copy.
 */
async function openDeviceImages(filename: string, dir: string): Promise<NbdExport[]> {
  const { reader, header } = await openArchive(filename);
  const files = new Map<string, string>();
  try {
    await extractVma(reader, {
      device: (device) => {
        const path = `${dir}/${device.id}.raw`;
        files.set(device.name, path);
        return FileSink.create(path, device.size);
      },
    });
  } catch (e) {
    await reader.cancel().catch(() => {});
    throw toCliError(e, "serve failed - ");
  }
  const exports: NbdExport[] = [];
  for (const device of header.devices) {
    const path = files.get(device.name)!;
    const file = await Deno.open(path, { read: true });
    const raw = await openRawImage(filePositionedReader(file, device.size));
    exports.push({ name: device.name, image: scannedImage(raw) });
  }
  return exports;
}

/** `vma serve`. */
export const serve = defineCommand({
  name: "serve",
  synopsis: SYNOPSIS,
  help: `${SYNOPSIS}

Exports every device of the archive read-only over NBD, each export named
after its device (drive-scsi0, ...), until SIGINT (Ctrl-C) or SIGTERM. Reads,
block status (base:allocation: zero regions are reported as holes) and
up to 64 clients at once; writes are refused. The archive may be compressed.
For now the archive is first extracted into a temporary directory (removed
on exit), which needs the devices' space.

Options:
      --socket <path>        listen on a new Unix socket (removed on exit)
      --listen <host>:<port> listen on TCP (default 127.0.0.1:10809,
                             loopback only)
  -h, --help                 show this help

Clients: nbdinfo --list 'nbd+unix:///?socket=<path>',
  qemu-img convert -O raw 'nbd+unix:///drive-scsi0?socket=<path>' disk.raw,
  nbdfuse, qemu-nbd or nbd-client, then mount -o ro.
`,
  options: {
    socket: { type: "string" },
    listen: { type: "string" },
  },
  positionals: ["<archive>"],
  async run(values, [filename]) {
    const where = address(lastString(values.socket), lastString(values.listen));
    const dir = await Deno.makeTempDir({ prefix: "vma-serve-" });
    const removeDir = () => fs.rmSync(dir, { recursive: true, force: true });
    const forgetDir = onCleanup(removeDir);
    const exports = await openDeviceImages(filename, dir);
    if (exports.length === 0) {
      for (const e of exports) await e.image.close();
      throw new CliError(`nothing to serve: ${quote(filename)} has no devices`);
    }
    let listener: Deno.Listener;
    try {
      listener = "socket" in where
        ? Deno.listen({ transport: "unix", path: where.socket })
        : Deno.listen({ transport: "tcp", hostname: where.hostname, port: where.port });
    } catch (e) {
      for (const x of exports) await x.image.close();
      const at = "socket" in where ? where.socket : `${where.hostname}:${where.port}`;
      throw new CliError(`cannot listen on ${quote(at)}: ${describeError(e)}`, { cause: e });
    }
    const removeSocket = () => {
      if ("socket" in where) fs.rmSync(where.socket, { force: true });
    };
    const forgetSocket = onCleanup(removeSocket);
    // From here a signal is the normal way to stop: close everything and return 0.
    forgetDir();
    forgetSocket();
    const connections = new Set<Deno.Conn>();
    let stopping: string | undefined;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = signal;
      listener.close();
      for (const c of connections) {
        try {
          c.close();
        } catch {
          // already closed
        }
      }
    };
    const signals: [Deno.Signal, () => void][] = [
      ["SIGINT", () => stop("SIGINT")],
      ["SIGTERM", () => stop("SIGTERM")],
    ];
    for (const [s, h] of signals) Deno.addSignalListener(s, h);
    writeStderr(
      `vma: serving ${exports.map((e) => quote(e.name)).join(", ")} at ${url(where, "")}\n`,
    );
    const served = new Set<Promise<void>>();
    try {
      for await (const conn of listener) {
        if (connections.size >= MAX_CLIENTS) {
          // Each client holds up to a few MiB: past the cap, a new one is hung up on.
          conn.close();
          continue;
        }
        connections.add(conn);
        const done: Promise<void> = serveNbd(conn, exports).catch(() => {}).finally(() => {
          connections.delete(conn);
          served.delete(done);
          try {
            conn.close();
          } catch {
            // already closed by the server or the client
          }
        });
        served.add(done);
      }
    } catch (e) {
      if (!stopping) throw new CliError(`serve failed - ${describeError(e)}`, { cause: e });
    } finally {
      for (const [s, h] of signals) Deno.removeSignalListener(s, h);
      stop("end");
      await Promise.all([...served]);
      for (const e of exports) await e.image.close().catch(() => {});
      removeSocket();
      removeDir();
    }
    writeStderr(`vma: stopped by ${stopping}\n`);
    return 0;
  },
});
