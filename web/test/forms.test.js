import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { ALLOC_FLAG_NAMES, collect, describeCtx, describeFunction, describeParam, describeWorkload, initialValue, parseNumber, valuesFromArgs } from '../src/lib/forms.js';

// entries as GET /api/v1/functions returns them
const ALLOC = {
  name: 'vm_page_alloc',
  params: [
    { name: 'object', kind: 'object_or_null', required: false, default: null, help: '' },
    { name: 'pindex', kind: 'pindex', required: false, default: 0, help: '' },
    { name: 'page_req', kind: 'alloc_flags', required: false, default: 'VM_ALLOC_NORMAL', help: '' },
  ],
};
const FREE = { name: 'vm_page_free', params: [{ name: 'm', kind: 'page', required: true, default: null, help: 'the page (pfn)' }] };
const FLAG_SET = {
  name: 'vm_page_flag_set',
  params: [{ name: 'm', kind: 'page', required: true, default: null }, { name: 'bits', kind: 'flags', required: true, default: null, choices: ['PG_MAPPED', 'PG_REFERENCED'] }],
};

describe('describeFunction', () => {
  it('gives each parameter kind a fitting control', () => {
    const [object, pindex, req] = describeFunction(ALLOC);
    assert.equal(object.control, 'number');
    assert.equal(object.nullable, true);
    assert.equal(pindex.control, 'number');
    assert.equal(pindex.min, 0);
    assert.equal(req.control, 'checkboxes');
    assert.deepEqual(req.choices, [...ALLOC_FLAG_NAMES]);
    const [m] = describeFunction(FREE);
    assert.equal(m.control, 'number');
    assert.equal(m.label, 'm (pfn)');
    assert.equal(m.required, true);
    assert.equal(describeParam({ name: 'b', kind: 'bool', default: true }).control, 'checkbox');
    const sel = describeParam({ name: 'advice', kind: 'choice', required: true, choices: ['MADV_WILLNEED', 'MADV_DONTNEED'] });
    assert.equal(sel.control, 'select');
    assert.deepEqual(sel.choices, ['MADV_WILLNEED', 'MADV_DONTNEED']);
    const n = describeParam({ name: 'n', kind: 'int', min: 0, max: 1000000, default: 1 });
    assert.deepEqual([n.control, n.min, n.max], ['number', 0, 1000000]);
    assert.equal(describeParam({ name: 'cpuid', kind: 'cpu', default: 0 }, { ncpus: 4 }).max, 3);
    assert.equal(describeParam({ name: 'type', kind: 'objtype', default: 'OBJT_DEFAULT' }).control, 'select');
    assert.equal(describeParam({ name: 'msg', kind: 'wmesg', default: 'pgwait' }).maxLength, 16);
    assert.ok(describeParam({ name: 'channel', kind: 'channel', required: true }).suggestions.includes('vm_pages_needed'));
    const q = describeParam({ name: 'basequeue', kind: 'queue', required: true, choices: ['PQ_FREE', 'PQ_INACTIVE'] });
    assert.equal(q.control, 'select');
    assert.deepEqual(q.choices, ['PQ_FREE', 'PQ_INACTIVE']);
    assert.deepEqual(describeParam({ name: 'name', kind: 'sysctl_name', required: true }, { sysctlNames: ['vm.v_free_min'] }).suggestions, ['vm.v_free_min']);
    assert.equal(describeParam({ name: 'x', kind: 'brand_new_kind' }).control, 'text');
  });

  it('starts from the defaults', () => {
    const [object, pindex, req] = describeFunction(ALLOC);
    assert.equal(initialValue(object), '');
    assert.equal(initialValue(pindex), '0');
    assert.deepEqual(initialValue(req), ['VM_ALLOC_NORMAL']);
  });
});

describe('collect', () => {
  it('turns typed values into the JSON the API takes', () => {
    const fields = describeFunction(ALLOC);
    const { args, errors } = collect(fields, { object: '', pindex: '12', page_req: ['VM_ALLOC_NORMAL', 'VM_ALLOC_ZERO'] });
    assert.deepEqual(errors, []);
    assert.deepEqual(args, { pindex: 12, page_req: 'VM_ALLOC_NORMAL|VM_ALLOC_ZERO' });
  });

  it('sends no flags as 0', () => {
    const { args } = collect(describeFunction(FLAG_SET), { m: '5', bits: [] });
    assert.deepEqual(args, { m: 5, bits: 0 });
  });

  it('reports missing, malformed and out-of-range values by field', () => {
    const fields = [...describeFunction(FREE), describeParam({ name: 'n', kind: 'int', min: 0, max: 10 }), describeParam({ name: 'advice', kind: 'choice', required: true, choices: ['A'] })];
    const { errors } = collect(fields, { m: '', n: '11', advice: '' });
    assert.deepEqual(errors.map((e) => e.message), ['m: a value is required', 'n: must be between 0 and 10, not 11', 'advice: choose one']);
    assert.match(collect(describeFunction(FREE), { m: '3.5' }).errors[0].message, /not a whole number/);
    assert.match(collect(describeFunction(FREE), { m: 'abc' }).errors[0].message, /"abc" is not a whole number/);
    assert.match(collect([describeParam({ name: 'p', kind: 'pindex' })], { p: '99999999999999999999' }).errors[0].message, /too large/);
    assert.match(collect([describeParam({ name: 'w', kind: 'wmesg' })], { w: 'x'.repeat(17) }).errors[0].message, /at most 16/);
  });

  it('reads hexadecimal page numbers and grouped digits', () => {
    assert.deepEqual(collect(describeFunction(FREE), { m: '0xc03' }).args, { m: 3075 });
    assert.deepEqual(collect(describeFunction(FREE), { m: '3 075' }).args, { m: 3075 });
  });

  it('keeps booleans and text', () => {
    const fields = [describeParam({ name: 'also', kind: 'bool', default: false }), describeParam({ name: 'channel', kind: 'channel', required: true })];
    assert.deepEqual(collect(fields, { also: true, channel: 'page:5' }).args, { also: true, channel: 'page:5' });
  });

  it('sends null for an empty required nullable value', () => {
    const f = describeParam({ name: 'value', kind: 'int_or_null', required: true });
    assert.deepEqual(collect([f], { value: '' }).args, { value: null });
  });

  it('refills a form from arguments sent before', () => {
    const fields = describeFunction(ALLOC);
    const values = valuesFromArgs(fields, { pindex: 7, page_req: 'VM_ALLOC_SYSTEM|VM_ALLOC_ZERO' });
    assert.deepEqual(values, { object: '', pindex: '7', page_req: ['VM_ALLOC_SYSTEM', 'VM_ALLOC_ZERO'] });
    assert.deepEqual(collect(fields, values).args, { pindex: 7, page_req: 'VM_ALLOC_SYSTEM|VM_ALLOC_ZERO' });
  });
});

describe('context and workload forms', () => {
  it('bound the CPU by the machine', () => {
    const ctx = describeCtx({ ncpus: 2 });
    assert.deepEqual(ctx.map((f) => f.name), ['cpu', 'thread', 'nice', 'lowmemkill', 'systhread']);
    assert.equal(ctx[0].max, 1);
    const { args, errors } = collect(ctx, { cpu: '1', thread: '', nice: '-5', lowmemkill: false, systhread: true });
    assert.deepEqual(errors, []);
    assert.deepEqual(args, { cpu: 1, nice: -5, lowmemkill: false, systhread: true });
    assert.match(collect(ctx, { cpu: '2' }).errors[0].message, /between 0 and 1/);
  });

  it('map workload parameter types', () => {
    const fields = describeWorkload({ params: [
      { name: 'pages', type: 'int', default: 100, min: 1, max: 1000, help: 'pages per round' },
      { name: 'ratio', type: 'float', default: 0.5, min: 0, max: 1 },
      { name: 'zero', type: 'bool', default: false },
      { name: 'mode', type: 'str', default: 'a', choices: ['a', 'b'] },
    ] });
    assert.deepEqual(fields.map((f) => f.control), ['number', 'number', 'checkbox', 'select']);
    assert.equal(fields[1].integer, false);
    const { args, errors } = collect(fields, { pages: '10', ratio: '0.25', zero: true, mode: 'b' });
    assert.deepEqual(errors, []);
    assert.deepEqual(args, { pages: 10, ratio: 0.25, zero: true, mode: 'b' });
    assert.match(collect(fields, { pages: '10', ratio: '2' }).errors[0].message, /between 0 and 1/);
  });
});

describe('parseNumber', () => {
  it('reads integers and decimals', () => {
    assert.equal(parseNumber('42'), 42);
    assert.equal(parseNumber('-7'), -7);
    assert.equal(parseNumber('0x10'), 16);
    assert.equal(parseNumber('1e3', false), 1000);
    assert.equal(parseNumber('.5', false), 0.5);
    assert.equal(parseNumber('1.5'), null);
    assert.equal(parseNumber(''), null);
  });
});

describe('defaults JavaScript cannot hold exactly', () => {
  it('leave the field empty, so the call omits it and the server applies its default', () => {
    // GET /functions gives vm_contig_pg_alloc's high as 18446744073709551615 (2^64 - 1),
    // which JSON.parse turns into 18446744073709552000
    const high = describeParam({ name: 'high', kind: 'int', default: JSON.parse('18446744073709551615'), required: false });
    assert.equal(initialValue(high), '');
    const { args, errors } = collect([high], { high: initialValue(high) });
    assert.deepEqual(errors, []);
    assert.equal(Object.hasOwn(args, 'high'), false);
    // a safe default is still shown and sent
    const low = describeParam({ name: 'low', kind: 'int', default: 0, required: false });
    assert.equal(initialValue(low), '0');
    assert.deepEqual(collect([low], { low: initialValue(low) }).args, { low: 0 });
  });
});
