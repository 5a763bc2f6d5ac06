import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { policyOf, seamFields } from '../src/lib/seams.js';

// as GET /api/v1/seams answers (two of the three)
const SEAMS = [
  {
    name: 'page_color', function: 'vm_get_pg_color', decides: 'the colour vm_page_alloc starts its free-queue search at', default: 'kernel',
    choices: [{ name: 'kernel', means: 'DragonFly' }, { name: 'object', means: 'classic BSD' }, { name: 'cpu', means: 'slice' }, { name: 'none', means: 'colour 0' }],
  },
  {
    name: 'free_queue_end', function: '_vm_page_add_queue_spinlocked', decides: 'which end', default: 'kernel',
    choices: [{ name: 'kernel', means: 'the head' }, { name: 'tail', means: 'the tail' }],
  },
];

describe('seamFields', () => {
  it('gives each seam a select of its choices, the kernel first and chosen', () => {
    const [color, end] = seamFields(SEAMS);
    assert.equal(color.control, 'select');
    assert.deepEqual(color.choices, ['kernel', 'object', 'cpu', 'none']);
    assert.equal(color.default, 'kernel');
    assert.match(color.help, /in vm_get_pg_color/);
    assert.match(color.help, /object: classic BSD/);
    assert.deepEqual(end.choices, ['kernel', 'tail']);
  });
});

describe('policyOf', () => {
  it('sends only the seams that leave the kernel', () => {
    assert.deepEqual(policyOf({ page_color: 'kernel', free_queue_end: 'kernel' }, SEAMS), {});
    assert.deepEqual(policyOf({ page_color: 'object', free_queue_end: 'kernel' }, SEAMS), { page_color: 'object' });
    assert.deepEqual(policyOf({ page_color: '', free_queue_end: 'tail', other: 'x' }, SEAMS), { free_queue_end: 'tail' });
  });
});
