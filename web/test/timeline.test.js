import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { appendLive, densityBins, Follow, pageWindow, rowsOf, seqAt } from '../src/lib/timeline.js';

const entry = (/** @type {number} */ seq, result = seq * 10) => ({ seq, fn: 'vm_page_alloc', args: {}, ctx: { cpu: 0 }, source: 'api', result });

describe('pageWindow', () => {
  it('centres the position in the page', () => {
    assert.deepEqual(pageWindow(500, 1000, 50), { from: 475, limit: 50 });
    // the position's own entry is inside the page: seqs from+1 .. from+limit
    const { from, limit } = pageWindow(500, 1000, 50);
    assert.ok(from < 500 && 500 <= from + limit);
  });
  it('stays inside the journal at both ends', () => {
    assert.deepEqual(pageWindow(3, 1000, 50), { from: 0, limit: 50 });
    assert.deepEqual(pageWindow(0, 1000, 50), { from: 0, limit: 50 });
    assert.deepEqual(pageWindow(1000, 1000, 50), { from: 950, limit: 50 }); // the last page is full
    assert.deepEqual(pageWindow(990, 1000, 50), { from: 950, limit: 50 });
    assert.deepEqual(pageWindow(5000, 1000, 50), { from: 950, limit: 50 }); // a stale position
  });
  it('copes with journals shorter than a page and with odd sizes', () => {
    assert.deepEqual(pageWindow(7, 10, 50), { from: 0, limit: 50 });
    assert.deepEqual(pageWindow(0, 0, 50), { from: 0, limit: 50 });
    assert.deepEqual(pageWindow(10, 100, 3), { from: 8, limit: 3 });
    assert.deepEqual(pageWindow(10, 100, 0), { from: 9, limit: 1 });
  });
  it('scales to millions of calls (never more than one page)', () => {
    const w = pageWindow(3_000_000, 5_000_000, 100);
    assert.deepEqual(w, { from: 2_999_950, limit: 100 });
  });
});

describe('rowsOf', () => {
  it('lists entries and the refused seqs between them', () => {
    const rows = rowsOf([entry(1), entry(2), entry(5), entry(6)], 0, 10, 6);
    assert.deepEqual(rows.map((r) => [r.kind, r.seq, r.kind === 'refused' ? r.to : r.fn]), [
      ['call', 1, 'vm_page_alloc'], ['call', 2, 'vm_page_alloc'], ['refused', 3, 4], ['call', 5, 'vm_page_alloc'], ['call', 6, 'vm_page_alloc'],
    ]);
  });
  it('shows a refused call the stream told us about with its error', () => {
    const known = new Map([[4, { seq: 4, fn: 'vm_page_wakeup', args: { m: 5 }, error: { type: '/problems/kernel-panic', detail: 'panic: not busied' } }]]);
    const rows = rowsOf([entry(1), entry(5)], 0, 10, 5, known);
    assert.deepEqual(rows.map((r) => r.kind === 'refused' ? `refused ${r.seq}-${r.to}` : `${r.seq} ${r.error ? 'error' : r.result}`), ['1 10', 'refused 2-3', '4 error', '5 50']);
  });
  it('a short page reaches the end of the journal; a full one does not', () => {
    // two entries of a page of 10, journal at seq 9: seqs 4..9 were refused
    assert.deepEqual(rowsOf([entry(2), entry(3)], 1, 10, 9).map((r) => r.kind === 'refused' ? [r.seq, r.to] : r.seq), [2, 3, [4, 9]]);
    // a full page: what comes after it is another page's business
    assert.deepEqual(rowsOf([entry(2), entry(3)], 1, 2, 9).map((r) => r.seq), [2, 3]);
    // an empty page after from: everything up to seq was refused
    assert.deepEqual(rowsOf([], 5, 10, 7), [{ kind: 'refused', seq: 6, to: 7 }]);
    assert.deepEqual(rowsOf([], 0, 10, 0), []);
  });
  it('keeps NULL results apart from refusals', () => {
    const [row] = rowsOf([entry(1, /** @type {any} */ (null))], 0, 1, 1);
    assert.equal(row.kind, 'call');
    assert.equal(/** @type {any} */ (row).result, null);
    assert.equal(/** @type {any} */ (row).error, undefined);
  });
});

describe('appendLive', () => {
  const rows = rowsOf([entry(1), entry(2), entry(3)], 0, 3, 3);
  it('appends the stream events that follow on, and drops the oldest beyond the page', () => {
    const { rows: out, contiguous } = appendLive(rows, [entry(3), entry(4), { seq: 5, fn: 'x', args: {}, error: { detail: 'no' } }], 4);
    assert.equal(contiguous, true);
    assert.deepEqual(out.map((r) => r.seq), [2, 3, 4, 5]);
    assert.deepEqual(/** @type {any} */ (out[3]).error, { detail: 'no' });
  });
  it('says when events were skipped (a summary, a gap): the page must be read again', () => {
    assert.equal(appendLive(rows, [entry(6)], 10).contiguous, false);
    assert.equal(appendLive([], [entry(1)], 10).contiguous, true);
    assert.equal(appendLive([{ kind: 'refused', seq: 1, to: 4 }], [entry(5)], 10).contiguous, true);
  });
});

describe('densityBins', () => {
  it('splits each bin into values, NULLs and refused seqs', () => {
    const bins = densityBins({ seq: 9, width: 3, calls: [3, 2, 3], nulls: [0, 1, 0] });
    assert.deepEqual(bins, [
      { lo: 1, hi: 3, value: 3, nulls: 0, refused: 0 },
      { lo: 4, hi: 6, value: 1, nulls: 1, refused: 1 },
      { lo: 7, hi: 9, value: 3, nulls: 0, refused: 0 },
    ]);
  });
  it('knows the last bin may be short', () => {
    const bins = densityBins({ seq: 7, width: 3, calls: [3, 3, 0], nulls: [0, 0, 0] });
    assert.deepEqual(bins[2], { lo: 7, hi: 7, value: 0, nulls: 0, refused: 1 });
    assert.deepEqual(densityBins({ seq: 0, width: 1, calls: [], nulls: [] }), []);
  });
});

describe('seqAt', () => {
  it('maps the strip onto 0..seq', () => {
    assert.equal(seqAt(0, 200, 1000), 0);
    assert.equal(seqAt(100, 200, 1000), 500);
    assert.equal(seqAt(200, 200, 1000), 1000);
    assert.equal(seqAt(-5, 200, 1000), 0);
    assert.equal(seqAt(250, 200, 1000), 1000);
    assert.equal(seqAt(10, 0, 1000), 0);
  });
});

describe('Follow', () => {
  it('follows new calls while at the end', () => {
    const f = new Follow();
    f.update(10, 0);
    assert.equal(f.position, 10);
    assert.equal(f.update(12, 0), true);
    assert.equal(f.position, 12);
    assert.equal(f.following, true);
  });
  it('stops following when scrubbed back, and resumes at the end', () => {
    const f = new Follow();
    f.update(10, 0);
    f.scrub(4);
    assert.equal(f.following, false);
    assert.equal(f.update(20, 0), false);
    assert.equal(f.position, 4);
    assert.equal(f.after, 16);
    f.scrub(20);
    assert.equal(f.following, true);
    f.update(21, 0);
    assert.equal(f.position, 21);
    f.scrub(3);
    f.toEnd();
    assert.equal(f.position, 21);
    assert.equal(f.following, true);
  });
  it('clamps a scrub to the journal', () => {
    const f = new Follow();
    f.update(10, 0);
    assert.equal(f.scrub(-3), 0);
    assert.equal(f.following, false);
    assert.equal(f.scrub(99), 10);
    assert.equal(f.following, true);
  });
  it('starts over at a restore (new generation) or a reset (seq went down)', () => {
    const f = new Follow();
    f.update(100, 0);
    f.scrub(40);
    f.update(40, 1); // restored to 40: generation 1
    assert.deepEqual([f.position, f.following, f.generation], [40, true, 1]);
    f.scrub(10);
    f.update(0, 1); // seq went down without a generation change: still a new machine
    assert.deepEqual([f.position, f.following], [0, true]);
  });
});
