// Forms generated from descriptions of parameters: the kernel functions of
// `GET /api/v1/functions` (each parameter has a `kind`), the call context, and the
// workload kinds of `GET /api/v1/workload-kinds` (each parameter has a `type`).
// `describe*` turn a description into field descriptors (what input fits); `collect`
// turns what a person typed back into the JSON the API takes, or readable errors.

/**
 * @typedef {object} Field
 * @property {string} name
 * @property {string} label
 * @property {string} kind            the API's parameter kind (page, alloc_flags, int, …)
 * @property {'number' | 'checkboxes' | 'select' | 'checkbox' | 'text'} control
 * @property {boolean} required
 * @property {unknown} default         the API's default (null: none)
 * @property {boolean} nullable        empty means null / the server's default
 * @property {boolean} integer         numbers must be whole
 * @property {number} [min]
 * @property {number} [max]
 * @property {string[]} [choices]
 * @property {string[]} [suggestions] values offered in a datalist (text fields)
 * @property {number} [maxLength]
 * @property {string} help
 * @property {string} placeholder
 */

/** VM_ALLOC_* names (vm_page.h), for alloc_flags parameters the API lists no choices for. */
export const ALLOC_FLAG_NAMES = Object.freeze([
  'VM_ALLOC_NORMAL', 'VM_ALLOC_SYSTEM', 'VM_ALLOC_INTERRUPT', 'VM_ALLOC_ZERO', 'VM_ALLOC_QUICK',
  'VM_ALLOC_FORCE_ZERO', 'VM_ALLOC_NULL_OK', 'VM_ALLOC_RETRY', 'VM_ALLOC_USE_GD',
]);

/** objtype_t names (vm_object.h). */
export const OBJECT_TYPES = Object.freeze([
  'OBJT_DEFAULT', 'OBJT_SWAP', 'OBJT_VNODE', 'OBJT_DEVICE', 'OBJT_MGTDEVICE', 'OBJT_PHYS', 'OBJT_DEAD',
]);

/** Wait channels the simulator knows by name (a page's channel is page:<pfn>). */
export const CHANNELS = Object.freeze([
  'vm_pages_needed', 'v_free_count', 'vm_pageout_pages_needed', 'vm_pagedaemon_uptime', 'page:',
]);

const U64 = 2 ** 64 - 1;

/**
 * @param {string} text
 * @returns {string[]}
 */
function flagNames(text) {
  return String(text)
    .split('|')
    .map((s) => s.trim())
    .filter(Boolean);
}

/**
 * Fields for one kernel function's parameters.
 * @param {{name: string, params: Array<Record<string, any>>}} fn a `GET /functions` entry
 * @param {{ncpus?: number, sysctlNames?: string[]}} [context] what the instance offers
 * @returns {Field[]}
 */
export function describeFunction(fn, context = {}) {
  return fn.params.map((p) => describeParam(p, context));
}

/**
 * @param {Record<string, any>} p a parameter: name, kind, required, default, help, min, max, choices
 * @param {{ncpus?: number, sysctlNames?: string[]}} [context]
 * @returns {Field}
 */
export function describeParam(p, context = {}) {
  const required = Boolean(p.required);
  /** @type {Field} */
  const f = {
    name: p.name,
    label: p.name,
    kind: p.kind,
    control: 'text',
    required,
    default: p.default ?? null,
    nullable: false,
    integer: true,
    help: p.help ?? '',
    placeholder: '',
  };
  const bounds = (/** @type {number} */ lo, /** @type {number} */ hi) => {
    f.min = p.min ?? lo;
    f.max = p.max ?? hi;
  };
  switch (p.kind) {
    case 'page':
      f.control = 'number';
      f.label = `${p.name} (pfn)`;
      f.placeholder = 'page frame number';
      bounds(0, 2 ** 40);
      break;
    case 'object':
      f.control = 'number';
      f.label = `${p.name} (object id)`;
      bounds(1, 2 ** 31);
      break;
    case 'object_or_null':
      f.control = 'number';
      f.label = `${p.name} (object id)`;
      f.nullable = true;
      f.placeholder = 'empty: NULL';
      bounds(1, 2 ** 31);
      break;
    case 'pindex':
    case 'size_pages':
      f.control = 'number';
      bounds(0, U64);
      break;
    case 'ticks':
      f.control = 'number';
      bounds(0, 2 ** 31 - 1);
      break;
    case 'cpu':
      f.control = 'number';
      bounds(0, context.ncpus ? context.ncpus - 1 : 255);
      break;
    case 'color':
      f.control = 'number';
      f.nullable = true;
      f.placeholder = 'empty: vm_quickcolor()';
      bounds(0, 1023);
      break;
    case 'int':
      f.control = 'number';
      if (p.min !== undefined) f.min = p.min;
      if (p.max !== undefined) f.max = p.max;
      break;
    case 'int_or_null':
      f.control = 'number';
      f.nullable = true;
      f.placeholder = 'empty: null';
      if (p.min !== undefined) f.min = p.min;
      if (p.max !== undefined) f.max = p.max;
      break;
    case 'float':
      f.control = 'number';
      f.integer = false;
      if (p.min !== undefined) f.min = p.min;
      if (p.max !== undefined) f.max = p.max;
      break;
    case 'bool':
      f.control = 'checkbox';
      break;
    case 'alloc_flags':
      f.control = 'checkboxes';
      f.choices = p.choices?.length ? [...p.choices] : [...ALLOC_FLAG_NAMES];
      break;
    case 'flags':
      f.control = 'checkboxes';
      f.choices = [...(p.choices ?? [])];
      break;
    case 'choice':
    case 'choice_str':
    case 'queue': // a queue type: PQ_FREE … (the server also reads free and 1)
      f.control = 'select';
      f.choices = [...(p.choices ?? [])];
      break;
    case 'objtype':
      f.control = 'select';
      f.choices = p.choices?.length ? [...p.choices] : [...OBJECT_TYPES];
      break;
    case 'channel':
      f.suggestions = [...CHANNELS];
      f.placeholder = 'vm_pages_needed, page:<pfn>, …';
      break;
    case 'wmesg':
      f.maxLength = 16;
      break;
    case 'sysctl_name':
      f.suggestions = [...(context.sysctlNames ?? [])];
      f.placeholder = 'vm.v_free_min';
      break;
    default:
      // a kind this page does not know yet: a text field, read as JSON when it parses
      f.placeholder = 'JSON or text';
  }
  return f;
}

/**
 * Fields for a workload kind's parameters (`{name, type, default, min, max, help}`).
 * @param {{params: Array<Record<string, any>>}} kind
 * @returns {Field[]}
 */
export function describeWorkload(kind) {
  return kind.params.map((p) => {
    const type = p.type ?? 'str';
    const apiKind = p.choices?.length ? 'choice' : { int: 'int', integer: 'int', float: 'float', number: 'float', bool: 'bool', boolean: 'bool' }[type] ?? 'text';
    const f = describeParam({ ...p, kind: apiKind, required: p.required ?? false }, {});
    return f;
  });
}

/**
 * The call context's fields (where the call runs: CPU, thread, nice, …).
 * @param {{ncpus?: number}} [context]
 * @returns {Field[]}
 */
export function describeCtx(context = {}) {
  const ncpus = context.ncpus ?? 256;
  return [
    describeParam({ name: 'cpu', kind: 'int', default: 0, min: 0, max: ncpus - 1, help: 'the CPU the call runs on' }),
    {
      ...describeParam({ name: 'thread', kind: 'int_or_null', default: null, min: 0, max: 4095, help: 'thread id (empty: the CPU\u2019s own thread)' }),
      placeholder: 'empty: the CPU\u2019s own',
    },
    describeParam({ name: 'nice', kind: 'int', default: 0, min: -20, max: 20, help: 'the thread\u2019s nice value' }),
    describeParam({ name: 'lowmemkill', kind: 'bool', default: false, help: 'the thread is being killed for low memory' }),
    describeParam({ name: 'systhread', kind: 'bool', default: false, help: 'a system thread (may dig into the free reserve)' }),
  ];
}

/**
 * What a field shows before anyone types: its default, in the control's form.
 * @param {Field} f
 * @returns {string | boolean | string[]}
 */
export function initialValue(f) {
  const d = f.default;
  switch (f.control) {
    case 'checkbox':
      return d === true;
    case 'checkboxes':
      if (Array.isArray(d)) return d.map(String).filter((n) => f.choices?.includes(n));
      if (typeof d === 'string') return flagNames(d).filter((n) => f.choices?.includes(n));
      return [];
    case 'select':
      return typeof d === 'string' && f.choices?.includes(d) ? d : '';
    default:
      // a default JavaScript cannot hold exactly (vm_contig_pg_alloc's high = 2^64 - 1)
      // stays empty: left out of the call, the server applies it itself
      if (typeof d === 'number' && Number.isInteger(d) && !Number.isSafeInteger(d)) return '';
      return d === null || d === undefined ? '' : typeof d === 'object' ? JSON.stringify(d) : String(d);
  }
}

/**
 * Fill a form again from arguments sent before (re-running a call from the history).
 * @param {Field[]} fields
 * @param {Record<string, unknown>} args
 * @returns {Record<string, string | boolean | string[]>}
 */
export function valuesFromArgs(fields, args) {
  /** @type {Record<string, string | boolean | string[]>} */
  const out = {};
  for (const f of fields) {
    const given = Object.hasOwn(args ?? {}, f.name);
    out[f.name] = given ? initialValue({ ...f, default: args[f.name] }) : initialValue(f);
  }
  return out;
}

/**
 * @typedef {{args: Record<string, unknown>, errors: Array<{name: string, message: string}>}} Collected
 */

/**
 * Read a form's values into API arguments.  Empty optional fields are left out (the server's
 * default applies); every problem found is reported with the field's name, in plain words.
 * @param {Field[]} fields
 * @param {Record<string, string | boolean | string[] | undefined>} values
 * @returns {Collected}
 */
export function collect(fields, values) {
  /** @type {Record<string, unknown>} */
  const args = {};
  /** @type {Array<{name: string, message: string}>} */
  const errors = [];
  const fail = (/** @type {Field} */ f, /** @type {string} */ message) => errors.push({ name: f.name, message: `${f.name}: ${message}` });
  for (const f of fields) {
    const raw = values[f.name];
    switch (f.control) {
      case 'checkbox':
        args[f.name] = Boolean(raw);
        break;
      case 'checkboxes': {
        const names = Array.isArray(raw) ? raw : [];
        const unknown = names.filter((n) => !f.choices?.includes(n));
        if (unknown.length) fail(f, `unknown flag ${unknown.join(', ')}`);
        else args[f.name] = names.length ? names.join('|') : 0;
        break;
      }
      case 'select': {
        const v = typeof raw === 'string' ? raw : '';
        if (!v) {
          if (f.required) fail(f, 'choose one');
        } else if (!f.choices?.includes(v)) fail(f, `must be one of ${f.choices?.join(', ')}`);
        else args[f.name] = v;
        break;
      }
      case 'number': {
        const text = typeof raw === 'string' ? raw.trim() : raw === undefined ? '' : String(raw);
        if (text === '') {
          // empty: the server's default (for nullable kinds that default is NULL)
          if (f.required && !f.nullable) fail(f, 'a value is required');
          else if (f.required) args[f.name] = null;
          break;
        }
        const n = parseNumber(text, f.integer);
        if (n === null) {
          fail(f, f.integer ? `"${text}" is not a whole number` : `"${text}" is not a number`);
        } else if (f.integer && !Number.isSafeInteger(n)) {
          fail(f, `${text} is too large to send exactly (at most ${Number.MAX_SAFE_INTEGER})`);
        } else if ((f.min !== undefined && n < f.min) || (f.max !== undefined && n > f.max)) {
          fail(f, `must be between ${f.min ?? '−∞'} and ${f.max ?? '∞'}, not ${text}`);
        } else {
          args[f.name] = n;
        }
        break;
      }
      default: {
        const text = typeof raw === 'string' ? raw.trim() : '';
        if (text === '') {
          if (f.required) fail(f, 'a value is required');
          break;
        }
        if (f.maxLength !== undefined && text.length > f.maxLength) {
          fail(f, `at most ${f.maxLength} characters`);
          break;
        }
        args[f.name] = f.kind === 'text' || f.kind in KNOWN_TEXT_KINDS ? text : parseLoose(text);
      }
    }
  }
  return { args, errors };
}

const KNOWN_TEXT_KINDS = { channel: 1, wmesg: 1, sysctl_name: 1, text: 1, str: 1 };

/**
 * A number typed by a person: decimal, hexadecimal (0x…) for integers; null if unreadable.
 * @param {string} text
 * @param {boolean} integer
 */
export function parseNumber(text, integer = true) {
  const t = text.replace(/[\s_\u202f]/g, '');
  if (integer) {
    if (/^[-+]?\d+$/.test(t)) return Number(t);
    if (/^0x[0-9a-f]+$/i.test(t)) return Number.parseInt(t, 16);
    return null;
  }
  if (/^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i.test(t)) return Number(t);
  return null;
}

/** JSON when it parses, else the text itself. @param {string} text */
function parseLoose(text) {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
