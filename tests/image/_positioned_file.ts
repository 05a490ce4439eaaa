// A PositionedWriter over a Deno.FsFile, for the image writer tests.
import type { PositionedWriter } from "../../src/image/disk_image_writer.ts";

/** A {@linkcode PositionedWriter} over a file, with the writes it received counted. */
export interface PositionedFile extends PositionedWriter {
  /** Closes the file. */
  close(): void;
  /** How many writes reached the file. */
  writes: number;
}

/** Opens (creates or truncates) `path` as a {@linkcode PositionedFile}. */
export async function openPositionedFile(path: string): Promise<PositionedFile> {
  const file = await Deno.open(path, { read: true, write: true, create: true, truncate: true });
  const positioned: PositionedFile = {
    writes: 0,
    async write(position: number, data: Uint8Array): Promise<void> {
      positioned.writes++;
      await file.seek(position, Deno.SeekMode.Start);
      let done = 0;
      while (done < data.length) done += await file.write(data.subarray(done));
    },
    async read(position: number, length: number): Promise<Uint8Array> {
      const buffer = new Uint8Array(length);
      await file.seek(position, Deno.SeekMode.Start);
      let filled = 0;
      while (filled < length) {
        const n = await file.read(buffer.subarray(filled));
        if (n === null) break;
        filled += n;
      }
      return buffer.subarray(0, filled);
    },
    async truncate(size: number): Promise<void> {
      await file.truncate(size);
    },
    close(): void {
      file.close();
    },
  };
  return positioned;
}
