// Test files in the zstd seekable format: frames compressed with node:zlib,
// then the seek table (a skippable frame) and its footer.
import { zstdCompressSync } from "node:zlib";

/** One frame: its compressed bytes and the decompressed size the table gives it. */
export interface TableEntry {
  compressed: Uint8Array;
  decompressed: number;
}

/** `data` cut into frames of `frameSize` bytes, each compressed alone. */
export function framesOf(data: Uint8Array, frameSize: number): TableEntry[] {
  const out: TableEntry[] = [];
  for (let at = 0; at < data.length; at += frameSize) {
    const piece = data.subarray(at, at + frameSize);
    out.push({ compressed: new Uint8Array(zstdCompressSync(piece)), decompressed: piece.length });
  }
  return out;
}

/** The frames, then the seek table (with checksums when `checksums`) and the footer. */
export function seekableFile(
  entries: TableEntry[],
  options: { checksums?: boolean; descriptor?: number; count?: number } = {},
): Uint8Array {
  const entry = options.checksums ? 12 : 8;
  const table = new Uint8Array(8 + entries.length * entry + 9);
  const v = new DataView(table.buffer);
  v.setUint32(0, 0x184d2a5e, true);
  v.setUint32(4, entries.length * entry + 9, true);
  entries.forEach((e, i) => {
    v.setUint32(8 + i * entry, e.compressed.length, true);
    v.setUint32(12 + i * entry, e.decompressed, true);
    if (options.checksums) v.setUint32(16 + i * entry, 0x12345678, true);
  });
  const footer = 8 + entries.length * entry;
  v.setUint32(footer, options.count ?? entries.length, true);
  v.setUint8(footer + 4, options.descriptor ?? (options.checksums ? 0x80 : 0));
  v.setUint32(footer + 5, 0x8f92eab1, true);
  const total = entries.reduce((n, e) => n + e.compressed.length, 0) + table.length;
  const out = new Uint8Array(total);
  let at = 0;
  for (const e of entries) {
    out.set(e.compressed, at);
    at += e.compressed.length;
  }
  out.set(table, at);
  return out;
}
