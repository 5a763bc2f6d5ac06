import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { allocProbes, indexOfQueue, parseQueueName, queueOfIndex, socketBands, socketOfColour } from '../src/lib/queues.js';

describe('queue indices', () => {
  it('follow the kernel numbering (PQ_FREE = 1, PQ_INACTIVE = 1025, …)', () => {
    assert.deepEqual(queueOfIndex(1), { type: 'PQ_FREE', typeIndex: 0, colour: 0 });
    assert.deepEqual(queueOfIndex(1025 + 7), { type: 'PQ_INACTIVE', typeIndex: 1, colour: 7 });
    assert.deepEqual(queueOfIndex(4097 + 1023), { type: 'PQ_HOLD', typeIndex: 4, colour: 1023 });
    assert.equal(queueOfIndex(0), null); // PQ_NONE
    assert.equal(queueOfIndex(5121), null);
    assert.equal(indexOfQueue('PQ_CACHE', 5), 3073 + 5);
    assert.throws(() => indexOfQueue('PQ_NONE', 0), RangeError);
  });

  it('parse move endpoints', () => {
    assert.deepEqual(parseQueueName('PQ_FREE:3'), { type: 'PQ_FREE', colour: 3 });
    assert.deepEqual(parseQueueName('PQ_NONE'), { type: 'PQ_NONE', colour: null });
  });
});

describe('sockets', () => {
  it('split the colours evenly, as vm_page_startup_finish does', () => {
    assert.equal(socketOfColour(511, 2), 0);
    assert.equal(socketOfColour(512, 2), 1);
    assert.equal(socketOfColour(1023, 3), 2); // 1024 / 3 = 341: colour 1023 is past 3 × 341
    assert.equal(socketOfColour(700, 1), 0);
  });

  it('show bands only with several sockets and NUMA ranges', () => {
    assert.equal(socketBands({ topology: { sockets: 2 }, numa: [{}, {}] }), 2);
    assert.equal(socketBands({ topology: { sockets: 2 }, numa: [] }), 1);
    assert.equal(socketBands({ topology: null, numa: [] }), 1);
    assert.equal(socketBands(undefined), 1);
  });
});

describe('allocProbes', () => {
  it('reads the probes and the queue found from an alloc explanation', () => {
    const r = allocProbes([{ event: 'wakeup' }, { event: 'alloc', color: 0, found_queue: 1, probes: [3, 1], result: 3075 }]);
    assert.deepEqual(r.probes.map((q) => q.colour), [2, 0]);
    assert.equal(r.found.colour, 0);
    assert.equal(r.found.type, 'PQ_FREE');
  });

  it('reads the named form the server sends ({queue, color})', () => {
    const r = allocProbes([
      {
        event: 'alloc',
        color: 5,
        found_queue: { queue: 'PQ_CACHE', color: 6 },
        probes: [{ queue: 'PQ_FREE', color: 5 }, { queue: 'PQ_CACHE', color: 6 }],
      },
    ]);
    assert.deepEqual(r.probes.map((q) => [q.type, q.colour]), [['PQ_FREE', 5], ['PQ_CACHE', 6]]);
    assert.deepEqual([r.found.type, r.found.typeIndex, r.found.colour], ['PQ_CACHE', 3, 6]);
  });

  it('is null when the call explained no allocation', () => {
    assert.equal(allocProbes([{ event: 'wakeup' }]), null);
    assert.equal(allocProbes(undefined), null);
  });
});
