import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { createBackoff } from '../src/lib/backoff.js';

describe('createBackoff', () => {
  it('doubles from base up to max without jitter', () => {
    const b = createBackoff({ base: 100, factor: 2, max: 1000, jitter: 0 });
    assert.deepEqual([b.next(), b.next(), b.next(), b.next(), b.next(), b.next()], [100, 200, 400, 800, 1000, 1000]);
    assert.equal(b.attempt, 6);
  });

  it('starts again after reset', () => {
    const b = createBackoff({ base: 100, jitter: 0 });
    b.next();
    b.next();
    b.reset();
    assert.equal(b.attempt, 0);
    assert.equal(b.next(), 100);
  });

  it('jitters within ±jitter and never past max', () => {
    const low = createBackoff({ base: 1000, max: 1000, jitter: 0.2, random: () => 0 });
    const high = createBackoff({ base: 1000, max: 5000, jitter: 0.2, random: () => 1 });
    assert.equal(low.next(), 800);
    assert.equal(high.next(), 1200);
    const capped = createBackoff({ base: 1000, max: 1000, jitter: 0.2, random: () => 1 });
    assert.equal(capped.next(), 1000);
  });

  it('refuses nonsense settings', () => {
    assert.throws(() => createBackoff({ base: 0 }), RangeError);
    assert.throws(() => createBackoff({ base: 10, max: 5 }), RangeError);
    assert.throws(() => createBackoff({ jitter: 1 }), RangeError);
  });
});
