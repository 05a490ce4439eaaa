// The fuzzer's engine: valid base archives, a seeded mutation engine, and a
// case runner that feeds a mutated archive to verifyVma and extractVma and
// classifies the outcome. Used by tests/fuzz_test.ts (a bounded run) and
// tests/fuzz_main.ts (`deno task fuzz`), through tests/_fuzz_worker.ts.
//
// Every case is reproducible from (seed, index) alone: the mutation draws
// from a PRNG seeded with both.
import {
  extractVma,
  verifyVma,
  type VmaExtractTarget,
  VmaFormatError,
  VmaReader,
  VmaWriter,
} from "../mod.ts";
import { unsafeNameReason } from "../src/vma/_layout.ts";
import {
  BLOCK_SIZE,
  concat,
  DEV_INFO_SIZE,
  EXT_OFF_BLOCK_COUNT,
  EXT_OFF_BLOCKINFO,
  EXT_OFF_UUID,
  EXTENT_HEADER_SIZE,
  fixExtentMd5,
  fixHeaderMd5,
  getSlot,
  HEADER_FIXED_SIZE,
  OFF_BLOB_OFFSET,
  OFF_BLOB_SIZE,
  OFF_CONFIG_DATA,
  OFF_CONFIG_NAMES,
  OFF_DEV_INFO,
  OFF_HEADER_SIZE,
  OFF_VERSION,
  setSlot,
  SLOTS_PER_EXTENT,
  splitArchive,
  streamOf,
} from "./_craft.ts";

// ---------------------------------------------------------------------------
// PRNG

/** A small seeded PRNG (xorshift128+ over 32-bit halves, via sfc32). */
export class Rng {
  #a: number;
  #b: number;
  #c: number;
  #d: number;

  constructor(seed: number, stream = 0) {
    this.#a = 0x9e3779b9;
    this.#b = seed >>> 0;
    this.#c = stream >>> 0;
    this.#d = 1;
    for (let i = 0; i < 16; i++) this.u32();
  }

  /** A uniform 32-bit unsigned integer. */
  u32(): number {
    const t = (((this.#a + this.#b) | 0) + this.#d) | 0;
    this.#d = (this.#d + 1) | 0;
    this.#a = this.#b ^ (this.#b >>> 9);
    this.#b = (this.#c + (this.#c << 3)) | 0;
    this.#c = (this.#c << 21) | (this.#c >>> 11);
    this.#c = (this.#c + t) | 0;
    return t >>> 0;
  }

  /** An integer in `0 .. n-1`. */
  int(n: number): number {
    return n <= 0 ? 0 : Math.floor((this.u32() / 2 ** 32) * n);
  }

  /** An integer in `lo .. hi` (inclusive). */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.u32() / 2 ** 32 < p;
  }

  /** One of `items`. */
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  /** `n` random bytes. */
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.u32() & 0xff;
    return out;
  }
}

// ---------------------------------------------------------------------------
// Base archives

/** A valid archive to mutate. */
export interface BaseArchive {
  name: string;
  bytes: Uint8Array;
}

const FUZZ_UUID = "f0e1d2c3-b4a5-4697-8879-6a5b4c3d2e1f";
const FUZZ_CTIME = new Date("2026-11-24T12:00:00Z");

/** Bytes of a disk: runs of data, zero blocks and zero clusters, from a seed. */
function diskBytes(size: number, seed: number, sparse = false): Uint8Array {
  const rng = new Rng(seed, 7);
  const out = new Uint8Array(size);
  for (let at = 0; at < size; at += BLOCK_SIZE) {
    const cluster = Math.floor(at / 65536);
    if (cluster % 3 === 2 || (sparse && cluster % 8 !== 0)) continue; // whole zero clusters
    const kind = rng.int(4);
    const end = Math.min(size, at + BLOCK_SIZE);
    if (kind === 0) continue; // zero block
    if (kind === 1) out.fill((at >>> 12) & 0xff || 1, at, end);
    else if (kind === 2) out[at + rng.int(end - at)] = 0x5a; // one byte set
    else out.set(rng.bytes(end - at), at);
  }
  return out;
}

interface BaseSpec {
  name: string;
  configs: [string, string | Uint8Array][];
  devices: { name: string; size: number; zeroes?: boolean; sparse?: boolean }[];
  /** Write clusters in a shuffled order through `write` rather than in order. */
  shuffled?: boolean;
}

const BASE_SPECS: BaseSpec[] = [
  {
    name: "one disk, one config",
    configs: [["qemu-server.conf", "memory: 512\n#qmdump#map:scsi0:drive-scsi0:local:raw:\n"]],
    devices: [{ name: "drive-scsi0", size: 4 * 65536 }],
  },
  {
    name: "two disks with partial last clusters, two configs",
    configs: [["qemu-server.conf", "cores: 2\n"], ["qemu-server.fw", ""]],
    devices: [
      { name: "drive-scsi0", size: 2 * 65536 - 512 },
      { name: "drive-virtio1", size: 65536 + 4096 + 512 },
    ],
  },
  {
    name: "three disks interleaved, one of them all zero clusters",
    configs: [],
    devices: [
      { name: "drive-sata0", size: 70 * 65536, sparse: true },
      { name: "drive-ide0", size: 512 },
      { name: "drive-efidisk0", size: 5 * 65536, zeroes: true },
    ],
    shuffled: true,
  },
  {
    name: "configs only",
    configs: [["qemu-server.conf", "name: empty\n"], ["a.bin", new Uint8Array([0, 1, 2, 0])]],
    devices: [],
  },
  {
    name: "a disk and a vmstate",
    configs: [["qemu-server.conf", "vmstate: yes\n"]],
    devices: [{ name: "drive-scsi0", size: 3 * 65536 }, { name: "vmstate", size: 100_000 }],
  },
];

async function writeBase(spec: BaseSpec, seed: number): Promise<Uint8Array> {
  const writer = new VmaWriter({ uuid: FUZZ_UUID, ctime: FUZZ_CTIME });
  for (const [name, data] of spec.configs) writer.addConfig(name, data);
  const handles = spec.devices.map((d) => writer.addDevice(d.name, d.size));
  const out = new Response(writer.readable).bytes();
  const rng = new Rng(seed, 3);
  const jobs = spec.devices.map(async (d, i) => {
    const handle = handles[i];
    if (d.zeroes) return await handle.writeZeroes(0, d.size);
    const data = diskBytes(d.size, seed + i, d.sparse);
    if (!spec.shuffled || d.name === "vmstate") {
      return await ReadableStream.from([data]).pipeTo(handle.writable);
    }
    const order = Array.from({ length: Math.ceil(d.size / 65536) }, (_, c) => c);
    for (let k = order.length - 1; k > 0; k--) {
      const j = rng.int(k + 1);
      [order[k], order[j]] = [order[j], order[k]];
    }
    for (const c of order) {
      const chunk = data.subarray(c * 65536, Math.min(d.size, (c + 1) * 65536));
      if (chunk.every((b) => b === 0) && rng.chance(0.5)) {
        await handle.writeZeroes(c * 65536, chunk.length);
      } else await handle.write(c * 65536, chunk);
    }
    await handle.close();
  });
  await Promise.all(jobs);
  await writer.close();
  return await out;
}

async function gunzip(data: Uint8Array): Promise<Uint8Array> {
  const stream = ReadableStream.from([data]).pipeThrough(
    new DecompressionStream("gzip") as unknown as TransformStream<Uint8Array, Uint8Array>,
  );
  return await new Response(stream).bytes();
}

/** The base archives: written by VmaWriter in several layouts, plus Proxmox's fixtures. */
export async function baseArchives(): Promise<BaseArchive[]> {
  const bases: BaseArchive[] = [];
  for (const [i, spec] of BASE_SPECS.entries()) {
    bases.push({ name: spec.name, bytes: await writeBase(spec, 1000 + i) });
  }
  const testdata = new URL("./testdata/", import.meta.url);
  bases.push({
    name: "Proxmox small.vma",
    bytes: await gunzip(await Deno.readFile(new URL("small.vma.gz", testdata))),
  });
  bases.push({
    name: "Proxmox configs-only.vma",
    bytes: await Deno.readFile(new URL("configs-only.vma", testdata)),
  });
  return bases;
}

// ---------------------------------------------------------------------------
// Mutations

/** A mutated archive and what was done to it. */
export interface Mutant {
  base: string;
  bytes: Uint8Array;
  /** The mutations applied, in order. */
  steps: string[];
  /** Input chunk size the reader gets. */
  chunk: number;
  /** Whether the input is a byte stream (read through a BYOB reader). */
  byteStream: boolean;
}

type Mutator = (bytes: Uint8Array, rng: Rng) => { bytes: Uint8Array; step: string } | undefined;

const INTERESTING_U32 = [
  0,
  1,
  2,
  511,
  512,
  4095,
  4096,
  12287,
  12288,
  12289,
  65535,
  65536,
  0x7fffffff,
  0x80000000,
  0xfffffffe,
  0xffffffff,
];
const INTERESTING_U16 = [0, 1, 15, 16, 17, 943, 944, 945, 0x7fff, 0x8000, 0xfffe, 0xffff];

function headerSizeOf(bytes: Uint8Array): number {
  if (bytes.length < HEADER_FIXED_SIZE) return bytes.length;
  const size = new DataView(bytes.buffer, bytes.byteOffset).getUint32(OFF_HEADER_SIZE);
  return Math.min(size, bytes.length);
}

/** Walks the blob buffer as the reference reader does; returns the positions (absolute). */
function blobPositions(bytes: Uint8Array): number[] {
  if (bytes.length < HEADER_FIXED_SIZE) return [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const offset = view.getUint32(OFF_BLOB_OFFSET);
  const end = Math.min(offset + view.getUint32(OFF_BLOB_SIZE), headerSizeOf(bytes));
  const out: number[] = [];
  for (let at = offset + 1; at + 2 <= end && out.length < 1024;) {
    out.push(at);
    at += 2 + (bytes[at] | (bytes[at + 1] << 8));
  }
  return out;
}

function interestingU32(rng: Rng, current: number): number {
  switch (rng.int(4)) {
    case 0:
      return rng.pick(INTERESTING_U32);
    case 1:
      return (current + rng.range(-3, 3)) >>> 0;
    case 2:
      return (current + rng.pick([-512, 512, -4096, 4096, 65536])) >>> 0;
    default:
      return rng.u32();
  }
}

/** Region to aim a raw byte mutation at: the fixed header, blobs, an extent header, anywhere. */
function aimedPosition(bytes: Uint8Array, rng: Rng): number {
  const headerSize = headerSizeOf(bytes);
  switch (rng.int(5)) {
    case 0:
      return rng.int(Math.min(64, bytes.length)); // magic .. header_size
    case 1:
      return rng.int(Math.min(HEADER_FIXED_SIZE, bytes.length)); // tables
    case 2:
      return HEADER_FIXED_SIZE + rng.int(Math.max(1, headerSize - HEADER_FIXED_SIZE)); // blobs
    case 3: {
      const { extents } = splitArchive(bytes);
      if (extents.length === 0) return rng.int(bytes.length);
      const extent = rng.pick(extents);
      return extent.byteOffset - bytes.byteOffset + rng.int(EXTENT_HEADER_SIZE);
    }
    default:
      return rng.int(bytes.length);
  }
}

const bitFlip: Mutator = (bytes, rng) => {
  if (bytes.length === 0) return undefined;
  const out = bytes.slice();
  const n = rng.chance(0.7) ? 1 : rng.range(2, 8);
  const where: string[] = [];
  for (let i = 0; i < n; i++) {
    const at = Math.min(aimedPosition(bytes, rng), out.length - 1);
    const bit = rng.int(8);
    out[at] ^= 1 << bit;
    where.push(`${at}.${bit}`);
  }
  return { bytes: out, step: `flip bits ${where.join(",")}` };
};

const byteRun: Mutator = (bytes, rng) => {
  if (bytes.length === 0) return undefined;
  const out = bytes.slice();
  const at = Math.min(aimedPosition(bytes, rng), out.length - 1);
  const len = Math.min(out.length - at, rng.pick([1, 2, 4, 8, 16, 64, 512, 4096]));
  const kind = rng.int(3);
  if (kind === 0) out.fill(0, at, at + len);
  else if (kind === 1) out.fill(0xff, at, at + len);
  else out.set(rng.bytes(len), at);
  return { bytes: out, step: `byte run ${["0x00", "0xff", "random"][kind]} at ${at} len ${len}` };
};

const cut: Mutator = (bytes, rng) => {
  const { header, extents } = splitArchive(bytes);
  let length: number;
  switch (rng.int(4)) {
    case 0:
      length = rng.int(bytes.length);
      break;
    case 1: { // at an extent boundary (a missing tail of clusters)
      const boundaries = [header.length];
      let at = header.length;
      for (const e of extents) boundaries.push(at += e.length);
      length = rng.pick(boundaries);
      break;
    }
    case 2: // near the header end
      length = Math.max(0, header.length + rng.range(-600, 600));
      break;
    default:
      length = Math.max(0, bytes.length - rng.range(1, 5000));
  }
  length = Math.min(length, bytes.length);
  if (length === bytes.length) return undefined;
  return { bytes: bytes.slice(0, length), step: `cut to ${length} bytes` };
};

const append: Mutator = (bytes, rng) => {
  const n = rng.pick([1, 100, 511, 512, 513, 4096, rng.range(1, 10000)]);
  const tail = rng.chance(0.5) ? new Uint8Array(n) : rng.bytes(n);
  return { bytes: concat(bytes, tail), step: `append ${n} bytes` };
};

const HEADER_FIELDS: [string, number][] = [
  ["version", OFF_VERSION],
  ["blob_buffer_offset", OFF_BLOB_OFFSET],
  ["blob_buffer_size", OFF_BLOB_SIZE],
  ["header_size", OFF_HEADER_SIZE],
];

const headerField: Mutator = (bytes, rng) => {
  if (bytes.length < HEADER_FIXED_SIZE) return undefined;
  const out = bytes.slice();
  const view = new DataView(out.buffer);
  let name: string;
  let at: number;
  const kind = rng.int(4);
  if (kind === 0) {
    [name, at] = rng.pick(HEADER_FIELDS);
  } else if (kind === 1) {
    const slot = rng.int(rng.chance(0.8) ? 3 : 256);
    const table = rng.chance(0.5);
    name = `config_${table ? "names" : "data"}[${slot}]`;
    at = (table ? OFF_CONFIG_NAMES : OFF_CONFIG_DATA) + 4 * slot;
  } else {
    const id = rng.chance(0.8) ? rng.range(0, 4) : rng.range(0, 255);
    name = `dev_info[${id}].devname_ptr`;
    at = OFF_DEV_INFO + DEV_INFO_SIZE * id;
  }
  let value: number;
  if ((kind === 1 || kind === 2) && rng.chance(0.5)) {
    // Point at another blob, or into the middle of one.
    const blobs = blobPositions(out);
    const blobOffset = view.getUint32(OFF_BLOB_OFFSET);
    value = blobs.length > 0 ? rng.pick(blobs) - blobOffset + rng.pick([0, 0, 1, 2, -1]) : 0;
    value >>>= 0;
  } else value = interestingU32(rng, view.getUint32(at));
  view.setUint32(at, value);
  const fix = rng.chance(0.9);
  if (fix) fixHeaderMd5(out);
  return { bytes: out, step: `set ${name} to ${value}${fix ? "" : " (md5 not fixed)"}` };
};

const deviceSize: Mutator = (bytes, rng) => {
  if (bytes.length < HEADER_FIXED_SIZE) return undefined;
  const out = bytes.slice();
  const view = new DataView(out.buffer);
  const id = rng.chance(0.8) ? rng.range(1, 3) : rng.range(0, 255);
  const at = OFF_DEV_INFO + DEV_INFO_SIZE * id + 8;
  const current = view.getBigUint64(at);
  const value = rng.pick([
    0n,
    1n,
    511n,
    512n,
    65535n,
    65536n,
    current + 1n,
    current > 0n ? current - 1n : 0n,
    current + 512n,
    current > 65536n ? current - 65536n : 0n,
    current * 2n,
    current / 2n,
    2n ** 32n * 65536n,
    2n ** 53n - 1n,
    2n ** 53n,
    2n ** 64n - 1n,
    BigInt(rng.u32()) * BigInt(rng.u32()),
  ]) & (2n ** 64n - 1n);
  view.setBigUint64(at, value);
  fixHeaderMd5(out);
  return { bytes: out, step: `set dev_info[${id}].size to ${value}` };
};

const blobEdit: Mutator = (bytes, rng) => {
  const blobs = blobPositions(bytes);
  if (blobs.length === 0) return undefined;
  const out = bytes.slice();
  const at = rng.pick(blobs);
  const len = out[at] | (out[at + 1] << 8);
  let step: string;
  if (rng.chance(0.5) || len === 0) {
    const value = rng.pick([0, 1, len - 1, len + 1, len + 2, 0xffff, rng.int(0x10000)]) & 0xffff;
    out[at] = value & 0xff;
    out[at + 1] = value >>> 8;
    step = `set blob length at ${at} to ${value}`;
  } else {
    const pos = at + 2 + rng.int(len);
    const value = rng.pick([0, 0x2f, 0x2e, 0x5c, 0x01, 0x0a, 0x7f, 0x20, 0xc3, 0xff]);
    out[pos] = value;
    step = `set blob byte ${pos} to ${value}`;
  }
  fixHeaderMd5(out);
  return { bytes: out, step };
};

/** Rebuilds an archive from a header, extents and a rest. */
function join(header: Uint8Array, extents: Uint8Array[], rest: Uint8Array): Uint8Array {
  return concat(header, ...extents, rest);
}

const extentOrder: Mutator = (bytes, rng) => {
  const { header, extents, rest } = splitArchive(bytes);
  if (extents.length === 0) return undefined;
  const list = [...extents];
  let step: string;
  const i = rng.int(list.length);
  switch (rng.int(4)) {
    case 0: {
      const j = rng.int(list.length);
      [list[i], list[j]] = [list[j], list[i]];
      step = `swap extents ${i} and ${j}`;
      break;
    }
    case 1:
      list.splice(rng.int(list.length + 1), 0, list[i]);
      step = `repeat extent ${i}`;
      break;
    case 2:
      list.splice(i, 1);
      step = `drop extent ${i}`;
      break;
    default:
      list.reverse();
      step = "reverse the extents";
  }
  return { bytes: join(header, list, rest), step };
};

/** Edits one extent header (then recomputes its MD5 unless told not to). */
const extentEdit: Mutator = (bytes, rng) => {
  const { header, extents, rest } = splitArchive(bytes);
  if (extents.length === 0) return undefined;
  const list = extents.map((e) => e.slice());
  const index = rng.int(list.length);
  let extent = list[index];
  const view = new DataView(extent.buffer);
  const used: number[] = [];
  for (let s = 0; s < SLOTS_PER_EXTENT; s++) if (getSlot(view, s).devId !== 0) used.push(s);
  let step: string;
  const kind = rng.int(8);
  const slotIndex = used.length > 0 && rng.chance(0.85)
    ? rng.pick(used)
    : rng.int(SLOTS_PER_EXTENT);
  const slot = getSlot(view, slotIndex);
  switch (kind) {
    case 0: { // dev_id
      slot.devId = rng.pick([0, 1, 2, 3, 4, 254, 255, rng.int(256)]);
      setSlot(view, slotIndex, slot);
      step = `set extent ${index} slot ${slotIndex} dev_id to ${slot.devId}`;
      break;
    }
    case 1: { // cluster number
      slot.cluster = rng.chance(0.5)
        ? (slot.cluster + rng.range(-2, 70)) >>> 0
        : rng.pick([0, 1, 59, 65535, 65536, 0x7fffffff, 0xffffffff, rng.u32()]);
      setSlot(view, slotIndex, slot);
      step = `set extent ${index} slot ${slotIndex} cluster to ${slot.cluster}`;
      break;
    }
    case 2: { // mask, keeping block_count in step or not
      const old = slot.mask;
      slot.mask = rng.pick([0, 0xffff, 0x8000, 0x0001, old ^ (1 << rng.int(16)), rng.int(0x10000)]);
      setSlot(view, slotIndex, slot);
      let count = 0;
      for (let s = 0; s < SLOTS_PER_EXTENT; s++) {
        const x = getSlot(view, s);
        if (x.devId !== 0) count += popcount(x.mask);
      }
      const fixCount = rng.chance(0.5);
      if (fixCount) view.setUint16(EXT_OFF_BLOCK_COUNT, count);
      step = `set extent ${index} slot ${slotIndex} mask ${old} to ${slot.mask}${
        fixCount ? ` and block_count to ${count}` : ""
      }`;
      break;
    }
    case 3: { // duplicate a slot into another
      const target = rng.int(SLOTS_PER_EXTENT);
      setSlot(view, target, { ...slot, mask: rng.chance(0.5) ? 0 : slot.mask });
      step = `copy extent ${index} slot ${slotIndex} to slot ${target}`;
      break;
    }
    case 4: { // block_count alone (data length unchanged)
      const old = view.getUint16(EXT_OFF_BLOCK_COUNT);
      const value = rng.chance(0.5)
        ? Math.max(0, old + rng.pick([-2, -1, 1, 2]))
        : rng.pick(INTERESTING_U16);
      view.setUint16(EXT_OFF_BLOCK_COUNT, value);
      step = `set extent ${index} block_count ${old} to ${value}`;
      break;
    }
    case 5: { // block_count with the data grown or shrunk to match
      const old = view.getUint16(EXT_OFF_BLOCK_COUNT);
      const value = Math.max(0, Math.min(944, old + rng.pick([-3, -1, 1, 3])));
      view.setUint16(EXT_OFF_BLOCK_COUNT, value);
      const resized = new Uint8Array(EXTENT_HEADER_SIZE + value * BLOCK_SIZE);
      resized.set(extent.subarray(0, Math.min(extent.length, resized.length)));
      extent = resized;
      step = `set extent ${index} block_count ${old} to ${value} and resize its data`;
      break;
    }
    case 6: { // uuid, magic, reserved1
      const what = rng.int(3);
      if (what === 0) extent[EXT_OFF_UUID + rng.int(16)] ^= 1 << rng.int(8);
      else if (what === 1) extent[rng.int(4)] ^= 1 << rng.int(8);
      else view.setUint16(4, rng.range(1, 0xffff));
      step = `edit extent ${index} ${["uuid", "magic", "reserved1"][what]}`;
      break;
    }
    default: { // clear or fill random slots
      const n = rng.range(1, 4);
      for (let k = 0; k < n; k++) {
        const s = rng.int(SLOTS_PER_EXTENT);
        setSlot(view, s, {
          devId: rng.chance(0.3) ? 0 : rng.range(1, 4),
          cluster: rng.int(80),
          mask: rng.pick([0, 0xffff, rng.int(0x10000)]),
        });
      }
      step = `rewrite ${n} random slots of extent ${index}`;
    }
  }
  const fix = rng.chance(0.95);
  if (fix) fixExtentMd5(extent);
  list[index] = extent;
  return { bytes: join(header, list, rest), step: step + (fix ? "" : " (md5 not fixed)") };
};

function popcount(mask: number): number {
  let n = 0;
  for (let m = mask; m !== 0; m &= m - 1) n++;
  return n;
}

/** A hand-made extent of random slots (valid MD5 and uuid) inserted somewhere. */
const insertExtent: Mutator = (bytes, rng) => {
  const { header, extents, rest } = splitArchive(bytes);
  if (header.length < HEADER_FIXED_SIZE) return undefined;
  const uuid = header.slice(8, 24);
  const n = rng.range(0, 59);
  const head = new Uint8Array(EXTENT_HEADER_SIZE);
  const view = new DataView(head.buffer);
  head.set([0x56, 0x4d, 0x41, 0x45]);
  head.set(uuid, EXT_OFF_UUID);
  let blocks = 0;
  for (let s = 0; s < n; s++) {
    const mask = rng.pick([0, 0, 0xffff, rng.int(0x10000)]);
    setSlot(view, s, { devId: rng.range(0, 3), cluster: rng.int(100), mask });
    if (view.getUint8(EXT_OFF_BLOCKINFO + 8 * s + 3) !== 0) blocks += popcount(mask);
  }
  blocks = Math.min(blocks, 944);
  view.setUint16(EXT_OFF_BLOCK_COUNT, blocks);
  fixExtentMd5(head);
  const extent = concat(head, new Uint8Array(blocks * BLOCK_SIZE).fill(0x33));
  const list = [...extents];
  const at = rng.int(list.length + 1);
  list.splice(at, 0, extent);
  return { bytes: join(header, list, rest), step: `insert a random extent of ${n} slots at ${at}` };
};

const MUTATORS: [Mutator, number, string][] = [
  [bitFlip, 14, "bit flip"],
  [byteRun, 8, "byte run"],
  [cut, 10, "cut"],
  [append, 5, "append"],
  [headerField, 12, "header field"],
  [deviceSize, 8, "device size"],
  [blobEdit, 8, "blob edit"],
  [extentOrder, 10, "extent order"],
  [extentEdit, 20, "extent edit"],
  [insertExtent, 5, "insert extent"],
];
const TOTAL_WEIGHT = MUTATORS.reduce((n, [, w]) => n + w, 0);

/** Makes case `index` of the run with `seed`: a base archive and 1 to 3 mutations. */
export function makeCase(bases: readonly BaseArchive[], seed: number, index: number): Mutant {
  const rng = new Rng(seed, index);
  // The Proxmox fixture is 2 MiB; take it less often to keep runs fast.
  const base = rng.chance(0.08) ? bases.find((b) => b.name === "Proxmox small.vma")! : rng.pick(
    bases.filter((b) => b.name !== "Proxmox small.vma"),
  );
  let bytes = base.bytes;
  const steps: string[] = [];
  const n = rng.chance(0.6) ? 1 : rng.range(2, 3);
  for (let tries = 0; steps.length < n && tries < 20; tries++) {
    let pick = rng.int(TOTAL_WEIGHT);
    let mutator = MUTATORS[0][0];
    for (const [m, w] of MUTATORS) {
      if (pick < w) {
        mutator = m;
        break;
      }
      pick -= w;
    }
    const result = mutator(bytes, rng);
    if (result === undefined) continue;
    bytes = result.bytes;
    steps.push(result.step);
  }
  // Mostly whole or large chunks; tiny chunks cost a stream pull per byte, so
  // 1-byte chunks are rare and only for archives up to 200 KB.
  let chunk = rng.pick([bytes.length || 1, bytes.length || 1, 1 << 16, 4093, 512, 61]);
  if (bytes.length <= 200_000 && rng.chance(0.03)) chunk = 1;
  return { base: base.name, bytes, steps, chunk, byteStream: rng.chance(0.3) };
}

// ---------------------------------------------------------------------------
// Running a case

/** How a case ended. */
export type Outcome =
  | { kind: "ok" }
  | { kind: "format"; message: string }
  | { kind: "bug"; message: string; stack?: string };

/** A VmaFormatError message with its numbers (N) and names (S) blanked, to group outcomes. */
export function messageKind(message: string): string {
  return message.replace(/(name|device) "(?:[^"\\]|\\.)*"/g, '$1 "S"').replace(
    /stream \S+$/,
    "stream S",
  )
    .replace(/\d+/g, "N");
}

/** Runs `verifyVma`, then `extractVma` into checking in-memory sinks. */
export async function runCase(mutant: Mutant): Promise<Outcome> {
  const verify = await classify(() =>
    verifyVma(new VmaReader(streamOf(mutant.bytes, mutant.chunk, mutant.byteStream)))
  );
  const extract = await classify(() =>
    extractChecked(mutant.bytes, mutant.chunk, mutant.byteStream)
  );
  if (verify.kind === "bug") return verify;
  if (extract.kind === "bug") return extract;
  if (
    verify.kind !== extract.kind || (verify.kind === "format" && extract.kind === "format" &&
      verify.message !== extract.message)
  ) {
    return {
      kind: "bug",
      message: `verifyVma and extractVma disagree: ${describe(verify)} vs ${describe(extract)}`,
    };
  }
  return verify;
}

function describe(outcome: Outcome): string {
  return outcome.kind === "ok" ? "success" : `${outcome.kind}: ${outcome.message}`;
}

async function classify(run: () => Promise<unknown>): Promise<Outcome> {
  try {
    await run();
    return { kind: "ok" };
  } catch (error) {
    if (error instanceof VmaFormatError) {
      if (!Number.isSafeInteger(error.offset) || error.offset < 0) {
        return {
          kind: "bug",
          message: `VmaFormatError with offset ${error.offset}: ${error.message}`,
        };
      }
      return { kind: "format", message: error.message };
    }
    const e = error as Error;
    return { kind: "bug", message: `${e?.name}: ${e?.message ?? String(error)}`, stack: e?.stack };
  }
}

/**
 * Extracts into sinks that check every write: inside the device, on 4 KiB
 * boundaries or at the device end, never the same block twice, names safe as
 * file names. Throws an Error (not a VmaFormatError) on a violation.
 */
async function extractChecked(
  bytes: Uint8Array,
  chunk: number,
  byteStream: boolean,
): Promise<void> {
  const reader = new VmaReader(streamOf(bytes, chunk, byteStream));
  const checking = checkingTarget(bytes.length);
  await extractVma(reader, checking.target);
  checking.finish();
}

/**
 * An extract target whose sinks throw a plain Error on a write outside the
 * device, an unaligned or repeated block, an unsafe name, or more bytes
 * written than `limit`; `finish` checks every sink was closed.
 */
export function checkingTarget(limit: number): { target: VmaExtractTarget; finish(): void } {
  const seenConfigs = new Set<string>();
  let written = 0;
  let closed = 0;
  let opened = 0;
  const target: VmaExtractTarget = {
    config(config) {
      if (unsafeNameReason(config.name) !== undefined || seenConfigs.has(config.name)) {
        throw new Error(
          `extractVma gave an unsafe or repeated config name ${JSON.stringify(config.name)}`,
        );
      }
      seenConfigs.add(config.name);
    },
    device(device) {
      if (unsafeNameReason(device.name) !== undefined) {
        throw new Error(`extractVma gave an unsafe device name ${JSON.stringify(device.name)}`);
      }
      if (!Number.isSafeInteger(device.size) || device.size <= 0) {
        throw new Error(`extractVma gave a device of size ${device.size}`);
      }
      opened++;
      const blocks = new Set<number>();
      let next = 0; // vmstate is written sequentially
      return {
        write(offset, data) {
          if (!Number.isSafeInteger(offset) || offset < 0 || offset + data.length > device.size) {
            throw new Error(
              `extractVma wrote ${data.length} bytes at ${offset} to "${device.name}" of ${device.size} bytes`,
            );
          }
          if (data.length === 0) throw new Error("extractVma wrote 0 bytes");
          if (device.vmstate) {
            if (offset !== next) throw new Error(`vmstate write at ${offset}, expected ${next}`);
            next += data.length;
          } else {
            if (offset % BLOCK_SIZE !== 0) throw new Error(`unaligned write at ${offset}`);
            for (let b = offset / BLOCK_SIZE; b < (offset + data.length) / BLOCK_SIZE; b++) {
              if (blocks.has(b)) throw new Error(`block ${b} of "${device.name}" written twice`);
              blocks.add(b);
            }
          }
          written += data.length;
          if (written > limit) throw new Error("extractVma wrote more than the archive holds");
        },
        close() {
          closed++;
        },
      };
    },
  };
  return {
    target,
    finish() {
      if (closed !== opened) throw new Error(`extractVma closed ${closed} of ${opened} sinks`);
    },
  };
}

// ---------------------------------------------------------------------------
// Compressed framing: zstd (frames, skippable frames), gzip (members), lzop
// (headers, blocks, checksums, LZO1X data) through the CLI's decoders, and
// raw DEFLATE / zlib through src/compress/_inflate.ts. A case must decode, or
// fail with the decoder's one-line error; anything else (another error class,
// a multi-line message, a hang, memory growth) is a bug.

/** The compressed formats the fuzzer mutates. */
export type CompressedFormat = "zstd" | "gzip" | "lzop" | "deflate" | "zlib";

/** A valid compressed stream to mutate. */
export interface CompressedBase {
  name: string;
  format: CompressedFormat;
  bytes: Uint8Array;
}

/** Decoded bytes a case may produce before it is stopped (a bomb is not an error). */
export const COMPRESSED_OUTPUT_CAP = 8 << 20;

function zstdSkippable(size: number, nibble: number): Uint8Array {
  const frame = new Uint8Array(8 + size).fill(0xa5);
  const view = new DataView(frame.buffer);
  view.setUint32(0, 0x184d2a50 + nibble, true);
  view.setUint32(4, size, true);
  return frame;
}

/** The compressed bases: each format's framing, multi-frame/member streams and bombs. */
export async function compressedBases(): Promise<CompressedBase[]> {
  const zlib = await import("node:zlib");
  const u8 = (b: Uint8Array) => new Uint8Array(b);
  const testdata = new URL("./testdata/", import.meta.url);
  const small = await gunzip(await Deno.readFile(new URL("small.vma.gz", testdata)));
  const part = small.subarray(0, 200_000);
  const zstd = (b: Uint8Array, checksum = false) =>
    u8(zlib.zstdCompressSync(b, {
      params: { [zlib.constants.ZSTD_c_checksumFlag]: checksum ? 1 : 0 },
    }));
  const zeros = new Uint8Array(32 << 20);
  return [
    { name: "zstd frame with checksum", format: "zstd", bytes: zstd(part, true) },
    {
      name: "zstd frames and skippable frames",
      format: "zstd",
      bytes: concat(...[
        zstdSkippable(4, 0),
        zstd(part.subarray(0, 70_000)),
        zstdSkippable(0, 15),
        zstd(part.subarray(70_000), true),
        zstd(new Uint8Array(0)),
        zstdSkippable(9, 7),
      ]),
    },
    { name: "zstd bomb (32 MiB of zeros)", format: "zstd", bytes: zstd(zeros) },
    {
      name: "gzip members",
      format: "gzip",
      bytes: concat(...[
        u8(zlib.gzipSync(part.subarray(0, 50_000))),
        u8(zlib.gzipSync(part.subarray(50_000))),
      ]),
    },
    { name: "gzip bomb (32 MiB of zeros)", format: "gzip", bytes: u8(zlib.gzipSync(zeros)) },
    {
      name: "Proxmox small.vma.lzo",
      format: "lzop",
      bytes: await Deno.readFile(new URL("small.vma.lzo", testdata)),
    },
    { name: "deflate", format: "deflate", bytes: u8(zlib.deflateRawSync(part)) },
    { name: "deflate bomb", format: "deflate", bytes: u8(zlib.deflateRawSync(zeros)) },
    {
      name: "deflate fixed Huffman",
      format: "deflate",
      bytes: u8(zlib.deflateRawSync(part.subarray(0, 30_000), { strategy: 4 })),
    },
    {
      name: "deflate stored",
      format: "deflate",
      bytes: u8(zlib.deflateRawSync(part.subarray(0, 30_000), { level: 0 })),
    },
    { name: "zlib", format: "zlib", bytes: u8(zlib.deflateSync(part.subarray(0, 65_536))) },
  ];
}

/** A mutated compressed stream (never a byte stream). */
export interface CompressedMutant extends Mutant {
  format: CompressedFormat;
}

/** Overwrites a 1-4 byte little- or big-endian field with an interesting value. */
const fieldEdit: Mutator = (bytes, rng) => {
  if (bytes.length < 4) return undefined;
  // Headers live near the start; block headers anywhere.
  const at = rng.chance(0.5) ? rng.int(Math.min(64, bytes.length - 3)) : rng.int(bytes.length - 3);
  const width = rng.pick([1, 2, 3, 4]);
  const value = rng.pick([0, 1, 0x7f, 0x80, 0xff, 0xffff, 0x20000, 0x20001, 0xffffffff]) >>> 0;
  const out = bytes.slice();
  const little = rng.chance(0.5);
  for (let i = 0; i < width; i++) {
    const shift = 8 * (little ? i : width - 1 - i);
    out[at + i] = Number((BigInt(value) >> BigInt(shift)) & 0xffn);
  }
  return { bytes: out, step: `set ${width} bytes at ${at} to ${value} (${little ? "LE" : "BE"})` };
};

/** Repeats a range (a duplicated frame, member or block). */
const splice: Mutator = (bytes, rng) => {
  if (bytes.length < 2) return undefined;
  const from = rng.int(bytes.length);
  const length = rng.range(1, Math.min(bytes.length - from, 70_000));
  const at = rng.int(bytes.length + 1);
  const out = concat(...[
    bytes.subarray(0, at),
    bytes.subarray(from, from + length),
    bytes.subarray(at),
  ]);
  return { bytes: out, step: `copy ${length} bytes from ${from} to ${at}` };
};

/** Inserts a zstd skippable frame (its size possibly lying) at a random place. */
const insertSkippable: Mutator = (bytes, rng) => {
  const size = rng.range(0, 64);
  const frame = zstdSkippable(size, rng.int(16));
  if (rng.chance(0.3)) {
    new DataView(frame.buffer).setUint32(4, rng.pick([size + 1, 0x7fffffff, 0xffffffff]), true);
  }
  const at = rng.chance(0.5) ? 0 : rng.int(bytes.length + 1);
  return {
    bytes: concat(...[bytes.subarray(0, at), frame, bytes.subarray(at)]),
    step: `insert a skippable frame of ${size} bytes at ${at}`,
  };
};

const COMPRESSED_MUTATORS: [Mutator, number][] = [
  [bitFlip, 20],
  [byteRun, 8],
  [cut, 15],
  [append, 8],
  [fieldEdit, 20],
  [splice, 10],
  [insertSkippable, 6],
];
const COMPRESSED_WEIGHT = COMPRESSED_MUTATORS.reduce((n, [, w]) => n + w, 0);

/** Makes compressed case `index` of the run with `seed`: a base and 0 to 3 mutations. */
export function makeCompressedCase(
  bases: readonly CompressedBase[],
  seed: number,
  index: number,
): CompressedMutant {
  const rng = new Rng(seed ^ 0x5a5a5a5a, index);
  const base = rng.pick(bases);
  let bytes = base.bytes;
  const steps: string[] = [];
  // A few unmutated cases keep the success path in the run.
  const n = rng.chance(0.05) ? 0 : rng.chance(0.6) ? 1 : rng.range(2, 3);
  for (let tries = 0; steps.length < n && tries < 20; tries++) {
    let pick = rng.int(COMPRESSED_WEIGHT);
    let mutator = COMPRESSED_MUTATORS[0][0];
    for (const [m, w] of COMPRESSED_MUTATORS) {
      if (pick < w) {
        mutator = m;
        break;
      }
      pick -= w;
    }
    const result = mutator(bytes, rng);
    if (result === undefined) continue;
    bytes = result.bytes;
    steps.push(result.step);
  }
  // Small chunks cost a stream operation each: rare.
  const chunk = rng.chance(0.05)
    ? rng.pick([7, 61])
    : rng.pick([bytes.length || 1, bytes.length || 1, 1 << 16, 4093, 512]);
  return { base: base.name, format: base.format, bytes, steps, chunk, byteStream: false };
}

/** The one-line error each decoder must fail with, by format. */
const EXPECTED_ERROR: Record<CompressedFormat, RegExp> = {
  zstd: /^zstd decompression failed - [^\n]+$/,
  gzip: /^gzip decompression failed - [^\n]+$/,
  lzop: /^lzop decompression failed - [^\n]+$/,
  deflate: /^Invalid deflate data: [^\n]+$/,
  zlib: /^Invalid (?:deflate|zlib) data: [^\n]+$/,
};

/**
 * Decodes a compressed case: the CLI's decoders for zstd/gzip/lzop (stopped
 * after COMPRESSED_OUTPUT_CAP bytes), inflateRaw/inflateZlib into a buffer of
 * that size. "format" is the decoder's expected one-line error.
 */
export async function runCompressedCase(mutant: CompressedMutant): Promise<Outcome> {
  const expected = EXPECTED_ERROR[mutant.format];
  try {
    if (mutant.format === "deflate" || mutant.format === "zlib") {
      const { inflateRaw, inflateZlib } = await import("../src/compress/_inflate.ts");
      const out = new Uint8Array(COMPRESSED_OUTPUT_CAP);
      if (mutant.format === "deflate") inflateRaw(mutant.bytes, out);
      else inflateZlib(mutant.bytes, out);
    } else {
      const { decompress } = await import("../src/cli/_archive_input.ts");
      const reader = decompress(streamOf(mutant.bytes, mutant.chunk), mutant.format).getReader();
      let total = 0;
      for (;;) {
        const r = await reader.read();
        if (r.done) break;
        total += r.value.length;
        if (total > COMPRESSED_OUTPUT_CAP) {
          await reader.cancel("enough");
          break;
        }
      }
    }
    return { kind: "ok" };
  } catch (error) {
    const e = error as Error;
    const cli = e?.name === "CliError" || e instanceof SyntaxError;
    if (cli && expected.test(e.message)) return { kind: "format", message: e.message };
    return { kind: "bug", message: `${e?.name}: ${e?.message ?? String(error)}`, stack: e?.stack };
  }
}
