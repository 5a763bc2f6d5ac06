// Sysctls (GET …/sysctls): every knob with its type, unit and description; writable ones
// can be set (PUT …/sysctls/{name}), checked here first and explained when refused.

import { get, put } from '../api.js';
import { h, replace } from '../dom.js';
import { formatValue } from '../lib/format.js';
import { checkSysctl } from '../lib/sysctl.js';
import { problemBox, statusLine } from '../ui.js';

/** @param {{instanceId: number, onNames: (names: string[]) => void}} options */
export function createSysctls({ instanceId, onNames }) {
  /** @type {any[]} */ let list = [];
  let loaded = false;
  const filter = h('input', { type: 'search', id: 'sysctl-filter', placeholder: 'filter, e.g. free_min', 'aria-label': 'Filter sysctls', autocomplete: 'off' });
  const writableOnly = h('input', { type: 'checkbox', id: 'sysctl-rw' });
  const refresh = h('button', { type: 'button', class: 'small' }, 'Refresh');
  const problem = h('div');
  const status = statusLine();
  const tbody = h('tbody');
  const element = h('div', null,
    h('div', { class: 'row' }, filter, h('label', { for: 'sysctl-rw' }, writableOnly, 'writable only'), refresh),
    problem, status.element,
    h('div', { class: 'scroll' }, h('table', { class: 'sysctl-table' },
      h('caption', { class: 'visually-hidden' }, 'Sysctls'),
      h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'name'), h('th', { scope: 'col' }, 'value'), h('th', { scope: 'col' }, 'about'))),
      tbody)));

  async function load() {
    try {
      list = await get(`/instances/${instanceId}/sysctls`);
      loaded = true;
      replace(problem);
      onNames(list.map((s) => s.name));
      render();
    } catch (e) {
      replace(problem, problemBox(e, 'Reading the sysctls'));
    }
  }

  function render() {
    const term = filter.value.trim().toLowerCase();
    const rows = list.filter((s) => (!term || s.name.toLowerCase().includes(term) || String(s.description).toLowerCase().includes(term)) && (!writableOnly.checked || s.writable));
    replace(tbody, rows.map((s) => row(s)));
  }

  /** @param {any} s */
  function row(s) {
    const id = `sysctl-${s.name.replace(/[^a-z0-9]/gi, '-')}`;
    const about = h('td', { class: 'small' }, s.description, h('div', { class: 'muted' }, `${s.type} · ${s.unit} · ${s.source}${s.confidence ? ` · confidence ${s.confidence}` : ''}`));
    if (!s.writable) {
      return h('tr', { dataset: { sysctl: s.name } }, h('th', { scope: 'row', class: 'mono small' }, s.name),
        h('td', { class: 'mono', dataset: { value: String(s.value) } }, formatValue(s.value, s.unit), h('span', { class: 'muted small' }, ' (read-only)')), about);
    }
    const input = h('input', { id, type: 'text', inputmode: 'numeric', value: String(s.value), 'aria-label': `${s.name} (${s.unit})`, 'aria-describedby': `${id}-err` });
    const err = h('div', { class: 'err', id: `${id}-err`, role: 'alert' });
    const save = h('button', { type: 'submit', class: 'small' }, 'Set');
    const form = h('form', { class: 'row', novalidate: true }, input, save);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      replace(err);
      const checked = checkSysctl(s, input.value);
      if ('error' in checked) {
        err.textContent = checked.error;
        input.setAttribute('aria-invalid', 'true');
        return;
      }
      input.removeAttribute('aria-invalid');
      save.disabled = true;
      try {
        const r = await put(`/instances/${instanceId}/sysctls/${encodeURIComponent(s.name)}`, { value: checked.value });
        s.value = r.new;
        input.value = String(r.new);
        status.set(`${s.name}: ${formatValue(r.old, s.unit)} → ${formatValue(r.new, s.unit)}`);
      } catch (e) {
        replace(err, problemBox(e, `Setting ${s.name}`));
        input.setAttribute('aria-invalid', 'true');
      } finally {
        save.disabled = false;
      }
    });
    return h('tr', { dataset: { sysctl: s.name } }, h('th', { scope: 'row' }, h('label', { for: id, class: 'mono small' }, s.name)),
      h('td', { dataset: { value: String(s.value) } }, form, h('div', { class: 'muted small' }, s.unit), err), about);
  }

  filter.addEventListener('input', render);
  writableOnly.addEventListener('change', render);
  refresh.addEventListener('click', load);

  return {
    element,
    load,
    /** Load once, when first shown. */
    ensure() {
      if (!loaded) load();
    },
    get loaded() { return loaded; },
  };
}
