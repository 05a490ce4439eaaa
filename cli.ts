/**
 * A drop-in replacement for Proxmox VE's `vma` command: `create`, `list`,
 * `config`, `verify` and `extract` with the same output and error messages,
 * plus `-` for stdin/stdout, compressed archives (zstd, gzip, lzop),
 * compressed output, reproducible archives and a progress bar.
 *
 * ```sh
 * deno run -A jsr:@vmakit/vma/cli list vzdump-qemu-100-2026_11_24-14_21_54.vma.zst
 * deno task compile   # builds dist/vma
 * ```
 *
 * Run `vma --help` and `vma <command> --help` for the options; the exit status
 * is 0 on success, 1 on failure, 2 on a usage error and 255 when `vma config`
 * finds no such config.
 *
 * @module
 */
import { main } from "./src/cli/main.ts";

export { main };

if (import.meta.main) {
  Deno.exitCode = await main(Deno.args);
}
