// People (admins and instructors, token mode): create a user, issue or revoke a token,
// import a CSV roster and download the tokens it gives.  Tokens are shown here once.

import { del, post } from '../api.js';
import { h, replace } from '../dom.js';
import { hooks } from '../hooks.js';
import { creatableRoles, expiryFromDays, tokensFileNames } from '../lib/session.js';
import { formErrorsBox, problemBox, statusLine } from '../ui.js';

const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/**
 * @param {HTMLElement} root
 * @param {import('../lib/session.js').Me} me
 */
export function mountPeople(root, me) {
  let alive = true;
  /** @type {string | null} */ let downloadUrl = null;
  const status = statusLine();
  hooks.people = { token: null, rosterUsers: [] };

  // ---- the one place a new token is shown
  const tokenSlot = h('div', { id: 'people-token', 'aria-live': 'polite' });
  /** @param {string} who @param {string} token */
  function showToken(who, token) {
    const code = h('code', { id: 'issued-token', class: 'token-text' }, token);
    const copied = h('span', { class: 'muted small', role: 'status' });
    const copy = h('button', { type: 'button', class: 'small', id: 'copy-token' }, 'Copy');
    copy.addEventListener('click', async () => {
      try {
        await navigator.clipboard.writeText(token);
        copied.textContent = 'Copied.';
      } catch {
        // no clipboard (plain http on another host): select it for the reader to copy
        const range = document.createRange();
        range.selectNodeContents(code);
        getSelection()?.removeAllRanges();
        getSelection()?.addRange(range);
        copied.textContent = 'Selected: copy it with Ctrl+C (or ⌘C).';
      }
    });
    replace(tokenSlot, h('div', { class: 'notice' },
      h('div', null, h('strong', null, `Token for ${who}`), ' — shown only now: hand it over or copy it before leaving this page.'),
      h('div', { class: 'row' }, code, copy, copied)));
    hooks.people.token = token;
  }

  /** @param {string} text @param {Array<{message: string}>} errors */
  function expiry(text, errors) {
    const e = expiryFromDays(text);
    if ('error' in e) {
      errors.push({ message: e.error });
      return null;
    }
    return e.seconds;
  }

  /** @param {string} label @param {string} id @param {Record<string, any>} [props] */
  const input = (label, id, props = {}) => [h('label', { for: id }, label), h('input', { id, name: id, type: 'text', autocomplete: 'off', ...props })];

  // ---- create a user
  const roles = creatableRoles(me);
  const [nameLabel, nameInput] = input('Name', 'people-name', { required: true, placeholder: 'ann', 'aria-describedby': 'people-name-help' });
  const roleSelect = h('select', { id: 'people-role', name: 'role' }, roles.map((r) => h('option', { value: r }, r)));
  const [courseLabel, courseInput] = input('Course', 'people-course', {
    placeholder: me.role === 'admin' ? 'none' : '', readonly: me.role !== 'admin',
    'aria-describedby': 'people-course-help',
  });
  /** @type {HTMLInputElement} */ (courseInput).value = me.role === 'admin' ? '' : me.course ?? '';
  const [expLabel, expInput] = input('Expires after (days)', 'people-expires', { inputmode: 'decimal', placeholder: 'never' });
  const createProblem = h('div');
  const createForm = h('form', { 'aria-labelledby': 'people-create-legend', novalidate: true },
    h('fieldset', null, h('legend', { id: 'people-create-legend' }, 'New user (with a first token)'),
      h('div', { class: 'form-grid' },
        nameLabel, nameInput,
        h('div', { class: 'full muted small', id: 'people-name-help' }, '1 to 64 letters, digits, . _ or -'),
        h('label', { for: 'people-role' }, 'Role'), roleSelect,
        courseLabel, courseInput,
        h('div', { class: 'full muted small', id: 'people-course-help' },
          me.role === 'admin' ? 'The course must exist (a roster import creates its courses).' : 'Instructors add people to their own course.'),
        expLabel, expInput,
        h('div', { class: 'full' }, h('button', { type: 'submit', class: 'primary', id: 'people-create' }, 'Create user'))),
      createProblem));
  createForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    replace(createProblem);
    const errors = [];
    const name = /** @type {HTMLInputElement} */ (nameInput).value.trim();
    const course = /** @type {HTMLInputElement} */ (courseInput).value.trim();
    if (!NAME_PATTERN.test(name)) errors.push({ message: 'name: 1 to 64 letters, digits, . _ or -, starting with a letter or digit' });
    if (course && !NAME_PATTERN.test(course)) errors.push({ message: 'course: letters, digits, . _ or - (empty: no course)' });
    const expires = expiry(/** @type {HTMLInputElement} */ (expInput).value, errors);
    if (errors.length) {
      replace(createProblem, formErrorsBox(errors));
      return;
    }
    try {
      /** @type {Record<string, any>} */
      const body = { name, role: roleSelect.value, course: course || null, label: 'page' };
      if (expires !== null) body.expires_in_s = expires;
      const made = await post('/users', body);
      if (!alive) return;
      status.set(`Created ${made.name} (${made.role}${made.course ? `, ${made.course}` : ''}).`);
      showToken(made.name, made.token);
      /** @type {HTMLInputElement} */ (nameInput).value = '';
    } catch (e) {
      replace(createProblem, problemBox(e, 'Creating the user'));
    }
  });

  // ---- another token for someone
  const [userLabel, userInput] = input('User', 'token-user', { required: true, placeholder: 'ann' });
  const [labelLabel, labelInput] = input('Label', 'token-label', { placeholder: 'lab machine', maxlength: 128 });
  const [texpLabel, texpInput] = input('Expires after (days)', 'token-expires', { inputmode: 'decimal', placeholder: 'never' });
  const issueProblem = h('div');
  const issueForm = h('form', { 'aria-labelledby': 'token-legend', novalidate: true },
    h('fieldset', null, h('legend', { id: 'token-legend' }, 'Issue a token'),
      h('div', { class: 'form-grid' }, userLabel, userInput, labelLabel, labelInput, texpLabel, texpInput,
        h('div', { class: 'full' }, h('button', { type: 'submit', id: 'token-issue' }, 'Issue token'))),
      issueProblem));
  issueForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    replace(issueProblem);
    const errors = [];
    const user = /** @type {HTMLInputElement} */ (userInput).value.trim();
    if (!NAME_PATTERN.test(user)) errors.push({ message: 'user: the name of a user you manage' });
    const expires = expiry(/** @type {HTMLInputElement} */ (texpInput).value, errors);
    if (errors.length) {
      replace(issueProblem, formErrorsBox(errors));
      return;
    }
    try {
      /** @type {Record<string, any>} */
      const body = { label: /** @type {HTMLInputElement} */ (labelInput).value.trim() };
      if (expires !== null) body.expires_in_s = expires;
      const made = await post(`/users/${encodeURIComponent(user)}/tokens`, body);
      if (!alive) return;
      status.set(`Issued token ${made.id} for ${made.user}.`);
      showToken(made.user, made.token);
    } catch (e) {
      replace(issueProblem, problemBox(e, 'Issuing the token'));
    }
  });

  // ---- revoke a token
  const [ridLabel, ridInput] = input('Token id', 'revoke-id', { inputmode: 'numeric', placeholder: '12' });
  const revokeProblem = h('div');
  const revokeForm = h('form', { 'aria-labelledby': 'revoke-legend', novalidate: true },
    h('fieldset', null, h('legend', { id: 'revoke-legend' }, 'Revoke a token'),
      h('div', { class: 'form-grid' }, ridLabel, ridInput,
        h('div', { class: 'full' }, h('button', { type: 'submit', class: 'danger', id: 'token-revoke' }, 'Revoke'))),
      revokeProblem));
  revokeForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    replace(revokeProblem);
    const raw = /** @type {HTMLInputElement} */ (ridInput).value.trim();
    if (!/^[1-9][0-9]{0,15}$/.test(raw)) {
      replace(revokeProblem, formErrorsBox([{ message: 'token id: the number shown when the token was issued' }]));
      return;
    }
    try {
      await del(`/tokens/${raw}`);
      status.set(`Revoked token ${raw}: it and its sign-ins no longer work.`);
    } catch (e) {
      replace(revokeProblem, problemBox(e, 'Revoking the token'));
    }
  });

  // ---- a roster: CSV in, a tokens file out
  const file = h('input', { id: 'roster-file', name: 'roster', type: 'file', accept: '.csv,text/csv', 'aria-describedby': 'roster-help' });
  const [rexpLabel, rexpInput] = input('Expires after (days)', 'roster-expires', { inputmode: 'decimal', placeholder: 'never' });
  const rosterProblem = h('div');
  const rosterResult = h('div', { 'aria-live': 'polite' });
  const rosterForm = h('form', { 'aria-labelledby': 'roster-legend', novalidate: true },
    h('fieldset', null, h('legend', { id: 'roster-legend' }, 'Import a roster'),
      h('div', { class: 'form-grid' },
        h('label', { for: 'roster-file' }, 'CSV file'), file,
        h('div', { class: 'full muted small', id: 'roster-help' },
          'One user a line: name,role,course (a header line "name,role,course" is optional). All or nothing: a bad line refuses the whole roster.'),
        rexpLabel, rexpInput,
        h('div', { class: 'full' }, h('button', { type: 'submit', class: 'primary', id: 'roster-import' }, 'Import'))),
      rosterProblem, rosterResult));
  rosterForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    replace(rosterProblem);
    const errors = [];
    const chosen = file.files?.[0];
    if (!chosen) errors.push({ message: 'CSV file: choose the roster to import' });
    const expires = expiry(/** @type {HTMLInputElement} */ (rexpInput).value, errors);
    if (errors.length || !chosen) {
      replace(rosterProblem, formErrorsBox(errors));
      return;
    }
    try {
      /** @type {Record<string, any>} */
      const body = { roster: await chosen.text() };
      if (expires !== null) body.expires_in_s = expires;
      const csv = String(await post('/rosters', body));
      if (!alive) return;
      const names = tokensFileNames(csv);
      if (downloadUrl) URL.revokeObjectURL(downloadUrl);
      downloadUrl = URL.createObjectURL(new Blob([csv], { type: 'text/csv' }));
      replace(rosterResult, h('div', { class: 'notice' },
        h('div', null, `${names.length} user${names.length === 1 ? '' : 's'} created. Their tokens are shown only now, in this file:`),
        h('a', { href: downloadUrl, download: 'tokens.csv', id: 'roster-download' }, 'Download tokens.csv')));
      hooks.people.rosterUsers = names;
      status.set(`Imported ${names.length} users from ${chosen.name}.`);
      file.value = '';
    } catch (e) {
      replace(rosterProblem, problemBox(e, 'Importing the roster'));
    }
  });

  root.append(
    h('section', { class: 'panel', 'aria-labelledby': 'people-h' },
      h('div', { class: 'panel-head' }, h('h2', { id: 'people-h' }, 'People')),
      h('p', { class: 'muted small' }, me.role === 'admin'
        ? 'Create users and tokens, one at a time or from a CSV roster. A token is shown once: hand it out, then only its id remains.'
        : `Add students and observers to ${me.course ?? 'your course'}, one at a time or from a CSV roster. A token is shown once.`),
      tokenSlot, status.element),
    h('div', { class: 'people-grid' },
      h('div', { class: 'panel' }, createForm, issueForm, revokeForm),
      h('div', { class: 'panel' }, rosterForm)));
  hooks.route = '#/people';
  return () => {
    alive = false;
    if (downloadUrl) URL.revokeObjectURL(downloadUrl);
  };
}
