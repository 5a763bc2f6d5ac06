// Checking a sysctl value before it is sent: the kernel's C type bounds it, a boolean unit
// takes 0 or 1.  The server checks again; this only catches typing mistakes early.

import { parseNumber } from './forms.js';

/** @type {Record<string, [number, number]>} */
const RANGES = {
  int: [-(2 ** 31), 2 ** 31 - 1],
  u_int: [0, 2 ** 32 - 1],
  long: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  u_long: [0, Number.MAX_SAFE_INTEGER],
};

/**
 * @param {{name: string, type: string, unit?: string, writable?: boolean}} sysctl
 * @param {string} text what was typed
 * @returns {{value: number} | {error: string}}
 */
export function checkSysctl(sysctl, text) {
  if (!sysctl.writable) return { error: `${sysctl.name} is read-only` };
  const t = String(text).trim();
  if (t === '') return { error: `${sysctl.name}: a value is required` };
  const n = parseNumber(t, true);
  if (n === null) return { error: `${sysctl.name}: "${t}" is not a whole number` };
  if (sysctl.unit === 'boolean' && n !== 0 && n !== 1) {
    return { error: `${sysctl.name}: 0 (off) or 1 (on), not ${t}` };
  }
  const [lo, hi] = RANGES[sysctl.type] ?? RANGES.long;
  if (!Number.isSafeInteger(n) || n < lo || n > hi) {
    return { error: `${sysctl.name}: a ${sysctl.type} holds ${lo} … ${hi}, not ${t}` };
  }
  return { value: n };
}
