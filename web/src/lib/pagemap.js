// The physical memory map (`GET …/pagemap` and the stream's `pagemap` topic): buckets of
// pages between pfn `lo` and `hi`, each with a count per page state.  Pure helpers for
// drawing it (which state dominates a bucket) and for zooming (which pfn range to ask for).

/**
 * @typedef {object} PageMap
 * @property {number} lo            first pfn
 * @property {number} hi            pfn past the end
 * @property {number} width         buckets asked for
 * @property {number} bucket_pages  pages per bucket
 * @property {string[]} states
 * @property {Record<string, number[]>} counts   per state, one count per bucket
 * @property {Record<string, number>} [totals]
 */

/** @param {PageMap} map */
export function bucketCount(map) {
  let n = 0;
  for (const s of map.states ?? []) n = Math.max(n, map.counts?.[s]?.length ?? 0);
  return n;
}

/**
 * For each bucket, the index (into `map.states`) of the state with most pages; -1 for an
 * empty bucket.  Ties go to the state listed first.
 * @param {PageMap} map
 * @returns {Int16Array}
 */
export function dominantStates(map) {
  const n = bucketCount(map);
  const out = new Int16Array(n).fill(-1);
  const best = new Float64Array(n);
  map.states.forEach((state, si) => {
    const counts = map.counts[state] ?? [];
    for (let b = 0; b < n; b++) {
      const c = counts[b] ?? 0;
      if (c > best[b]) {
        best[b] = c;
        out[b] = si;
      }
    }
  });
  return out;
}

/**
 * The pfn range a bucket covers: [first, past-the-end).
 * @param {PageMap} map
 * @param {number} bucket
 * @returns {[number, number]}
 */
export function bucketRange(map, bucket) {
  const per = Math.max(1, map.bucket_pages);
  const first = map.lo + bucket * per;
  return [first, Math.min(map.hi, first + per)];
}

/**
 * Counts of every state in one bucket, largest first, zeros left out.
 * @param {PageMap} map
 * @param {number} bucket
 * @returns {Array<[string, number]>}
 */
export function bucketCounts(map, bucket) {
  /** @type {Array<[string, number]>} */
  const out = [];
  for (const s of map.states) {
    const c = map.counts[s]?.[bucket] ?? 0;
    if (c > 0) out.push([s, c]);
  }
  return out.sort((a, b) => b[1] - a[1]);
}

/**
 * The bucket under horizontal position `x` of a strip `pixels` wide.
 * @param {PageMap} map
 * @param {number} x
 * @param {number} pixels
 */
export function bucketAt(map, x, pixels) {
  const n = bucketCount(map);
  if (n === 0 || pixels <= 0) return -1;
  return Math.max(0, Math.min(n - 1, Math.floor((x / pixels) * n)));
}

/**
 * The pfn under horizontal position `x`.
 * @param {{lo: number, hi: number}} range
 * @param {number} x
 * @param {number} pixels
 */
export function pfnAt(range, x, pixels) {
  const f = Math.max(0, Math.min(1, x / pixels));
  return Math.min(range.hi - 1, Math.floor(range.lo + f * (range.hi - range.lo)));
}

/**
 * A range zoomed by `factor` (0.5: twice as close) around pfn `centre`, kept within
 * [min, max) and at least `minSpan` pages wide.
 * @param {{lo: number, hi: number}} range
 * @param {{factor: number, centre?: number, min: number, max: number, minSpan?: number}} opts
 * @returns {{lo: number, hi: number}}
 */
export function zoomRange(range, opts) {
  const span = range.hi - range.lo;
  const centre = opts.centre ?? range.lo + span / 2;
  const minSpan = Math.min(opts.minSpan ?? 64, opts.max - opts.min);
  const newSpan = Math.max(minSpan, Math.min(opts.max - opts.min, Math.round(span * opts.factor)));
  // keep the centre at the same relative position, so zooming under the pointer feels fixed
  const rel = span > 0 ? (centre - range.lo) / span : 0.5;
  let lo = Math.round(centre - rel * newSpan);
  lo = Math.max(opts.min, Math.min(opts.max - newSpan, lo));
  return { lo, hi: lo + newSpan };
}

/**
 * A range moved by `fraction` of its width (negative: towards low addresses).
 * @param {{lo: number, hi: number}} range
 * @param {number} fraction
 * @param {{min: number, max: number}} bounds
 */
export function panRange(range, fraction, bounds) {
  const span = range.hi - range.lo;
  let lo = Math.round(range.lo + span * fraction);
  lo = Math.max(bounds.min, Math.min(bounds.max - span, lo));
  return { lo, hi: lo + span };
}

/**
 * The range selected by dragging from x0 to x1 on a strip `pixels` wide showing `range`.
 * Null when the drag is too short to mean a selection.
 * @param {{lo: number, hi: number}} range
 * @param {number} x0
 * @param {number} x1
 * @param {number} pixels
 * @param {number} [minSpan]
 */
export function rangeFromDrag(range, x0, x1, pixels, minSpan = 16) {
  if (Math.abs(x1 - x0) < 3) return null;
  const a = pfnAt(range, Math.min(x0, x1), pixels);
  const b = pfnAt(range, Math.max(x0, x1), pixels) + 1;
  if (b - a < minSpan) {
    const mid = Math.floor((a + b) / 2);
    const lo = Math.max(range.lo, mid - Math.floor(minSpan / 2));
    return { lo, hi: Math.min(range.hi, lo + minSpan) };
  }
  return { lo: a, hi: b };
}
