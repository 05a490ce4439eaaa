// One image writer at scale, run as its own process by image_writers_test.ts
// so that its peak RSS is measured alone: a disk of `--size` bytes, 128 MiB of
// random data written at the start, then 512 writes of 64 KiB spread over the
// whole disk in a shuffled order (each filled with one byte value), then
// close. Prints one JSON line: the peak RSS (VmHWM), the file size, and the
// scattered writes as [offset, value] for the caller to check.
//
//   deno run -A tests/image/_writer_memory_main.ts <format> <size> <path>
import type { DiskImageWriter, PositionedWriter } from "../../src/image/disk_image_writer.ts";
import { createVdiWriter } from "../../src/image/vdi_writer.ts";
import { createVpcWriter } from "../../src/image/vpc_writer.ts";
import { createVmdkWriter } from "../../src/image/vmdk_writer.ts";
import { createVhdxWriter } from "../../src/image/vhdx_writer.ts";
import { openPositionedFile } from "./_positioned_file.ts";

const [label, sizeText, path] = Deno.args;
const size = Number(sizeText);
const factories: Record<string, (t: PositionedWriter, s: number) => Promise<DiskImageWriter>> = {
  vdi: createVdiWriter,
  vpc: createVpcWriter,
  vhdx: createVhdxWriter,
  vmdk: (t, s) => createVmdkWriter(t, s),
  "vmdk-stream": (t, s) => createVmdkWriter(t, s, { subformat: "streamOptimized" }),
};
const CHUNK = 65536;
const file = await openPositionedFile(path);
const writer = await factories[label](file, size);
const random = new Uint8Array(CHUNK);
const sequential = Number(Deno.env.get("SEQUENTIAL_CHUNKS") ?? 2048);
for (let i = 0; i < sequential; i++) {
  crypto.getRandomValues(random);
  await writer.write(i * CHUNK, random);
}
const scattered: [number, number][] = [];
const slots = Math.floor(size / CHUNK);
for (let i = 0; i < 512; i++) {
  // spread over the disk past the random part, in a shuffled order
  const k = (i * 337) % 512;
  const slot = 2048 + Math.floor((slots - 2049) * k / 511);
  const value = (k % 255) + 1;
  scattered.push([slot * CHUNK, value]);
  await writer.write(slot * CHUNK, new Uint8Array(CHUNK).fill(value));
}
await writer.close();
file.close();
const status = await Deno.readTextFile("/proc/self/status");
const peakKiB = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1]);
console.log(
  JSON.stringify({ peakRss: peakKiB * 1024, fileSize: (await Deno.stat(path)).size, scattered }),
);
