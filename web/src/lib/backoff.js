// Reconnect back-off: the delay grows by `factor` from `base` up to `max`, with a little
// jitter so that many pages reconnecting after a server restart do not arrive together.

/**
 * @param {{base?: number, factor?: number, max?: number, jitter?: number, random?: () => number}} [options]
 *   base and max in milliseconds; jitter is a fraction (0.2: ±20 %); random for tests
 */
export function createBackoff(options = {}) {
  const base = options.base ?? 250;
  const factor = options.factor ?? 2;
  const max = options.max ?? 10_000;
  const jitter = options.jitter ?? 0.2;
  const random = options.random ?? Math.random;
  if (!(base > 0) || !(factor >= 1) || !(max >= base) || !(jitter >= 0 && jitter < 1)) {
    throw new RangeError('back-off needs base > 0, factor >= 1, max >= base, 0 <= jitter < 1');
  }
  let attempt = 0;
  return {
    /** The delay before the next try, in milliseconds; each call counts one more try. */
    next() {
      const raw = Math.min(max, base * factor ** attempt);
      attempt++;
      const spread = raw * jitter * (2 * random() - 1);
      return Math.max(0, Math.round(Math.min(max, raw + spread)));
    },
    /** After a successful connection: start again from `base`. */
    reset() {
      attempt = 0;
    },
    get attempt() {
      return attempt;
    },
  };
}
