/**
 * The errors of the image readers, one helper per category so that each
 * category always has the same class and prefix:
 *
 * - `Not a qcow2 image: ...` ({@linkcode notImage}, `SyntaxError`): the file is another format.
 * - `Corrupt qcow2 image: ...` ({@linkcode corrupt}, `SyntaxError`): malformed.
 * - `Unsupported qcow2 image: ...` ({@linkcode unsupported}, `TypeError`): a feature this reader lacks.
 * - `Oversized qcow2 image: ...` ({@linkcode oversized}, `RangeError`): past a size or memory limit.
 *
 * File names are quoted with {@linkcode quote} (JSON string syntax), so a name
 * holding a newline or a quote cannot forge a second line of output.
 *
 * @module
 */

/** The formats whose errors these helpers word. */
export type ImageFormatName = "qcow2" | "vmdk" | "vhdx" | "vpc" | "vdi";

/** Quotes a file name (or any value from the image) for a message: JSON string syntax. */
export function quote(name: string): string {
  return JSON.stringify(name);
}

function where(file: string | undefined): string {
  return file === undefined ? "" : ` (extent file ${quote(file)})`;
}

/** The file is not in the format at all: a `SyntaxError`. */
export function notImage(format: ImageFormatName, what: string): SyntaxError {
  return new SyntaxError(`Not a ${format} image: ${what}`);
}

/** The image is malformed: a `SyntaxError`, naming the file when it is not the image itself. */
export function corrupt(format: ImageFormatName, what: string, file?: string): SyntaxError {
  return new SyntaxError(`Corrupt ${format} image: ${what}${where(file)}`);
}

/** The image uses a feature this reader does not have: a `TypeError`. */
export function unsupported(format: ImageFormatName, what: string, file?: string): TypeError {
  return new TypeError(`Unsupported ${format} image: ${what}${where(file)}`);
}

/** The image is past a size or memory limit of this reader: a `RangeError`. */
export function oversized(format: ImageFormatName, what: string, file?: string): RangeError {
  return new RangeError(`Oversized ${format} image: ${what}${where(file)}`);
}
