// The page inspector: every field of one page (GET …/pages/{pfn}), decoded: flags as chips,
// the busy word, the 8 valid and 8 dirty bits, object and pindex, mappings, waiting
// threads, and the explanation of why it can or cannot be freed now.  The page is watched
// over the stream, so it updates live.

import { get } from '../api.js';
import { h, replace } from '../dom.js';
import { formatCount, formatHex } from '../lib/format.js';
import { collect, describeParam } from '../lib/forms.js';
import { formErrorsBox, jsonBlock, problemBox, statusLine } from '../ui.js';

const KNOWN = new Set(['pfn', 'phys_addr', 'queue', 'queue_index', 'pc', 'flags', 'flag_names', 'busy_count', 'busy', 'wire_count', 'hold_count',
  'object', 'pindex', 'act_count', 'valid', 'dirty', 'pat_mode', 'waiters', 'mappings', 'explain']);

/**
 * @param {{instanceId: number, watch: (pfns: number[]) => void, onQueue: (type: string, colour: number) => void}} options
 */
export function createInspector({ instanceId, watch, onQueue }) {
  let pfn = /** @type {number | null} */ (null);
  /** @type {any} */ let page = null;
  let loads = 0;
  const input = h('input', { id: 'inspect-pfn', type: 'text', inputmode: 'numeric', placeholder: 'pfn, e.g. 3075 or 0xc03', autocomplete: 'off', 'aria-describedby': 'inspect-help' });
  const form = h('form', { class: 'row', 'aria-label': 'Inspect a page' },
    h('label', { for: 'inspect-pfn' }, 'Page (pfn)'), input, h('button', { type: 'submit', class: 'primary' }, 'Inspect'),
    h('span', { id: 'inspect-help', class: 'muted small' }, 'or click a page in a queue list, a move in the event log, or a call’s result'));
  const problem = h('div');
  const body = h('div', { dataset: { pfn: '' } }, h('p', { class: 'muted' }, 'No page chosen yet.'));
  const status = statusLine();
  const element = h('div', null, form, problem, status.element, body);

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const { args, errors } = collect([describeParam({ name: 'pfn', kind: 'page', required: true })], { pfn: input.value });
    if (errors.length) {
      replace(problem, formErrorsBox(errors));
      return;
    }
    open(/** @type {number} */ (args.pfn));
  });

  /** @param {number} n */
  async function open(n) {
    pfn = n;
    input.value = String(n);
    replace(problem);
    try {
      const p = await get(`/instances/${instanceId}/pages/${n}`);
      if (pfn !== n) return;
      watch([n]); // a page that exists: the stream sends its record whenever it changes
      show(p);
    } catch (e) {
      replace(problem, problemBox(e, `Reading page ${n}`));
      replace(body);
      body.dataset.pfn = '';
    }
  }

  /** @param {any} p */
  function show(p) {
    page = p;
    loads++;
    body.dataset.pfn = String(p.pfn);
    body.dataset.queue = String(p.queue);
    const [qtype, qcolour] = String(p.queue).split(':');
    const queueCell = qcolour !== undefined
      ? h('button', { type: 'button', class: 'small', onclick: () => onQueue(qtype, Number(qcolour)) }, p.queue)
      : h('span', null, p.queue);
    const chips = (p.flag_names ?? []).length
      ? p.flag_names.map((/** @type {string} */ f) => h('span', { class: 'chip', dataset: { flag: f } }, f))
      : [h('span', { class: 'muted' }, 'none')];
    const busy = p.busy ?? {};
    const busyChips = [
      busy.locked ? h('span', { class: 'chip on' }, 'PBUSY_LOCKED') : null,
      busy.wanted ? h('span', { class: 'chip warn' }, 'PBUSY_WANTED') : null,
      busy.swapinprog ? h('span', { class: 'chip' }, 'PBUSY_SWAPINPROG') : null,
      h('span', { class: 'chip' }, `soft-busy count ${busy.soft_count ?? 0}`),
    ];
    const ex = p.explain ?? {};
    const maps = p.mappings ?? {};
    const mappingList = Array.isArray(maps.mappings) ? maps.mappings : [];
    const waiters = Array.isArray(p.waiters) ? p.waiters : [];
    const other = Object.entries(p).filter(([k]) => !KNOWN.has(k));
    replace(body,
      h('h3', null, `Page ${formatCount(p.pfn)} (${formatHex(p.pfn)})`),
      h('dl', { class: 'kv' },
        h('dt', null, 'physical address'), h('dd', { class: 'mono' }, formatHex(p.phys_addr)),
        h('dt', null, 'queue'), h('dd', null, queueCell, h('span', { class: 'muted small' }, ` index ${p.queue_index}`)),
        h('dt', null, 'colour (pc)'), h('dd', { class: 'mono' }, p.pc),
        h('dt', null, 'flags'), h('dd', { dataset: { flags: String(p.flags) } }, h('span', { class: 'mono small' }, `${formatHex(p.flags)} `), chips),
        h('dt', null, 'busy_count'), h('dd', null, h('span', { class: 'mono small' }, `${formatHex(p.busy_count)} `), busyChips),
        h('dt', null, 'wire_count'), h('dd', { class: 'mono' }, p.wire_count),
        h('dt', null, 'hold_count'), h('dd', { class: 'mono' }, p.hold_count),
        h('dt', null, 'act_count'), h('dd', { class: 'mono' }, p.act_count),
        h('dt', null, 'object'), h('dd', { class: 'mono' }, p.object === null || p.object === undefined ? 'NULL' : `object ${p.object}`),
        h('dt', null, 'pindex'), h('dd', { class: 'mono' }, p.pindex),
        h('dt', null, 'valid'), h('dd', null, bits(p.valid, 'valid')),
        h('dt', null, 'dirty'), h('dd', null, bits(p.dirty, 'dirty')),
        h('dt', null, 'pat_mode'), h('dd', { class: 'mono' }, p.pat_mode),
        other.flatMap(([k, v]) => [h('dt', null, k), h('dd', { class: 'mono' }, typeof v === 'object' ? JSON.stringify(v) : String(v))])),
      h('h3', null, 'Mappings'),
      mappingList.length
        ? h('ul', null, mappingList.map((/** @type {any} */ m) => h('li', { class: 'mono small' }, typeof m === 'object' ? JSON.stringify(m) : String(m))))
        : h('p', { class: 'muted small' }, 'Not mapped.'),
      maps.zeroed_ranges?.length ? h('p', { class: 'small' }, `zeroed ranges: ${JSON.stringify(maps.zeroed_ranges)} (${maps.zeroed_chunks} chunks)`) : null,
      h('h3', null, 'Waiting threads'),
      waiters.length
        ? h('ul', null, waiters.map((/** @type {any} */ w) => h('li', { class: 'mono small' }, typeof w === 'object' ? JSON.stringify(w) : `thread ${w}`)))
        : h('p', { class: 'muted small' }, 'Nobody waits for this page.'),
      h('h3', null, 'Explanation'),
      h('div', { class: 'notice', dataset: { canFree: String(Boolean(ex.can_free_now)) } },
        h('p', { style: { margin: '0 0 4px' } }, ex.where ?? ''),
        h('p', { style: { margin: 0 } }, ex.can_free_now
          ? h('span', { class: 'ok-text' }, 'Can be freed now.')
          : h('span', null, h('b', null, 'Cannot be freed now'), ex.blockers?.length ? ':' : '.')),
        ex.blockers?.length ? h('ul', null, ex.blockers.map((/** @type {any} */ b) => h('li', null, typeof b === 'object' ? JSON.stringify(b) : String(b)))) : null,
        ex.waiters?.length ? h('p', { class: 'small' }, `waiters: ${ex.waiters.map((/** @type {any} */ w) => (typeof w === 'object' ? JSON.stringify(w) : String(w))).join(', ')}`) : null),
      h('details', null, h('summary', null, 'All fields as the API returns them'), jsonBlock(p, 'Page record JSON')));
    status.set(`Page ${p.pfn}: ${p.queue}`);
  }

  /** 8 bits as a strip, bit 0 first (one bit per 512-byte chunk of the page). @param {number} value @param {string} what */
  function bits(value, what) {
    const cells = [];
    for (let i = 0; i < 8; i++) {
      const set = (value >> i) & 1;
      cells.push(h('span', { class: set ? 'set' : '', title: `${what} bit ${i} (bytes ${i * 512}–${i * 512 + 511}): ${set ? 'set' : 'clear'}` }));
    }
    return h('span', null, h('span', { class: 'bits', role: 'img', 'aria-label': `${what} bits ${formatHex(value)}: ${[...Array(8).keys()].filter((i) => (value >> i) & 1).join(', ') || 'none'} set`, dataset: { bits: what, value: String(value) } }, cells),
      h('span', { class: 'mono small' }, ` ${formatHex(value)}`));
  }

  return {
    element,
    open,
    /** The stream sent this page's record again (it changed). @param {any} record */
    update(record) {
      if (record && pfn !== null && record.pfn === pfn) show(record);
    },
    get pfn() { return pfn; },
    hooks: {
      get page() { return page; },
      get loads() { return loads; },
    },
  };
}
