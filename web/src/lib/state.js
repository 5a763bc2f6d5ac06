// A client's copy of one instance's state, kept as docs/stream-protocol.md says:
// a `hello` replaces everything; each `frame` replaces the state sections it carries and
// patches the queue counts with its `changed` cells.

import { PQ_L2_SIZE, QUEUE_TYPES } from './queues.js';

export const PROTOCOL = 1;
const STATE_SECTIONS = ['vmstats', 'threads', 'pageout', 'pagemap'];

/**
 * @typedef {object} InstanceState
 * @property {number} generation
 * @property {number} seq
 * @property {number} tick
 * @property {number} time
 * @property {Record<string, any>} instance
 * @property {string[]} topics
 * @property {number} rate
 * @property {Record<string, any> | null} vmstats
 * @property {Record<string, Float64Array>} queues   one array of 1024 lcnt per queue type
 * @property {Record<string, any> | null} threads
 * @property {Record<string, any> | null} pageout
 * @property {Record<string, any> | null} pagemap
 * @property {Record<string, any>} pages            watched pages by pfn
 * @property {Record<string, {unit: string, help: string}>} fields
 * @property {Record<string, number>} limits
 */

/** @returns {Record<string, Float64Array>} */
function emptyQueues() {
  /** @type {Record<string, Float64Array>} */
  const out = {};
  for (const type of QUEUE_TYPES) out[type] = new Float64Array(PQ_L2_SIZE);
  return out;
}

/**
 * Replace the queue counts with a full body (`GET …/queues`: {PQ_FREE: [1024 lcnt], …}).
 * @param {Record<string, Float64Array>} queues
 * @param {Record<string, number[]>} counts
 */
function setAllCounts(queues, counts) {
  for (const type of QUEUE_TYPES) {
    const src = counts?.[type];
    const dst = queues[type];
    dst.fill(0);
    if (Array.isArray(src)) dst.set(src.slice(0, PQ_L2_SIZE));
  }
}

/** The body of a queues section or snapshot, whichever form it takes. */
function countsOf(section) {
  if (section && typeof section === 'object' && section.full === true && section.counts) {
    return section.counts;
  }
  return section;
}

/**
 * A fresh state from a `hello` message.
 * @param {Record<string, any>} hello
 * @returns {InstanceState}
 */
export function stateFromHello(hello) {
  if (hello?.type !== 'hello') throw new TypeError('not a hello message');
  if (hello.protocol !== PROTOCOL) {
    throw new ProtocolMismatch(hello.protocol);
  }
  const snap = hello.snapshot ?? {};
  const queues = emptyQueues();
  setAllCounts(queues, countsOf(snap.queues) ?? {});
  return {
    generation: hello.generation ?? 0,
    seq: hello.seq ?? 0,
    tick: hello.tick ?? 0,
    time: hello.time ?? 0,
    instance: hello.instance ?? {},
    topics: hello.topics ?? [],
    rate: hello.rate ?? 10,
    vmstats: snap.vmstats ?? null,
    queues,
    threads: snap.threads ?? null,
    pageout: snap.pageout ?? null,
    pagemap: snap.pagemap ?? null,
    pages: { ...(snap.pages ?? {}) },
    fields: hello.fields ?? {},
    limits: hello.limits ?? {},
  };
}

export class ProtocolMismatch extends Error {
  /** @param {unknown} got */
  constructor(got) {
    super(
      `the server speaks stream protocol ${JSON.stringify(got)}, this page speaks ${PROTOCOL}: ` +
        'rebuild the page (make run) or reload it',
    );
    this.name = 'ProtocolMismatch';
    this.got = got;
  }
}

/**
 * @typedef {object} FrameChanges
 * @property {Set<string>} sections       state sections replaced (vmstats, threads, …)
 * @property {boolean} queuesFull          every queue count was replaced
 * @property {Array<[string, number]>} cells  queue cells set by a delta: [type, colour]
 * @property {string[]} pages              watched pfns whose record arrived
 */

/**
 * Apply one `frame` to a state, in place.
 * @param {InstanceState} state
 * @param {Record<string, any>} frame
 * @returns {FrameChanges}
 */
export function applyFrame(state, frame) {
  /** @type {FrameChanges} */
  const changes = { sections: new Set(), queuesFull: false, cells: [], pages: [] };
  if (typeof frame.seq === 'number') state.seq = frame.seq;
  if (typeof frame.tick === 'number') state.tick = frame.tick;
  if (typeof frame.time === 'number') state.time = frame.time;
  for (const name of STATE_SECTIONS) {
    if (frame[name] !== undefined) {
      state[name] = frame[name];
      changes.sections.add(name);
    }
  }
  const q = frame.queues;
  if (q) {
    changes.sections.add('queues');
    if (q.full) {
      setAllCounts(state.queues, q.counts ?? {});
      changes.queuesFull = true;
    } else if (q.changed) {
      for (const [type, cells] of Object.entries(q.changed)) {
        const arr = state.queues[type];
        if (!arr || !Array.isArray(cells)) continue;
        for (const [colour, lcnt] of cells) {
          if (colour >= 0 && colour < PQ_L2_SIZE) {
            arr[colour] = lcnt;
            changes.cells.push([type, colour]);
          }
        }
      }
    }
  }
  if (frame.pages && typeof frame.pages === 'object') {
    for (const [pfn, body] of Object.entries(frame.pages)) {
      state.pages[pfn] = body;
      changes.pages.push(pfn);
    }
    changes.sections.add('pages');
  }
  return changes;
}

/**
 * The queue counts as plain arrays (the body `GET …/queues` returns), for comparisons.
 * @param {InstanceState} state
 */
export function queueCounts(state) {
  /** @type {Record<string, number[]>} */
  const out = {};
  for (const type of QUEUE_TYPES) out[type] = Array.from(state.queues[type]);
  return out;
}

/**
 * Sum and maximum of one queue type's counts.
 * @param {Float64Array} counts
 */
export function totals(counts) {
  let sum = 0;
  let max = 0;
  for (let i = 0; i < counts.length; i++) {
    const v = counts[i];
    sum += v;
    if (v > max) max = v;
  }
  return { sum, max };
}
