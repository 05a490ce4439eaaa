// A set of cluster numbers (0 .. 2^32-1) stored as a paged bitmap: memory grows
// with the pages touched (8 KiB per 65,536 clusters, i.e. per 4 GiB of disk),
// not with the device size. A page starts as a short list and becomes a
// bitmap at SPARSE_LIMIT clusters, so a hostile archive that touches one
// cluster per page cannot make 8 KiB out of each 8-byte blockinfo slot (a
// 0.5 MiB archive made the reader allocate 466 MiB). A page whose clusters are
// all present is dropped for a marker, so a device written in order (the usual
// case, at any size) keeps one page in memory. Private to the library.

const PAGE_BITS = 16;
const PAGE_CLUSTERS = 1 << PAGE_BITS;
const PAGE_WORDS = PAGE_CLUSTERS >>> 5;
/** Clusters a page lists before it becomes a bitmap. */
const SPARSE_LIMIT = 128;
/** A page whose every cluster is in the set. */
const FULL = "full";
/** A bitmap page: PAGE_WORDS words of bits, then the count of set bits. */
type Bitmap = Uint32Array;

/** A set of cluster numbers of one device. */
export class ClusterSet {
  /** Per page: the clusters' offsets in the page (few), or a bitmap. */
  #pages = new Map<number, number[] | Bitmap | typeof FULL>();
  #count = 0;

  /** How many clusters are in the set. */
  get size(): number {
    return this.#count;
  }

  /** Adds `cluster`; returns false when it was already there. */
  add(cluster: number): boolean {
    const page = Math.floor(cluster / PAGE_CLUSTERS);
    const bit = cluster % PAGE_CLUSTERS;
    let words = this.#pages.get(page);
    if (words === FULL) return false;
    if (words === undefined || Array.isArray(words)) {
      if (words === undefined) {
        this.#pages.set(page, [bit]);
        this.#count++;
        return true;
      }
      if (words.includes(bit)) return false;
      if (words.length < SPARSE_LIMIT) {
        words.push(bit);
        this.#count++;
        return true;
      }
      const bitmap: Bitmap = new Uint32Array(PAGE_WORDS + 1);
      for (const b of words) bitmap[b >>> 5] |= 1 << (b & 31);
      bitmap[PAGE_WORDS] = words.length;
      this.#pages.set(page, bitmap);
      words = bitmap;
    }
    const mask = 1 << (bit & 31);
    const w = bit >>> 5;
    if (words[w] & mask) return false;
    words[w] |= mask;
    this.#count++;
    if (++words[PAGE_WORDS] === PAGE_CLUSTERS) this.#pages.set(page, FULL);
    return true;
  }

  /** Adds the clusters `from .. to-1`, none of which may be in the set yet; returns the first that was. */
  addRange(from: number, to: number): number | undefined {
    for (let c = from; c < to; c++) if (!this.add(c)) return c;
    return undefined;
  }

  /** Whether `cluster` is in the set. */
  has(cluster: number): boolean {
    const words = this.#pages.get(Math.floor(cluster / PAGE_CLUSTERS));
    if (words === undefined) return false;
    if (words === FULL) return true;
    const bit = cluster % PAGE_CLUSTERS;
    if (Array.isArray(words)) return words.includes(bit);
    return (words[bit >>> 5] & (1 << (bit & 31))) !== 0;
  }

  /** The lowest cluster in `0 .. total-1` that is not in the set, or undefined. */
  firstMissing(total: number): number | undefined {
    if (this.#count >= total) return undefined;
    for (let page = 0; page * PAGE_CLUSTERS < total; page++) {
      const words = this.#pages.get(page);
      const base = page * PAGE_CLUSTERS;
      if (words === undefined) return base;
      if (words === FULL) continue;
      if (Array.isArray(words)) {
        // Fewer than SPARSE_LIMIT clusters: a gap is among the first few.
        for (let c = base; c < total; c++) if (!words.includes(c - base)) return c;
        return undefined;
      }
      for (let w = 0; w < PAGE_WORDS; w++) {
        if (words[w] === 0xffffffff) continue;
        for (let b = 0; b < 32; b++) {
          const c = base + w * 32 + b;
          if (c >= total) return undefined;
          if ((words[w] & (1 << b)) === 0) return c;
        }
      }
    }
    return undefined;
  }
}
