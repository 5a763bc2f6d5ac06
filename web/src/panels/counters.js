// Every vmstats counter with its value, unit and meaning (hello.fields, GET …/vmstats
// `fields`): global, the predicates, and per CPU.

import { h, replace } from '../dom.js';
import { formatValue } from '../lib/format.js';

export function createCounters() {
  /** @type {Record<string, {unit: string, help: string}>} */
  let fields = {};
  const globalBody = h('tbody');
  const cpus = h('div');
  const element = h('div', null,
    h('div', { class: 'scroll' }, h('table', null,
      h('caption', { class: 'visually-hidden' }, 'Global vmstats'),
      h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'counter'), h('th', { class: 'num', scope: 'col' }, 'value'), h('th', { scope: 'col' }, 'meaning'))),
      globalBody)),
    h('details', null, h('summary', null, 'Per CPU'), cpus));
  return {
    element,
    /** @param {Record<string, {unit: string, help: string}>} f */
    setFields(f) {
      fields = f ?? {};
    },
    /** @param {any} vmstats */
    set(vmstats) {
      if (!vmstats) return;
      const global = vmstats.global ?? {};
      replace(globalBody, Object.entries(global).map(([name, value]) => {
        const f = fields[name];
        return h('tr', { dataset: { counter: name } },
          h('th', { scope: 'row', class: 'mono small' }, name),
          h('td', { class: 'num', dataset: { value: String(value), unit: f?.unit ?? '' } }, formatValue(value, f?.unit)),
          h('td', { class: 'small' }, f ? h('span', null, h('span', { class: 'chip' }, f.unit), ' ', f.help) : h('span', { class: 'muted' }, '—')));
      }));
      const rows = Array.isArray(vmstats.cpus) ? vmstats.cpus : [];
      if (!rows.length) {
        replace(cpus, h('p', { class: 'muted small' }, 'No per-CPU figures.'));
        return;
      }
      const names = Object.keys(rows[0].gd_vmstats ?? {}).filter((n) => /count|wire/.test(n));
      replace(cpus, h('table', null,
        h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'cpu'), names.map((n) => h('th', { class: 'num', scope: 'col', title: fields[n]?.help ?? '' }, n)))),
        h('tbody', null, rows.map((/** @type {any} */ c) => h('tr', null, h('td', null, c.cpu), names.map((n) => h('td', { class: 'num' }, String(c.gd_vmstats?.[n] ?? '')))))),
        h('p', { class: 'muted small' }, 'gd_vmstats: each CPU’s copy; its adjustments roll up into the global counters.')));
    },
  };
}
