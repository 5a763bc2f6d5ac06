import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { bucketAt, bucketCount, bucketCounts, bucketRange, dominantStates, panRange, pfnAt, rangeFromDrag, zoomRange } from '../src/lib/pagemap.js';
import { Samples } from '../src/lib/series.js';

const MAP = {
  lo: 0, hi: 40, width: 4, bucket_pages: 10,
  states: ['free', 'active', 'wired', 'none'],
  counts: { free: [10, 2, 0, 0], active: [0, 8, 0, 0], wired: [0, 0, 5, 0], none: [0, 0, 5, 0] },
};

describe('pagemap buckets', () => {
  it('find the dominant state (ties to the first listed, -1 when empty)', () => {
    assert.equal(bucketCount(MAP), 4);
    assert.deepEqual([...dominantStates(MAP)], [0, 1, 2, -1]);
  });
  it('map buckets to pfn ranges and positions to buckets', () => {
    assert.deepEqual(bucketRange(MAP, 1), [10, 20]);
    assert.deepEqual(bucketRange({ ...MAP, hi: 35 }, 3), [30, 35]);
    assert.equal(bucketAt(MAP, 0, 400), 0);
    assert.equal(bucketAt(MAP, 399, 400), 3);
    assert.equal(bucketAt(MAP, 500, 400), 3);
    assert.deepEqual(bucketCounts(MAP, 1), [['active', 8], ['free', 2]]);
    assert.equal(pfnAt({ lo: 100, hi: 200 }, 50, 100), 150);
    assert.equal(pfnAt({ lo: 100, hi: 200 }, 100, 100), 199);
  });
});

describe('zooming', () => {
  const bounds = { min: 0, max: 1000 };
  it('halves the span around a centre and stays inside the machine', () => {
    assert.deepEqual(zoomRange({ lo: 0, hi: 1000 }, { factor: 0.5, ...bounds }), { lo: 250, hi: 750 });
    assert.deepEqual(zoomRange({ lo: 0, hi: 1000 }, { factor: 0.5, centre: 0, ...bounds }), { lo: 0, hi: 500 });
    assert.deepEqual(zoomRange({ lo: 250, hi: 750 }, { factor: 4, ...bounds }), { lo: 0, hi: 1000 });
    assert.deepEqual(zoomRange({ lo: 0, hi: 100 }, { factor: 0.01, ...bounds, minSpan: 64 }), { lo: 18, hi: 82 });
  });
  it('pans by a fraction of the span', () => {
    assert.deepEqual(panRange({ lo: 100, hi: 200 }, 0.5, bounds), { lo: 150, hi: 250 });
    assert.deepEqual(panRange({ lo: 100, hi: 200 }, -5, bounds), { lo: 0, hi: 100 });
    assert.deepEqual(panRange({ lo: 800, hi: 1000 }, 1, bounds), { lo: 800, hi: 1000 });
  });
  it('selects the dragged range, or nothing for a click', () => {
    assert.deepEqual(rangeFromDrag({ lo: 0, hi: 1000 }, 100, 300, 1000), { lo: 100, hi: 301 });
    assert.deepEqual(rangeFromDrag({ lo: 0, hi: 1000 }, 300, 100, 1000), { lo: 100, hi: 301 });
    assert.equal(rangeFromDrag({ lo: 0, hi: 1000 }, 100, 101, 1000), null);
    assert.deepEqual(rangeFromDrag({ lo: 0, hi: 1000 }, 100, 105, 1000, 16), { lo: 95, hi: 111 });
  });
});

describe('Samples', () => {
  const g = (free) => ({ v_free_count: free, v_cache_count: 0, v_inactive_count: 0, v_active_count: 0, v_wire_count: 1, v_free_min: 83 });
  it('give uPlot columns on wall time', () => {
    const s = new Samples(10);
    s.push({ time: 1, tick: 0, seq: 1 }, g(10));
    s.push({ time: 2, tick: 0, seq: 2 }, g(9));
    const [x, free, , , , wired] = s.data('time');
    assert.deepEqual(x, [1, 2]);
    assert.deepEqual(free, [10, 9]);
    assert.deepEqual(wired, [1, 1]);
  });
  it('keep one point per tick on the tick axis and restart after a reset', () => {
    const s = new Samples(10);
    s.push({ time: 1, tick: 0, seq: 1 }, g(10));
    s.push({ time: 2, tick: 0, seq: 2 }, g(9));
    s.push({ time: 3, tick: 1, seq: 3 }, g(8));
    assert.deepEqual(s.data('ticks').slice(0, 2), [[0, 1], [9, 8]]);
    s.push({ time: 4, tick: 0, seq: 0 }, g(20)); // reset: ticks start over
    assert.deepEqual(s.data('ticks').slice(0, 2), [[0], [20]]);
  });
  it('are bounded and never let wall time go back', () => {
    const s = new Samples(3);
    for (let i = 0; i < 5; i++) s.push({ time: i, tick: i, seq: i }, g(i));
    assert.equal(s.length, 3);
    assert.deepEqual(s.time, [2, 3, 4]);
    s.push({ time: 1, tick: 9, seq: 9 }, g(0));
    assert.deepEqual(s.time, [3, 4, 4]);
    s.clear();
    assert.equal(s.length, 0);
  });
});
