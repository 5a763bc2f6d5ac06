// Shared pieces of the views: problem boxes, generated form fields, tabs, a status line.

import { ApiError } from './api.js';
import { h, nextId, replace } from './dom.js';
import { initialValue } from './lib/forms.js';
import { problemLines } from './lib/problem.js';

/**
 * A readable box for an API problem (or any error), role=alert so screen readers say it.
 * @param {unknown} error an ApiError, an Error, or text
 * @param {string} [context] what was being done ("Creating the instance")
 */
export function problemBox(error, context) {
  let lines;
  if (error instanceof ApiError) lines = problemLines(error.problem);
  else if (error instanceof Error) lines = [error.name === 'Error' ? 'Something went wrong' : error.name, error.message];
  else lines = ['Something went wrong', String(error)];
  const [title, ...rest] = lines;
  return h(
    'div',
    { class: 'problem', role: 'alert' },
    h('div', { class: 'title' }, context ? `${context}: ${title}` : title),
    rest.length === 1 ? h('div', { class: 'detail' }, rest[0]) : null,
    rest.length > 1 ? h('div', { class: 'detail' }, rest[0]) : null,
    rest.length > 1 ? h('ul', null, rest.slice(1).map((l) => h('li', null, l))) : null,
  );
}

/** Problems found before sending (form validation), as one box. @param {Array<{message: string}>} errors */
export function formErrorsBox(errors) {
  return h('div', { class: 'problem', role: 'alert' }, h('div', { class: 'title' }, 'Please correct:'), h('ul', null, errors.map((e) => h('li', null, e.message))));
}

/**
 * Inputs for generated fields (see lib/forms.js), laid out as label / control rows.
 * @param {import('./lib/forms.js').Field[]} fields
 * @param {Record<string, any>} [values] initial values (defaults when absent)
 * @param {string} [prefix] id prefix (tests find inputs by `${prefix}-${name}`)
 * @returns {{element: HTMLElement, read: () => Record<string, any>, set: (v: Record<string, any>) => void, focusFirst: () => void}}
 */
export function fieldsForm(fields, values = {}, prefix = nextId('f')) {
  const grid = h('div', { class: 'fields' });
  /** @type {Array<{field: import('./lib/forms.js').Field, read: () => any, set: (v: any) => void, focus: () => void}>} */
  const controls = [];
  for (const f of fields) {
    const id = `${prefix}-${f.name}`;
    const helpId = `${id}-help`;
    const value = values[f.name] ?? initialValue(f);
    const label = h('label', { for: id }, f.label, f.required ? h('span', { 'aria-hidden': 'true', class: 'muted' }, ' *') : null);
    let control;
    /** @type {() => any} */ let read;
    /** @type {(v: any) => void} */ let set;
    /** @type {() => void} */ let focus;
    if (f.control === 'checkbox') {
      const input = h('input', { type: 'checkbox', id, name: f.name, 'aria-describedby': f.help ? helpId : null });
      input.checked = Boolean(value);
      control = input;
      read = () => input.checked;
      set = (v) => { input.checked = Boolean(v); };
      focus = () => input.focus();
    } else if (f.control === 'checkboxes') {
      const boxes = (f.choices ?? []).map((choice) => {
        const box = h('input', { type: 'checkbox', name: f.name, value: choice, id: `${id}-${choice}` });
        box.checked = Array.isArray(value) && value.includes(choice);
        return { choice, box };
      });
      control = h('div', { class: 'checks', role: 'group', id, 'aria-label': f.label, 'aria-describedby': f.help ? helpId : null },
        boxes.map(({ choice, box }) => h('label', null, box, choice)));
      read = () => boxes.filter((b) => b.box.checked).map((b) => b.choice);
      set = (v) => boxes.forEach((b) => { b.box.checked = Array.isArray(v) && v.includes(b.choice); });
      focus = () => boxes[0]?.box.focus();
    } else if (f.control === 'select') {
      const select = h('select', { id, name: f.name, 'aria-describedby': f.help ? helpId : null, 'aria-required': f.required ? 'true' : null },
        h('option', { value: '' }, f.required ? '— choose —' : `(default${f.default !== null && f.default !== undefined ? `: ${f.default}` : ''})`),
        (f.choices ?? []).map((c) => h('option', { value: c }, c)));
      select.value = typeof value === 'string' ? value : '';
      control = select;
      read = () => select.value;
      set = (v) => { select.value = typeof v === 'string' ? v : ''; };
      focus = () => select.focus();
    } else {
      const listId = f.suggestions?.length ? `${id}-list` : null;
      const input = h('input', {
        id, name: f.name,
        type: 'text',
        inputmode: f.control === 'number' ? (f.integer ? 'numeric' : 'decimal') : null,
        placeholder: f.placeholder || (f.control === 'number' && f.min !== undefined && f.max !== undefined ? `${f.min} … ${f.max}` : null),
        'aria-describedby': f.help ? helpId : null,
        'aria-required': f.required ? 'true' : null,
        maxlength: f.maxLength ?? null,
        list: listId,
        autocomplete: 'off',
        class: f.control === 'number' ? 'num-input' : null,
      });
      input.value = String(value ?? '');
      control = listId
        ? h('span', null, input, h('datalist', { id: listId }, (f.suggestions ?? []).map((s) => h('option', { value: s }))))
        : input;
      read = () => input.value;
      set = (v) => { input.value = String(v ?? ''); };
      focus = () => input.focus();
    }
    grid.append(label, control);
    if (f.help) grid.append(h('div', { class: 'help muted small', id: helpId }, f.help));
    controls.push({ field: f, read, set, focus });
  }
  if (!fields.length) grid.append(h('div', { class: 'muted full' }, 'No arguments.'));
  return {
    element: grid,
    read: () => Object.fromEntries(controls.map((c) => [c.field.name, c.read()])),
    set: (v) => controls.forEach((c) => { if (Object.hasOwn(v, c.field.name)) c.set(v[c.field.name]); }),
    focusFirst: () => controls[0]?.focus(),
  };
}

/**
 * ARIA tabs (arrow keys move between tabs, Home/End jump).
 * @param {Array<{id: string, label: string, panel: HTMLElement}>} tabs
 * @param {(id: string) => void} [onSelect]
 */
export function tabSet(tabs, onSelect) {
  const list = h('div', { role: 'tablist', 'aria-label': 'Instance tools' });
  const buttons = tabs.map((t) => h('button', {
    type: 'button', role: 'tab', id: `tab-${t.id}`, 'aria-controls': `panel-${t.id}`, 'aria-selected': 'false', tabindex: '-1',
    dataset: { tab: t.id },
  }, t.label));
  tabs.forEach((t) => {
    t.panel.setAttribute('role', 'tabpanel');
    t.panel.id = `panel-${t.id}`;
    t.panel.setAttribute('aria-labelledby', `tab-${t.id}`);
    t.panel.tabIndex = 0;
  });
  let current = '';
  const select = (/** @type {string} */ id, focus = false) => {
    current = id;
    tabs.forEach((t, i) => {
      const on = t.id === id;
      buttons[i].setAttribute('aria-selected', String(on));
      buttons[i].tabIndex = on ? 0 : -1;
      t.panel.hidden = !on;
      if (on && focus) buttons[i].focus();
    });
    onSelect?.(id);
  };
  buttons.forEach((b, i) => {
    b.addEventListener('click', () => select(tabs[i].id));
    b.addEventListener('keydown', (ev) => {
      const n = tabs.length;
      let j = -1;
      if (ev.key === 'ArrowRight') j = (i + 1) % n;
      else if (ev.key === 'ArrowLeft') j = (i - 1 + n) % n;
      else if (ev.key === 'Home') j = 0;
      else if (ev.key === 'End') j = n - 1;
      if (j >= 0) {
        ev.preventDefault();
        select(tabs[j].id, true);
      }
    });
  });
  list.append(...buttons);
  const element = h('div', { class: 'tabs' }, list, tabs.map((t) => t.panel));
  select(tabs[0].id);
  return { element, select, get current() { return current; } };
}

/**
 * A status line that screen readers announce politely.
 * @param {string} [cls]
 */
export function statusLine(cls = 'muted small') {
  const el = h('div', { class: cls, role: 'status', 'aria-live': 'polite' });
  return {
    element: el,
    /** @param {string} text */
    set(text) { el.textContent = text; },
    /** @param {...any} children */
    show(...children) { replace(el, ...children); },
  };
}

/** Pretty JSON in a <pre>. @param {unknown} value @param {string} [label] */
export function jsonBlock(value, label) {
  return h('pre', { 'aria-label': label ?? null, tabindex: '0' }, JSON.stringify(value, null, 2));
}
