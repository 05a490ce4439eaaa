/**
 * The VMA writer: {@linkcode VmaWriter} turns config files and device (disk
 * image) data into a VMA archive stream, as Proxmox's `vma create` does.
 *
 * How it is built: `VmaWriter` is the public face of a private `Archive`
 * (`_writer_archive.ts`: the state, the sticky error, backpressure and
 * ordered mode), whose devices are `Device`s (`_writer_device.ts`: the
 * `VmaDeviceWriter` handle, partial clusters). Clusters go into an
 * `ExtentBuilder` (`_extent_builder.ts`), which emits finished extents; the
 * header is encoded by `_writer_header.ts` before the first extent. The docs
 * live here only.
 *
 * @module
 */
import { Archive } from "./_writer_archive.ts";

/** Options of {@linkcode VmaWriter}. */
export interface VmaWriterOptions {
  /**
   * The archive UUID, as an RFC 4122 string or 16 bytes. Give it (with
   * `ctime` and `ordered`) to make archives reproducible.
   *
   * @default {a random version 4 UUID}
   */
  uuid?: string | Uint8Array;
  /**
   * The creation time stored in the header (whole seconds are kept).
   *
   * @default {the time the writer was made}
   */
  ctime?: Date;
  /**
   * Emit clusters ordered by device, then by cluster number, whatever order
   * the data arrives in, so two archives of the same disks are byte-identical
   * (given the same `uuid` and `ctime`) and deduplicate well. In this mode a
   * device's data waits until every device added before it is complete, so
   * feed all devices at once (or one after the other, in order), and each
   * device's clusters in increasing order.
   *
   * @default {false}
   */
  ordered?: boolean;
}

/** Counters of a {@linkcode VmaWriter}. */
export interface VmaWriterStats {
  /** Device bytes recorded so far (zero clusters included). */
  readonly bytes: number;
  /**
   * Bytes of the 4 KiB blocks the archive leaves out, counted as Proxmox's
   * `vma create -v` counts `zeros=`: 65,536 minus 4,096 per stored block, for
   * every cluster recorded. The blocks past the end of a device's partial last
   * cluster count too, so this can exceed `bytes`: a 143,872-byte device of
   * random data (3 clusters, 4 blocks stored in the last) counts 49,152.
   */
  readonly zeroBytes: number;
  /** Archive bytes handed to `readable` so far. */
  readonly archiveBytes: number;
}

/**
 * One device (disk image) of a {@linkcode VmaWriter}, as returned by
 * {@linkcode VmaWriter.addDevice}. Its data goes in either through
 * `writable` (the device's bytes in order) or through `write` and
 * `writeZeroes` at cluster-aligned offsets, in any order.
 */
export interface VmaDeviceWriter {
  /** The device id in the archive (1, 2, ... in the order devices were added). */
  readonly id: number;
  /** The device name, such as `drive-scsi0`. */
  readonly name: string;
  /** The device size in bytes. */
  readonly size: number;
  /** Device bytes recorded so far, zero clusters and a buffered partial cluster included. */
  readonly bytesWritten: number;
  /**
   * The device's bytes in order, in chunks of any size, from offset 0 (or from
   * where earlier `write` calls left off). Closing it closes the device;
   * aborting it aborts the whole archive.
   */
  readonly writable: WritableStream<Uint8Array>;
  /**
   * Records `data` at byte `offset`. The offset is a multiple of 65,536, or
   * continues a partial cluster left by the previous write. Each cluster may
   * be written once.
   *
   * @param offset Byte offset in the device.
   * @param data The bytes; the caller may reuse the buffer once the promise settles.
   * @returns A promise that settles when the data is taken (backpressure).
   */
  write(offset: number, data: Uint8Array): Promise<void>;
  /**
   * Records `length` bytes of zeros at `offset` without data (zero clusters).
   * The offset is a multiple of 65,536; the length is too, or reaches the end
   * of the device.
   *
   * @param offset Byte offset in the device.
   * @param length Number of bytes.
   * @returns A promise that settles when the clusters are recorded.
   */
  writeZeroes(offset: number, length: number): Promise<void>;
  /**
   * Closes the device. Fails (and fails the archive) when the device still owes bytes.
   *
   * @returns A promise that settles when every write before it is done.
   */
  close(): Promise<void>;
}

/**
 * Writes a VMA archive as a stream.
 *
 * Declare the configs and devices first (the header lists them all), start
 * pulling `readable` (pipe it to a file, stdout or a `CompressionStream`),
 * then feed every device and call `close()`. Backpressure holds end to end:
 * device writes wait while the archive is not being read. Memory stays about
 * one extent (3.7 MiB) plus one cluster per device, whatever the disk sizes.
 *
 * All-zero 4 KiB blocks are left out of the archive, all-zero clusters are
 * recorded without data, and extents hold at most 59 clusters, as the format
 * describes. Errors are sticky: after the first failure every call rejects
 * with the same error and `readable` errors too.
 *
 * @example Writing an archive with one config and one disk
 * ```ts
 * import { VmaReader, VmaWriter } from "@vmakit/vma";
 * import assert from "node:assert/strict";
 *
 * const writer = new VmaWriter();
 * writer.addConfig("qemu-server.conf", "memory: 512\n#qmdump#map:scsi0:drive-scsi0:local:raw:\n");
 * const disk = writer.addDevice("drive-scsi0", 1024 * 1024);
 * const archive = new Response(writer.readable).bytes(); // start consuming first
 *
 * const image = new Uint8Array(1024 * 1024);
 * image.fill(7, 0, 5000);
 * await ReadableStream.from([image]).pipeTo(disk.writable);
 * await writer.close();
 *
 * const header = await new VmaReader(ReadableStream.from([await archive])).header();
 * assert.equal(header.devices[0].name, "drive-scsi0");
 * ```
 */
export class VmaWriter {
  #archive: Archive;

  /**
   * Creates a writer.
   *
   * @param options Archive UUID, creation time and cluster order.
   * @throws {TypeError} When `uuid`, `ctime` or `ordered` is not of a valid form.
   */
  constructor(options: VmaWriterOptions = {}) {
    this.#archive = new Archive(options);
  }

  /** The archive, to be read by the consumer. */
  get readable(): ReadableStream<Uint8Array> {
    return this.#archive.readable;
  }

  /** The archive UUID, lower-case. */
  get uuid(): string {
    return this.#archive.uuid;
  }

  /** The creation time stored in the header (whole seconds). */
  get ctime(): Date {
    return this.#archive.ctime;
  }

  /** Bytes recorded and emitted so far. */
  get stats(): VmaWriterStats {
    return this.#archive.stats;
  }

  /**
   * Adds a config file, such as `qemu-server.conf`. Configs are stored in the
   * order they are added, before any device data is written.
   *
   * @param name The file name: non-empty, no `/`, whitespace, NUL or control
   *   characters, unique, at most 65,534 bytes of UTF-8.
   * @param data The contents (a string is stored as UTF-8), at most 65,535 bytes.
   * @throws {TypeError} When the name is not valid or already used, the data is
   *   not a string or bytes, or device data was already written.
   * @throws {RangeError} When a limit is exceeded (256 configs, sizes, header size).
   */
  addConfig(name: string, data: Uint8Array | string): void {
    this.#archive.addConfig(name, data);
  }

  /**
   * Adds a device (disk image) of `size` bytes. Devices get ids 1, 2, ... in
   * the order they are added, before any device data is written.
   *
   * @param name The device name, such as `drive-scsi0` (Proxmox restores
   *   devices named `drive-<bus><n>` that `qemu-server.conf` maps): non-empty,
   *   no `/`, whitespace, NUL or control characters, unique, at most 65,534 bytes.
   * @param size The size in bytes: a positive safe integer, a multiple of 512
   *   (except for a device named `vmstate`).
   * @returns The device, to feed with data.
   * @throws {TypeError} When the name is not valid or already used, or device
   *   data was already written.
   * @throws {RangeError} When the size is not valid or a limit is exceeded
   *   (254 devices, header size).
   */
  addDevice(name: string, size: number): VmaDeviceWriter {
    return this.#archive.addDevice(name, size);
  }

  /**
   * Finishes the archive: closes every device that is still open (each must
   * be complete), writes the last extent and closes `readable`. An archive
   * without devices gets its header and one empty extent.
   *
   * @returns A promise that settles when the archive is complete.
   * @throws {RangeError} When a device is not complete (with both byte counts).
   */
  close(): Promise<void> {
    return this.#archive.close();
  }

  /**
   * Aborts the archive: `readable` errors with `reason` and every pending or
   * later call rejects with it.
   *
   * @param reason Why the archive was aborted.
   * @returns A promise that settles once the writer is in the error state.
   */
  abort(reason?: unknown): Promise<void> {
    return this.#archive.abort(reason);
  }

  /**
   * Hands a chunk of `readable` back once the consumer is completely done
   * with it (written out, not referenced any more), so its memory is reused
   * for a later extent instead of being allocated anew. Optional: a consumer
   * that never calls it only makes more garbage. Chunks that are not
   * reusable extent buffers, and second calls, are ignored.
   *
   * @example Writing to a sink and recycling each chunk
   * ```ts
   * import { VmaWriter } from "@vmakit/vma";
   * import assert from "node:assert/strict";
   *
   * const writer = new VmaWriter();
   * const disk = writer.addDevice("drive-scsi0", 8 * 1024 * 1024);
   * let bytes = 0;
   * const done = writer.readable.pipeTo(new WritableStream({
   *   write(chunk) {
   *     bytes += chunk.length; // ... a real sink writes the chunk out here
   *     writer.recycle(chunk);
   *   },
   * }));
   * await disk.write(0, new Uint8Array(8 * 1024 * 1024).fill(1));
   * await writer.close();
   * await done;
   * assert.equal(bytes, writer.stats.archiveBytes);
   * ```
   *
   * @param chunk A chunk read from `readable`.
   */
  recycle(chunk: Uint8Array): void {
    this.#archive.recycle(chunk);
  }
}
