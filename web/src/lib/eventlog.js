// The event log's model: a bounded list of what the stream said happened (calls, summaries
// of floods, gaps), filterable by function, pausable without losing what arrives meanwhile.

/**
 * @typedef {{kind: 'call', seq: number, fn: string, event: Record<string, any>}
 *   | {kind: 'summary', seq: number, fn: null, summary: Record<string, any>}
 *   | {kind: 'gap', seq: number, fn: null, gap: Record<string, any>}
 *   | {kind: 'resync', seq: number, fn: null, note: string}} LogEntry
 */

export class EventLog {
  /** @param {number} capacity most entries kept (oldest dropped first) */
  constructor(capacity = 1000) {
    this.capacity = capacity;
    /** @type {LogEntry[]} */
    this.entries = [];
    this.paused = false;
    /** entries that arrived while paused (shown on resume) */
    this.pendingWhilePaused = 0;
    /** @type {Map<string, number>} calls seen per function (for the filter's choices) */
    this.byFn = new Map();
    this.version = 0; // bumps on every change the view shows
    this.dropped = 0;
  }

  /** @param {LogEntry} entry */
  #push(entry) {
    this.entries.push(entry);
    if (this.entries.length > this.capacity) {
      const over = this.entries.length - this.capacity;
      this.entries.splice(0, over);
      this.dropped += over;
    }
    if (this.paused) this.pendingWhilePaused++;
    else this.version++;
  }

  /** @param {Array<Record<string, any>>} events call records of a frame */
  addEvents(events) {
    for (const event of events) {
      this.byFn.set(event.fn, (this.byFn.get(event.fn) ?? 0) + 1);
      this.#push({ kind: 'call', seq: event.seq, fn: event.fn, event });
    }
  }

  /** @param {Record<string, any>} summary an `events_summary` section */
  addSummary(summary) {
    for (const [fn, n] of Object.entries(summary.by_fn ?? {})) {
      this.byFn.set(fn, (this.byFn.get(fn) ?? 0) + Number(n));
    }
    this.#push({ kind: 'summary', seq: summary.to_seq, fn: null, summary });
    // the tail holds the newest calls in full: show them after the summary line
    for (const event of summary.tail ?? []) {
      this.#push({ kind: 'call', seq: event.seq, fn: event.fn, event });
    }
  }

  /** @param {Record<string, any>} gap a `gap` message */
  addGap(gap) {
    this.#push({ kind: 'gap', seq: gap.to_seq, fn: null, gap });
  }

  /** @param {string} note */
  addResync(note) {
    this.#push({ kind: 'resync', seq: 0, fn: null, note });
  }

  /** @param {boolean} paused */
  setPaused(paused) {
    this.paused = paused;
    if (!paused) {
      this.pendingWhilePaused = 0;
      this.version++;
    }
  }

  clear() {
    this.entries = [];
    this.byFn.clear();
    this.pendingWhilePaused = 0;
    this.version++;
  }

  /**
   * The newest entries first, those of function `fn` only (summaries and gaps always show).
   * @param {string} fn '' for all
   * @param {number} limit
   * @returns {LogEntry[]}
   */
  view(fn = '', limit = 200) {
    const out = [];
    for (let i = this.entries.length - 1; i >= 0 && out.length < limit; i--) {
      const e = this.entries[i];
      if (!fn || e.kind !== 'call' || e.fn === fn) out.push(e);
    }
    return out;
  }
}
