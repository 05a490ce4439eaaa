/**
 * A read-only NBD server for one connection: the fixed newstyle handshake
 * (`NBD_OPT_GO`, `INFO`, `LIST`, `EXPORT_NAME`, `STRUCTURED_REPLY`,
 * `SET_META_CONTEXT`/`LIST_META_CONTEXT` for `base:allocation`), then
 * `NBD_CMD_READ`, `NBD_CMD_BLOCK_STATUS` and `NBD_CMD_DISC`. Writes are refused
 * with `EPERM`. The connection is any pair of byte streams; the caller
 * accepts sockets.
 *
 * Memory per connection is bounded: requests are served one at a time (the
 * rest wait in the transport), a read is sent in pieces of at most 1 MiB, and
 * option data over 64 KiB is skipped, not held.
 *
 * @module
 */
import type { DiskImageRegion } from "../image/disk_image.ts";
import type { NbdExport } from "./nbd_export.ts";
import { ByteReader } from "./_byte_reader.ts";

/** A connection to one NBD client: bytes from it and bytes to it (a `Deno.Conn` fits). */
export interface NbdConnection {
  /** The bytes the client sends. */
  readonly readable: ReadableStream<Uint8Array>;
  /** Where the server's replies go. */
  readonly writable: WritableStream<Uint8Array>;
}

/** The largest read or block status request served: 32 MiB. */
export const NBD_MAX_BLOCK = 32 * 1024 * 1024;

const NBDMAGIC = 0x4e42444d41474943n;
const IHAVEOPT = 0x49484156454f5054n;
const REPLY_MAGIC = 0x3e889045565a9n;
const REQUEST_MAGIC = 0x25609513;
const SIMPLE_REPLY_MAGIC = 0x67446698;
const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

const FLAG_FIXED_NEWSTYLE = 1;
const FLAG_NO_ZEROES = 2;

const OPT_EXPORT_NAME = 1;
const OPT_ABORT = 2;
const OPT_LIST = 3;
const OPT_INFO = 6;
const OPT_GO = 7;
const OPT_STRUCTURED_REPLY = 8;
const OPT_LIST_META_CONTEXT = 9;
const OPT_SET_META_CONTEXT = 10;

const REP_ACK = 1;
const REP_SERVER = 2;
const REP_INFO = 3;
const REP_META_CONTEXT = 4;
const REP_ERR_UNSUP = 0x80000001;
const REP_ERR_INVALID = 0x80000003;
const REP_ERR_UNKNOWN = 0x80000006;
const REP_ERR_TOO_BIG = 0x80000009;

const INFO_EXPORT = 0;
const INFO_BLOCK_SIZE = 3;

const TRANSMISSION_FLAGS = 1 | 2 | 256; // HAS_FLAGS | READ_ONLY | CAN_MULTI_CONN

const CMD_READ = 0;
const CMD_WRITE = 1;
const CMD_DISC = 2;
const CMD_TRIM = 4;
const CMD_WRITE_ZEROES = 6;
const CMD_BLOCK_STATUS = 7;
const CMD_FLAG_REQ_ONE = 8;
const CMD_FLAG_PAYLOAD_LEN = 32;

const REPLY_FLAG_DONE = 1;
const REPLY_TYPE_OFFSET_DATA = 1;
const REPLY_TYPE_OFFSET_HOLE = 2;
const REPLY_TYPE_BLOCK_STATUS = 5;
const REPLY_TYPE_ERROR = 0x8001;

const EPERM = 1;
const EIO = 5;
const EINVAL = 22;

const STATE_HOLE = 1;
const STATE_ZERO = 2;

const BASE_ALLOCATION = "base:allocation";
const META_CONTEXT_ID = 1;

/** Option data above this is skipped and answered NBD_REP_ERR_TOO_BIG. */
const MAX_OPTION_LENGTH = 64 * 1024;
/** Bytes read from the image and sent per piece. */
const PIECE = 1024 * 1024;
/** Most extents in one block status reply (8 bytes each). */
const MAX_EXTENTS = 64 * 1024;

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

class Bytes {
  readonly bytes: Uint8Array;
  readonly view: DataView;
  constructor(length: number) {
    this.bytes = new Uint8Array(length);
    this.view = new DataView(this.bytes.buffer);
  }
}

/**
 * Where the data of read replies is put together: a fresh buffer per piece,
 * or one buffer per connection reused once the previous write has settled.
 */
class ReplyBuffers {
  readonly #reuse: boolean;
  #buffer: Bytes | undefined;
  constructor(reuse: boolean) {
    this.#reuse = reuse;
  }
  /** A buffer of `length` bytes (at most `PIECE` plus a header). */
  get(length: number): Bytes {
    if (!this.#reuse) return new Bytes(length);
    this.#buffer ??= new Bytes(32 + PIECE);
    return this.#buffer;
  }
}

/** Options of {@linkcode serveNbd}. */
export interface ServeNbdOptions {
  /**
   * Reuse one buffer per connection for the data of read replies once the
   * previous write to `connection.writable` has settled, instead of a fresh
   * buffer per piece (up to 1 MiB each, garbage once sent). Only for a
   * writable that is done with a chunk when its write settles, as a socket's
   * is; not for one that keeps chunks (a `TransformStream`, say).
   *
   * @default {false}
   */
  reuseBuffers?: boolean;
  /**
   * Called when a read of an export fails (the client gets an `EIO` reply,
   * as an error chunk after the data already sent with structured replies;
   * with simple replies a client that was already sent part of the data is
   * disconnected), with the export's name, the request and the image's
   * error message.
   */
  onReadError?: (name: string, offset: number, length: number, message: string) => void;
}

/** The end of a connection: the client went away or broke the protocol. */
class Disconnect extends Error {}

/** Where a connection is: what it negotiated. */
interface Session {
  noZeroes: boolean;
  structured: boolean;
  /** The export whose `base:allocation` context was selected, if any. */
  metaExport: string | undefined;
}

/**
 * Serves one NBD client over `connection` until it disconnects, aborts or
 * breaks the protocol; never throws for anything the client sends. The
 * exports are served read-only; an empty export name means the first.
 *
 * @example Serving an in-memory disk to a client that only asks the exports
 * ```ts
 * import { openRawImage, serveNbd } from "@vmakit/vma";
 * import assert from "node:assert/strict";
 *
 * const bytes = new Uint8Array(4096);
 * const image = await openRawImage({
 *   size: bytes.length,
 *   read: (p, n) => Promise.resolve(bytes.slice(p, p + n)),
 *   close: () => Promise.resolve(),
 * });
 * const toServer = new TransformStream<Uint8Array, Uint8Array>();
 * const toClient = new TransformStream<Uint8Array, Uint8Array>();
 * const done = serveNbd(
 *   { readable: toServer.readable, writable: toClient.writable },
 *   [{ name: "drive-scsi0", image }],
 * );
 * const writer = toServer.writable.getWriter();
 * const received = new Response(toClient.readable).bytes();
 * await writer.write(new Uint8Array([0, 0, 0, 3])); // client flags: fixed newstyle, no zeroes
 * // NBD_OPT_ABORT
 * await writer.write(new Uint8Array([73, 72, 65, 86, 69, 79, 80, 84, 0, 0, 0, 2, 0, 0, 0, 0]));
 * await done;
 * const reply = await received;
 * assert.equal(new TextDecoder().decode(reply.subarray(0, 8)), "NBDMAGIC");
 * assert.equal(reply.length, 18 + 20); // greeting, then the ACK of NBD_OPT_ABORT
 * ```
 *
 * @param connection The client's byte streams; both are closed at the end.
 * @param exports The exports, by unique name.
 * @param options Whether to reuse reply buffers; who hears of failed reads.
 * @returns When the client is gone.
 * @throws {TypeError} Two exports have the same name.
 */
export async function serveNbd(
  connection: NbdConnection,
  exports: readonly NbdExport[],
  options: ServeNbdOptions = {},
): Promise<void> {
  const byName = new Map<string, NbdExport>();
  for (const e of exports) {
    if (byName.has(e.name)) {
      throw new TypeError(`Duplicate NBD export name ${JSON.stringify(e.name)}`);
    }
    byName.set(e.name, e);
  }
  const input = new ByteReader(connection.readable);
  const writer = connection.writable.getWriter();
  try {
    const chosen = await negotiate(input, writer, exports, byName);
    if (chosen) {
      const buffers = new ReplyBuffers(options.reuseBuffers === true);
      await transmit(input, writer, chosen.export, chosen.session, buffers, options.onReadError);
    }
  } catch {
    // The client went away, broke the protocol, or a write to it failed: the connection ends.
  } finally {
    await input.cancel();
    await writer.close().catch(() => {});
  }
}

async function need(input: ByteReader, n: number): Promise<Uint8Array> {
  const bytes = await input.read(n);
  if (bytes === null) throw new Disconnect("client went away");
  return bytes;
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

async function negotiate(
  input: ByteReader,
  writer: WritableStreamDefaultWriter<Uint8Array>,
  exports: readonly NbdExport[],
  byName: Map<string, NbdExport>,
): Promise<{ export: NbdExport; session: Session } | undefined> {
  const greeting = new Bytes(18);
  greeting.view.setBigUint64(0, NBDMAGIC);
  greeting.view.setBigUint64(8, IHAVEOPT);
  greeting.view.setUint16(16, FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES);
  await writer.write(greeting.bytes);
  const clientFlags = view(await need(input, 4)).getUint32(0);
  if ((clientFlags & ~(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES)) !== 0) {
    throw new Disconnect("unknown client flags");
  }
  const session: Session = {
    noZeroes: (clientFlags & FLAG_NO_ZEROES) !== 0,
    structured: false,
    metaExport: undefined,
  };
  const lookup = (name: string) => name === "" ? exports[0] : byName.get(name);

  for (;;) {
    const head = view(await need(input, 16));
    if (head.getBigUint64(0) !== IHAVEOPT) throw new Disconnect("bad option magic");
    const option = head.getUint32(8);
    const length = head.getUint32(12);
    const reply = (type: number, data: Uint8Array = new Uint8Array(0)) =>
      writer.write(optionReply(option, type, data));
    if (length > MAX_OPTION_LENGTH) {
      if (option === OPT_EXPORT_NAME) throw new Disconnect("export name too long");
      if (!await input.skip(length)) throw new Disconnect("client went away");
      await reply(REP_ERR_TOO_BIG, encoder.encode("option data too long"));
      continue;
    }
    const data = await need(input, length);
    switch (option) {
      case OPT_EXPORT_NAME: {
        const chosen = lookup(decodeName(data) ?? "\0");
        if (!chosen) throw new Disconnect("unknown export");
        const out = new Bytes(session.noZeroes ? 10 : 134);
        out.view.setBigUint64(0, BigInt(chosen.image.size));
        out.view.setUint16(8, TRANSMISSION_FLAGS);
        await writer.write(out.bytes);
        return { export: chosen, session };
      }
      case OPT_ABORT:
        await reply(REP_ACK).catch(() => {});
        return undefined;
      case OPT_LIST: {
        if (length !== 0) {
          await reply(REP_ERR_INVALID, encoder.encode("NBD_OPT_LIST takes no data"));
          break;
        }
        for (const e of exports) {
          const name = encoder.encode(e.name);
          const out = new Bytes(4 + name.length);
          out.view.setUint32(0, name.length);
          out.bytes.set(name, 4);
          await reply(REP_SERVER, out.bytes);
        }
        await reply(REP_ACK);
        break;
      }
      case OPT_STRUCTURED_REPLY:
        if (length !== 0) {
          await reply(REP_ERR_INVALID, encoder.encode("NBD_OPT_STRUCTURED_REPLY takes no data"));
          break;
        }
        session.structured = true;
        await reply(REP_ACK);
        break;
      case OPT_INFO:
      case OPT_GO: {
        const request = parseInfoRequest(data);
        if (!request) {
          await reply(REP_ERR_INVALID, encoder.encode("malformed request"));
          break;
        }
        const chosen = lookup(request.name);
        if (!chosen) {
          await reply(REP_ERR_UNKNOWN, encoder.encode("no such export"));
          break;
        }
        const info = new Bytes(12);
        info.view.setUint16(0, INFO_EXPORT);
        info.view.setBigUint64(2, BigInt(chosen.image.size));
        info.view.setUint16(10, TRANSMISSION_FLAGS);
        await reply(REP_INFO, info.bytes);
        const sizes = new Bytes(14);
        sizes.view.setUint16(0, INFO_BLOCK_SIZE);
        sizes.view.setUint32(2, 1);
        sizes.view.setUint32(6, 4096);
        sizes.view.setUint32(10, NBD_MAX_BLOCK);
        await reply(REP_INFO, sizes.bytes);
        await reply(REP_ACK);
        if (option === OPT_GO) {
          if (session.metaExport !== undefined && lookup(session.metaExport) !== chosen) {
            session.metaExport = undefined;
          }
          return { export: chosen, session };
        }
        break;
      }
      case OPT_LIST_META_CONTEXT:
      case OPT_SET_META_CONTEXT: {
        const request = parseMetaRequest(data);
        if (!request) {
          await reply(REP_ERR_INVALID, encoder.encode("malformed request"));
          break;
        }
        const set = option === OPT_SET_META_CONTEXT;
        if (set && !session.structured) {
          await reply(REP_ERR_INVALID, encoder.encode("structured replies not negotiated"));
          break;
        }
        if (!lookup(request.name)) {
          await reply(REP_ERR_UNKNOWN, encoder.encode("no such export"));
          break;
        }
        const matches = request.queries.length === 0
          ? !set
          : request.queries.some((q) => q === BASE_ALLOCATION || (!set && q === "base:"));
        if (set) session.metaExport = matches ? request.name : undefined;
        if (matches) {
          const name = encoder.encode(BASE_ALLOCATION);
          const out = new Bytes(4 + name.length);
          out.view.setUint32(0, set ? META_CONTEXT_ID : 0);
          out.bytes.set(name, 4);
          await reply(REP_META_CONTEXT, out.bytes);
        }
        await reply(REP_ACK);
        break;
      }
      default:
        await reply(REP_ERR_UNSUP, encoder.encode("option not supported"));
    }
  }
}

function optionReply(option: number, type: number, data: Uint8Array): Uint8Array {
  const out = new Bytes(20 + data.length);
  out.view.setBigUint64(0, REPLY_MAGIC);
  out.view.setUint32(8, option);
  out.view.setUint32(12, type);
  out.view.setUint32(16, data.length);
  out.bytes.set(data, 20);
  return out.bytes;
}

function decodeName(bytes: Uint8Array): string | undefined {
  try {
    return decoder.decode(bytes);
  } catch {
    return undefined;
  }
}

/** NBD_OPT_INFO/GO data: name length, name, count of info requests, the requests. */
function parseInfoRequest(data: Uint8Array): { name: string } | undefined {
  if (data.length < 6) return undefined;
  const v = view(data);
  const nameLength = v.getUint32(0);
  if (nameLength > data.length - 6) return undefined;
  const count = v.getUint16(4 + nameLength);
  if (data.length !== 6 + nameLength + 2 * count) return undefined;
  const name = decodeName(data.subarray(4, 4 + nameLength));
  return name === undefined ? undefined : { name };
}

/** NBD_OPT_*_META_CONTEXT data: name length, name, count of queries, each length + query. */
function parseMetaRequest(data: Uint8Array): { name: string; queries: string[] } | undefined {
  if (data.length < 8) return undefined;
  const v = view(data);
  const nameLength = v.getUint32(0);
  if (nameLength > data.length - 8) return undefined;
  const name = decodeName(data.subarray(4, 4 + nameLength));
  if (name === undefined) return undefined;
  const count = v.getUint32(4 + nameLength);
  let at = 8 + nameLength;
  const queries: string[] = [];
  for (let i = 0; i < count; i++) {
    if (data.length - at < 4) return undefined;
    const length = v.getUint32(at);
    if (length > data.length - at - 4) return undefined;
    const query = decodeName(data.subarray(at + 4, at + 4 + length));
    if (query === undefined) return undefined;
    queries.push(query);
    at += 4 + length;
  }
  return at === data.length ? { name, queries } : undefined;
}

/**
 * The regions of an image from a given offset on: keeps one iterator, so
 * reads in increasing order walk the regions once.
 */
class RegionCursor {
  #image: NbdExport["image"];
  #iterator: AsyncIterator<DiskImageRegion> | undefined;
  #current: DiskImageRegion | undefined;

  constructor(image: NbdExport["image"]) {
    this.#image = image;
  }

  /** The region holding `offset` (which is below the image size). */
  async at(offset: number): Promise<DiskImageRegion> {
    if (!this.#current || offset < this.#current.offset) await this.#restart();
    while (!this.#current || offset >= this.#current.offset + this.#current.length) {
      const next = await this.#iterator!.next();
      if (next.done) {
        // Regions must cover the disk; treat a short list as data.
        const end = this.#current ? this.#current.offset + this.#current.length : 0;
        this.#current = { offset: end, length: this.#image.size - end, zero: false };
        continue;
      }
      this.#current = next.value;
    }
    return this.#current;
  }

  async #restart(): Promise<void> {
    await this.close();
    this.#iterator = this.#image.regions()[Symbol.asyncIterator]();
    this.#current = undefined;
  }

  async close(): Promise<void> {
    const it = this.#iterator;
    this.#iterator = undefined;
    this.#current = undefined;
    await it?.return?.();
  }
}

async function transmit(
  input: ByteReader,
  writer: WritableStreamDefaultWriter<Uint8Array>,
  nbdExport: NbdExport,
  session: Session,
  buffers: ReplyBuffers,
  onReadError: ServeNbdOptions["onReadError"],
): Promise<void> {
  const image = nbdExport.image;
  const cursor = new RegionCursor(image);
  try {
    for (;;) {
      const head = view(await need(input, 28));
      if (head.getUint32(0) !== REQUEST_MAGIC) throw new Disconnect("bad request magic");
      const flags = head.getUint16(4);
      const type = head.getUint16(6);
      const cookie = head.getBigUint64(8);
      const offset = Number(head.getBigUint64(16));
      const length = head.getUint32(24);
      const error = (code: number, message: string) =>
        writer.write(errorReply(session.structured, cookie, code, message));

      if (type === CMD_DISC) return;
      if (type === CMD_WRITE) {
        // The payload follows: drop it to stay in step, then refuse.
        if (!await input.skip(length)) throw new Disconnect("client went away");
        await error(EPERM, "the export is read-only");
        continue;
      }
      if ((flags & CMD_FLAG_PAYLOAD_LEN) !== 0) throw new Disconnect("unexpected payload");
      if (type === CMD_TRIM || type === CMD_WRITE_ZEROES) {
        await error(EPERM, "the export is read-only");
        continue;
      }
      if (type !== CMD_READ && type !== CMD_BLOCK_STATUS) {
        await error(EINVAL, "command not supported");
        continue;
      }
      // Block status may ask more than the maximum block size (the reply is small).
      if (length === 0 || (type === CMD_READ && length > NBD_MAX_BLOCK)) {
        await error(EINVAL, `request length ${length} is not within 1 .. ${NBD_MAX_BLOCK}`);
        continue;
      }
      if (offset > image.size || length > image.size - offset) {
        await error(EINVAL, "request past the end of the export");
        continue;
      }
      if (type === CMD_BLOCK_STATUS) {
        if (!session.structured || session.metaExport === undefined) {
          await error(EINVAL, "no metadata context negotiated");
          continue;
        }
        await writer.write(
          await blockStatus(cursor, cookie, offset, length, (flags & CMD_FLAG_REQ_ONE) !== 0),
        );
        continue;
      }
      try {
        if (session.structured) {
          await readStructured(image, cursor, writer, buffers, cookie, offset, length);
        } else {
          await readSimple(image, writer, buffers, cookie, offset, length);
        }
      } catch (e) {
        if (e instanceof ReadFailure) {
          onReadError?.(nbdExport.name, offset, length, e.message);
          // A simple reply's header said "no error" already: only closing the
          // connection tells the client. A structured reply ends with an
          // error chunk instead, after the data chunks already sent.
          if (e.sent && !session.structured) {
            throw new Disconnect("read failed after data was sent");
          }
          await error(EIO, e.message);
          continue;
        }
        throw e;
      }
    }
  } finally {
    await cursor.close().catch(() => {});
  }
}

/** A failed image read; `sent` when part of the reply was already on the wire. */
class ReadFailure extends Error {
  constructor(message: string, readonly sent: boolean) {
    super(message);
  }
}

/** An image that can also read into the caller's memory (a `VmaDiskImage` can). */
type ReadIntoImage = NbdExport["image"] & {
  readInto(offset: number, target: Uint8Array): Promise<void>;
};

function canReadInto(image: NbdExport["image"]): image is ReadIntoImage {
  return typeof (image as Partial<ReadIntoImage>).readInto === "function";
}

/** Reads `target.length` bytes of the image at `offset` into `target`. */
async function readImage(
  image: NbdExport["image"],
  offset: number,
  target: Uint8Array,
  sent: boolean,
): Promise<void> {
  try {
    if (canReadInto(image)) {
      await image.readInto(offset, target);
      return;
    }
    const data = await image.read(offset, target.length);
    if (data.length !== target.length) {
      throw new RangeError(`the image gave ${data.length} bytes, not ${target.length}`);
    }
    target.set(data);
  } catch (e) {
    throw new ReadFailure(e instanceof Error ? e.message : String(e), sent);
  }
}

function structuredHeader(
  out: Bytes,
  flags: number,
  type: number,
  cookie: bigint,
  length: number,
): void {
  out.view.setUint32(0, STRUCTURED_REPLY_MAGIC);
  out.view.setUint16(4, flags);
  out.view.setUint16(6, type);
  out.view.setBigUint64(8, cookie);
  out.view.setUint32(16, length);
}

function errorReply(structured: boolean, cookie: bigint, code: number, message: string) {
  if (!structured) {
    const out = new Bytes(16);
    out.view.setUint32(0, SIMPLE_REPLY_MAGIC);
    out.view.setUint32(4, code);
    out.view.setBigUint64(8, cookie);
    return out.bytes;
  }
  const text = encoder.encode(message).subarray(0, 4096);
  const out = new Bytes(20 + 6 + text.length);
  structuredHeader(out, REPLY_FLAG_DONE, REPLY_TYPE_ERROR, cookie, 6 + text.length);
  out.view.setUint32(20, code);
  out.view.setUint16(24, text.length);
  out.bytes.set(text, 26);
  return out.bytes;
}

async function readSimple(
  image: NbdExport["image"],
  writer: WritableStreamDefaultWriter<Uint8Array>,
  buffers: ReplyBuffers,
  cookie: bigint,
  offset: number,
  length: number,
): Promise<void> {
  // The first piece is read before the header goes out, so an error can still be reported.
  const first = Math.min(PIECE, length);
  const out = buffers.get(16 + first);
  await readImage(image, offset, out.bytes.subarray(16, 16 + first), false);
  out.bytes.fill(0, 0, 16);
  out.view.setUint32(0, SIMPLE_REPLY_MAGIC);
  out.view.setBigUint64(8, cookie);
  await writer.write(out.bytes.subarray(0, 16 + first));
  for (let at = first; at < length;) {
    const n = Math.min(PIECE, length - at);
    const piece = buffers.get(n).bytes.subarray(0, n);
    await readImage(image, offset + at, piece, true);
    await writer.write(piece);
    at += n;
  }
}

async function readStructured(
  image: NbdExport["image"],
  cursor: RegionCursor,
  writer: WritableStreamDefaultWriter<Uint8Array>,
  buffers: ReplyBuffers,
  cookie: bigint,
  offset: number,
  length: number,
): Promise<void> {
  const end = offset + length;
  let at = offset;
  let sent = false;
  while (at < end) {
    const region = await cursor.at(at);
    const stop = Math.min(end, region.offset + region.length, region.zero ? end : at + PIECE);
    const last = stop === end ? REPLY_FLAG_DONE : 0;
    let out: Bytes;
    if (region.zero) {
      out = new Bytes(32);
      structuredHeader(out, last, REPLY_TYPE_OFFSET_HOLE, cookie, 12);
      out.view.setBigUint64(20, BigInt(at));
      out.view.setUint32(28, stop - at);
    } else {
      const n = stop - at;
      out = buffers.get(28 + n);
      await readImage(image, at, out.bytes.subarray(28, 28 + n), sent);
      structuredHeader(out, last, REPLY_TYPE_OFFSET_DATA, cookie, 8 + n);
      out.view.setBigUint64(20, BigInt(at));
    }
    await writer.write(out.bytes.subarray(0, region.zero ? 32 : 28 + (stop - at)));
    sent = true;
    at = stop;
  }
}

async function blockStatus(
  cursor: RegionCursor,
  cookie: bigint,
  offset: number,
  length: number,
  one: boolean,
): Promise<Uint8Array> {
  const end = offset + length;
  const extents: { length: number; flags: number }[] = [];
  let at = offset;
  while (at < end && extents.length < (one ? 1 : MAX_EXTENTS)) {
    const region = await cursor.at(at);
    const stop = Math.min(end, region.offset + region.length);
    const flags = region.zero ? STATE_HOLE | STATE_ZERO : 0;
    const previous = extents.at(-1);
    if (previous && previous.flags === flags) previous.length += stop - at;
    else extents.push({ length: stop - at, flags });
    at = stop;
  }
  const out = new Bytes(24 + 8 * extents.length);
  structuredHeader(out, REPLY_FLAG_DONE, REPLY_TYPE_BLOCK_STATUS, cookie, 4 + 8 * extents.length);
  out.view.setUint32(20, META_CONTEXT_ID);
  extents.forEach((e, i) => {
    out.view.setUint32(24 + 8 * i, e.length);
    out.view.setUint32(28 + 8 * i, e.flags);
  });
  return out.bytes;
}
