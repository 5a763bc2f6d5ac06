import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { createCoalescer } from '../src/lib/coalesce.js';
import { EventLog } from '../src/lib/eventlog.js';
import { networkProblem, problemFromResponse, problemLines, problemText } from '../src/lib/problem.js';
import { checkSysctl } from '../src/lib/sysctl.js';

describe('problems', () => {
  it('read an RFC 9457 document with its field errors', () => {
    const body = JSON.stringify({ type: '/problems/validation', title: 'Invalid request', status: 422, detail: 'value: Input should be a valid integer', instance: '/x', errors: [{ field: 'value', message: 'Input should be a valid integer' }, { field: 'name', message: 'too long' }] });
    const p = problemFromResponse(422, body);
    assert.equal(p.title, 'Invalid request');
    assert.equal(p.type, '/problems/validation');
    assert.deepEqual(problemLines(p), ['Invalid request (HTTP 422)', 'value: Input should be a valid integer', 'name: too long']);
  });

  it('keep the extension members (a panic message)', () => {
    const p = problemFromResponse(409, JSON.stringify({ type: '/problems/kernel-panic', title: 'Kernel panic refused', status: 409, detail: 'panic: page is not busied', panic: 'page is not busied', function: 'vm_page_free_toq' }));
    assert.equal(p.extra.panic, 'page is not busied');
    assert.equal(problemText(p), 'Kernel panic refused (HTTP 409) — panic: page is not busied');
  });

  it('stay readable when the body is not a problem document', () => {
    const p = problemFromResponse(502, '<html><body><h1>Bad Gateway</h1></body></html>', 'Bad Gateway');
    assert.equal(p.title, 'Bad Gateway');
    assert.equal(p.detail, 'Bad Gateway');
    assert.match(problemFromResponse(500, '').detail, /without an explanation/);
    assert.match(problemText(networkProblem(new TypeError('Failed to fetch'))), /did not answer.*Failed to fetch.*running/);
  });
});

describe('checkSysctl', () => {
  const rw = { name: 'vm.v_free_min', type: 'long', unit: 'pages', writable: true };
  it('accepts a whole number in range', () => {
    assert.deepEqual(checkSysctl(rw, ' 100 '), { value: 100 });
    assert.deepEqual(checkSysctl({ ...rw, type: 'int' }, '-5'), { value: -5 });
  });
  it('explains what is wrong', () => {
    assert.match(checkSysctl(rw, 'lots').error, /"lots" is not a whole number/);
    assert.match(checkSysctl(rw, '').error, /required/);
    assert.match(checkSysctl({ ...rw, type: 'u_int' }, '-1').error, /u_int holds 0/);
    assert.match(checkSysctl({ ...rw, unit: 'boolean', type: 'int' }, '2').error, /0 \(off\) or 1 \(on\)/);
    assert.match(checkSysctl({ ...rw, writable: false }, '1').error, /read-only/);
  });
});

describe('EventLog', () => {
  const ev = (seq, fn) => ({ seq, fn, args: {}, result: seq });
  it('keeps the newest entries up to its capacity', () => {
    const log = new EventLog(3);
    log.addEvents([ev(1, 'a'), ev(2, 'b'), ev(3, 'a'), ev(4, 'a')]);
    assert.deepEqual(log.view().map((e) => e.seq), [4, 3, 2]);
    assert.equal(log.dropped, 1);
    assert.equal(log.byFn.get('a'), 3);
  });
  it('filters by function but always shows summaries and gaps', () => {
    const log = new EventLog();
    log.addEvents([ev(1, 'a'), ev(2, 'b')]);
    log.addGap({ from_seq: 3, to_seq: 9 });
    log.addSummary({ from_seq: 10, to_seq: 20, count: 11, by_fn: { a: 11 }, tail: [ev(20, 'a')] });
    assert.deepEqual(log.view('b').map((e) => e.kind), ['summary', 'gap', 'call']);
    assert.deepEqual(log.view('a').map((e) => e.seq), [20, 20, 9, 1]);
    assert.equal(log.byFn.get('a'), 12); // the tail is part of the summary's count
  });
  it('counts what arrives while paused and shows it on resume', () => {
    const log = new EventLog();
    log.setPaused(true);
    const v = log.version;
    log.addEvents([ev(1, 'a'), ev(2, 'a')]);
    assert.equal(log.version, v);
    assert.equal(log.pendingWhilePaused, 2);
    log.setPaused(false);
    assert.equal(log.pendingWhilePaused, 0);
    assert.ok(log.version > v);
    assert.equal(log.view().length, 2);
  });
});

describe('createCoalescer', () => {
  it('draws each view once per animation frame, with its latest request', () => {
    /** @type {Array<() => void>} */
    const frames = [];
    const c = createCoalescer((cb) => frames.push(cb));
    const drawn = [];
    for (let i = 0; i < 10; i++) c.request('heatmap', () => drawn.push(`heatmap${i}`));
    c.request('chart', () => drawn.push('chart'));
    assert.equal(frames.length, 1);
    assert.equal(c.pending(), 2);
    frames.shift()();
    assert.deepEqual(drawn, ['heatmap9', 'chart']);
    c.request('chart', () => drawn.push('chart2'));
    assert.equal(frames.length, 1);
  });
});

describe('createCoalescer timing', () => {
  it('counts and times each view’s draws', () => {
    const frames = [];
    let clock = 0;
    const c = createCoalescer((cb) => frames.push(cb), () => clock);
    c.request('heatmap', () => { clock += 3; });
    frames.shift()();
    c.request('heatmap', () => { clock += 5; });
    frames.shift()();
    assert.deepEqual(c.stats.get('heatmap'), { count: 2, totalMs: 8, maxMs: 5 });
  });
});

it('a view that fails to draw does not stop the others, and is counted', () => {
  /** @type {(() => void)[]} */
  const frames = [];
  const errors = [];
  const c = createCoalescer((cb) => frames.push(cb), () => 0, (key) => errors.push(key));
  const drawn = [];
  c.request('chart', () => { throw new TypeError("Cannot read properties of undefined (reading 'length')"); });
  c.request('heatmap', () => drawn.push('heatmap'));
  frames.shift()();
  assert.deepEqual(drawn, ['heatmap']);
  assert.deepEqual(errors, ['chart']);
  assert.equal(c.failures.get('chart'), 1);
  c.request('chart', () => drawn.push('chart'));  // it draws again on its next request
  frames.shift()();
  assert.deepEqual(drawn, ['heatmap', 'chart']);
});
