/**
 * `vma serve [--socket <path> | --listen <host>:<port>] <archive>`: every
 * device of an archive exported read-only over NBD, each export named after
 * its device, until SIGINT or SIGTERM.
 *
 * @module
 */
import * as fs from "node:fs";
import type { NbdExport } from "../nbd/nbd_export.ts";
import { serveNbd } from "../nbd/nbd_server.ts";
import { lastString } from "./_args.ts";
import { defineCommand } from "./_command.ts";
import { CliError, describeError, UsageError } from "./_errors.ts";
import { onCleanup } from "./_cleanup.ts";
import { oneLine, quote } from "./_quote.ts";
import { writeStderr } from "./_stdio.ts";
import { type IndexedArchive, openIndexedArchive } from "./_indexed_archive.ts";

const SYNOPSIS =
  "usage: vma serve [--socket <path> | --listen <host>:<port>] [--save-index] <archive>";
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

/** Every device of an indexed archive as an export (random access, nothing copied). */
async function openExports(archive: IndexedArchive): Promise<NbdExport[]> {
  const exports: NbdExport[] = [];
  try {
    for (const device of archive.index.header.devices) {
      exports.push({ name: device.name, image: await archive.openDisk(device.name) });
    }
  } catch (e) {
    for (const x of exports) await x.image.close().catch(() => {});
    throw e;
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
up to 64 clients at once; writes are refused. The archive is first read once
whole and checked, as verify does, to index where each cluster is; clients'
reads then go straight to the file. A .vma.zst with a seek table (as vma
create writes) is read in place; any other compressed archive (.zst, .gz,
.lzo) or standard input is spooled, decompressed, to a temporary file next to
the archive (sparse where the archive has zeros), removed on exit. A read
that fails is an I/O error for the client and a line on stderr. With
--save-index, the index of a plain archive file is saved as <archive>.vmaidx,
and later runs start at once while the archive is the same file, unchanged.

Options:
      --socket <path>        listen on a new Unix socket (removed on exit)
      --listen <host>:<port> listen on TCP (default 127.0.0.1:10809,
                             loopback only)
      --save-index           save the index as <archive>.vmaidx
  -h, --help                 show this help

Clients: nbdinfo --list 'nbd+unix:///?socket=<path>',
  qemu-img convert -O raw 'nbd+unix:///drive-scsi0?socket=<path>' disk.raw,
  nbdfuse, qemu-nbd or nbd-client, then mount -o ro.
`,
  options: {
    socket: { type: "string" },
    listen: { type: "string" },
    "save-index": { type: "boolean" },
  },
  positionals: ["<archive>"],
  async run(values, [filename]) {
    const where = address(lastString(values.socket), lastString(values.listen));
    const archive = await openIndexedArchive(filename, "serve", {
      saveIndex: values["save-index"] === true,
      check(header) {
        if (header.devices.length === 0) {
          throw new CliError(`nothing to serve: ${quote(filename)} has no devices`);
        }
      },
    });
    let exports: NbdExport[];
    try {
      exports = await openExports(archive);
    } catch (e) {
      archive.close();
      throw e;
    }
    let listener: Deno.Listener;
    try {
      listener = "socket" in where
        ? Deno.listen({ transport: "unix", path: where.socket })
        : Deno.listen({ transport: "tcp", hostname: where.hostname, port: where.port });
    } catch (e) {
      for (const x of exports) await x.image.close();
      archive.close();
      const at = "socket" in where ? where.socket : `${where.hostname}:${where.port}`;
      throw new CliError(`cannot listen on ${quote(at)}: ${describeError(e)}`, { cause: e });
    }
    const removeSocket = () => {
      if ("socket" in where) fs.rmSync(where.socket, { force: true });
    };
    const forgetSocket = onCleanup(removeSocket);
    // From here a signal is the normal way to stop: close everything and return 0.
    archive.keepOnSignal();
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
    // The client gets EIO; whoever runs the server hears why.
    const onReadError = (name: string, offset: number, length: number, message: string) =>
      writeStderr(
        `vma: read of ${quote(name)} at ${offset} (${length} bytes) failed - ${oneLine(message)}\n`,
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
        const done: Promise<void> = serveNbd(conn, exports, { reuseBuffers: true, onReadError })
          .catch(() => {})
          .finally(() => {
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
      archive.close();
    }
    writeStderr(`vma: stopped by ${stopping}\n`);
    return 0;
  },
});
