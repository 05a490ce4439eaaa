import assert from "node:assert/strict";
import { ClusterSet } from "../../src/vma/_cluster_set.ts";

Deno.test("ClusterSet keeps answering for pages that filled up, in any order", () => {
  const total = 2 * 65536 + 1000;
  const order = Array.from({ length: total }, (_, i) => i);
  let x = 12345;
  for (let i = order.length - 1; i > 0; i--) {
    x = (x * 1103515245 + 12345) >>> 0;
    const j = x % (i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  const set = new ClusterSet();
  const missing = order.pop()!; // one cluster never added
  for (const c of order) assert.equal(set.add(c), true);
  assert.equal(set.size, total - 1);
  assert.equal(set.firstMissing(total), missing);
  for (const c of [0, 65535, 65536, 131071, 131072, total - 1]) {
    assert.equal(set.has(c), c !== missing);
    if (c !== missing) assert.equal(set.add(c), false, `cluster ${c} is already there`);
  }
  assert.equal(set.has(total), false);
  assert.equal(set.add(missing), true);
  assert.equal(set.firstMissing(total), undefined);
  assert.equal(set.size, total);
});

Deno.test("ClusterSet filled in order reports the first gap after full pages", () => {
  const set = new ClusterSet();
  for (let c = 0; c < 3 * 65536; c++) set.add(c);
  assert.equal(set.firstMissing(3 * 65536), undefined);
  assert.equal(set.firstMissing(3 * 65536 + 5), 3 * 65536);
  assert.equal(set.add(70000), false);
  assert.equal(set.has(3 * 65536 - 1), true);
});
