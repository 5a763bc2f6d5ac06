// The event log: every kernel call the stream reports (or a summary when there were too
// many), gaps where this page read too slowly; pausable and filterable by function.

import { h, replace } from '../dom.js';
import { EventLog } from '../lib/eventlog.js';
import { formatCount } from '../lib/format.js';

const SHOWN = 100; // rows drawn; the log keeps more for the filter

/**
 * @param {{request: (key: string, draw: () => void) => void, onInspect: (pfn: number) => void, visible: () => boolean}} options
 */
export function createEvents({ request, onInspect, visible }) {
  const log = new EventLog(2000);
  let renderedVersion = -1;
  let renderedFilter = '';
  let renders = 0;

  const pause = h('button', { type: 'button', class: 'small', 'aria-pressed': 'false', id: 'events-pause' }, 'Pause');
  const filter = h('select', { id: 'events-filter', 'aria-label': 'Show the calls of one function' }, h('option', { value: '' }, 'all functions'));
  const clear = h('button', { type: 'button', class: 'small' }, 'Clear');
  const note = h('span', { class: 'muted small', 'aria-live': 'polite' });
  const tbody = h('tbody');
  const element = h('div', null,
    h('div', { class: 'row' }, pause, h('label', { for: 'events-filter' }, 'Function'), filter, clear, note),
    h('div', { class: 'events-table', tabindex: '0', 'aria-label': 'Kernel calls, newest first' },
      h('table', null,
        h('thead', null, h('tr', null, h('th', { class: 'num', scope: 'col' }, 'seq'), h('th', { scope: 'col' }, 'function'), h('th', { scope: 'col' }, 'arguments'), h('th', { scope: 'col' }, 'result'), h('th', { scope: 'col' }, 'moves'))),
        tbody)));

  pause.addEventListener('click', () => {
    log.setPaused(!log.paused);
    pause.setAttribute('aria-pressed', String(log.paused));
    pause.textContent = log.paused ? 'Resume' : 'Pause';
    schedule();
  });
  filter.addEventListener('change', schedule);
  clear.addEventListener('click', () => {
    log.clear();
    schedule();
  });

  function schedule() {
    request('events', render);
  }

  function syncFilter() {
    const names = [...log.byFn.keys()].sort();
    const have = new Set([...filter.options].map((o) => o.value));
    for (const n of names) if (!have.has(n)) filter.append(h('option', { value: n }, n));
  }

  function render() {
    note.textContent = log.paused
      ? `paused · ${formatCount(log.pendingWhilePaused)} new since`
      : `${formatCount(log.entries.length)} kept${log.dropped ? ` (${formatCount(log.dropped)} older dropped)` : ''}`;
    if (!visible()) return;
    if (log.paused && renderedVersion >= 0 && renderedFilter === filter.value) return;
    if (renderedVersion === log.version && renderedFilter === filter.value) return;
    renderedVersion = log.version;
    renderedFilter = filter.value;
    syncFilter();
    renders++;
    replace(tbody, log.view(filter.value, SHOWN).map((e) => {
      if (e.kind === 'gap') {
        return h('tr', { class: 'gap' }, h('td', { colspan: '5' }, `⚠ events ${e.gap.from_seq}–${e.gap.to_seq} were dropped: ${e.gap.reason ?? 'this page read too slowly'}. The state shown is exact again.`));
      }
      if (e.kind === 'summary') {
        const s = e.summary;
        const byFn = Object.entries(s.by_fn ?? {}).map(([f, n]) => `${f} ×${formatCount(n)}`).join(', ');
        const moves = Object.entries(s.moves ?? {}).map(([m, n]) => `${m} ×${formatCount(n)}`).join(', ');
        return h('tr', { class: 'summary' }, h('td', { colspan: '5' },
          `${formatCount(s.count)} calls (seq ${s.from_seq}–${s.to_seq}, ${formatCount(s.errors ?? 0)} errors): ${byFn}${moves ? `; moves ${moves}` : ''}`));
      }
      if (e.kind === 'resync') return h('tr', { class: 'gap' }, h('td', { colspan: '5' }, e.note));
      const ev = e.event;
      const moves = Array.isArray(ev.moves) ? ev.moves : [];
      const res = ev.error ? `${ev.error.type?.split('/').pop() ?? 'error'}: ${ev.error.detail ?? ''}` : ev.blocked ? `blocked on ${ev.blocked.channel ?? '?'}` : JSON.stringify(ev.result ?? null);
      return h('tr', { class: ev.error ? 'err' : '', dataset: { seq: String(ev.seq), fn: ev.fn } },
        h('td', { class: 'num mono' }, ev.seq),
        h('td', { class: 'mono' }, ev.fn, ev.source && ev.source !== 'api' ? h('span', { class: 'muted' }, ` (${ev.source})`) : null),
        h('td', { class: 'mono' }, Object.entries(ev.args ?? {}).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(' ')),
        h('td', { class: 'mono res' }, res),
        h('td', null, moves.slice(0, 3).map((/** @type {any} */ m) => h('button', { type: 'button', class: 'small', onclick: () => onInspect(m.pfn), title: `${m.from} → ${m.to}`, 'aria-label': `Inspect page ${m.pfn}: ${m.from} to ${m.to}` }, String(m.pfn))),
          moves.length > 3 ? h('span', { class: 'muted small' }, ` +${moves.length - 3}`) : null));
    }));
  }

  return {
    element,
    /** @param {any[]} events */
    addEvents(events) {
      log.addEvents(events);
      schedule();
    },
    /** @param {any} s */
    addSummary(s) {
      log.addSummary(s);
      schedule();
    },
    /** @param {any} g */
    addGap(g) {
      log.addGap(g);
      schedule();
    },
    /** @param {string} text */
    note(text) {
      log.addResync(text);
      schedule();
    },
    render: schedule,
    hooks: {
      get count() { return log.entries.length; },
      get paused() { return log.paused; },
      get renders() { return renders; },
      fns: () => [...log.byFn.keys()],
    },
  };
}
