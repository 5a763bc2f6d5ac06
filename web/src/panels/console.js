// The call console: a form for any kernel function, generated from GET /api/v1/functions
// (each parameter kind gets a fitting input), the call context, the result with its record
// (moves, counters, the kernel's own explanation), readable errors, and a history to re-run.

import { cached, post } from '../api.js';
import { h, replace } from '../dom.js';
import { formatCount } from '../lib/format.js';
import { collect, describeCtx, describeFunction, valuesFromArgs } from '../lib/forms.js';
import { fieldsForm, formErrorsBox, jsonBlock, problemBox } from '../ui.js';

const HISTORY_MAX = 50;

/**
 * @param {{instanceId: number, ncpus: () => number, sysctlNames: () => string[],
 *          onInspect: (pfn: number) => void, onRecord: (fn: string, record: any, seq: number | null) => void}} options
 */
export function createConsole({ instanceId, ncpus, sysctlNames, onInspect, onRecord }) {
  /** @type {any[]} */ let functions = [];
  /** @type {ReturnType<typeof fieldsForm> | null} */ let argsForm = null;
  /** @type {ReturnType<typeof fieldsForm> | null} */ let ctxForm = null;
  /** @type {import('../lib/forms.js').Field[]} */ let argFields = [];
  /** @type {import('../lib/forms.js').Field[]} */ let ctxFields = [];
  const historyKey = `pagelab.history.${instanceId}`;
  /** @type {Array<{fn: string, args: any, ctx: any, wait: boolean, outcome: string, text: string}>} */
  let history = [];
  try {
    history = JSON.parse(sessionStorage.getItem(historyKey) ?? '[]');
  } catch {
    history = [];
  }
  let calls = 0;
  /** @type {any} */ let lastResponse = null;

  const filter = h('input', { id: 'fn-filter', type: 'search', placeholder: 'filter functions', autocomplete: 'off', 'aria-label': 'Filter the function list' });
  const select = h('select', { id: 'fn-select', 'aria-label': 'Kernel function' });
  const about = h('div', { class: 'fn-help small', 'aria-live': 'polite' });
  const argsSlot = h('div');
  const ctxSlot = h('div');
  const wait = h('input', { type: 'checkbox', id: 'call-wait' });
  const run = h('button', { type: 'submit', class: 'primary', id: 'run-call' }, 'Call');
  const problem = h('div');
  const result = h('div', { id: 'call-result', 'aria-live': 'polite' });
  const historyList = h('ul', { 'aria-label': 'Calls made from this page' });
  const form = h('form', { 'aria-label': 'Call a kernel function', novalidate: true },
    h('div', { class: 'row' }, h('label', { for: 'fn-select' }, 'Function'), select, filter),
    about,
    h('fieldset', null, h('legend', null, 'Arguments'), argsSlot),
    h('details', null, h('summary', null, 'Where it runs (CPU, thread, nice)'), ctxSlot),
    h('div', { class: 'row', style: { marginTop: '8px' } }, run,
      h('label', { for: 'call-wait', title: 'If the call sleeps, wait (bounded) until another call wakes it' }, wait, 'wait if it sleeps')),
    problem);
  const element = h('div', null, form, result,
    h('h3', null, 'History'), h('div', { class: 'history' }, historyList));

  function fillSelect() {
    const term = filter.value.trim().toLowerCase();
    const shown = functions.filter((f) => !term || f.name.includes(term) || (f.help ?? '').toLowerCase().includes(term));
    const current = select.value;
    const groups = [
      ['Change the machine', shown.filter((f) => f.mutates)],
      ['Read only', shown.filter((f) => !f.mutates)],
    ];
    replace(select, groups.filter(([, fs]) => fs.length).map(([label, fs]) =>
      h('optgroup', { label }, fs.map((/** @type {any} */ f) => h('option', { value: f.name }, f.name)))));
    if (shown.some((f) => f.name === current)) select.value = current;
    buildForm();
  }

  /** @param {Record<string, any>} [values] */
  function buildForm(values) {
    const fn = functions.find((f) => f.name === select.value);
    if (!fn) {
      replace(argsSlot, h('p', { class: 'muted' }, 'No function matches the filter.'));
      replace(about);
      return;
    }
    argFields = describeFunction(fn, { ncpus: ncpus(), sysctlNames: sysctlNames() });
    argsForm = fieldsForm(argFields, values ?? {}, 'arg');
    replace(argsSlot, argsForm.element);
    replace(about,
      h('div', null, fn.help),
      h('div', { class: 'muted' }, `models ${fn.models}() · returns ${fn.returns}${fn.sleeps ? ' · may sleep' : ''}${fn.mutates ? '' : ' · read only'}${fn.aliases?.length ? ` · also ${fn.aliases.join(', ')}` : ''}`));
    select.dataset.fn = fn.name;
  }

  function buildCtx() {
    ctxFields = describeCtx({ ncpus: ncpus() });
    const prev = ctxForm?.read();
    ctxForm = fieldsForm(ctxFields, prev ?? {}, 'ctx');
    replace(ctxSlot, ctxForm.element);
  }

  select.addEventListener('change', () => buildForm());
  filter.addEventListener('input', fillSelect);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (!argsForm || !ctxForm) return;
    const a = collect(argFields, argsForm.read());
    const c = collect(ctxFields, ctxForm.read());
    const errors = [...a.errors, ...c.errors];
    if (errors.length) {
      replace(problem, formErrorsBox(errors));
      return;
    }
    call(select.value, a.args, c.args, wait.checked);
  });

  /**
   * @param {string} fnName @param {Record<string, any>} args @param {Record<string, any>} ctx @param {boolean} waitForIt
   */
  async function call(fnName, args, ctx, waitForIt) {
    replace(problem);
    run.disabled = true;
    run.textContent = 'Calling…';
    const entry = { fn: fnName, args, ctx, wait: waitForIt, outcome: 'error', text: '' };
    try {
      /** @type {Record<string, any>} */
      const body = { args, ctx, record: true };
      if (waitForIt) body.wait = true;
      const r = await post(`/instances/${instanceId}/calls/${encodeURIComponent(fnName)}`, body);
      lastResponse = r;
      calls++;
      entry.outcome = r.blocked && !r.completed ? 'blocked' : 'ok';
      entry.text = r.blocked && !r.completed ? `blocked on ${r.blocked.channel ?? '?'}` : `→ ${JSON.stringify(r.completed?.result ?? r.result)}`;
      showResult(fnName, r);
      if (r.record) onRecord(fnName, r.record, typeof r.seq === 'number' ? r.seq : null);
    } catch (e) {
      calls++;
      lastResponse = null;
      replace(result);
      replace(problem, problemBox(e, `${fnName}`));
      entry.text = e instanceof Error ? e.message : String(e);
    } finally {
      run.disabled = false;
      run.textContent = 'Call';
      addHistory(entry);
    }
  }

  /** @param {string} fnName @param {any} r */
  function showResult(fnName, r) {
    const fn = functions.find((f) => f.name === fnName);
    const value = r.completed?.result ?? r.result;
    const isPage = fn?.returns?.includes('page') && typeof value === 'number';
    const rec = r.record ?? {};
    const moves = Array.isArray(rec.moves) ? rec.moves : [];
    const kernelEvents = Array.isArray(rec.events) ? rec.events : [];
    replace(result, h('div', { class: `result${r.blocked && !r.completed ? '' : ' ok'}`, dataset: { fn: fnName, result: JSON.stringify(value ?? null) } },
      h('div', { class: 'row' },
        h('b', { class: 'mono' }, fnName), h('span', null, '→'),
        h('span', { class: 'mono', dataset: { value: String(value) } }, value === null || value === undefined ? 'NULL' : JSON.stringify(value)),
        typeof r.seq === 'number' ? h('span', { class: 'muted small' }, `seq ${r.seq}`) : null,
        isPage ? h('button', { type: 'button', class: 'small', onclick: () => onInspect(value) }, `Inspect page ${value}`) : null),
      r.blocked ? h('p', { class: 'small' }, `The call went to sleep: thread ${r.blocked.thread ?? '?'} on ${r.blocked.channel ?? '?'} (${r.blocked.wmesg ?? ''})${r.completed ? '; it was woken and completed.' : '. Another call must wake it.'}`) : null,
      rec.summarised ? h('p', { class: 'small', dataset: { summarised: 'true' } },
        `A bulk call: ${formatCount(rec.moves_total ?? 0)} page moves (${Object.entries(rec.move_counts ?? {}).map(([pair, n]) => `${pair} ${formatCount(Number(n))}`).join(', ')}); the first ${moves.length} are listed. `,
        h('a', { href: rec.full_record, download: `record-${r.seq}.json` }, 'Download the full record')) : null,
      moves.length ? h('div', null, h('h3', null, rec.summarised ? `Moves (first ${moves.length} of ${formatCount(rec.moves_total ?? 0)})` : `Moves (${moves.length})`), h('table', null,
        h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'pfn'), h('th', { scope: 'col' }, 'from'), h('th', { scope: 'col' }, 'to'))),
        h('tbody', null, moves.slice(0, 50).map((/** @type {any} */ m) => h('tr', null,
          h('td', null, h('button', { type: 'button', class: 'small', onclick: () => onInspect(m.pfn), 'aria-label': `Inspect page ${m.pfn}` }, formatCount(m.pfn))),
          h('td', { class: 'mono' }, m.from), h('td', { class: 'mono' }, m.to)))))) : null,
      kernelEvents.length ? h('div', null, h('h3', null, 'What the kernel decided'), kernelEvents.map((/** @type {any} */ ev) => explainEvent(ev))) : null,
      rec.counters && Object.keys(rec.counters).length ? h('details', null, h('summary', null, 'vmstats counters changed'), jsonBlock(rec.counters)) : null,
      h('details', null, h('summary', null, 'Full response'), jsonBlock(r))));
  }

  /** @param {any} ev */
  function explainEvent(ev) {
    const kind = ev.event ?? ev.kind ?? 'event';
    const parts = Object.entries(ev).filter(([k]) => k !== 'event' && k !== 'kind');
    return h('div', { class: 'small', dataset: { event: kind } }, h('span', { class: 'chip' }, kind), ' ',
      parts.map(([k, v]) => h('span', { class: 'mono' }, `${k}=${JSON.stringify(v)} `)));
  }

  /** @param {typeof history[number]} entry */
  function addHistory(entry) {
    history.unshift(entry);
    history.length = Math.min(history.length, HISTORY_MAX);
    try {
      sessionStorage.setItem(historyKey, JSON.stringify(history));
    } catch {
      // storage full or unavailable: the history lives for this page only
    }
    renderHistory();
  }

  function renderHistory() {
    replace(historyList, history.length ? history.map((e, i) => {
      const text = `${e.fn}(${Object.entries(e.args).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(', ')}) ${e.text}`;
      return h('li', { dataset: { outcome: e.outcome } },
        h('span', { class: `chip${e.outcome === 'error' ? ' bad' : e.outcome === 'blocked' ? ' warn' : ''}` }, e.outcome),
        h('span', { class: 'call', title: text }, text),
        h('button', { type: 'button', class: 'small', 'aria-label': `Run again: ${e.fn}`, onclick: () => call(e.fn, e.args, e.ctx, e.wait), dataset: { rerun: String(i) } }, 'Re-run'),
        h('button', { type: 'button', class: 'small', 'aria-label': `Edit: ${e.fn}`, onclick: () => edit(e) }, 'Edit'));
    }) : h('li', { class: 'muted small' }, 'No calls yet.'));
  }

  /** @param {typeof history[number]} e */
  function edit(e) {
    filter.value = '';
    fillSelect();
    select.value = e.fn;
    buildForm(valuesFromArgs(describeFunction(functions.find((f) => f.name === e.fn) ?? { name: e.fn, params: [] }), e.args));
    ctxForm?.set(valuesFromArgs(ctxFields, e.ctx));
    wait.checked = e.wait;
    argsForm?.focusFirst();
  }

  let loading = false;
  function loadFunctions() {
    if (loading || functions.length) return;
    loading = true;
    cached('/functions').then((fs) => {
      functions = [...fs].sort((a, b) => a.name.localeCompare(b.name));
      replace(problem);
      fillSelect();
      select.value = 'vm_page_alloc';
      buildForm();
    }).catch((e) => replace(problem, problemBox(e, 'Loading the function list'))).finally(() => { loading = false; });
  }
  loadFunctions();
  buildCtx();
  renderHistory();

  return {
    element,
    /** The machine's CPU count is known (or changed): bound the cpu fields again. */
    refreshCtx() {
      buildCtx();
      if (functions.length) buildForm(argsForm?.read());
    },
    /** Fill the form for a function (e.g. from the queue list: free this page). @param {string} fnName @param {Record<string, unknown>} args */
    prefill(fnName, args) {
      filter.value = '';
      fillSelect();
      select.value = fnName;
      const fn = functions.find((f) => f.name === fnName);
      if (fn) buildForm(valuesFromArgs(describeFunction(fn), args));
    },
    call,
    /** After a (re)connect: load the function list if an earlier try failed. */
    ensureFunctions: loadFunctions,
    hooks: {
      get calls() { return calls; },
      get last() { return lastResponse; },
      get functions() { return functions.length; },
    },
  };
}
