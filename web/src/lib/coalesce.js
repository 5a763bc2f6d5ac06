// Coalescing redraws: however many frames arrive between two screen refreshes, each view
// draws once, in the next animation frame.

/**
 * @param {(cb: () => void) => unknown} schedule requestAnimationFrame, or a test's stand-in
 * @param {() => number} [now] a clock in milliseconds (performance.now) to time each view
 * @param {(key: string, error: unknown) => void} [onError] told when a view's draw throws
 * @returns {{request: (key: string, draw: () => void) => void, pending: () => number,
 *            stats: Map<string, {count: number, totalMs: number, maxMs: number}>,
 *            failures: Map<string, number>}}
 */
export function createCoalescer(schedule, now = () => 0, onError = (key, e) => console.warn(`PageLab: the ${key} view failed to draw`, e)) {
  /** @type {Map<string, () => void>} */
  const queued = new Map();
  /** @type {Map<string, {count: number, totalMs: number, maxMs: number}>} */
  const stats = new Map();
  /** @type {Map<string, number>} */
  const failures = new Map();
  let scheduled = false;
  const run = () => {
    scheduled = false;
    const draws = [...queued.entries()];
    queued.clear();
    for (const [key, draw] of draws) {
      const t0 = now();
      try {
        draw();
      } catch (e) {
        // one view failing must not take the others (or the next frames) with it: it
        // draws again from the state on its next request
        failures.set(key, (failures.get(key) ?? 0) + 1);
        onError(key, e);
      }
      const ms = now() - t0;
      const s = stats.get(key) ?? { count: 0, totalMs: 0, maxMs: 0 };
      s.count++;
      s.totalMs += ms;
      s.maxMs = Math.max(s.maxMs, ms);
      stats.set(key, s);
    }
  };
  return {
    request(key, draw) {
      queued.set(key, draw); // a later request for the same view replaces the earlier one
      if (!scheduled) {
        scheduled = true;
        schedule(run);
      }
    },
    pending: () => queued.size,
    stats,
    failures,
  };
}
