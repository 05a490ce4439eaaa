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

/** A ClusterSet holding `clusters`, checked against a Set as it goes. */
function filled(clusters: Iterable<number>): ClusterSet {
  const set = new ClusterSet();
  const model = new Set<number>();
  for (const c of clusters) {
    assert.equal(set.add(c), !model.has(c), `add(${c})`);
    model.add(c);
  }
  assert.equal(set.size, model.size);
  return set;
}

function* range(from: number, to: number, step = 1): Generator<number> {
  for (let c = from; c < to; c += step) yield c;
}

Deno.test("ClusterSet keeps a few sparse clusters in one small leaf", () => {
  const set = filled([5, 3, 2 ** 32 - 1, 70000, 0]);
  assert.deepEqual(set.denseStats, { bitmaps: 0, full: 0, leaves: 1 });
  assert.equal(set.memoryBytes, 64 * 4);
  for (const c of [0, 3, 5, 70000, 2 ** 32 - 1]) assert.equal(set.has(c), true);
  for (const c of [1, 4, 6, 69999, 2 ** 32 - 2]) assert.equal(set.has(c), false);
  assert.equal(set.add(2 ** 32 - 1), false);
  // firstMissing is asked of sets whose clusters are all below `total`.
  assert.equal(filled([0, 2]).firstMissing(3), 1);
  assert.equal(filled([2, 0, 1]).firstMissing(3), undefined);
});

Deno.test("ClusterSet splits a full leaf and still finds every cluster", () => {
  // One cluster in each of 3,000 pages: no page is dense, the leaves split.
  const clusters = [...range(0, 3000)].map((p) => p * 65536 + (p % 7));
  const set = filled(clusters.toReversed());
  const stats = set.denseStats;
  assert.equal(stats.bitmaps + stats.full, 0);
  assert.ok(stats.leaves >= 3, `${stats.leaves} leaves`);
  for (const c of clusters) {
    assert.equal(set.has(c), true);
    assert.equal(set.has(c + 1), false);
    assert.equal(set.add(c), false);
  }
  assert.equal(filled([0, 65536, 65537]).firstMissing(65538), 1);
});

Deno.test("ClusterSet turns a page with 2,048 or more clusters in the leaves into a bitmap at a split", () => {
  // Page 1 gets every 3rd cluster in a shuffled order (leaves split as they
  // fill; a split finding 2,048 of the page moves them); pages 0 and 2 keep a
  // few clusters in the same leaves, which the cut must keep.
  const page1 = [...range(65536, 131072, 3)].slice(0, 8000);
  let x = 7;
  for (let i = page1.length - 1; i > 0; i--) {
    x = (x * 1103515245 + 12345) >>> 0;
    const j = x % (i + 1);
    [page1[i], page1[j]] = [page1[j], page1[i]];
  }
  const neighbours = [10, 20, 65535, 131072, 131073, 200000];
  const set = filled([...neighbours, ...page1]);
  assert.equal(set.denseStats.bitmaps, 1);
  assert.ok(set.memoryBytes <= 8196 + 2 * 1088 * 4, `${set.memoryBytes} bytes`);
  for (const c of [...neighbours, ...page1]) assert.equal(set.has(c), true, `has(${c})`);
  assert.equal(set.has(65537), false);
  assert.equal(set.add(page1[0]), false);
  assert.equal(set.add(65537), true, "a new cluster of the dense page goes into its bitmap");
  assert.equal(set.has(65537), true);
  assert.equal(set.firstMissing(131072), 0);
});

Deno.test("ClusterSet drops a bitmap for a marker when its page fills up, in any order", () => {
  const order = [...range(0, 65536)];
  let x = 99;
  for (let i = order.length - 1; i > 0; i--) {
    x = (x * 1103515245 + 12345) >>> 0;
    const j = x % (i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  const set = filled(order);
  assert.deepEqual(set.denseStats, { bitmaps: 0, full: 1, leaves: 0 });
  assert.equal(set.memoryBytes, 0);
  assert.equal(set.firstMissing(65536), undefined);
  assert.equal(set.firstMissing(65537), 65536);
  assert.equal(set.add(12345), false);
});

Deno.test("ClusterSet written in order keeps one bitmap and full markers", () => {
  const set = filled(range(0, 5 * 65536 + 3000));
  assert.deepEqual(set.denseStats, { bitmaps: 1, full: 5, leaves: 0 });
  assert.equal(set.firstMissing(5 * 65536 + 3000), undefined);
  assert.equal(set.firstMissing(5 * 65536 + 3001), 5 * 65536 + 3000);
});

Deno.test("ClusterSet stays under 5 bytes per cluster for hostile layouts", () => {
  const layouts: [string, Iterable<number>][] = [
    ["one per page", [...range(0, 20000)].map((p) => p * 65536 + 1)],
    [
      "129 per page, ascending",
      function* () {
        for (let p = 0; p < 300; p++) yield* range(p * 65536, p * 65536 + 129 * 508, 508);
      }(),
    ],
    [
      "2,047 per page",
      function* () {
        for (let p = 0; p < 30; p++) yield* range(p * 65536, p * 65536 + 2047 * 32, 32);
      }(),
    ],
    ["every other cluster, descending", [...range(0, 200000, 2)].reverse()],
    [
      "pseudo-random",
      function* () {
        let x = 1;
        for (let i = 0; i < 60000; i++) {
          x = (x * 1103515245 + 12345) >>> 0;
          yield x;
        }
      }(),
    ],
  ];
  for (const [name, clusters] of layouts) {
    const set = filled(clusters);
    const perCluster = set.memoryBytes / set.size;
    assert.ok(perCluster <= 4.6, `${name}: ${perCluster.toFixed(2)} bytes per cluster`);
  }
});

Deno.test("ClusterSet behaves as a Set through splits, bitmaps and full pages", async () => {
  const fc = (await import("npm:fast-check@^4.3.0")).default;
  fc.assert(
    fc.property(
      fc.array(
        fc.oneof(
          fc.integer({ min: 65536, max: 65536 + 6000 }), // one page, dense enough to promote
          fc.integer({ min: 0, max: 4 * 65536 }), // a few pages
          fc.integer({ min: 0, max: 2 ** 32 - 1 }), // anywhere
        ),
        { minLength: 1000, maxLength: 9000 },
      ),
      (clusters) => {
        const set = filled(clusters);
        const model = new Set(clusters);
        for (let c = 65536; c < 65536 + 6100; c++) assert.equal(set.has(c), model.has(c));
        for (const c of clusters) assert.equal(set.add(c), false);
        const total = 4 * 65536 + 1;
        let missing: number | undefined;
        for (let c = 0; c < total && missing === undefined; c++) if (!model.has(c)) missing = c;
        assert.equal(filled(clusters.filter((c) => c < total)).firstMissing(total), missing);
      },
    ),
    { numRuns: 40, seed: 20261202 },
  );
});
