// The image readers' fuzzer, run as its own process by
// tests/image/image_fuzz_test.ts (so a hang is caught by a watchdog and the
// memory is measured apart): seeded mutations of valid qcow2 and VMDK images
// made by qemu-img, each opened and read through openDiskImage. Prints one
// JSON line per case, then a summary line.
//
//   deno run -A tests/image/_image_fuzz_main.ts --cases 500 --seed 1 [--case 17]
import { join } from "node:path";
import { zstdDecompressSync } from "node:zlib";
import { openDiskImage } from "../../src/image/open_disk_image.ts";
import { Rng } from "../_fuzz.ts";
import { arg, ERROR_CLASS, memoryReader, outcome, put } from "./_fuzz_common.ts";
import { knownData, run } from "../_disk_image_helpers.ts";

const CASES = arg("--cases", 500);
const SEED = arg("--seed", 1);
const ONLY = arg("--case", -1);
/** Bytes one case may read from the virtual disk (a mutated size may be petabytes). */
const READ_BUDGET = 4 * 1024 * 1024;
/** Regions one case may walk. */
const REGION_BUDGET = 2000;

interface Base {
  name: string;
  bytes: Uint8Array;
  /** Other files the image names (VMDK extents), by name. */
  files: Map<string, Uint8Array>;
  format: "qcow2" | "vmdk";
}

async function makeBases(): Promise<Base[]> {
  const dir = await Deno.makeTempDir({ prefix: "vmakit-image-fuzz-" });
  try {
    const raw = join(dir, "src.raw");
    await Deno.writeFile(raw, knownData(300 * 1024 + 512, 5));
    const variants: [string, "qcow2" | "vmdk", string[]][] = [
      ["qcow2-v2", "qcow2", ["-o", "compat=0.10,cluster_size=4096"]],
      ["qcow2-v3", "qcow2", ["-o", "cluster_size=4096"]],
      ["qcow2-zlib", "qcow2", ["-c", "-o", "cluster_size=4096"]],
      ["qcow2-zstd-l2x", "qcow2", [
        "-c",
        "-o",
        "compression_type=zstd,extended_l2=on,cluster_size=16k",
      ]],
      ["vmdk-sparse", "vmdk", ["-o", "subformat=monolithicSparse"]],
      ["vmdk-stream", "vmdk", ["-o", "subformat=streamOptimized"]],
      ["vmdk-2gb", "vmdk", ["-o", "subformat=twoGbMaxExtentSparse"]],
      ["vmdk-flat", "vmdk", ["-o", "subformat=monolithicFlat"]],
    ];
    const bases: Base[] = [];
    for (const [name, format, args] of variants) {
      const sub = join(dir, name);
      await Deno.mkdir(sub);
      const out = join(sub, `${name}.${format}`);
      await run("qemu-img", "convert", "-f", "raw", "-O", format, ...args, raw, out);
      const files = new Map<string, Uint8Array>();
      for await (const entry of Deno.readDir(sub)) {
        if (entry.name !== `${name}.${format}`) {
          files.set(entry.name, await Deno.readFile(join(sub, entry.name)));
        }
      }
      bases.push({ name, bytes: await Deno.readFile(out), files, format });
    }
    return bases;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const INTERESTING = [0, 1, 2, 7, 8, 9, 16, 21, 22, 63, 64, 255, 256, 511, 512, 4096, 65535, 65536];

function interesting(rng: Rng, size: number): bigint {
  switch (rng.u32() % 5) {
    case 0:
      return BigInt(INTERESTING[rng.u32() % INTERESTING.length]);
    case 1:
      return BigInt(size + (rng.u32() % 1024) - 512) & 0xffffffffffffffffn;
    case 2:
      return (1n << BigInt(rng.u32() % 64)) - BigInt(rng.u32() % 2);
    case 3:
      return 0xffffffffffffffffn - BigInt(rng.u32() % 4);
    default:
      return (BigInt(rng.u32()) << 32n) | BigInt(rng.u32());
  }
}

/** Header fields (offset, width) of each format, from the specs. */
const QCOW2_FIELDS = [
  [4, 4],
  [8, 8],
  [16, 4],
  [20, 4],
  [24, 8],
  [32, 4],
  [36, 4],
  [40, 8],
  [72, 8],
  [
    100,
    4,
  ],
  [104, 1],
];
const VMDK_FIELDS = [[4, 4], [8, 4], [12, 8], [20, 8], [28, 8], [36, 8], [44, 4], [56, 8], [77, 2]];

/** A table entry of the image (an L1/L2 or grain directory/table entry), found from the header. */
function tableEntry(
  rng: Rng,
  bytes: Uint8Array,
  format: string,
): [number, number, boolean] | undefined {
  if (bytes.length < 512) return undefined;
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (format === "qcow2") {
    const l1 = Number(v.getBigUint64(40) & 0xffffffffn);
    if (l1 + 8 > bytes.length) return undefined;
    if (rng.u32() % 2 === 0) return [l1, 8, false];
    const l2 = Number(v.getBigUint64(l1) & 0xfffffffe00n);
    if (l2 === 0 || l2 + 4096 > bytes.length) return undefined;
    return [l2 + 8 * (rng.u32() % 512), 8, false];
  }
  if (v.getUint32(0, true) !== 0x564d444b) return undefined;
  let gd = Number(v.getBigUint64(56, true) & 0xffffffffn) * 512;
  if (v.getBigUint64(56, true) === 0xffffffffffffffffn) {
    const footer = Math.floor(bytes.length / 512) * 512 - 1024;
    if (footer < 0) return undefined;
    gd = Number(v.getBigUint64(footer + 56, true) & 0xffffffffn) * 512;
  }
  if (gd + 4 > bytes.length) return undefined;
  if (rng.u32() % 2 === 0) return [gd, 4, true];
  const gt = v.getUint32(gd, true) * 512;
  if (gt === 0 || gt + 2048 > bytes.length) return undefined;
  return [gt + 4 * (rng.u32() % 512), 4, true];
}

function mutateText(rng: Rng, bytes: Uint8Array): [Uint8Array, string] {
  let text = new TextDecoder().decode(bytes);
  const lines = text.split("\n");
  const i = rng.u32() % lines.length;
  switch (rng.u32() % 4) {
    case 0:
      lines.splice(i, 0, ...new Array(1 + rng.u32() % 200).fill(lines[i]));
      text = lines.join("\n");
      return [new TextEncoder().encode(text), `duplicate line ${i}`];
    case 1:
      lines[i] = lines[i].replace(/\d+/, String(interesting(rng, 0)));
      return [new TextEncoder().encode(lines.join("\n")), `number in line ${i}`];
    case 2:
      lines[i] = lines[i].replace(/"([^"]*)"/, `"../$1\\n"`);
      return [new TextEncoder().encode(lines.join("\n")), `name in line ${i}`];
    default:
      lines.splice(i, 1);
      return [new TextEncoder().encode(lines.join("\n")), `delete line ${i}`];
  }
}

/** One mutation step on `bytes` (a copy); returns its description. */
function mutate(rng: Rng, bytes: Uint8Array, format: string): [Uint8Array, string] {
  const isText = bytes.length > 0 && bytes[0] === 0x23; // "#"
  if (isText) return mutateText(rng, bytes);
  const little = format === "vmdk";
  switch (rng.u32() % 6) {
    case 0:
    case 1: {
      const fields = format === "qcow2" ? QCOW2_FIELDS : VMDK_FIELDS;
      const [at, width] = fields[rng.u32() % fields.length];
      const value = interesting(rng, bytes.length);
      put(bytes, at, width, value, little);
      return [bytes, `header@${at}=${value}`];
    }
    case 2: {
      const entry = tableEntry(rng, bytes, format);
      if (entry === undefined) return [bytes, "no table"];
      const [at, width] = entry;
      const value = interesting(rng, bytes.length);
      put(bytes, at, width, value, little);
      return [bytes, `table@${at}=${value}`];
    }
    case 3: {
      const at = rng.u32() % bytes.length;
      bytes[at] ^= 1 << (rng.u32() % 8);
      return [bytes, `flip@${at}`];
    }
    case 4: {
      const length = rng.u32() % bytes.length;
      return [bytes.slice(0, length), `truncate ${length}`];
    }
    default: {
      const at = rng.u32() % bytes.length;
      const n = Math.min(1 + rng.u32() % 64, bytes.length - at);
      for (let i = 0; i < n; i++) bytes[at + i] = rng.u32() & 0xff;
      return [bytes, `random ${n}@${at}`];
    }
  }
}

const PREFIX = /^(Not a|Corrupt|Unsupported|Oversized) (qcow2|vmdk) image: /;

/** Whether an error is one of the documented ones (class matching its prefix). */
function documented(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  // Errors about referenced files keep the class of the cause.
  const message = error.message.replace(
    /^(Cannot open the (backing|extent) file "(?:[^"\\]|\\.)*": )+/,
    "",
  );
  if (message.includes("\n")) return false;
  const m = PREFIX.exec(message);
  if (m !== null) {
    return error instanceof ERROR_CLASS[m[1]] && error.constructor === ERROR_CLASS[m[1]];
  }
  // Format detection (open_disk_image.ts): a mutated header that now names another format.
  if (message.startsWith("Unsupported image format: ")) return error.constructor === TypeError;
  return /^(no such extent|no (openBacking|openFile) option was given)/.test(message) ||
    message.startsWith("Invalid vmdk image: the file size") ||
    message.startsWith("Invalid qcow2 image: the file size");
}

async function runCase(base: Base, mutant: Uint8Array, files: Map<string, Uint8Array>) {
  const reader = memoryReader(mutant);
  const image = await openDiskImage(reader, {
    format: "auto",
    zstd: (data, max) => Promise.resolve(zstdDecompressSync(data, { maxOutputLength: max })),
    openFile: (name) => {
      const bytes = files.get(name);
      if (bytes === undefined) return Promise.reject(new TypeError(`no such extent`));
      return Promise.resolve(memoryReader(bytes));
    },
  });
  try {
    let budget = READ_BUDGET;
    let regions = 0;
    for await (const region of image.regions()) {
      if (++regions > REGION_BUDGET || budget <= 0) break;
      if (!region.zero) {
        const n = Math.min(region.length, budget, 1024 * 1024);
        await image.read(region.offset, n);
        budget -= n;
      }
    }
    if (image.size > 0) await image.read(image.size - 1, 1);
  } finally {
    await image.close();
  }
  return base.name;
}

const bases = await makeBases();
let peak = 0;
const started = performance.now();
const counts = { ok: 0, error: 0, bug: 0 };
for (let index = 0; index < CASES; index++) {
  if (ONLY >= 0 && index !== ONLY) continue;
  const rng = new Rng(SEED, index);
  const base = bases[rng.u32() % bases.length];
  // Mutate the image file itself or, for a descriptor, sometimes an extent file.
  const files = new Map(base.files);
  let target = "image";
  let bytes: Uint8Array = base.bytes.slice();
  if (files.size > 0 && rng.u32() % 2 === 0) {
    target = [...files.keys()][rng.u32() % files.size];
    bytes = files.get(target)!.slice();
  }
  const steps: string[] = [];
  for (let s = 1 + rng.u32() % 3; s > 0; s--) {
    const [next, step] = mutate(rng, bytes, base.format);
    bytes = next;
    steps.push(step);
  }
  let mutant = base.bytes;
  if (target === "image") mutant = bytes;
  else files.set(target, bytes);
  const result = await outcome(() => runCase(base, mutant, files), documented);
  counts[result.kind]++;
  peak = Math.max(peak, Deno.memoryUsage().rss);
  console.log(
    JSON.stringify({ case: index, base: base.name, target, steps, ...result }),
  );
}
console.log(JSON.stringify({
  done: true,
  ...counts,
  seconds: (performance.now() - started) / 1000,
  rssPeak: peak,
}));
