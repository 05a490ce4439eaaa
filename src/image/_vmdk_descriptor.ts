/**
 * VMDK text descriptors, parsed without I/O: the `key=value` lines and the
 * extent lines (`RW 4192256 SPARSE "disk-s001.vmdk"`).
 *
 * @module
 */

import { oversized, quote, unsupported } from "./_image_errors.ts";

/** One extent line of a descriptor. */
export interface DescriptorExtent {
  access: string;
  sectors: number;
  type: string;
  file: string | undefined;
  offset: number;
}

const SECTOR = 512;
const EXTENT_LINE = /^(RW|RDONLY|NOACCESS)\s+(\d+)\s+(\w+)(?:\s+"([^"]*)"(?:\s+(\d+))?)?$/i;

/** The key=value lines and extent lines of a descriptor. */
export function parseDescriptor(
  text: string,
): { values: Map<string, string>; extents: DescriptorExtent[] } {
  const values = new Map<string, string>();
  const extents: DescriptorExtent[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.replace(/\0+$/, "").trim();
    if (line === "" || line.startsWith("#")) continue;
    const extent = EXTENT_LINE.exec(line);
    if (extent !== null) {
      const sectors = Number(extent[2]);
      const offset = Number(extent[5] ?? "0");
      if (!Number.isSafeInteger(sectors * SECTOR) || !Number.isSafeInteger(offset * SECTOR)) {
        throw oversized("vmdk", `the extent ${quote(line)} is too large`);
      }
      extents.push({
        access: extent[1].toUpperCase(),
        sectors,
        type: extent[3].toUpperCase(),
        file: extent[4],
        offset,
      });
      continue;
    }
    const value = /^([\w.]+)\s*=\s*"?([^"]*)"?$/.exec(line);
    if (value !== null) values.set(value[1], value[2].trim());
  }
  return { values, extents };
}

/** Refuses a delta disk (one with a parent), judged by its descriptor's values. */
export function refuseDelta(values: Map<string, string>, file?: string): void {
  const parent = values.get("parentCID");
  const hint = values.get("parentFileNameHint");
  if ((parent !== undefined && parent.toLowerCase() !== "ffffffff") || hint !== undefined) {
    const name = hint === undefined ? "" : ` (${quote(hint)})`;
    throw unsupported("vmdk", `delta disks with a parent${name} are not supported`, file);
  }
}
