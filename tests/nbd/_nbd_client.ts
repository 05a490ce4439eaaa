// A scripted NBD client over an in-memory connection, for the protocol tests.
import { type NbdExport, serveNbd, type ServeNbdOptions } from "../../mod.ts";
import { ByteReader } from "../../src/nbd/_byte_reader.ts";

export const IHAVEOPT = 0x49484156454f5054n;
export const REPLY_MAGIC = 0x3e889045565a9n;

/** One end of an in-memory connection to a running server. */
export class ScriptedClient {
  readonly input: ByteReader;
  readonly writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly served: Promise<void>;

  constructor(exports: readonly NbdExport[], options: ServeNbdOptions = {}) {
    const toServer = new TransformStream<Uint8Array, Uint8Array>();
    const toClient = new TransformStream<Uint8Array, Uint8Array>();
    this.served = serveNbd(
      { readable: toServer.readable, writable: toClient.writable },
      exports,
      options,
    );
    this.input = new ByteReader(toClient.readable);
    this.writer = toServer.writable.getWriter();
  }

  send(bytes: Uint8Array): Promise<void> {
    return this.writer.write(bytes);
  }

  async read(n: number): Promise<DataView> {
    const bytes = await this.input.read(n);
    if (!bytes) throw new Error(`server closed before ${n} bytes`);
    return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  async readBytes(n: number): Promise<Uint8Array> {
    const bytes = await this.input.read(n);
    if (!bytes) throw new Error(`server closed before ${n} bytes`);
    return bytes;
  }

  /** True when the server has closed its side (nothing more to read). */
  async closed(): Promise<boolean> {
    return (await this.input.read(1)) === null;
  }

  /** Reads the greeting and sends the client flags. */
  async handshake(flags = 3): Promise<number> {
    const g = await this.read(18);
    const handshakeFlags = g.getUint16(16);
    await this.send(u32(flags));
    return handshakeFlags;
  }

  async option(option: number, data: Uint8Array = new Uint8Array(0), length = data.length) {
    const head = new DataView(new ArrayBuffer(16));
    head.setBigUint64(0, IHAVEOPT);
    head.setUint32(8, option);
    head.setUint32(12, length);
    await this.send(new Uint8Array(head.buffer));
    if (data.length) await this.send(data);
  }

  /** Reads one option reply. */
  async reply(): Promise<{ option: number; type: number; data: Uint8Array }> {
    const h = await this.read(20);
    if (h.getBigUint64(0) !== REPLY_MAGIC) throw new Error("bad reply magic");
    const length = h.getUint32(16);
    return { option: h.getUint32(8), type: h.getUint32(12), data: await this.readBytes(length) };
  }

  async request(type: number, offset: number, length: number, cookie = 7n, flags = 0) {
    await this.send(request(type, offset, length, cookie, flags));
  }

  /** Reads one structured reply chunk. */
  async chunk(): Promise<{ flags: number; type: number; cookie: bigint; data: Uint8Array }> {
    const h = await this.read(20);
    if (h.getUint32(0) !== 0x668e33ef) throw new Error("bad structured reply magic");
    const length = h.getUint32(16);
    return {
      flags: h.getUint16(4),
      type: h.getUint16(6),
      cookie: h.getBigUint64(8),
      data: await this.readBytes(length),
    };
  }

  /** Reads one simple reply header: the error and cookie. */
  async simple(): Promise<{ error: number; cookie: bigint }> {
    const h = await this.read(16);
    if (h.getUint32(0) !== 0x67446698) throw new Error("bad simple reply magic");
    return { error: h.getUint32(4), cookie: h.getBigUint64(8) };
  }
}

export function u32(n: number): Uint8Array {
  const v = new DataView(new ArrayBuffer(4));
  v.setUint32(0, n);
  return new Uint8Array(v.buffer);
}

export function request(type: number, offset: number, length: number, cookie = 7n, flags = 0) {
  const v = new DataView(new ArrayBuffer(28));
  v.setUint32(0, 0x25609513);
  v.setUint16(4, flags);
  v.setUint16(6, type);
  v.setBigUint64(8, cookie);
  v.setBigUint64(16, BigInt(offset));
  v.setUint32(24, length);
  return new Uint8Array(v.buffer);
}

/** NBD_OPT_INFO/GO data for `name` with no info requests. */
export function infoData(name: string): Uint8Array {
  const n = new TextEncoder().encode(name);
  const out = new Uint8Array(4 + n.length + 2);
  new DataView(out.buffer).setUint32(0, n.length);
  out.set(n, 4);
  return out;
}

/** NBD_OPT_*_META_CONTEXT data. */
export function metaData(name: string, queries: string[]): Uint8Array {
  const enc = new TextEncoder();
  const parts = [u32(enc.encode(name).length), enc.encode(name), u32(queries.length)];
  for (const q of queries) parts.push(u32(enc.encode(q).length), enc.encode(q));
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
