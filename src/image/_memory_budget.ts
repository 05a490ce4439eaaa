/**
 * The memory that the images of one backing chain may hold for good (L1
 * tables, grain directories, table caches, read-ahead buffers), counted in
 * bytes against one limit shared through the openers' `memoryBudget` option.
 *
 * @module
 */

import { type ImageFormatName, oversized } from "./_image_errors.ts";

/** Bytes `used` of `limit`; the same object is passed along a backing chain. */
export interface MemoryBudget {
  limit: number;
  used: number;
}

/** The limit when none is given: 64 MiB. */
export const DEFAULT_MEMORY_LIMIT = 64 * 1024 * 1024;

/** The budget given in the options (checked), or a fresh one with the default limit. */
export function memoryBudget(
  given: MemoryBudget | undefined,
  format: ImageFormatName,
): MemoryBudget {
  if (given === undefined) return { limit: DEFAULT_MEMORY_LIMIT, used: 0 };
  if (
    typeof given !== "object" || given === null || !Number.isSafeInteger(given.limit) ||
    !Number.isSafeInteger(given.used) || given.limit < 0 || given.used < 0
  ) {
    throw new TypeError(
      `Invalid ${format} options: memoryBudget must be { limit, used } in whole bytes`,
    );
  }
  return given;
}

/** Bytes still free in `budget`. */
export function available(budget: MemoryBudget): number {
  return Math.max(0, budget.limit - budget.used);
}

/** Charges `bytes` to `budget`; a `RangeError` naming `file` past the limit. */
export function charge(
  budget: MemoryBudget,
  bytes: number,
  format: ImageFormatName,
  file?: string,
): void {
  if (budget.used + bytes > budget.limit) {
    throw oversized(
      format,
      `the images need more than ${budget.limit} bytes for their tables, caches and buffers`,
      file,
    );
  }
  budget.used += bytes;
}
