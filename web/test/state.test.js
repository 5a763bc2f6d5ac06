import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { applyFrame, ProtocolMismatch, queueCounts, stateFromHello, totals } from '../src/lib/state.js';

function counts(fill = 0) {
  return Object.fromEntries(['PQ_FREE', 'PQ_INACTIVE', 'PQ_ACTIVE', 'PQ_CACHE', 'PQ_HOLD'].map((t) => [t, new Array(1024).fill(fill)]));
}

function hello(extra = {}) {
  const q = counts();
  q.PQ_FREE[3] = 4;
  return {
    type: 'hello', protocol: 1, generation: 2, seq: 42, tick: 17, time: 100.5,
    instance: { id: 1, name: 'default' }, topics: ['vmstats', 'queues'], rate: 10,
    snapshot: { vmstats: { global: { v_free_count: 10 } }, queues: q, threads: { threads: [] }, pageout: { state: 'IDLE' } },
    fields: { v_free_count: { unit: 'pages', help: 'free pages' } },
    limits: { events_per_frame: 256 },
    ...extra,
  };
}

describe('stateFromHello', () => {
  it('takes the snapshot whole', () => {
    const s = stateFromHello(hello());
    assert.equal(s.seq, 42);
    assert.equal(s.generation, 2);
    assert.equal(s.queues.PQ_FREE[3], 4);
    assert.equal(s.queues.PQ_HOLD.length, 1024);
    assert.deepEqual(s.vmstats, { global: { v_free_count: 10 } });
    assert.equal(s.pageout.state, 'IDLE');
    assert.equal(s.fields.v_free_count.unit, 'pages');
  });

  it('accepts a queues snapshot in the full-frame form', () => {
    const q = counts(1);
    const s = stateFromHello(hello({ snapshot: { queues: { full: true, counts: q } } }));
    assert.equal(s.queues.PQ_ACTIVE[1023], 1);
  });

  it('refuses a protocol it does not speak, saying so', () => {
    assert.throws(() => stateFromHello(hello({ protocol: 2 })), (e) => e instanceof ProtocolMismatch && /protocol 2/.test(e.message));
  });

  it('refuses what is not a hello', () => {
    assert.throws(() => stateFromHello({ type: 'frame' }), TypeError);
  });
});

describe('applyFrame', () => {
  it('sets changed cells and reports them', () => {
    const s = stateFromHello(hello());
    const ch = applyFrame(s, { type: 'frame', seq: 43, tick: 18, time: 101, queues: { full: false, changed: { PQ_FREE: [[3, 3], [7, 1]], PQ_ACTIVE: [[0, 9]] } } });
    assert.equal(s.seq, 43);
    assert.equal(s.tick, 18);
    assert.equal(s.queues.PQ_FREE[3], 3);
    assert.equal(s.queues.PQ_FREE[7], 1);
    assert.equal(s.queues.PQ_ACTIVE[0], 9);
    assert.deepEqual(ch.cells, [['PQ_FREE', 3], ['PQ_FREE', 7], ['PQ_ACTIVE', 0]]);
    assert.ok(ch.sections.has('queues'));
    assert.equal(ch.queuesFull, false);
  });

  it('replaces every count on a full queues section', () => {
    const s = stateFromHello(hello());
    const q = counts(2);
    const ch = applyFrame(s, { type: 'frame', seq: 50, queues: { full: true, counts: q } });
    assert.equal(ch.queuesFull, true);
    assert.deepEqual(queueCounts(s), q);
  });

  it('replaces state sections present and leaves the others', () => {
    const s = stateFromHello(hello());
    const ch = applyFrame(s, { type: 'frame', seq: 44, vmstats: { global: { v_free_count: 9 } }, pagemap: { lo: 0, hi: 8 } });
    assert.equal(s.vmstats.global.v_free_count, 9);
    assert.equal(s.pageout.state, 'IDLE');
    assert.deepEqual([...ch.sections].sort(), ['pagemap', 'vmstats']);
    assert.deepEqual(s.pagemap, { lo: 0, hi: 8 });
  });

  it('keeps watched pages by pfn', () => {
    const s = stateFromHello(hello());
    const ch = applyFrame(s, { type: 'frame', seq: 45, pages: { 3075: { pfn: 3075, queue: 'PQ_NONE' } } });
    assert.equal(s.pages['3075'].queue, 'PQ_NONE');
    assert.deepEqual(ch.pages, ['3075']);
  });

  it('ignores cells of unknown queues and colours out of range', () => {
    const s = stateFromHello(hello());
    const ch = applyFrame(s, { type: 'frame', seq: 46, queues: { full: false, changed: { PQ_NOPE: [[1, 1]], PQ_FREE: [[1024, 5], [-1, 5]] } } });
    assert.deepEqual(ch.cells, []);
  });

  it('after hello + frames equals the state the GET views would return', () => {
    // the protocol's promise, replayed: random deltas on top of a snapshot give the same
    // counts as applying them to a plain copy
    const s = stateFromHello(hello());
    const truth = queueCounts(s);
    let seed = 7;
    const rnd = (n) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let f = 0; f < 50; f++) {
      const changed = {};
      for (let k = 0; k < 20; k++) {
        const type = ['PQ_FREE', 'PQ_INACTIVE', 'PQ_ACTIVE', 'PQ_CACHE', 'PQ_HOLD'][rnd(5)];
        const colour = rnd(1024);
        const v = rnd(1000);
        truth[type][colour] = v;
        (changed[type] ??= []).push([colour, v]);
      }
      applyFrame(s, { type: 'frame', seq: 100 + f, queues: { full: false, changed } });
    }
    assert.deepEqual(queueCounts(s), truth);
  });
});

describe('totals', () => {
  it('sums and finds the largest count', () => {
    assert.deepEqual(totals(Float64Array.from([1, 5, 2])), { sum: 8, max: 5 });
  });
});
