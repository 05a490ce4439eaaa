// Opening an archive for the reading commands: input + VmaReader + header,
// with the header-phase errors as Proxmox words them.
import { VmaReader } from "../vma/vma_reader.ts";
import type { VmaHeader } from "../vma/vma_reader.ts";
import { type ArchiveInput, openArchiveInput } from "./_archive_input.ts";
import { CliError, describeError } from "./_errors.ts";

/** An archive whose header has been read. */
export interface OpenArchive {
  readonly input: ArchiveInput;
  readonly reader: VmaReader;
  readonly header: VmaHeader;
}

/** Opens `path` and reads its header; errors become CliError with Proxmox's wording. */
export async function openArchive(path: string): Promise<OpenArchive> {
  const input = await openArchiveInput(path);
  const reader = new VmaReader(input.readable);
  let header: VmaHeader;
  try {
    header = await reader.header();
  } catch (e) {
    await reader.cancel().catch(() => {});
    throw toCliError(e);
  }
  return { input, reader, header };
}

/** An error as one CLI line: our own as is, others by their message (an OS error in strerror's words). */
export function toCliError(e: unknown, prefix = ""): CliError {
  if (e instanceof CliError) {
    return prefix ? new CliError(prefix + e.message, { cause: e, exitCode: e.exitCode }) : e;
  }
  return new CliError(prefix + describeError(e), { cause: e });
}
