// The named seams (GET /api/v1/seams) as form fields, and a machine's policy from them.

import { describeParam } from './forms.js';

/**
 * One select per seam, its choices in the server's order (`kernel`, the default, first).
 * @param {Array<{name: string, function: string, decides: string, default: string, choices: Array<{name: string, means: string}>}>} seams
 * @returns {import('./forms.js').Field[]}
 */
export function seamFields(seams) {
  return seams.map((s) => ({
    ...describeParam({
      name: s.name,
      kind: 'choice',
      default: s.default,
      choices: s.choices.map((c) => c.name),
      help: `${s.decides} (in ${s.function}): ${s.choices.map((c) => `${c.name}: ${c.means}`).join('; ')}`,
    }),
  }));
}

/**
 * The `policy` of a create request: the seams whose choice is not the default.  Empty when
 * every seam keeps the kernel's choice (the request then sends no policy at all).
 * @param {Record<string, any>} values the selects' values, by seam
 * @param {Array<{name: string, default: string}>} seams
 * @returns {Record<string, string>}
 */
export function policyOf(values, seams) {
  /** @type {Record<string, string>} */
  const out = {};
  for (const s of seams) {
    const v = values[s.name];
    if (typeof v === 'string' && v && v !== s.default) out[s.name] = v;
  }
  return out;
}
