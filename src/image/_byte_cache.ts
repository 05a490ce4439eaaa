/**
 * A least-recently-used cache of loaded values (tables, decompressed units)
 * bounded by their total size in bytes, not by how many there are.
 *
 * @module
 */

interface Entry<V> {
  value: Promise<V>;
  bytes: number;
}

/**
 * Caches promises by key; evicts the least recently used entries once the
 * charged bytes pass the budget. The entry just asked for always stays, even
 * alone over budget, so a unit larger than the budget is still loaded once
 * per use rather than once per read.
 */
export class ByteCache<K, V> {
  #budget: number;
  #entries = new Map<K, Entry<V>>();
  #bytes = 0;

  /** @param budget Bytes the cached values may take together. */
  constructor(budget: number) {
    this.#budget = budget;
  }

  /** Bytes charged by the entries held now. */
  get bytes(): number {
    return this.#bytes;
  }

  /**
   * The value for `key`, loaded with `load` (charged `bytes`) when missing.
   * Before loading, older entries are evicted so that they and the new one fit
   * the budget. A failed load is dropped, not cached.
   */
  get(key: K, bytes: number, load: () => Promise<V>): Promise<V> {
    const found = this.#entries.get(key);
    if (found !== undefined) {
      this.#entries.delete(key);
      this.#entries.set(key, found);
      return found.value;
    }
    for (const [oldKey, old] of this.#entries) {
      if (this.#bytes + bytes <= this.#budget) break;
      this.#entries.delete(oldKey);
      this.#bytes -= old.bytes;
    }
    const entry = { value: load(), bytes };
    this.#entries.set(key, entry);
    this.#bytes += bytes;
    entry.value.catch(() => {
      if (this.#entries.get(key) === entry) {
        this.#entries.delete(key);
        this.#bytes -= bytes;
      }
    });
    return entry.value;
  }

  /** Drops every entry. */
  clear(): void {
    this.#entries.clear();
    this.#bytes = 0;
  }
}
