import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { formatBytes, formatCount, formatDuration, formatHex, formatPages, formatValue, freePagesCell, parseMemory, physBytes } from '../src/lib/format.js';

const S = '\u202f';

describe('formatCount', () => {
  it('groups digits by three', () => {
    assert.equal(formatCount(3711), `3${S}711`);
    assert.equal(formatCount(1048576), `1${S}048${S}576`);
    assert.equal(formatCount(999), '999');
    assert.equal(formatCount(-12345), `−12${S}345`);
    assert.equal(formatCount(0), '0');
  });
  it('shows missing values as a dash and decimals briefly', () => {
    assert.equal(formatCount(null), '—');
    assert.equal(formatCount(undefined), '—');
    assert.equal(formatCount(12.345), '12.3');
    assert.equal(formatCount(0.5), '0.5');
  });
});

describe('formatBytes', () => {
  it('uses binary units', () => {
    assert.equal(formatBytes(0), '0 B');
    assert.equal(formatBytes(4096), '4 KiB');
    assert.equal(formatBytes(1024 ** 3), '1 GiB');
    assert.equal(formatBytes(1.5 * 1024 ** 3), '1.5 GiB');
    assert.equal(formatBytes(15200256), '14.5 MiB');
    assert.equal(formatBytes(-2048), '−2 KiB');
    assert.equal(formatBytes(NaN), '—');
    assert.equal(formatBytes(1024 ** 3 - 4096), '1 GiB'); // teaching-1g's phys_avail
    assert.equal(formatBytes(1023), '1023 B');
  });
});

describe('formatPages and formatValue', () => {
  it('say how much memory a page count is', () => {
    assert.equal(formatPages(3711), `3${S}711 pages (14.5 MiB)`);
    assert.equal(formatPages(1), '1 page (4 KiB)');
  });
  it('format each unit', () => {
    assert.equal(formatValue(83, 'pages'), '83 pages (332 KiB)');
    assert.equal(formatValue(4096, 'bytes'), `4${S}096 B (4 KiB)`);
    assert.equal(formatValue(10, 'ticks'), '10 ticks');
    assert.equal(formatValue(1, 'ticks'), '1 tick');
    assert.equal(formatValue(20, 'percent'), '20 %');
    assert.equal(formatValue(1, 'boolean'), '1 (on)');
    assert.equal(formatValue(0, 'boolean'), '0 (off)');
    assert.equal(formatValue(300, 'seconds'), '300 s');
    assert.equal(formatValue(7, 'count'), '7');
    assert.equal(formatValue(2, 'act_count'), '2 act_count');
    assert.equal(formatValue(true, 'pages'), 'yes');
    assert.equal(formatValue(null, 'pages'), '—');
    assert.equal(formatValue('IDLE'), 'IDLE');
  });
});

describe('small helpers', () => {
  it('hex, durations, memory sizes, phys_avail', () => {
    assert.equal(formatHex(12595200), '0xc03000');
    assert.equal(formatDuration(0.25), '250 ms');
    assert.equal(formatDuration(4), '4 s');
    assert.equal(formatDuration(125), '2 min 5 s');
    assert.equal(parseMemory(' 4GiB '), '4GiB');
    assert.equal(parseMemory('65536'), 65536);
    assert.equal(parseMemory(''), null);
    assert.equal(physBytes([[4096, 16777216]]), 16773120);
  });
});

import { parseBytes, parseNumaRanges } from '../src/lib/format.js';

describe('parseBytes and parseNumaRanges', () => {
  it('read sizes in binary units', () => {
    assert.equal(parseBytes('16MiB'), 16 * 1024 ** 2);
    assert.equal(parseBytes('4 GB'), 4 * 1024 ** 3);
    assert.equal(parseBytes('1.5k'), 1536);
    assert.equal(parseBytes('0x1000'), 4096);
    assert.equal(parseBytes('4096'), 4096);
    assert.equal(parseBytes('lots'), null);
  });
  it('read NUMA ranges and explain what they cannot read', () => {
    assert.deepEqual(parseNumaRanges('0+512MiB@0, 512MiB+512MiB@1'), { ranges: [
      { base: 0, size: 512 * 1024 ** 2, socket: 0 }, { base: 512 * 1024 ** 2, size: 512 * 1024 ** 2, socket: 1 }] });
    assert.deepEqual(parseNumaRanges(''), { ranges: [] });
    assert.match(parseNumaRanges('0-1G@0').error, /base\+size@socket/);
    assert.match(parseNumaRanges('0+zero@0').error, /size "zero"/);
  });
});

describe('freePagesCell', () => {
  it('shows the global count alone when nothing lags', () => {
    assert.deepEqual(freePagesCell({ v_free_count: 3711, counts_lag: {} }), { text: `3${S}711`, title: null });
    assert.deepEqual(freePagesCell(null), { text: '—', title: null });
  });
  it('marks a lagging count and explains it with the server\'s sentence', () => {
    const note = 'the global counts lag the per-CPU adjustments not yet rolled up: v_free_count 3711 (folded: 3710); vmstats_rollup or the next tick (hardclock) folds them';
    const cell = freePagesCell({ v_free_count: 3711, counts_lag: { v_free_count: { global: 3711, pending: -1, folded: 3710 } }, lag_note: note });
    assert.deepEqual(cell, { text: `3${S}711*`, title: note });
  });
  it('says what a rollup would give when the sentence is missing', () => {
    const cell = freePagesCell({ v_free_count: 10, counts_lag: { v_free_count: { global: 10, pending: -2, folded: 8 } } });
    assert.equal(cell.text, '10*');
    assert.equal(cell.title, 'lags: 8 once vmstats_rollup or the next tick folds −2 pending');
  });
});
