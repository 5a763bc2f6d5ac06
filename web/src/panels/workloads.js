// Workloads: start a built-in workload (GET /api/v1/workload-kinds describes each kind's
// parameters), watch its progress, pause, resume, step, change its rate, stop it.

import { ApiError, cached, get, patch, post } from '../api.js';
import { h, replace } from '../dom.js';
import { formatCount, formatDecimal } from '../lib/format.js';
import { collect, describeParam, describeWorkload } from '../lib/forms.js';
import { fieldsForm, formErrorsBox, problemBox, statusLine } from '../ui.js';

const ACTIVE = new Set(['running', 'paused']);

/** @param {{instanceId: number, visible: () => boolean}} options */
export function createWorkloads({ instanceId, visible }) {
  /** @type {any[]} */ let kinds = [];
  /** @type {any[]} */ let runs = [];
  /** @type {ReturnType<typeof fieldsForm> | null} */ let paramsForm = null;
  /** @type {import('../lib/forms.js').Field[]} */ let paramFields = [];
  /** @type {ReturnType<typeof setInterval> | null} */ let poller = null;
  let polls = 0;
  let available = true;

  const kindSelect = h('select', { id: 'wl-kind', 'aria-label': 'Workload kind' });
  const kindHelp = h('p', { class: 'muted small', 'aria-live': 'polite' });
  const paramsSlot = h('div');
  const runFields = [
    describeParam({ name: 'seed', kind: 'int', default: 0, min: 0, max: Number.MAX_SAFE_INTEGER, help: 'the workload’s own random seed' }),
    { ...describeParam({ name: 'rate', kind: 'float', default: null, min: 0.001, max: 1_000_000, help: 'calls per second (empty: as fast as it goes, "max")' }), placeholder: 'max' },
    { ...describeParam({ name: 'steps', kind: 'int', default: null, min: 1, max: 2 ** 40, help: 'stop after this many calls (empty: no limit)' }), placeholder: 'no limit' },
    { ...describeParam({ name: 'duration_s', kind: 'float', default: null, min: 0.001, max: 7 * 24 * 3600, help: 'stop after this many seconds of running (empty: no limit)' }), placeholder: 'no limit' },
  ];
  const runForm = fieldsForm(runFields, {}, 'wl');
  const start = h('button', { type: 'submit', class: 'primary', id: 'wl-start' }, 'Start');
  const problem = h('div');
  const status = statusLine();
  const listBody = h('tbody');
  const form = h('form', { 'aria-label': 'Start a workload', novalidate: true },
    h('div', { class: 'row' }, h('label', { for: 'wl-kind' }, 'Workload'), kindSelect),
    kindHelp,
    h('fieldset', null, h('legend', null, 'Parameters'), paramsSlot),
    h('details', null, h('summary', null, 'Seed, rate and limits'), runForm.element),
    h('div', { class: 'row', style: { marginTop: '8px' } }, start),
    problem);
  const element = h('div', null, form, status.element,
    h('h3', null, 'Workloads of this instance'),
    h('div', { class: 'scroll' }, h('table', null,
      h('caption', { class: 'visually-hidden' }, 'Workloads'),
      h('thead', null, h('tr', null, ['id', 'kind', 'state', 'calls', 'errors', 'calls/s', 'progress'].map((c) => h('th', { scope: 'col' }, c)))),
      listBody)));

  function buildParams() {
    const kind = kinds.find((k) => k.kind === kindSelect.value);
    if (!kind) return;
    kindHelp.textContent = kind.description ?? '';
    paramFields = describeWorkload(kind);
    paramsForm = fieldsForm(paramFields, {}, 'wlp');
    replace(paramsSlot, paramsForm.element);
  }
  kindSelect.addEventListener('change', buildParams);

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    replace(problem);
    if (!paramsForm) return;
    const p = collect(paramFields, paramsForm.read());
    const r = collect(runFields, runForm.read());
    const errors = [...p.errors, ...r.errors];
    if (errors.length) {
      replace(problem, formErrorsBox(errors));
      return;
    }
    /** @type {Record<string, any>} */
    const body = { kind: kindSelect.value, params: p.args, seed: r.args.seed ?? 0, rate: r.args.rate ?? 'max' };
    if (r.args.steps !== undefined) body.steps = r.args.steps;
    if (r.args.duration_s !== undefined) body.duration_s = r.args.duration_s;
    start.disabled = true;
    try {
      const run = await post(`/instances/${instanceId}/workloads`, body);
      status.set(`Started workload ${run.id} (${run.kind}).`);
      await refresh();
    } catch (e) {
      replace(problem, problemBox(e, 'Starting the workload'));
    } finally {
      start.disabled = false;
    }
  });

  async function refresh() {
    try {
      runs = await get(`/instances/${instanceId}/workloads`);
      polls++;
      render();
    } catch (e) {
      if (e instanceof ApiError && e.problem.status === 404 && !available) return;
      replace(problem, problemBox(e, 'Listing workloads'));
    }
    schedulePolling();
  }

  function schedulePolling() {
    const busy = runs.some((r) => ACTIVE.has(r.state));
    if (busy && !poller) poller = setInterval(() => { if (visible()) refresh(); }, 1000);
    if (!busy && poller) {
      clearInterval(poller);
      poller = null;
    }
  }

  /** @param {any} run @param {string} what @param {() => Promise<any>} action */
  async function control(run, what, action) {
    replace(problem);
    try {
      await action();
      status.set(`Workload ${run.id}: ${what}.`);
    } catch (e) {
      replace(problem, problemBox(e, `Workload ${run.id}: ${what}`));
    }
    await refresh();
  }

  function render() {
    if (!runs.length) {
      replace(listBody, h('tr', null, h('td', { colspan: '7', class: 'muted' }, 'None yet.')));
      return;
    }
    replace(listBody, [...runs].reverse().flatMap((run) => {
      const base = `/instances/${instanceId}/workloads/${run.id}`;
      const active = ACTIVE.has(run.state);
      const stepN = h('input', { type: 'text', inputmode: 'numeric', value: '10', 'aria-label': `Calls to step workload ${run.id}`, style: { width: '4.5em' } });
      const rate = h('input', { type: 'text', inputmode: 'decimal', value: String(run.rate), 'aria-label': `Rate of workload ${run.id} (calls/s or max)`, style: { width: '6em' } });
      const stepButton = h('button', { type: 'button', class: 'small', disabled: run.state !== 'paused', onclick: () => {
        const c = collect([describeParam({ name: 'n', kind: 'int', min: 1, max: 1_000_000, required: true })], { n: stepN.value });
        if (c.errors.length) replace(problem, formErrorsBox(c.errors));
        else control(run, `stepped ${c.args.n} calls`, () => post(`${base}/step`, { n: c.args.n }));
      } }, 'Step');
      const rateButton = h('button', { type: 'button', class: 'small', disabled: !active, onclick: () => {
        const text = rate.value.trim();
        if (text === 'max') {
          control(run, 'rate max', () => patch(base, { rate: 'max' }));
          return;
        }
        const c = collect([describeParam({ name: 'rate', kind: 'float', min: 0.001, max: 1_000_000, required: true })], { rate: text });
        if (c.errors.length) replace(problem, formErrorsBox([{ message: `${c.errors[0].message} (or "max")` }]));
        else control(run, `rate ${c.args.rate}/s`, () => patch(base, { rate: c.args.rate }));
      } }, 'Set rate');
      const progress = typeof run.progress === 'number'
        ? h('progress', { class: 'progress', max: '1', value: String(run.progress), 'aria-label': `Workload ${run.id} progress` }, `${Math.round(run.progress * 100)} %`)
        : h('span', { class: 'muted small' }, 'open-ended');
      return [h('tr', { dataset: { workload: String(run.id), state: run.state } },
        h('td', { class: 'num' }, run.id),
        h('td', { class: 'mono' }, run.kind),
        h('td', null, h('span', { class: `chip${run.state === 'running' ? ' on' : run.state === 'failed' ? ' bad' : run.state === 'paused' ? ' warn' : ''}` }, run.state),
          run.reason ? h('div', { class: 'muted small' }, run.reason) : null,
          run.last_error ? h('div', { class: 'small', style: { color: 'var(--danger)' } }, `last error: ${typeof run.last_error === 'object' ? (run.last_error.detail ?? JSON.stringify(run.last_error)) : run.last_error}`) : null),
        h('td', { class: 'num', dataset: { calls: String(run.calls) } }, formatCount(run.calls)),
        h('td', { class: 'num' }, formatCount(run.errors)),
        h('td', { class: 'num' }, formatDecimal(Number(run.calls_per_s ?? 0))),
        h('td', null, progress)),
      h('tr', { class: 'controls-row', dataset: { controls: String(run.id) } }, h('td', { colspan: '7' }, h('div', { class: 'row' },
          run.state === 'running'
            ? h('button', { type: 'button', class: 'small', onclick: () => control(run, 'paused', () => post(`${base}/pause`)), 'aria-label': `Pause workload ${run.id}` }, 'Pause')
            : h('button', { type: 'button', class: 'small', disabled: run.state !== 'paused', onclick: () => control(run, 'resumed', () => post(`${base}/resume`)), 'aria-label': `Resume workload ${run.id}` }, 'Resume'),
          stepN, stepButton, rate, rateButton,
          h('button', { type: 'button', class: 'small danger', disabled: !active, onclick: () => control(run, 'stopped', () => post(`${base}/stop`)), 'aria-label': `Stop workload ${run.id}` }, 'Stop'))))];
    }));
  }

  async function init() {
    try {
      kinds = await cached('/workload-kinds');
      replace(kindSelect, kinds.map((k) => h('option', { value: k.kind }, k.kind)));
      buildParams();
      await refresh();
    } catch (e) {
      if (e instanceof ApiError && e.problem.status === 404) {
        available = false;
        replace(form, h('p', { class: 'notice' }, 'This server has no workloads API.'));
      } else {
        replace(problem, problemBox(e, 'Loading workload kinds'));
      }
    }
  }

  let started = false;
  return {
    element,
    ensure() {
      if (!started || (available && !kinds.length)) {
        started = true;
        init(); // again, if the kinds could not be read the first time
      } else refresh();
    },
    refresh,
    destroy() {
      if (poller) clearInterval(poller);
      poller = null;
    },
    hooks: {
      get runs() { return runs; },
      get polls() { return polls; },
    },
  };
}
