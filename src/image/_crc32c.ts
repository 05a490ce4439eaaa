/**
 * CRC-32C (Castagnoli, reflected polynomial 0x82f63b78), as VHDX uses for its
 * headers, region tables and log entries: table-driven, incremental.
 *
 * @module
 */

const TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/**
 * Continues a CRC-32C over `bytes`: start with `crc32c(bytes)` and pass the
 * result as `crc` for the next piece.
 */
export function crc32c(bytes: Uint8Array, crc = 0): number {
  let c = ~crc >>> 0;
  for (let i = 0; i < bytes.length; i++) c = TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

/**
 * The CRC-32C of `bytes` with the 4-byte checksum field at `at` taken as
 * zero, as VHDX computes its checksums.
 */
export function crc32cWithZeroField(bytes: Uint8Array, at: number): number {
  let crc = crc32c(bytes.subarray(0, at));
  crc = crc32c(new Uint8Array(4), crc);
  return crc32c(bytes.subarray(at + 4), crc);
}
