// The instance list: open, reset, delete; create from a preset or from a custom machine.

import { cached, del, get, post } from '../api.js';
import { h, replace } from '../dom.js';
import { formatBytes, formatCount, freePagesCell, parseBytes, parseMemory, parseNumaRanges, physBytes } from '../lib/format.js';
import { collect, describeParam } from '../lib/forms.js';
import { policyOf, seamFields } from '../lib/seams.js';
import { hooks } from '../hooks.js';
import { ACCESS_LABELS, handOutSummary, mayChange, mayHandOut, scenarioCourse } from '../lib/session.js';
import { fieldsForm, formErrorsBox, problemBox, statusLine } from '../ui.js';

/** @param {HTMLElement} root */
export function mountInstances(root) {
  let alive = true;
  const listBox = h('div', { 'aria-live': 'polite', 'aria-busy': 'true' }, h('p', { class: 'muted' }, 'Loading instances…'));
  const listProblem = h('div');
  const status = statusLine();

  async function refresh() {
    try {
      const items = await get('/instances');
      if (!alive) return;
      replace(listProblem);
      renderList(items);
      hooks.instances = items.map((/** @type {any} */ i) => ({ id: i.id, name: i.name }));
    } catch (e) {
      if (alive) replace(listProblem, problemBox(e, 'Listing instances'));
    } finally {
      listBox.setAttribute('aria-busy', 'false');
    }
  }

  /** @param {any[]} items */
  function renderList(items) {
    if (!items.length) {
      replace(listBox, h('p', { class: 'muted' }, 'No instances yet: create one with the forms on the right.'));
      return;
    }
    const rows = items.map((inst) => {
      const cfg = inst.config ?? {};
      const s = inst.summary ?? {};
      const sockets = cfg.topology?.sockets ?? 1;
      const writable = mayChange(inst.access);
      const label = /** @type {Record<string, string>} */ (ACCESS_LABELS)[inst.access ?? ''];
      const free = freePagesCell(inst.summary);
      return h('tr', { dataset: { instance: String(inst.id), name: inst.name, access: inst.access ?? 'open' } },
        h('td', { class: 'num' }, inst.id),
        h('td', null, h('a', { href: `#/instances/${inst.id}`, 'aria-label': `Open ${inst.name}` }, inst.name),
          inst.access && inst.access !== 'own' ? h('span', { class: 'muted small access' }, ` ${inst.ref ?? ''} · ${label ?? inst.access}`) : null),
        h('td', null, inst.preset ?? h('span', { class: 'muted' }, 'custom')),
        h('td', { class: 'num' }, formatBytes(physBytes(cfg.phys_avail))),
        h('td', { class: 'num' }, `${cfg.cpus}${sockets > 1 ? ` (${sockets} sockets)` : ''}`),
        h('td', free.title ? { class: 'num', title: free.title } : { class: 'num' }, free.text),
        h('td', { class: 'num' }, formatCount(inst.calls)),
        h('td', null, h('div', { class: 'row' },
          h('a', { href: `#/instances/${inst.id}`, class: 'small' }, 'Open'),
          writable ? h('button', { type: 'button', class: 'small', onclick: () => resetInstance(inst), 'aria-label': `Reset ${inst.name}` }, 'Reset') : null,
          writable ? deleteButton(inst) : null)));
    });
    replace(listBox, h('table', null,
      h('caption', { class: 'visually-hidden' }, 'Simulated machines'),
      h('thead', null, h('tr', null,
        h('th', { class: 'num', scope: 'col' }, 'id'), h('th', { scope: 'col' }, 'name'), h('th', { scope: 'col' }, 'preset'),
        h('th', { class: 'num', scope: 'col' }, 'memory'), h('th', { class: 'num', scope: 'col' }, 'CPUs'),
        h('th', { class: 'num', scope: 'col' }, 'free pages'), h('th', { class: 'num', scope: 'col' }, 'calls'), h('th', { scope: 'col' }, 'actions'))),
      h('tbody', null, rows)));
  }

  /** @param {any} inst */
  function deleteButton(inst) {
    const cell = h('span', { class: 'row' });
    const ask = () => {
      const yes = h('button', { type: 'button', class: 'small danger', 'aria-label': `Really delete ${inst.name}` }, 'Really delete');
      const no = h('button', { type: 'button', class: 'small' }, 'Keep');
      yes.addEventListener('click', async () => {
        try {
          await del(`/instances/${inst.id}`);
          status.set(`Deleted ${inst.name}.`);
          refresh();
        } catch (e) {
          replace(listProblem, problemBox(e, `Deleting ${inst.name}`));
        }
      });
      no.addEventListener('click', () => { replace(cell, button); button.focus(); });
      replace(cell, yes, no);
      yes.focus();
    };
    const button = h('button', { type: 'button', class: 'small danger', onclick: ask, 'aria-label': `Delete ${inst.name}` }, 'Delete');
    cell.append(button);
    return cell;
  }

  /** @param {any} inst */
  async function resetInstance(inst) {
    try {
      await post(`/instances/${inst.id}/reset`);
      status.set(`Reset ${inst.name}: re-booted with the same configuration and seed.`);
      refresh();
    } catch (e) {
      replace(listProblem, problemBox(e, `Resetting ${inst.name}`));
    }
  }

  // ---- create from a preset
  const presetSelect = h('select', { id: 'preset-select', name: 'preset', 'aria-describedby': 'preset-desc' });
  const presetDesc = h('p', { id: 'preset-desc', class: 'muted small' });
  const presetName = h('input', { id: 'preset-name', name: 'name', type: 'text', placeholder: 'lab1', autocomplete: 'off', required: true, pattern: '[A-Za-z0-9_.\\-]+' });
  const presetSeed = h('input', { id: 'preset-seed', name: 'seed', type: 'text', inputmode: 'numeric', placeholder: 'preset’s seed', autocomplete: 'off' });
  const presetProblem = h('div');
  /** @type {any[]} */ let presets = [];
  cached('/presets').then((list) => {
    presets = list;
    replace(presetSelect, list.map((/** @type {any} */ p) => h('option', { value: p.name }, `${p.name} — ${formatBytes(physBytes(p.phys_avail))}, ${p.cpus} CPU${p.cpus > 1 ? 's' : ''}`)));
    describePreset();
  }).catch((e) => replace(presetProblem, problemBox(e, 'Loading presets')));
  const describePreset = () => {
    const p = presets.find((x) => x.name === presetSelect.value);
    presetDesc.textContent = p?.description ?? '';
  };
  presetSelect.addEventListener('change', describePreset);
  const presetForm = h('form', { 'aria-labelledby': 'preset-legend', novalidate: true },
    h('fieldset', null, h('legend', { id: 'preset-legend' }, 'New instance from a preset'),
      h('div', { class: 'form-grid' },
        h('label', { for: 'preset-select' }, 'Preset'), presetSelect,
        h('div', { class: 'full' }, presetDesc),
        h('label', { for: 'preset-name' }, 'Name'), presetName,
        h('label', { for: 'preset-seed' }, 'Seed'), presetSeed,
        h('div', { class: 'full' }, h('button', { type: 'submit', class: 'primary', id: 'create-preset' }, 'Create'))),
      presetProblem));
  presetForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    replace(presetProblem);
    /** @type {Record<string, any>} */
    const body = { name: presetName.value.trim(), preset: presetSelect.value };
    const errors = [];
    if (!body.name) errors.push({ message: 'name: give the instance a name (letters, digits, _ . -)' });
    if (presetSeed.value.trim()) {
      const seed = collect([describeParam({ name: 'seed', kind: 'int', min: 0, max: Number.MAX_SAFE_INTEGER })], { seed: presetSeed.value });
      if (seed.errors.length) errors.push(...seed.errors);
      else body.seed = seed.args.seed;
    }
    if (errors.length) {
      replace(presetProblem, formErrorsBox(errors));
      return;
    }
    await create(body, presetProblem);
  });

  // ---- create a custom machine
  const customFields = [
    { ...describeParam({ name: 'name', kind: 'text', required: true, help: 'letters, digits, _ . -' }), placeholder: 'box' },
    { ...describeParam({ name: 'memory', kind: 'text', required: true, help: 'RAM: 4GiB, 512MiB, or a byte count' }), placeholder: '1GiB' },
    describeParam({ name: 'sockets', kind: 'int', default: 1, min: 1, max: 64, help: 'CPU topology: sockets × cores × threads = CPUs' }),
    describeParam({ name: 'cores', kind: 'int', default: 2, min: 1, max: 256, help: 'cores per socket' }),
    describeParam({ name: 'threads', kind: 'int', default: 1, min: 1, max: 8, help: 'hyper-threads per core' }),
    { ...describeParam({ name: 'numa', kind: 'text', help: 'NUMA affinity ranges as base+size@socket, … (empty: memory split evenly by address across the sockets)' }), placeholder: '0+512MiB@0, 512MiB+512MiB@1' },
    { ...describeParam({ name: 'dma_reserved', kind: 'text', help: 'vm.dma_reserved: bytes kept for DMA, e.g. 16MiB (empty: the kernel’s default)' }), placeholder: 'default' },
    describeParam({ name: 'seed', kind: 'int', default: 0, min: 0, max: Number.MAX_SAFE_INTEGER, help: 'the machine’s random seed' }),
    describeParam({ name: 'pagedaemon', kind: 'bool', default: true, help: 'run the pageout daemon thread' }),
  ];
  const custom = fieldsForm(customFields, {}, 'custom');
  const cpusLine = h('p', { class: 'muted small', 'aria-live': 'polite' });
  const showCpus = () => {
    const v = custom.read();
    const n = [v.sockets, v.cores, v.threads].map((x) => Number(x) || 1).reduce((a, b) => a * b, 1);
    cpusLine.textContent = `${n} CPU${n === 1 ? '' : 's'}`;
  };
  custom.element.addEventListener('input', showCpus);
  showCpus();
  const customProblem = h('div');
  // the named seams (policy experiments): one select each, the kernel's choice preselected
  const seamBox = h('div', { id: 'seams' });
  /** @type {any[]} */ let seams = [];
  /** @type {{read: () => Record<string, any>} | null} */ let seamControls = null;
  cached('/seams').then((list) => {
    seams = list;
    const form = fieldsForm(seamFields(list), {}, 'seam');
    seamControls = form;
    replace(seamBox, h('details', null,
      h('summary', null, 'Policy: named seams (optional)'),
      h('p', { class: 'muted small' }, 'Swap one of the kernel’s policy decisions for an alternative, to compare them. “kernel” is DragonFly’s code.'),
      form.element));
  }).catch(() => replace(seamBox));
  const customForm = h('form', { 'aria-labelledby': 'custom-legend', novalidate: true },
    h('fieldset', null, h('legend', { id: 'custom-legend' }, 'New custom instance'),
      custom.element, cpusLine, seamBox,
      h('div', { class: 'row' }, h('button', { type: 'submit', class: 'primary', id: 'create-custom' }, 'Create')),
      customProblem));
  customForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    replace(customProblem);
    const { args, errors } = collect(customFields, custom.read());
    /** @type {Record<string, any>} */
    const body = {
      name: args.name,
      memory: parseMemory(String(args.memory ?? '')),
      topology: { sockets: args.sockets ?? 1, cores: args.cores ?? 1, threads: args.threads ?? 1 },
      seed: args.seed ?? 0,
      pagedaemon: args.pagedaemon,
    };
    const policy = seamControls ? policyOf(seamControls.read(), seams) : {};
    if (Object.keys(policy).length) body.policy = policy;
    if (args.numa) {
      const numa = parseNumaRanges(String(args.numa));
      if ('error' in numa) errors.push({ name: 'numa', message: `numa: ${numa.error}` });
      else body.numa = numa.ranges;
    }
    if (args.dma_reserved) {
      const dma = parseBytes(String(args.dma_reserved));
      if (dma === null) errors.push({ name: 'dma_reserved', message: `dma_reserved: cannot read "${args.dma_reserved}" as a size (e.g. 16MiB)` });
      else body.dma_reserved = dma;
    }
    if (errors.length) {
      replace(customProblem, formErrorsBox(errors));
      return;
    }
    await create(body, customProblem);
  });

  /** @param {Record<string, any>} body @param {HTMLElement} problemSlot */
  async function create(body, problemSlot) {
    try {
      const inst = await post('/instances', body);
      status.set(`Created ${inst.name} (id ${inst.id}).`);
      location.hash = `#/instances/${inst.id}`;
    } catch (e) {
      replace(problemSlot, problemBox(e, 'Creating the instance'));
    }
  }

  // ---- the course's scenarios (token mode): start your own copy; instructors hand out
  const scenarioBox = h('div', { id: 'scenarios', 'aria-live': 'polite' });
  const scenarioStatus = statusLine();
  const scenarioProblem = h('div');
  const scenarioPanel = h('section', { class: 'panel', 'aria-labelledby': 'scenarios-h', hidden: true },
    h('div', { class: 'panel-head' }, h('h2', { id: 'scenarios-h' }, 'Course scenarios')),
    h('p', { class: 'muted small' }, 'Starting points your instructor prepared: each copy is your own machine, in exactly the scenario’s state (same digest).'),
    scenarioProblem, scenarioBox, scenarioStatus.element);

  async function refreshScenarios() {
    const course = scenarioCourse(hooks.me);
    if (!course) return;
    try {
      const list = await get(`/courses/${encodeURIComponent(course)}/scenarios`);
      if (!alive) return;
      scenarioPanel.hidden = false;
      renderScenarios(list);
    } catch (e) {
      if (alive) replace(scenarioProblem, problemBox(e, 'Listing the course’s scenarios'));
    }
  }

  /** @param {any[]} list */
  function renderScenarios(list) {
    if (!list.length) {
      replace(scenarioBox, h('p', { class: 'muted' }, 'No scenarios in your course yet.'));
      return;
    }
    const handOut = mayHandOut(hooks.me);
    replace(scenarioBox, h('table', null,
      h('caption', { class: 'visually-hidden' }, 'Scenarios of your course'),
      h('thead', null, h('tr', null,
        h('th', { scope: 'col' }, 'scenario'), h('th', { class: 'num', scope: 'col' }, 'calls'),
        h('th', { scope: 'col' }, 'digest'), h('th', { scope: 'col' }, 'actions'))),
      h('tbody', null, list.map((sc) => h('tr', { dataset: { scenario: String(sc.id) } },
        h('td', null, h('strong', null, sc.name), sc.description ? h('div', { class: 'muted small' }, sc.description) : null),
        h('td', { class: 'num' }, formatCount(sc.calls)),
        h('td', null, h('code', { title: sc.state_digest }, String(sc.state_digest).slice(0, 12))),
        h('td', null, h('div', { class: 'row' },
          h('button', { type: 'button', class: 'small primary', onclick: () => startScenario(sc), 'aria-label': `Start my copy of ${sc.name}` }, 'Start my copy'),
          handOut ? h('button', { type: 'button', class: 'small', onclick: () => handOutScenario(sc), 'aria-label': `Hand ${sc.name} out to every student` }, 'Hand out to all students') : null)))))));
  }

  /** @param {any} sc */
  async function startScenario(sc) {
    replace(scenarioProblem);
    try {
      const inst = await post(`/scenarios/${sc.id}/instances`, {});
      scenarioStatus.set(`Started ${inst.name} (id ${inst.id}) from ${sc.name}.`);
      location.hash = `#/instances/${inst.id}`;
    } catch (e) {
      replace(scenarioProblem, problemBox(e, `Starting ${sc.name}`));
    }
  }

  /** @param {any} sc */
  async function handOutScenario(sc) {
    replace(scenarioProblem);
    try {
      const out = await post(`/scenarios/${sc.id}/handout`, {});
      scenarioStatus.set(`${sc.name}: ${handOutSummary(out)}`);
      refresh();
    } catch (e) {
      replace(scenarioProblem, problemBox(e, `Handing out ${sc.name}`));
    }
  }

  root.append(
    h('div', { class: 'instances-grid' },
      h('div', { class: 'stack' }, h('section', { class: 'panel', 'aria-labelledby': 'instances-h' },
        h('div', { class: 'panel-head' }, h('h2', { id: 'instances-h' }, 'Instances'), h('span', { class: 'spacer' }),
          h('button', { type: 'button', class: 'small', onclick: refresh }, 'Refresh')),
        h('p', { class: 'muted small' }, 'Each instance is a simulated machine running DragonFly BSD’s page allocator. Open one to watch its queues move and call its kernel functions.'),
        listProblem, listBox, status.element),
      scenarioPanel),
      h('section', { 'aria-label': 'Create an instance' }, h('div', { class: 'panel' }, presetForm, customForm))));
  refresh();
  refreshScenarios();
  return () => { alive = false; };
}
