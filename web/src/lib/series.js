// Samples of the time series (free, cache, inactive, active, wired and the thresholds) in a
// bounded ring, turned into uPlot's column arrays on the x axis the person chose: wall
// time, or simulated ticks (the last sample of each tick).

/** The counters drawn as lines, in the chart's order. */
export const COUNTERS = Object.freeze(['v_free_count', 'v_cache_count', 'v_inactive_count', 'v_active_count', 'v_wire_count']);
/** The thresholds drawn as dashed lines. */
export const THRESHOLDS = Object.freeze([
  'v_free_reserved', 'v_free_min', 'v_free_target', 'v_paging_start',
  'v_paging_target1', 'v_paging_target2', 'v_inactive_target',
]);
export const SERIES = Object.freeze([...COUNTERS, ...THRESHOLDS]);

export class Samples {
  /** @param {number} capacity */
  constructor(capacity = 3000) {
    this.capacity = capacity;
    /** @type {number[]} */ this.time = [];
    /** @type {number[]} */ this.tick = [];
    /** @type {number[]} */ this.seq = [];
    /** @type {number[][]} one array per SERIES entry */
    this.values = SERIES.map(() => []);
  }

  get length() {
    return this.time.length;
  }

  clear() {
    this.time.length = 0;
    this.tick.length = 0;
    this.seq.length = 0;
    for (const v of this.values) v.length = 0;
  }

  /**
   * One sample of the global vmstats.  A sample at the same wall time, tick and seq as the
   * previous one replaces it.
   * @param {{time: number, tick: number, seq: number}} at
   * @param {Record<string, number>} global vmstats.global
   */
  push(at, global) {
    const n = this.time.length;
    const same = n > 0 && this.time[n - 1] === at.time && this.seq[n - 1] === at.seq;
    if (!same) {
      if (n > 0 && at.time < this.time[n - 1]) at = { ...at, time: this.time[n - 1] }; // x must not go back
      this.time.push(at.time);
      this.tick.push(at.tick);
      this.seq.push(at.seq);
      SERIES.forEach((name, i) => this.values[i].push(global?.[name] ?? NaN));
      if (this.time.length > this.capacity) {
        const over = this.time.length - this.capacity;
        this.time.splice(0, over);
        this.tick.splice(0, over);
        this.seq.splice(0, over);
        for (const v of this.values) v.splice(0, over);
      }
    } else {
      SERIES.forEach((name, i) => {
        this.values[i][n - 1] = global?.[name] ?? NaN;
      });
    }
  }

  /**
   * uPlot data: [x, ...series].  `ticks`: one point per simulated tick (its last sample),
   * with ticks that went backwards (a reset) starting a fresh run.
   * @param {'time' | 'ticks'} axis
   * @returns {number[][]}
   */
  data(axis) {
    if (axis === 'time') return [this.time.slice(), ...this.values.map((v) => v.slice())];
    /** @type {number[]} */
    const xs = [];
    const cols = this.values.map(() => /** @type {number[]} */ ([]));
    for (let i = 0; i < this.tick.length; i++) {
      const t = this.tick[i];
      const last = xs.length - 1;
      if (last >= 0 && t < xs[last]) {
        // the machine was reset: keep only the newest run
        xs.length = 0;
        for (const c of cols) c.length = 0;
      }
      if (xs.length && xs[xs.length - 1] === t) {
        cols.forEach((c, k) => {
          c[c.length - 1] = this.values[k][i];
        });
      } else {
        xs.push(t);
        cols.forEach((c, k) => c.push(this.values[k][i]));
      }
    }
    return [xs, ...cols];
  }
}
