// The sign-in (token mode): a token field; the server answers with an HttpOnly session
// cookie and a CSRF token the page repeats on every change (see api.js).

import { ApiError, post } from '../api.js';
import { h, replace } from '../dom.js';
import { hooks } from '../hooks.js';
import { tokenProblem } from '../lib/session.js';
import { formErrorsBox, problemBox } from '../ui.js';

/**
 * @param {HTMLElement} root
 * @param {(me: any) => void} onSignedIn  called with the sign-in's answer (name, role, course)
 * @param {string} [notice] why the sign-in is shown again ("your sign-in has ended")
 */
export function mountSignIn(root, onSignedIn, notice) {
  const token = h('input', {
    id: 'signin-token', name: 'token', type: 'password', autocomplete: 'off', spellcheck: 'false',
    required: true, 'aria-describedby': 'signin-help', 'aria-invalid': 'false',
  });
  const show = h('input', { id: 'signin-show', type: 'checkbox' });
  show.addEventListener('change', () => { token.type = show.checked ? 'text' : 'password'; });
  const problemSlot = h('div', { id: 'signin-problem' });
  const submit = h('button', { type: 'submit', class: 'primary', id: 'signin-submit' }, 'Sign in');
  const form = h('form', { 'aria-labelledby': 'signin-h', novalidate: true, class: 'stack' },
    h('h2', { id: 'signin-h' }, 'Sign in to PageLab'),
    notice ? h('p', { class: 'notice', role: 'status' }, notice) : null,
    h('div', { class: 'form-grid' },
      h('label', { for: 'signin-token' }, 'Token'), token,
      h('div', { class: 'full muted small', id: 'signin-help' },
        'The token your instructor handed out (it starts with pl_). It stays in this browser only as a session: signing out ends it.'),
      h('label', { for: 'signin-show', class: 'full small' }, show, 'Show the token while typing')),
    h('div', { class: 'row' }, submit),
    problemSlot);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    replace(problemSlot);
    const wrong = tokenProblem(token.value);
    if (wrong) {
      token.setAttribute('aria-invalid', 'true');
      replace(problemSlot, formErrorsBox([{ message: wrong }]));
      token.focus();
      return;
    }
    submit.disabled = true;
    try {
      const me = await post('/session', { token: token.value.trim() });
      token.value = '';
      hooks.signIns = (hooks.signIns ?? 0) + 1;
      onSignedIn(me);
    } catch (e) {
      token.setAttribute('aria-invalid', 'true');
      const status = e instanceof ApiError ? e.problem.status : 0;
      replace(problemSlot, problemBox(e, status === 401 ? 'Not signed in' : 'Signing in'));
      token.select();
    } finally {
      submit.disabled = false;
    }
  });
  root.append(h('section', { class: 'panel signin', 'aria-label': 'Sign in' }, form));
  token.focus();
  hooks.route = 'signin';
  return () => {};
}
