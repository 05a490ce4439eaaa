// The VHDX, VHD and VDI readers' fuzzer, run as its own process by
// tests/image/foreign_image_fuzz_test.ts (so a hang is caught by a watchdog
// and the memory is measured apart): seeded mutations of valid images made by
// qemu-img, each opened and read through openDiskImage with its format named.
// Mutations aim at the documented fields (headers, region and metadata
// tables, block tables) and, most of the time, fix the checksums afterwards
// so that they get past them. Prints one JSON line per case, then a summary.
//
//   deno run -A tests/image/_foreign_fuzz_main.ts --cases 500 --seed 1 [--case 17]
import { join } from "node:path";
import { openDiskImage } from "../../src/image/open_disk_image.ts";
import { crc32cWithZeroField } from "../../src/image/_crc32c.ts";
import { vpcChecksum } from "../../src/image/_vpc_header.ts";
import { Rng } from "../_fuzz.ts";
import { arg, ERROR_CLASS, memoryReader, outcome, put } from "./_fuzz_common.ts";
import { knownData, run } from "../_disk_image_helpers.ts";

const CASES = arg("--cases", 500);
const SEED = arg("--seed", 1);
const ONLY = arg("--case", -1);
/** Bytes one case may read from the virtual disk (a mutated size may be terabytes). */
const READ_BUDGET = 4 * 1024 * 1024;
/** Regions one case may walk. */
const REGION_BUDGET = 2000;
const MiB = 1024 * 1024;

type Format = "vhdx" | "vpc" | "vdi";

interface Base {
  name: string;
  bytes: Uint8Array;
  format: Format;
  /** Fields worth mutating: [offset, width in bytes, little-endian]. */
  fields: [number, number, boolean][];
}

function u32le(b: Uint8Array, at: number): number {
  return new DataView(b.buffer, b.byteOffset).getUint32(at, true);
}

/** The fields of each format, found in the base image from its own tables. */
function fieldsOf(format: Format, b: Uint8Array): [number, number, boolean][] {
  const fields: [number, number, boolean][] = [];
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (format === "vdi") {
    for (
      const [at, w] of [
        [68, 4],
        [76, 4],
        [340, 4],
        [344, 4],
        [360, 4],
        [368, 8],
        [376, 4],
        [380, 4],
        [384, 4],
        [440, 1],
      ]
    ) {
      fields.push([at, w, true]);
    }
    const map = u32le(b, 340);
    for (let i = 0; i < 8; i++) fields.push([map + i * 4, 4, true]);
  } else if (format === "vpc") {
    const ends = b.length - 512;
    for (const base of [0, ends]) {
      for (const [at, w] of [[16, 8], [28, 4], [48, 8], [56, 2], [58, 1], [59, 1], [60, 4]]) {
        fields.push([base + at, w, false]);
      }
    }
    if (b[0] === 0x63) { // dynamic: "conectix" at 0
      const dyn = Number(v.getBigUint64(16));
      for (const [at, w] of [[16, 8], [28, 4], [32, 4]]) fields.push([dyn + at, w, false]);
      const table = Number(v.getBigUint64(dyn + 16));
      for (let i = 0; i < 8; i++) fields.push([table + i * 4, 4, false]);
    }
  } else {
    for (const header of [64 * 1024, 128 * 1024]) {
      for (const [at, w] of [[8, 8], [48, 8], [56, 8], [64, 2], [66, 2], [68, 4], [72, 8]]) {
        fields.push([header + at, w, true]);
      }
    }
    const table = 192 * 1024;
    const count = u32le(b, table + 8);
    let bat = 0;
    let metadata = 0;
    for (let i = 0; i < count; i++) {
      const at = table + 16 + i * 32;
      for (const [f, w] of [[0, 4], [16, 8], [24, 4], [28, 4]]) fields.push([at + f, w, true]);
      const offset = Number(v.getBigUint64(at + 16, true));
      if (b[at] === 0x66) bat = offset; // 2DC27766...: stored little-endian, first byte 0x66
      else metadata = offset;
    }
    fields.push([table + 8, 4, true]);
    const items = v.getUint16(metadata + 10, true);
    fields.push([metadata + 10, 2, true]);
    for (let i = 0; i < items; i++) {
      const at = metadata + 32 + i * 32;
      for (const [f, w] of [[0, 4], [16, 4], [20, 4], [24, 4]]) fields.push([at + f, w, true]);
      const value = metadata + u32le(b, at + 16);
      fields.push([value, 4, true], [value + 4, 4, true]);
    }
    for (let i = 0; i < 8; i++) fields.push([bat + i * 8, 8, true]);
  }
  return fields.filter(([at, w]) => at >= 0 && at + w <= b.length);
}

/** Fixes every checksum of the format after a mutation. */
function reseal(format: Format, b: Uint8Array): void {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (format === "vhdx") {
    for (
      const [at, length] of [[64 * 1024, 4096], [128 * 1024, 4096], [192 * 1024, 65536], [
        256 * 1024,
        65536,
      ]]
    ) {
      if (at + length <= b.length) {
        v.setUint32(at + 4, crc32cWithZeroField(b.subarray(at, at + length), 4), true);
      }
    }
  } else if (format === "vpc" && b.length >= 512) {
    for (const at of [0, b.length - 512]) {
      const footer = b.subarray(at, at + 512);
      if (new TextDecoder().decode(footer.subarray(0, 8)) !== "conectix") continue;
      v.setUint32(at + 64, vpcChecksum(footer, 64));
      if (at === 0) {
        const dyn = Number(v.getBigUint64(16) & 0xffffffffn);
        if (dyn + 1024 <= b.length) {
          v.setUint32(dyn + 36, vpcChecksum(b.subarray(dyn, dyn + 1024), 36));
        }
      }
    }
  }
}

async function makeBases(): Promise<Base[]> {
  const dir = await Deno.makeTempDir({ prefix: "vmakit-foreign-fuzz-" });
  try {
    const raw = join(dir, "src.raw");
    const data = knownData(3 * MiB + 512, 5);
    data.fill(0, MiB, 2 * MiB);
    await Deno.writeFile(raw, data);
    const variants: [string, Format, string[]][] = [
      ["vhdx-1m", "vhdx", ["-o", "block_size=1M"]],
      ["vhdx-fixed", "vhdx", ["-o", "subformat=fixed,block_size=1M"]],
      ["vpc-dynamic", "vpc", []],
      ["vpc-fixed", "vpc", ["-o", "subformat=fixed"]],
      ["vdi-dynamic", "vdi", []],
      ["vdi-static", "vdi", ["-o", "static=on"]],
    ];
    const bases: Base[] = [];
    for (const [name, format, args] of variants) {
      const out = join(dir, `${name}.${format}`);
      await run("qemu-img", "convert", "-f", "raw", "-O", format, ...args, raw, out);
      const bytes = await Deno.readFile(out);
      bases.push({ name, bytes, format, fields: fieldsOf(format, bytes) });
    }
    return bases;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const INTERESTING = [
  0,
  1,
  2,
  3,
  5,
  6,
  7,
  8,
  9,
  255,
  256,
  511,
  512,
  4096,
  65535,
  65536,
  MiB,
  2 * MiB,
];

function interesting(rng: Rng, size: number): bigint {
  switch (rng.u32() % 6) {
    case 0:
      return BigInt(INTERESTING[rng.u32() % INTERESTING.length]);
    case 1:
      return BigInt(Math.max(0, size + (rng.u32() % 1024) - 512));
    case 2:
      return (1n << BigInt(rng.u32() % 64)) - BigInt(rng.u32() % 2);
    case 3:
      return 0xffffffffffffffffn - BigInt(rng.u32() % 4);
    case 4: // a BAT entry: a state and an offset in MiB
      return (BigInt(rng.u32() % 64) << 20n) | BigInt(rng.u32() % 8);
    default:
      return (BigInt(rng.u32()) << 32n) | BigInt(rng.u32());
  }
}

/** One mutation step on `bytes` (a copy); returns the bytes and a description. */
function mutate(rng: Rng, bytes: Uint8Array, base: Base): [Uint8Array, string] {
  switch (rng.u32() % 7) {
    case 0:
    case 1:
    case 2: {
      const [at, width, little] = base.fields[rng.u32() % base.fields.length];
      const value = interesting(rng, bytes.length);
      put(bytes, at, width, value, little);
      return [bytes, `field@${at}=${value}`];
    }
    case 3: {
      const at = rng.u32() % bytes.length;
      bytes[at] ^= 1 << (rng.u32() % 8);
      return [bytes, `flip@${at}`];
    }
    case 4: {
      const length = rng.u32() % bytes.length;
      return [bytes.subarray(0, length), `truncate ${length}`];
    }
    case 5: {
      // Somewhere in the first 2 MiB (the tables) or anywhere.
      const span = rng.u32() % 2 ? Math.min(bytes.length, 2 * MiB) : bytes.length;
      const at = rng.u32() % span;
      const n = Math.min(1 + rng.u32() % 64, bytes.length - at);
      for (let i = 0; i < n; i++) bytes[at + i] = rng.u32() & 0xff;
      return [bytes, `random ${n}@${at}`];
    }
    default: {
      const [at, width, little] = base.fields[rng.u32() % base.fields.length];
      put(bytes, at, width, BigInt(rng.u32()), little);
      return [bytes, `field@${at}=random`];
    }
  }
}

const PREFIX = /^(Not a|Corrupt|Unsupported|Oversized) (vhdx|vpc|vdi) image: /;

/** Whether an error is one of the documented ones (class matching its prefix, one line). */
function documented(error: unknown): boolean {
  if (!(error instanceof Error) || error.message.includes("\n")) return false;
  const m = PREFIX.exec(error.message);
  return m !== null && error.constructor === ERROR_CLASS[m[1]];
}

async function runCase(base: Base, mutant: Uint8Array) {
  const image = await openDiskImage(memoryReader(mutant), { format: base.format });
  try {
    let budget = READ_BUDGET;
    let regions = 0;
    let at = 0;
    for await (const region of image.regions()) {
      if (region.offset !== at) throw new Error(`region gap at ${at}`);
      at += region.length;
      if (++regions > REGION_BUDGET || budget <= 0) break;
      if (!region.zero) {
        const n = Math.min(region.length, budget, MiB);
        await image.read(region.offset, n);
        budget -= n;
      } else if (region.length > 0) {
        const n = Math.min(region.length, 4096);
        const zeros = await image.read(region.offset, n);
        if (zeros.some((byte) => byte !== 0)) throw new Error(`zero region at ${region.offset}`);
      }
    }
    if (image.size > 0) await image.read(image.size - 1, 1);
  } finally {
    await image.close();
  }
}

const bases = await makeBases();
const scratch = new Uint8Array(Math.max(...bases.map((b) => b.bytes.length)));
let peak = 0;
const started = performance.now();
const counts = { ok: 0, error: 0, bug: 0 };
for (let index = 0; index < CASES; index++) {
  if (ONLY >= 0 && index !== ONLY) continue;
  const rng = new Rng(SEED, index);
  const base = bases[rng.u32() % bases.length];
  // Mutated in one reused buffer: copies of the base images would be garbage
  // that counts in the peak RSS.
  let bytes: Uint8Array = scratch.subarray(0, base.bytes.length);
  bytes.set(base.bytes);
  const steps: string[] = [];
  for (let s = 1 + rng.u32() % 3; s > 0; s--) {
    const [next, step] = mutate(rng, bytes, base);
    bytes = next;
    steps.push(step);
  }
  if (rng.u32() % 10 < 7) {
    reseal(base.format, bytes);
    steps.push("reseal");
  }
  const result = await outcome(() => runCase(base, bytes), documented);
  counts[result.kind]++;
  peak = Math.max(peak, Deno.memoryUsage().rss);
  console.log(JSON.stringify({ case: index, base: base.name, steps, ...result }));
}
console.log(JSON.stringify({
  done: true,
  ...counts,
  seconds: (performance.now() - started) / 1000,
  rssPeak: peak,
}));
