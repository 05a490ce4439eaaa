// Opening a file that is named by a user or an image without ever blocking in
// open: a FIFO with no writer would otherwise wait forever.
import { constants as fsConstants, promises as fsp, type Stats } from "node:fs";

/** What kind of file a name holds (node's Stats and Deno's FileInfo both give it). */
export type FileKind = Pick<
  Stats,
  "isDirectory" | "isFile" | "isBlockDevice" | "isCharacterDevice" | "isFIFO" | "isSocket"
>;

function denoKind(info: Deno.FileInfo): FileKind {
  return {
    isDirectory: () => info.isDirectory,
    isFile: () => info.isFile,
    isBlockDevice: () => info.isBlockDevice === true,
    isCharacterDevice: () => info.isCharDevice === true,
    isFIFO: () => info.isFifo === true,
    isSocket: () => info.isSocket === true,
  };
}

/**
 * Opens `path` for reading after `check` accepted its kind, without blocking:
 * the name is first opened with O_NONBLOCK (a FIFO then opens at once instead
 * of waiting for a writer) and checked with fstat; the file is then reopened
 * through `/proc/self/fd` (the very file checked, whatever happens to the name
 * meanwhile; the name itself where /proc is missing), checked again, and its
 * device and inode compared. `check` throws to refuse.
 */
export async function openChecked(
  path: string,
  check: (kind: FileKind) => void,
): Promise<Deno.FsFile> {
  const probe = await fsp.open(path, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
  let file: Deno.FsFile;
  let before: { dev: number; ino: number };
  try {
    const info = await probe.stat();
    check(info);
    before = { dev: info.dev, ino: info.ino };
    file = await Deno.open(`/proc/self/fd/${probe.fd}`, { read: true }).catch(() =>
      Deno.open(path, { read: true })
    );
  } finally {
    await probe.close();
  }
  try {
    const after = await file.stat();
    check(denoKind(after));
    if (after.dev !== before.dev || after.ino !== before.ino) {
      throw new Error("the file changed while it was opened");
    }
    return file;
  } catch (e) {
    file.close();
    throw e;
  }
}
