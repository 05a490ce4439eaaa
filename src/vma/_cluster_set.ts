// A set of cluster numbers (0 .. 2^32-1) whose memory is bounded by the
// clusters in it, whatever their layout: the reader keeps one per device to
// find duplicated and missing clusters, the writer one per device to refuse
// a cluster written twice. Private to the library.
//
// Clusters live in one of two places, by their page (65,536 clusters, 4 GiB
// of disk):
// - sparse: sorted runs of 32-bit cluster numbers ("leaves", at most
//   LEAF_MAX each, ordered; a B+-tree's leaf level, searched by binary search).
//   A full leaf splits into two halves of LEAF_MAX/2 (capacity + GROW slack),
//   except that clusters appended past the last leaf start a new one (so
//   clusters in order fill leaves completely, without copies);
// - dense: a page found with at least PROMOTE clusters in the leaves
//   (checked when a leaf splits or a new one starts) moves into an 8 KiB
//   bitmap, and a bitmap whose every bit is set is dropped for a marker. A
//   device written in order (the usual case, at any size) keeps one bitmap
//   and one marker per 4 GiB.
//
// The bound. Each cluster an archive lists costs it at least 8 bytes of
// blockinfo (8.7 with the extent headers, 59 slots to 512 bytes). Here a
// sparse cluster costs at most 4 · (LEAF_MAX/2 + GROW) / (LEAF_MAX/2) = 4.5
// bytes, plus a leaf's object overhead (~200 bytes per ≥ 512 clusters, 0.4
// byte); a dense page costs 8,196 bytes for ≥ PROMOTE = 2,048 clusters, at
// most 4 bytes each; a full page about 100 bytes per 65,536 clusters. The
// only leaves below half full are the first, the last (up to 4 KiB of room)
// and the two a promotion cuts (shrunk to their contents): a constant per
// set and per dense page. So the bookkeeping stays under 5 bytes per listed
// cluster, under 60% of the archive bytes listing them, whatever the layout:
// one cluster per page, 129 per page (the layout that made an 8 KiB bitmap
// out of 1 KiB of blockinfo), or any other. Measured: 6.3 million clusters,
// 129 in every page of 12 16-TiB devices (a 55 MB archive), take ~25 MB
// here; `vma verify` peaks at ~100 MB RSS on it (542 MB before).

const PAGE_BITS = 16;
const PAGE_CLUSTERS = 1 << PAGE_BITS;
const PAGE_WORDS = PAGE_CLUSTERS >>> 5;
/** Largest leaf (entries). */
const LEAF_MAX = 1024;
/** Leaves grow by this many entries at a time. */
const GROW = 64;
/** Clusters of one page in the leaves that make it a bitmap. */
const PROMOTE = 2048;
/** A page whose every cluster is in the set. */
const FULL = "full";
/** A bitmap page: PAGE_WORDS words of bits, then the count of set bits. */
type Bitmap = Uint32Array;

/** A sorted run of cluster numbers; `keys[0 .. n)` are used. */
interface Leaf {
  keys: Uint32Array;
  n: number;
}

/** A set of cluster numbers of one device. */
export class ClusterSet {
  #count = 0;
  /** Dense pages, by page number. */
  #dense = new Map<number, Bitmap | typeof FULL>();
  /** The sparse clusters, in increasing order across and within leaves. */
  #leaves: Leaf[] = [];
  /** The last page looked up in `#dense`, and what it held. */
  #cachedPage = -1;
  #cached: Bitmap | typeof FULL | undefined;

  /** How many clusters are in the set. */
  get size(): number {
    return this.#count;
  }

  /** Bytes of typed arrays held (bitmaps and leaves), for tests of the bound. */
  get memoryBytes(): number {
    let bytes = 0;
    for (const page of this.#dense.values()) if (page !== FULL) bytes += page.byteLength;
    for (const leaf of this.#leaves) bytes += leaf.keys.byteLength;
    return bytes;
  }

  /** Pages held as bitmaps and as full markers, for tests. */
  get denseStats(): { bitmaps: number; full: number; leaves: number } {
    let full = 0;
    for (const page of this.#dense.values()) if (page === FULL) full++;
    return { bitmaps: this.#dense.size - full, full, leaves: this.#leaves.length };
  }

  /** Adds `cluster`; returns false when it was already there. */
  add(cluster: number): boolean {
    const page = cluster >>> PAGE_BITS;
    const dense = this.#denseOf(page);
    if (dense === FULL) return false;
    if (dense !== undefined) {
      const bit = cluster & (PAGE_CLUSTERS - 1);
      const mask = 1 << (bit & 31);
      const w = bit >>> 5;
      if (dense[w] & mask) return false;
      dense[w] |= mask;
      this.#count++;
      if (++dense[PAGE_WORDS] === PAGE_CLUSTERS) this.#setDense(page, FULL);
      return true;
    }
    if (!this.#addSparse(cluster)) return false;
    this.#count++;
    return true;
  }

  /** Adds the clusters `from .. to-1`, none of which may be in the set yet; returns the first that was. */
  addRange(from: number, to: number): number | undefined {
    for (let c = from; c < to; c++) if (!this.add(c)) return c;
    return undefined;
  }

  /** Whether `cluster` is in the set. */
  has(cluster: number): boolean {
    const dense = this.#denseOf(cluster >>> PAGE_BITS);
    if (dense === FULL) return true;
    if (dense !== undefined) {
      const bit = cluster & (PAGE_CLUSTERS - 1);
      return (dense[bit >>> 5] & (1 << (bit & 31))) !== 0;
    }
    const leaf = this.#leaves[this.#leafFor(cluster)];
    if (leaf === undefined) return false;
    const pos = lowerBound(leaf.keys, leaf.n, cluster);
    return pos < leaf.n && leaf.keys[pos] === cluster;
  }

  /** The lowest cluster in `0 .. total-1` that is not in the set, or undefined. */
  firstMissing(total: number): number | undefined {
    if (this.#count >= total) return undefined;
    // A cursor over the sparse clusters, which come in increasing order.
    let li = 0;
    let pos = 0;
    for (let page = 0; page * PAGE_CLUSTERS < total; page++) {
      const base = page * PAGE_CLUSTERS;
      const end = Math.min(total, base + PAGE_CLUSTERS);
      const dense = this.#dense.get(page);
      if (dense === FULL) continue;
      if (dense !== undefined) {
        const missing = firstZeroBit(dense, end - base);
        if (missing !== undefined) return base + missing;
        continue;
      }
      let expected = base;
      for (; li < this.#leaves.length; li++, pos = 0) {
        const leaf = this.#leaves[li];
        while (pos < leaf.n && leaf.keys[pos] < expected) pos++;
        while (pos < leaf.n && leaf.keys[pos] === expected && expected < end) {
          pos++;
          expected++;
        }
        if (pos < leaf.n) break; // the next key is past a gap, or past this page
      }
      if (expected < end) return expected;
    }
    return undefined;
  }

  #denseOf(page: number): Bitmap | typeof FULL | undefined {
    if (page !== this.#cachedPage) {
      this.#cachedPage = page;
      this.#cached = this.#dense.get(page);
    }
    return this.#cached;
  }

  #setDense(page: number, value: Bitmap | typeof FULL): void {
    this.#dense.set(page, value);
    this.#cachedPage = -1;
  }

  /** Index of the leaf where `cluster` is or would go (0 when there are none). */
  #leafFor(cluster: number): number {
    const leaves = this.#leaves;
    let lo = 0;
    let hi = leaves.length - 1;
    if (hi <= 0 || cluster >= leaves[hi].keys[0]) return Math.max(hi, 0);
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (leaves[mid].keys[0] <= cluster) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  #addSparse(cluster: number): boolean {
    if (this.#leaves.length === 0) {
      const keys = new Uint32Array(GROW);
      keys[0] = cluster;
      this.#leaves.push({ keys, n: 1 });
      return true;
    }
    let i = this.#leafFor(cluster);
    let leaf = this.#leaves[i];
    let pos = lowerBound(leaf.keys, leaf.n, cluster);
    if (pos < leaf.n && leaf.keys[pos] === cluster) return false;
    const last = i === this.#leaves.length - 1 && pos === leaf.n;
    if (last && leaf.n === LEAF_MAX) {
      // Appending past a full last leaf (clusters in order, the usual case):
      // start a new leaf at full size, leaving this one full.
      const keys = new Uint32Array(LEAF_MAX);
      keys[0] = cluster;
      this.#leaves.push({ keys, n: 1 });
      this.#promoteIfDense(cluster >>> PAGE_BITS);
      return true;
    }
    let split = false;
    if (leaf.n === LEAF_MAX) {
      this.#split(i);
      split = true;
      if (cluster >= this.#leaves[i + 1].keys[0]) i++;
      leaf = this.#leaves[i];
      pos = lowerBound(leaf.keys, leaf.n, cluster);
    }
    if (leaf.n === leaf.keys.length) {
      leaf.keys = resized(leaf.keys, leaf.n, last ? LEAF_MAX : leaf.n + GROW);
    }
    leaf.keys.copyWithin(pos + 1, pos, leaf.n);
    leaf.keys[pos] = cluster;
    leaf.n++;
    if (split) this.#promoteIfDense(cluster >>> PAGE_BITS);
    return true;
  }

  #split(i: number): void {
    const leaf = this.#leaves[i];
    const half = leaf.n >>> 1;
    const left = resized(leaf.keys.subarray(0, half), half, half + GROW);
    const right = resized(leaf.keys.subarray(half, leaf.n), leaf.n - half, leaf.n - half + GROW);
    this.#leaves.splice(i, 1, { keys: left, n: half }, { keys: right, n: leaf.n - half });
  }

  /** Where the first key at or above `key` is: leaf index and position. */
  #locate(key: number): [number, number] {
    const i = this.#leafFor(key);
    const leaf = this.#leaves[i];
    const pos = lowerBound(leaf.keys, leaf.n, key);
    if (pos === leaf.n && i + 1 < this.#leaves.length) return [i + 1, 0];
    return [i, pos];
  }

  /** Moves the clusters of `page` from the leaves into a bitmap, when there are PROMOTE or more. */
  #promoteIfDense(page: number): void {
    const [l0, p0] = this.#locate(page * PAGE_CLUSTERS);
    const [l1, p1] = this.#locate((page + 1) * PAGE_CLUSTERS);
    let count = 0;
    for (let l = l0; l <= l1; l++) {
      count += (l === l1 ? p1 : this.#leaves[l].n) - (l === l0 ? p0 : 0);
    }
    if (count < PROMOTE) return;
    const bitmap: Bitmap = new Uint32Array(PAGE_WORDS + 1);
    for (let l = l0; l <= l1; l++) {
      const leaf = this.#leaves[l];
      for (let p = l === l0 ? p0 : 0; p < (l === l1 ? p1 : leaf.n); p++) {
        const bit = leaf.keys[p] & (PAGE_CLUSTERS - 1);
        bitmap[bit >>> 5] |= 1 << (bit & 31);
      }
    }
    bitmap[PAGE_WORDS] = count;
    this.#cut(l0, p0, l1, p1);
    this.#setDense(page, count === PAGE_CLUSTERS ? FULL : bitmap);
  }

  /** Removes the keys from (l0, p0) up to (l1, p1) and shrinks what is left. */
  #cut(l0: number, p0: number, l1: number, p1: number): void {
    const first = this.#leaves[l0];
    if (l0 === l1) {
      first.keys.copyWithin(p0, p1, first.n);
      first.n -= p1 - p0;
    } else {
      first.n = p0;
      const last = this.#leaves[l1];
      last.keys.copyWithin(0, p1, last.n);
      last.n -= p1;
    }
    const kept: Leaf[] = [];
    for (const l of l0 === l1 ? [first] : [first, this.#leaves[l1]]) {
      if (l.n === 0) continue;
      if (l.keys.length > l.n + GROW) l.keys = resized(l.keys, l.n, l.n + GROW);
      kept.push(l);
    }
    this.#leaves.splice(l0, l1 - l0 + 1, ...kept);
  }
}

/** A copy of `keys[0 .. n)` in a new array of `capacity` entries. */
function resized(keys: Uint32Array, n: number, capacity: number): Uint32Array {
  const out = new Uint32Array(capacity);
  out.set(keys.subarray(0, n));
  return out;
}

/** The first position in `keys[0 .. n)` whose key is at or above `key`. */
function lowerBound(keys: Uint32Array, n: number, key: number): number {
  if (n === 0 || keys[n - 1] < key) return n; // appending: the usual case
  let lo = 0;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (keys[mid] < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The first clear bit below `limit` in a bitmap page, or undefined. */
function firstZeroBit(bitmap: Bitmap, limit: number): number | undefined {
  for (let w = 0; w * 32 < limit; w++) {
    if (bitmap[w] === 0xffffffff) continue;
    for (let b = 0; b < 32; b++) {
      const bit = w * 32 + b;
      if (bit >= limit) return undefined;
      if ((bitmap[w] & (1 << b)) === 0) return bit;
    }
  }
  return undefined;
}
