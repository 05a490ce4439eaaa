/**
 * Generates the benchmark's input images in a directory: a raw image that is
 * half random and half zeros (and the same as qcow2, when `qemu-img` is
 * installed), a "mixed" image, the mixed image cut into four disks, and a
 * large sparse image.
 *
 * Random data comes from a 16 MiB pool filled once with
 * `crypto.getRandomValues`; each 8 MiB chunk is a slice of the pool at its own
 * offset, XORed with its own 32-bit key, so no two chunks share byte runs that
 * a compressor could match, and generation costs memory bandwidth only.
 *
 * @module
 */

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

/** VMA cluster size: the unit of the mixed pattern. */
export const CLUSTER_SIZE = 64 * KiB;
/** Size of the blocks whose zero-ness VMA records. */
export const BLOCK_SIZE = 4 * KiB;
/** Size of one generated chunk (and of every write). */
export const CHUNK_SIZE = 8 * MiB;
const POOL_SIZE = 16 * MiB;

/** Sizes of the generated inputs, in bytes. */
export interface InputSizes {
  /** Random bytes at the start of the raw image. */
  readonly rawRandom: number;
  /** Zero bytes (written, not sparse) after them. */
  readonly rawZero: number;
  /** Size of the mixed image; a multiple of four chunks. */
  readonly mixed: number;
  /** Virtual size of the sparse image. */
  readonly sparse: number;
  /** Number of data pieces written into the sparse image. */
  readonly sparsePieces: number;
  /** Size of each piece. */
  readonly sparsePieceSize: number;
}

/** Inputs of the full run (the sizes of issue 4). */
export const FULL_SIZES: InputSizes = {
  rawRandom: 1 * GiB,
  rawZero: 1 * GiB,
  mixed: 2 * GiB,
  sparse: 64 * GiB,
  sparsePieces: 32,
  sparsePieceSize: 128 * KiB,
};

/** Inputs of `--quick`: 256 MiB images and a 4 GiB sparse image. */
export const QUICK_SIZES: InputSizes = {
  rawRandom: 128 * MiB,
  rawZero: 128 * MiB,
  mixed: 256 * MiB,
  sparse: 4 * GiB,
  sparsePieces: 16,
  sparsePieceSize: 128 * KiB,
};

/** Number of disks the mixed image is cut into for the multi-disk archive. */
export const DISK_COUNT = 4;

/** File names of the generated inputs, relative to their directory. */
export interface Inputs {
  /** `rawRandom` random bytes, then `rawZero` zero bytes. */
  readonly raw: string;
  /** Clusters cycling zero / random / half of the 4 KiB blocks zero / random. */
  readonly mixed: string;
  /** The mixed image cut into {@linkcode DISK_COUNT} equal disks, byte for byte. */
  readonly disks: readonly string[];
  /** Mostly holes, with `sparsePieces` pieces of data at scattered offsets. */
  readonly sparse: string;
  /** `raw` converted with `qemu-img convert -O qcow2` (its zeros unallocated). */
  readonly qcow2: string;
  /** Why there is no qcow2 image (`qemu-img` missing or failing), if there is none. */
  readonly qcow2Missing?: string;
  /** `raw` converted with `qemu-img convert -O vhdx` (dynamic, its zeros unallocated). */
  readonly vhdx: string;
  /** Why there is no VHDX image, if there is none. */
  readonly vhdxMissing?: string;
  /** `raw` converted with `qemu-img convert -O vmdk` (monolithicSparse, its zeros unallocated). */
  readonly vmdk: string;
  /** Why there is no VMDK image, if there is none. */
  readonly vmdkMissing?: string;
}

/** A source of incompressible chunks, cheap to produce. */
export class RandomChunks {
  #pool = new Uint8Array(POOL_SIZE);
  #chunk = new Uint8Array(CHUNK_SIZE);

  constructor() {
    for (let offset = 0; offset < POOL_SIZE; offset += 64 * KiB) {
      crypto.getRandomValues(this.#pool.subarray(offset, offset + 64 * KiB));
    }
  }

  /**
   * Returns chunk number `index`: the same bytes for the same index, different
   * bytes (with no shared runs) for different indexes. The buffer is reused by
   * the next call.
   */
  chunk(index: number): Uint8Array {
    const offset = ((index * 7919) % ((POOL_SIZE - CHUNK_SIZE) / BLOCK_SIZE)) * BLOCK_SIZE;
    this.#chunk.set(this.#pool.subarray(offset, offset + CHUNK_SIZE));
    const words = new Uint32Array(this.#chunk.buffer);
    const key = (Math.imul(index + 1, 0x9e3779b1) ^ 0x5bd1e995) >>> 0;
    for (let i = 0; i < words.length; i++) words[i] ^= key;
    return this.#chunk;
  }
}

/**
 * Applies the mixed pattern in place to a buffer of random bytes that starts at
 * cluster `firstCluster`: clusters cycle zero / random / even-numbered 4 KiB
 * blocks zero / random.
 */
export function applyMixedPattern(buffer: Uint8Array, firstCluster: number): void {
  for (let start = 0; start < buffer.length; start += CLUSTER_SIZE) {
    const cluster = buffer.subarray(start, start + CLUSTER_SIZE);
    const kind = (firstCluster + start / CLUSTER_SIZE) % 4;
    if (kind === 0) cluster.fill(0);
    if (kind === 2) {
      for (let block = 0; block < cluster.length; block += 2 * BLOCK_SIZE) {
        cluster.fill(0, block, block + BLOCK_SIZE);
      }
    }
  }
}

async function writeAll(file: Deno.FsFile, data: Uint8Array): Promise<void> {
  let written = 0;
  while (written < data.length) written += await file.write(data.subarray(written));
}

async function writeImage(
  path: string,
  chunks: number,
  chunkAt: (index: number) => Uint8Array,
): Promise<void> {
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  for (let index = 0; index < chunks; index++) await writeAll(file, chunkAt(index));
}

function mixedChunk(random: RandomChunks, index: number): Uint8Array {
  const chunk = random.chunk(index);
  applyMixedPattern(chunk, index * (CHUNK_SIZE / CLUSTER_SIZE));
  return chunk;
}

async function writeRaw(path: string, sizes: InputSizes, random: RandomChunks): Promise<void> {
  const randomChunks = sizes.rawRandom / CHUNK_SIZE;
  const zeros = new Uint8Array(CHUNK_SIZE);
  const total = (sizes.rawRandom + sizes.rawZero) / CHUNK_SIZE;
  // Chunk indexes far from those of the mixed image, so the two differ.
  await writeImage(path, total, (i) => i < randomChunks ? random.chunk(1_000_000 + i) : zeros);
}

async function writeSparse(path: string, sizes: InputSizes, random: RandomChunks): Promise<void> {
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  await file.truncate(sizes.sparse);
  const piece = random.chunk(2_000_000).subarray(0, sizes.sparsePieceSize);
  const stride = Math.floor(sizes.sparse / sizes.sparsePieces);
  for (let i = 0; i < sizes.sparsePieces; i++) {
    // Spread over the image; every other piece starts off a cluster boundary.
    const offset = i * stride + (i % 2) * 3 * BLOCK_SIZE;
    await file.seek(offset, Deno.SeekMode.Start);
    await writeAll(file, piece);
  }
}

/** Converts `raw` to `format` with `qemu-img`; returns why not when it cannot. */
async function writeConverted(
  dir: string,
  raw: string,
  format: string,
  output: string,
): Promise<string | undefined> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command("qemu-img", {
      args: ["convert", "-O", format, raw, output],
      cwd: dir,
      stdout: "null",
      stderr: "piped",
    }).output();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return "qemu-img is not installed";
    throw error;
  }
  if (out.success) return undefined;
  const reason = new TextDecoder().decode(out.stderr).trim().split("\n")[0];
  return `qemu-img convert failed: ${reason}`;
}

/**
 * Writes all inputs into `dir` and flushes them to disk.
 *
 * @param dir An existing, empty directory.
 * @param sizes The sizes to generate; `rawRandom`, `rawZero` and `mixed / 4`
 *   must be multiples of {@linkcode CHUNK_SIZE}.
 * @returns The file names of the inputs, relative to `dir`.
 */
export async function makeInputs(dir: string, sizes: InputSizes): Promise<Inputs> {
  const random = new RandomChunks();
  const inputs: Inputs = {
    raw: "raw.img",
    mixed: "mixed.img",
    disks: Array.from({ length: DISK_COUNT }, (_, i) => `disk${i}.img`),
    sparse: "sparse.img",
    qcow2: "raw.qcow2",
    vhdx: "raw.vhdx",
    vmdk: "raw.vmdk",
  };
  await writeRaw(`${dir}/${inputs.raw}`, sizes, random);
  const qcow2Missing = await writeConverted(dir, inputs.raw, "qcow2", inputs.qcow2);
  const vhdxMissing = await writeConverted(dir, inputs.raw, "vhdx", inputs.vhdx);
  const vmdkMissing = await writeConverted(dir, inputs.raw, "vmdk", inputs.vmdk);
  const mixedChunks = sizes.mixed / CHUNK_SIZE;
  await writeImage(`${dir}/${inputs.mixed}`, mixedChunks, (i) => mixedChunk(random, i));
  const diskChunks = mixedChunks / DISK_COUNT;
  for (const [disk, name] of inputs.disks.entries()) {
    const chunkAt = (i: number) => mixedChunk(random, disk * diskChunks + i);
    await writeImage(`${dir}/${name}`, diskChunks, chunkAt);
  }
  await writeSparse(`${dir}/${inputs.sparse}`, sizes, random);
  await new Deno.Command("sync").output();
  return {
    ...inputs,
    ...(qcow2Missing === undefined ? {} : { qcow2Missing }),
    ...(vhdxMissing === undefined ? {} : { vhdxMissing }),
    ...(vmdkMissing === undefined ? {} : { vmdkMissing }),
  };
}
