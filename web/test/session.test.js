import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  ACCESS_LABELS, canManagePeople, cookieValue, handOutSummary, mayChange, mayHandOut, scenarioCourse, creatableRoles, expiryFromDays, needsCsrf, roleLabel, sessionHeaders,
  signedIn, tokenProblem, tokensFileNames, whoLabel,
} from '../src/lib/session.js';

describe('session cookies and CSRF', () => {
  it('read one cookie out of document.cookie', () => {
    const jar = 'theme=dark; pagelab_csrf=ab%2012; other_pagelab_csrf=x; empty=';
    assert.equal(cookieValue(jar, 'pagelab_csrf'), 'ab 12');
    assert.equal(cookieValue(jar, 'theme'), 'dark');
    assert.equal(cookieValue(jar, 'empty'), '');
    assert.equal(cookieValue(jar, 'csrf'), null);
    assert.equal(cookieValue('', 'pagelab_csrf'), null);
    assert.equal(cookieValue('pagelab_csrf="quoted"', 'pagelab_csrf'), 'quoted');
    assert.equal(cookieValue('pagelab_csrf=%E0%A4%A', 'pagelab_csrf'), '%E0%A4%A');
  });

  it('send the CSRF header on changes only, and only when signed in', () => {
    for (const m of ['POST', 'put', 'PATCH', 'DELETE']) assert.equal(needsCsrf(m), true, m);
    for (const m of ['GET', 'head', 'OPTIONS']) assert.equal(needsCsrf(m), false, m);
    const jar = 'pagelab_csrf=c0ffee';
    assert.deepEqual(sessionHeaders('POST', jar), { 'X-CSRF-Token': 'c0ffee' });
    assert.deepEqual(sessionHeaders('GET', jar), {});
    assert.deepEqual(sessionHeaders('DELETE', 'theme=dark'), {});
  });
});

describe('who is signed in', () => {
  const admin = { name: 'root', role: 'admin', course: null, auth: 'token' };
  const teacher = { name: 'tess', role: 'instructor', course: 'os101', auth: 'token' };
  const student = { name: 'ann', role: 'student', course: 'os101', auth: 'token' };
  const open = { name: '', role: 'admin', course: null, auth: 'open' };

  it('manage people: admins and instructors of a server with accounts', () => {
    assert.equal(canManagePeople(admin), true);
    assert.equal(canManagePeople(teacher), true);
    assert.equal(canManagePeople(student), false);
    assert.equal(canManagePeople(open), false); // the open lab has no accounts
    assert.equal(canManagePeople(null), false);
    assert.equal(signedIn(open), false);
    assert.deepEqual(creatableRoles(teacher), ['student', 'observer']);
    assert.deepEqual(creatableRoles(admin), ['student', 'observer', 'instructor', 'admin']);
    assert.deepEqual(creatableRoles(student), []);
  });

  it('say who in a few words', () => {
    assert.equal(roleLabel(student), 'student, os101');
    assert.equal(whoLabel(student), 'ann (student, os101)');
    assert.equal(whoLabel(admin), 'root (admin)');
  });
});

describe('forms', () => {
  it('refuse empty or doubled tokens, accept any single one', () => {
    assert.match(tokenProblem('   ') ?? '', /Paste the token/);
    assert.match(tokenProblem('pl_abc pl_def') ?? '', /spaces/);
    assert.match(tokenProblem('pl_abc\npl_def') ?? '', /line breaks/);
    assert.match(tokenProblem('x'.repeat(513)) ?? '', /longer/);
    assert.equal(tokenProblem('  pl_Zm9vYmFy  '), null);
    assert.equal(tokenProblem('admin-token-from-the-environment-0123456789'), null);
  });

  it('name the users of a tokens file', () => {
    assert.deepEqual(tokensFileNames('name,token\nann,pl_a\r\nbob,pl_b\n\n'), ['ann', 'bob']);
    assert.deepEqual(tokensFileNames(''), []);
  });

  it('read an expiry in days', () => {
    assert.deepEqual(expiryFromDays(''), { seconds: null });
    assert.deepEqual(expiryFromDays('1.5'), { seconds: 129600 });
    assert.ok('error' in expiryFromDays('0'));
    assert.ok('error' in expiryFromDays('soon'));
    assert.ok('error' in expiryFromDays('4000'));
  });
});

describe('what an instance listing lets its viewer do', () => {
  it('changes only own instances, or any as admin or in the open lab', () => {
    assert.equal(mayChange(undefined), true); // the open lab lists no access
    assert.equal(mayChange('own'), true);
    assert.equal(mayChange('admin'), true);
    for (const readOnly of ['course', 'shared', 'broadcast']) assert.equal(mayChange(readOnly), false, readOnly);
    for (const access of ['own', 'admin', 'course', 'shared', 'broadcast']) assert.ok(ACCESS_LABELS[access], access);
  });

  it('shows the scenarios of the user’s own course, and hand-outs to its instructor', () => {
    const ann = { name: 'ann', role: 'student', course: 'os101', auth: 'token' };
    const tess = { name: 'tess', role: 'instructor', course: 'os101', auth: 'token' };
    const root = { name: 'root', role: 'admin', course: null, auth: 'token' };
    const open = { name: '', role: 'admin', course: null, auth: 'open' };
    assert.equal(scenarioCourse(ann), 'os101');
    assert.equal(scenarioCourse(root), null);
    assert.equal(scenarioCourse(open), null);
    assert.equal(mayHandOut(ann), false);
    assert.equal(mayHandOut(tess), true);
    assert.equal(mayHandOut(open), false);
  });

  it('sums a hand-out up, naming who was refused and why', () => {
    assert.equal(handOutSummary({ created: [{}, {}], refused: [] }), '2 copies handed out.');
    assert.equal(handOutSummary({ created: [{}], refused: [] }), '1 copy handed out.');
    assert.equal(
      handOutSummary({ created: [], refused: [{ user: 'bob', type: 'forbidden', detail: 'their quota instances allows 1' }] }),
      '0 copies handed out; 1 refused (bob: their quota instances allows 1).',
    );
  });
});
