// Threads and wait channels (the `threads` topic: GET …/threads).

import { h, replace } from '../dom.js';

export function createThreads() {
  const threadsBody = h('tbody');
  const channels = h('div');
  const ticks = h('p', { class: 'muted small' });
  const element = h('div', null, ticks,
    h('div', { class: 'scroll' }, h('table', null,
      h('caption', { class: 'visually-hidden' }, 'Simulated threads'),
      h('thead', null, h('tr', null, ['tid', 'name', 'cpu', 'state', 'call', 'channel', 'wmesg', 'deadline', 'calls', 'last'].map((c) => h('th', { scope: 'col' }, c)))),
      threadsBody)),
    h('h3', null, 'Wait channels'), channels);
  return {
    element,
    /** @param {any} view */
    set(view) {
      if (!view) return;
      ticks.textContent = `ticks: ${view.ticks}`;
      replace(threadsBody, (view.threads ?? []).map((/** @type {any} */ t) => h('tr', { dataset: { tid: String(t.tid), state: t.state } },
        h('td', { class: 'num mono' }, t.tid), h('td', null, t.name, t.systhread ? h('span', { class: 'muted small' }, ' (system)') : null),
        h('td', { class: 'num' }, t.cpu),
        h('td', null, h('span', { class: `chip${t.state === 'sleeping' ? ' warn' : t.state === 'running' ? ' on' : ''}` }, t.state)),
        h('td', { class: 'mono' }, t.call ?? ''), h('td', { class: 'mono' }, t.channel ?? ''), h('td', { class: 'mono' }, t.wmesg ?? ''),
        h('td', { class: 'num' }, t.deadline ?? ''), h('td', { class: 'num' }, t.completed_calls ?? ''),
        h('td', { class: 'mono small' }, t.last_error ? `error: ${typeof t.last_error === 'object' ? JSON.stringify(t.last_error) : t.last_error}` : t.last_call ? `${t.last_call} → ${JSON.stringify(t.last_result)}` : ''))));
      const entries = Object.entries(view.channels ?? {});
      replace(channels, entries.length
        ? h('ul', null, entries.map(([c, tids]) => h('li', { class: 'mono small', dataset: { channel: c } }, `${c}: ${Array.isArray(tids) ? tids.map((x) => (typeof x === 'object' ? JSON.stringify(x) : x)).join(', ') : JSON.stringify(tids)}`)))
        : h('p', { class: 'muted small' }, 'Nobody sleeps.'));
    },
  };
}
