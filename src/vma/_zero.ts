// Zero detection per 4 KiB block, over 32-bit words. Private to the library.

const BLOCK = 4096;
const BLOCK_WORDS = BLOCK >>> 2;

/**
 * The mask of the 4 KiB blocks of `bytes[start .. start+length)` that hold a
 * non-zero byte: bit j for the block at `start + j*4096`. `length` is at most
 * 65,536; a last block shorter than 4 KiB is tested over its length only.
 */
export function nonZeroMask(bytes: Uint8Array, start: number, length: number): number {
  let mask = 0;
  const abs = bytes.byteOffset + start;
  if ((abs & 3) === 0) {
    const words = length >>> 2;
    const u32 = new Uint32Array(bytes.buffer, abs, words);
    for (let j = 0, w = 0; w < words; j++, w += BLOCK_WORDS) {
      const end = Math.min(words, w + BLOCK_WORDS);
      let acc = 0;
      let k = w;
      for (; k + 8 <= end; k += 8) {
        acc |= u32[k] | u32[k + 1] | u32[k + 2] | u32[k + 3] | u32[k + 4] | u32[k + 5] |
          u32[k + 6] | u32[k + 7];
        if (acc !== 0) break;
      }
      for (; acc === 0 && k < end; k++) acc |= u32[k];
      if (acc !== 0) mask |= 1 << j;
    }
    // Bytes past the last whole word.
    for (let i = words << 2; i < length; i++) {
      if (bytes[start + i] !== 0) mask |= 1 << (i >>> 12);
    }
    return mask;
  }
  for (let i = 0; i < length; i++) {
    if (bytes[start + i] !== 0) {
      mask |= 1 << (i >>> 12);
      i = ((i >>> 12) + 1) * BLOCK - 1; // skip to the next block
    }
  }
  return mask;
}
