// Helpers for the CLI tests: run `cli.ts` in a subprocess, the fixtures, and
// Proxmox's reference outputs.
import { gunzipSync } from "node:zlib";

export const ROOT = new URL("../", import.meta.url).pathname;
export const CLI = `${ROOT}cli.ts`;
export const TESTDATA = `${ROOT}tests/testdata/`;

/** What a run printed and how it ended. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  stdoutBytes: Uint8Array;
}

/** Options of {@linkcode vma}. */
export interface RunOptions {
  cwd?: string;
  stdin?: Uint8Array;
  env?: Record<string, string>;
  /** Permission flags instead of -A (to check the compiled binary's set). */
  permissions?: string[];
}

const decoder = new TextDecoder();

/** Runs `deno run -A cli.ts ...args` with TZ=UTC. */
export async function vma(args: string[], options: RunOptions = {}): Promise<RunResult> {
  const command = new Deno.Command(Deno.execPath(), {
    args: ["run", ...(options.permissions ?? ["-A"]), "--no-prompt", CLI, ...args],
    cwd: options.cwd,
    env: { TZ: "UTC", NO_COLOR: "1", ...options.env },
    stdin: options.stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  });
  const child = command.spawn();
  if (options.stdin) {
    const w = child.stdin.getWriter();
    await w.write(options.stdin).catch(() => {});
    await w.close().catch(() => {});
  }
  const out = await child.output();
  return {
    code: out.code,
    stdout: decoder.decode(out.stdout),
    stderr: decoder.decode(out.stderr),
    stdoutBytes: out.stdout,
  };
}

/** Runs a bash script in `cwd`; `$VMA` is the CLI command. */
export async function sh(script: string, cwd: string): Promise<RunResult> {
  const out = await new Deno.Command("bash", {
    args: ["-c", script],
    cwd,
    env: { TZ: "UTC", VMA: `${Deno.execPath()} run -A --no-prompt ${CLI}` },
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: out.code,
    stdout: decoder.decode(out.stdout),
    stderr: decoder.decode(out.stderr),
    stdoutBytes: out.stdout,
  };
}

/** Whether a program is on PATH. */
export function have(program: string): boolean {
  try {
    const out = new Deno.Command("sh", {
      args: ["-c", `command -v ${program}`],
      stdout: "null",
      stderr: "null",
    }).outputSync();
    return out.success;
  } catch {
    return false;
  }
}

/** A fresh temp dir with small.vma, the disks and the configs of the fixtures. */
export async function fixtureDir(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "vma-cli-test-" });
  for (
    const name of [
      "small.vma",
      "disk0.raw",
      "disk1.raw",
      "small-truncated.vma",
      "small-bad-header-md5.vma",
    ]
  ) {
    const gz = await Deno.readFile(`${TESTDATA}${name}.gz`);
    await Deno.writeFile(`${dir}/${name}`, gunzipSync(gz));
  }
  for (const name of ["qemu-server.conf", "qemu-server.fw", "configs-only.vma"]) {
    await Deno.copyFile(`${TESTDATA}${name}`, `${dir}/${name}`);
  }
  return dir;
}

/** One entry of reference-outputs.txt. */
export interface Reference {
  stdout: string;
  stderr: string;
  status: number;
}

/** Proxmox's vma outputs on the fixtures, by command line (`vma list small.vma`). */
export async function references(): Promise<Map<string, Reference>> {
  const text = await Deno.readTextFile(`${TESTDATA}reference-outputs.txt`);
  const map = new Map<string, Reference>();
  const blocks = text.split(/^\$ /m).slice(1);
  for (const block of blocks) {
    const command = block.slice(0, block.indexOf("\n"));
    // The last block (extract) ends with its stdout.
    const stdout = (/--- stdout:\n([\s\S]*?)(?:--- stderr:\n|$)/.exec(block) ?? ["", ""])[1];
    const stderr = (/--- stderr:\n([\s\S]*?)--- exit status: /.exec(block) ?? ["", ""])[1];
    const status = Number((/--- exit status: (\d+)/.exec(block) ?? ["", "0"])[1]);
    map.set(command, { stdout, stderr, status });
  }
  return map;
}

/** Bytes of a file, or undefined if missing. */
export async function readOrUndefined(path: string): Promise<Uint8Array | undefined> {
  try {
    return await Deno.readFile(path);
  } catch {
    return undefined;
  }
}

/** A disk image with data and zero regions, deterministic. */
export function makeDisk(size: number, seed = 1): Uint8Array {
  const disk = new Uint8Array(size);
  let x = seed * 2654435761 >>> 0;
  for (let off = 0; off < size; off += 65536) {
    x = (x * 1103515245 + 12345) >>> 0;
    const kind = x % 4;
    if (kind === 0) continue; // zero cluster
    const end = Math.min(size, off + 65536);
    for (let i = off; i < end; i += 512) {
      x = (x * 1103515245 + 12345) >>> 0;
      if (kind === 1 && (x & 8) === 0) continue; // partly zero blocks
      disk[i] = x & 0xff;
      disk[i + 1] = (x >>> 8) & 0xff;
    }
  }
  return disk;
}
