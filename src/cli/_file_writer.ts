// A PositionedWriter over a Deno.FsFile, for the image writers: contiguous
// writes are gathered into large ones (the writers append most of their data).
import type { DiskImageWriter, PositionedWriter } from "../image/disk_image_writer.ts";
import type { VmaDeviceSink } from "../vma/extract_vma.ts";

const BUFFER = 1024 * 1024;

/** Positioned writes, reads and truncation of one open file; {@linkcode FileWriter.close} syncs and closes it. */
export class FileWriter implements PositionedWriter {
  #file: Deno.FsFile;
  #buf = new Uint8Array(BUFFER);
  #start = 0;
  #used = 0;
  #closed = false;

  constructor(file: Deno.FsFile) {
    this.#file = file;
  }

  /** A new file at `path` (fails if it exists). */
  static create(path: string): FileWriter {
    return new FileWriter(
      Deno.openSync(path, { read: true, write: true, createNew: true, mode: 0o644 }),
    );
  }

  #pwrite(data: Uint8Array, position: number): void {
    this.#file.seekSync(position, Deno.SeekMode.Start);
    let off = 0;
    while (off < data.length) off += this.#file.writeSync(data.subarray(off));
  }

  #flush(): void {
    if (this.#used === 0) return;
    this.#pwrite(this.#buf.subarray(0, this.#used), this.#start);
    this.#used = 0;
  }

  write(position: number, data: Uint8Array): Promise<void> {
    if (
      this.#used > 0 && position === this.#start + this.#used &&
      this.#used + data.length <= BUFFER
    ) {
      this.#buf.set(data, this.#used);
      this.#used += data.length;
      return Promise.resolve();
    }
    this.#flush();
    if (data.length >= BUFFER / 2) {
      this.#pwrite(data, position);
    } else {
      this.#start = position;
      this.#buf.set(data, 0);
      this.#used = data.length;
    }
    return Promise.resolve();
  }

  read(position: number, length: number): Promise<Uint8Array> {
    this.#flush();
    const out = new Uint8Array(length);
    this.#file.seekSync(position, Deno.SeekMode.Start);
    let got = 0;
    while (got < length) {
      const n = this.#file.readSync(out.subarray(got));
      if (n === null || n === 0) break;
      got += n;
    }
    return Promise.resolve(out.subarray(0, got));
  }

  truncate(size: number): Promise<void> {
    this.#flush();
    this.#file.truncateSync(size);
    return Promise.resolve();
  }

  /** Writes what is buffered, syncs and closes the file. */
  close(): void {
    if (this.#closed) return;
    this.#flush();
    this.#file.syncSync();
    this.#closed = true;
    this.#file.close();
  }

  /** Closes the file without writing what is buffered (after a failure). */
  abandon(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#file.close();
    } catch {
      // closed
    }
  }
}

/** A device sink that can be dropped after a failure. */
export interface AbandonableSink extends VmaDeviceSink {
  abandon(): void;
}

/** The sink of an image writer over `file`: closing finishes the image and syncs the file. */
export function imageWriterSink(
  file: FileWriter,
  writer: DiskImageWriter,
): AbandonableSink {
  return {
    write: (offset, data) => writer.write(offset, data),
    close: async () => {
      await writer.close();
      file.close();
    },
    abandon: () => file.abandon(),
  };
}
