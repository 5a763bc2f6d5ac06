// The timeline's model: which page of the journal to read around a scrub position, the
// rows a page becomes (refused calls are seqs without a journal entry), the density strip's
// bins, and whether the scrubber follows new calls.  No DOM: tested with node.

/**
 * The page of the journal to read around `position`: the calls after seq `from`, at most
 * `limit` of them (`GET …/journal?from=&limit=`), `position` near the middle and the page
 * kept inside 1..`seq` so that the last page is full when it can be.
 * @param {number} position the scrub position (0..seq)
 * @param {number} seq the instance's last seq
 * @param {number} size rows per page (≥ 1)
 * @returns {{from: number, limit: number}}
 */
export function pageWindow(position, seq, size) {
  const limit = Math.max(1, Math.floor(size));
  const last = Math.max(0, Math.floor(seq));
  const pos = clamp(Math.floor(position), 0, last);
  const from = clamp(pos - Math.ceil(limit / 2), 0, Math.max(0, last - limit));
  return { from, limit };
}

/** @param {number} v @param {number} lo @param {number} hi */
export function clamp(v, lo, hi) {
  return Math.min(hi, Math.max(lo, v));
}

/**
 * @typedef {{kind: 'call', seq: number, fn: string, args: Record<string, any>, ctx?: Record<string, any>,
 *   source: string, result?: any, error?: {type?: string, detail?: string}, blocked?: any}} CallRow
 *   a call: from the journal, or from the stream (which also has refused calls, with their error)
 * @typedef {{kind: 'refused', seq: number, to: number}} RefusedRow
 *   seqs `seq`..`to` without a journal entry: calls that were refused (errors are not journalled)
 * @typedef {CallRow | RefusedRow} Row
 */

/**
 * The rows of a journal page: its entries in order, and between them (and after the last,
 * when the page reached the end of the journal) the refused seqs, one row per known call
 * (`known`: stream events by seq, which carry the error) and one per run of unknown ones.
 * @param {Array<Record<string, any>>} entries the page's `entries` (seq order)
 * @param {number} from the page's `from`
 * @param {number} limit the page's `limit`
 * @param {number} seq the journal's last seq when the page was read
 * @param {Map<number, Record<string, any>>} [known]
 * @returns {Row[]}
 */
export function rowsOf(entries, from, limit, seq, known = new Map()) {
  /** @type {Row[]} */
  const rows = [];
  let next = from + 1;
  const refused = (/** @type {number} */ lo, /** @type {number} */ hi) => {
    let runStart = lo;
    for (let s = lo; s <= hi; s++) {
      const ev = known.get(s);
      if (!ev) continue;
      if (runStart < s) rows.push({ kind: 'refused', seq: runStart, to: s - 1 });
      rows.push(callRow(ev));
      runStart = s + 1;
    }
    if (runStart <= hi) rows.push({ kind: 'refused', seq: runStart, to: hi });
  };
  for (const e of entries) {
    if (e.seq > next) refused(next, e.seq - 1);
    rows.push(callRow(e));
    next = e.seq + 1;
  }
  // a short page ends at the end of the journal: what follows its last entry was refused
  if (entries.length < limit && next <= seq) refused(next, seq);
  return rows;
}

/** @param {Record<string, any>} e a journal entry or a stream event @returns {CallRow} */
export function callRow(e) {
  /** @type {CallRow} */
  const row = { kind: 'call', seq: e.seq, fn: e.fn, args: e.args ?? {}, ctx: e.ctx, source: e.source ?? 'api' };
  if (e.error) row.error = e.error;
  else row.result = e.result ?? null;
  if (e.blocked) row.blocked = e.blocked;
  return row;
}

/**
 * The live tail: the stream's new events appended to the rows of the journal's last page,
 * the oldest dropped beyond `size`.  `contiguous` is false when the events do not follow
 * on from the rows (events were summarised or lost): the caller reads the page again.
 * @param {Row[]} rows
 * @param {Array<Record<string, any>>} events
 * @param {number} size
 * @returns {{rows: Row[], contiguous: boolean}}
 */
export function appendLive(rows, events, size) {
  const out = rows.slice();
  let last = out.length ? lastSeq(out[out.length - 1]) : 0;
  let contiguous = true;
  for (const ev of events) {
    if (ev.seq <= last) continue; // already read with the page
    if (ev.seq !== last + 1) contiguous = false;
    out.push(callRow(ev));
    last = ev.seq;
  }
  return { rows: out.length > size ? out.slice(out.length - size) : out, contiguous };
}

/** @param {Row} row */
export function lastSeq(row) {
  return row.kind === 'refused' ? row.to : row.seq;
}

/**
 * @typedef {object} Density  the body of `GET …/journal/density`
 * @property {number} seq
 * @property {number} width   seqs per bin
 * @property {number[]} calls journalled calls per bin
 * @property {number[]} nulls of those, the ones that returned NULL
 */

/**
 * The density strip's bins: for each, its seqs and how many calls returned a value, NULL,
 * or were refused (the bin's seqs that have no journal entry).
 * @param {Density} d
 * @returns {Array<{lo: number, hi: number, value: number, nulls: number, refused: number}>}
 */
export function densityBins(d) {
  const out = [];
  for (let i = 0; i < d.calls.length; i++) {
    const lo = i * d.width + 1;
    const hi = Math.min((i + 1) * d.width, d.seq);
    const calls = d.calls[i] ?? 0;
    const nulls = d.nulls[i] ?? 0;
    out.push({ lo, hi, value: calls - nulls, nulls, refused: Math.max(0, hi - lo + 1 - calls) });
  }
  return out;
}

/**
 * The seq under a point of the strip (0 at the left edge, `seq` at the right).
 * @param {number} x  pixels from the strip's left edge
 * @param {number} width the strip's width in pixels
 * @param {number} seq
 */
export function seqAt(x, width, seq) {
  if (width <= 0) return 0;
  return clamp(Math.round((x / width) * seq), 0, seq);
}

/**
 * The scrubber: at the end it follows new calls; scrubbed back it stays where the user put
 * it (and counts what it missed) until the user comes back to the end.
 */
export class Follow {
  constructor() {
    this.seq = 0;
    this.position = 0;
    this.following = true;
    this.generation = -1;
  }

  /**
   * The instance moved on (a frame) or started again (a hello after a restore or reset:
   * a new generation, or a seq below the one we knew).  Returns true if the position moved.
   * @param {number} seq
   * @param {number} [generation]
   */
  update(seq, generation = this.generation) {
    const before = this.position;
    const restarted = generation !== this.generation || seq < this.seq;
    this.seq = seq;
    this.generation = generation;
    if (restarted) this.following = true;
    if (this.following || this.position > seq) this.position = seq;
    return this.position !== before;
  }

  /** The user moved the scrubber: following again only at the very end. @param {number} n */
  scrub(n) {
    this.position = clamp(Math.round(n), 0, this.seq);
    this.following = this.position === this.seq;
    return this.position;
  }

  /** Back to the end, following. */
  toEnd() {
    this.following = true;
    this.position = this.seq;
  }

  /** Calls made after the position (what a restore there discards). */
  get after() {
    return this.seq - this.position;
  }
}
