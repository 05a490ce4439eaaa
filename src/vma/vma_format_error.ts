/**
 * The error a {@linkcode VmaReader} raises for a malformed archive.
 *
 * The message keeps the wording of Proxmox's `vma` tool for the same condition
 * (typos included, such as `chechsum`), so it can be searched for; `offset`
 * tells where in the archive stream the problem was found.
 *
 * @example Telling a corrupt archive from other failures
 * ```ts
 * import { VmaFormatError } from "@vmakit/vma";
 * import assert from "node:assert/strict";
 *
 * const error = new VmaFormatError("wrong vma extent header chechsum", 12800);
 * assert.ok(error instanceof SyntaxError);
 * assert.equal(error.offset, 12800);
 * ```
 */
export class VmaFormatError extends SyntaxError {
  /** Byte offset in the archive stream where the problem was found. */
  readonly offset: number;

  /**
   * Creates a format error.
   *
   * @param message What is wrong, in the wording of Proxmox's `vma` where it has one.
   * @param offset Byte offset in the archive stream where the problem was found.
   */
  constructor(message: string, offset: number) {
    super(message);
    this.name = "VmaFormatError";
    this.offset = offset;
  }
}
