// What the two image fuzzers (tests/image/_image_fuzz_main.ts for qcow2 and
// VMDK, tests/image/_foreign_fuzz_main.ts for VHDX, VHD and VDI) share.
import type { PositionedReader } from "../../src/image/disk_image.ts";

/** The number after `name` on the command line, or `fallback`. */
export function arg(name: string, fallback: number): number {
  const i = Deno.args.indexOf(name);
  return i >= 0 ? Number(Deno.args[i + 1]) : fallback;
}

/** Writes the low `width` bytes of `value` at `at`. */
export function put(bytes: Uint8Array, at: number, width: number, value: bigint, little: boolean) {
  for (let i = 0; i < width && at + i < bytes.length; i++) {
    const shift = BigInt(8 * (little ? i : width - 1 - i));
    bytes[at + i] = Number((value >> shift) & 0xffn);
  }
}

/** A PositionedReader over bytes in memory. */
export function memoryReader(bytes: Uint8Array): PositionedReader {
  return {
    size: bytes.length,
    read: (position, length) => Promise.resolve(bytes.slice(position, position + length)),
    close: () => Promise.resolve(),
  };
}

/** The error class of each documented message prefix (`<prefix> <format> image: `). */
export const ERROR_CLASS: Record<string, ErrorConstructor> = {
  "Not a": SyntaxError,
  Corrupt: SyntaxError,
  Unsupported: TypeError,
  Oversized: RangeError,
};

/** How a case ended: read through, a documented error, or a bug (with its stack). */
export interface CaseOutcome {
  kind: "ok" | "error" | "bug";
  message?: string;
  stack?: string;
}

/** Runs one case; an error is documented or a bug as `documented` says. */
export async function outcome(
  run: () => Promise<unknown>,
  documented: (error: unknown) => boolean,
): Promise<CaseOutcome> {
  try {
    await run();
    return { kind: "ok" };
  } catch (error) {
    const kind = documented(error) ? "error" : "bug";
    const message = error instanceof Error
      ? `${error.constructor.name}: ${error.message}`
      : String(error);
    return { kind, message, stack: kind === "bug" ? (error as Error).stack : undefined };
  }
}
