// The writer's extent under construction: its 512-byte header (blockinfo
// slots) and its data, the MD5 when it is finished, batches of data-less
// extents and the pool of recycled extent buffers. Private to the library.
import {
  BLOCK_SIZE,
  BLOCKS_PER_CLUSTER,
  EXT_OFF_BLOCK_COUNT,
  EXT_OFF_BLOCKINFO,
  EXT_OFF_MD5,
  EXT_OFF_UUID,
  EXTENT_HEADER_SIZE,
  EXTENT_MAGIC,
  MAX_EXTENT_SIZE,
  SLOTS_PER_EXTENT,
} from "./_layout.ts";
import { extentMd5 } from "./_extent_md5.ts";

/** Extent buffers kept for reuse (see `VmaWriter.recycle`). */
const POOL_SIZE = 2;
/** Data-less extent headers are handed out in batches of this many bytes. */
const SMALL_BATCH = 128 * EXTENT_HEADER_SIZE;

/** Builds extents one cluster at a time and hands finished ones to `emit`. */
export class ExtentBuilder {
  #uuid: Uint8Array;
  #emit: (chunk: Uint8Array) => void;
  #head = new Uint8Array(EXTENT_HEADER_SIZE);
  #headView = new DataView(this.#head.buffer);
  /** MAX_EXTENT_SIZE bytes, data from offset 512; only once a block is stored. */
  #data: Uint8Array | undefined;
  #slots = 0;
  #dataEnd = EXTENT_HEADER_SIZE;
  /** A batch of data-less extents. */
  #small: Uint8Array | undefined;
  #smallEnd = 0;
  /** Extent buffers handed back through `recycle`, ready for reuse. */
  #pool: ArrayBuffer[] = [];
  /** Extent buffers out in emitted chunks that may come back. */
  #lent = new WeakSet<ArrayBuffer>();

  constructor(uuid: Uint8Array, emit: (chunk: Uint8Array) => void) {
    this.#uuid = uuid;
    this.#emit = emit;
  }

  /** Slots used in the extent under construction. */
  get slots(): number {
    return this.#slots;
  }

  /** Whether every slot is used: the caller must `finish()` before the next `add`. */
  get full(): boolean {
    return this.#slots === SLOTS_PER_EXTENT;
  }

  /**
   * Fills the next slot with cluster `cluster` of device `deviceId` and
   * copies the blocks `mask` marks from `data[start .. start+length)`; a block
   * cut short by `length` is zero-filled.
   */
  add(
    deviceId: number,
    cluster: number,
    mask: number,
    data: Uint8Array | undefined,
    start: number,
    length: number,
  ): void {
    const slot = EXT_OFF_BLOCKINFO + 8 * this.#slots;
    this.#headView.setUint16(slot, mask);
    this.#head[slot + 2] = 0;
    this.#head[slot + 3] = deviceId;
    this.#headView.setUint32(slot + 4, cluster);
    this.#slots++;
    if (mask === 0) return;
    const ext = this.#data ??= this.#newBuffer();
    for (let j = 0; j < BLOCKS_PER_CLUSTER; j++) {
      if ((mask & (1 << j)) === 0) continue;
      // Copy runs of consecutive stored blocks at once.
      let k = j;
      while (k + 1 < BLOCKS_PER_CLUSTER && (mask & (1 << (k + 1))) !== 0) k++;
      const from = j * BLOCK_SIZE;
      const to = Math.min((k + 1) * BLOCK_SIZE, length);
      ext.set(data!.subarray(start + from, start + to), this.#dataEnd);
      const runBytes = (k - j + 1) * BLOCK_SIZE;
      // A block cut by the device end is zero-filled (the buffer may be reused).
      if (to - from < runBytes) ext.fill(0, this.#dataEnd + (to - from), this.#dataEnd + runBytes);
      this.#dataEnd += runBytes;
      j = k;
    }
  }

  /** Completes the extent (even an empty one) and emits it. */
  finish(): void {
    const head = this.#head;
    const view = this.#headView;
    head.set(EXTENT_MAGIC, 0);
    view.setUint16(4, 0);
    view.setUint16(EXT_OFF_BLOCK_COUNT, (this.#dataEnd - EXTENT_HEADER_SIZE) / BLOCK_SIZE);
    head.set(this.#uuid, EXT_OFF_UUID);
    head.set(extentMd5(head), EXT_OFF_MD5);
    if (this.#data !== undefined) {
      const chunk = this.#data.subarray(0, this.#dataEnd);
      chunk.set(head, 0);
      this.#data = undefined;
      this.flushSmall();
      this.#emit(chunk);
    } else {
      // Extents without data (zero clusters only) are 512 bytes: batch them,
      // so a huge sparse disk does not become millions of tiny chunks.
      this.#small ??= new Uint8Array(SMALL_BATCH);
      this.#small.set(head, this.#smallEnd);
      this.#smallEnd += EXTENT_HEADER_SIZE;
      if (this.#smallEnd === SMALL_BATCH) this.flushSmall();
    }
    head.fill(0);
    this.#slots = 0;
    this.#dataEnd = EXTENT_HEADER_SIZE;
  }

  /** Emits the batch of data-less extents, if any. */
  flushSmall(): void {
    if (this.#small === undefined || this.#smallEnd === 0) return;
    this.#emit(this.#small.subarray(0, this.#smallEnd));
    this.#small = undefined;
    this.#smallEnd = 0;
  }

  /** Documented on `VmaWriter.recycle`; this is the implementation. */
  recycle(chunk: Uint8Array): void {
    const buffer = chunk.buffer as ArrayBuffer;
    // Each lent buffer comes back at most once; anything else is ignored.
    if (!this.#lent.has(buffer)) return;
    this.#lent.delete(buffer);
    if (this.#pool.length < POOL_SIZE) this.#pool.push(buffer);
  }

  #newBuffer(): Uint8Array {
    const buffer = this.#pool.pop() ?? new ArrayBuffer(MAX_EXTENT_SIZE);
    this.#lent.add(buffer);
    return new Uint8Array(buffer);
  }
}
