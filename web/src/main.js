// PageLab's page: a hash router between the instance list (#/), one instance's dashboard
// (#/instances/<id>) and, for admins and instructors, People (#/people).  A server in token
// mode answers GET /me with 401 until the visitor signs in: the page then shows its
// sign-in instead, and again whenever a sign-in ends (a 401 later on, or the stream's 4401).

import './styles.css';
import 'uplot/dist/uPlot.min.css';

import { ApiError, UNAUTHORIZED_EVENT, del, get } from './api.js';
import { h, replace } from './dom.js';
import { initTheme } from './theme.js';
import { hooks } from './hooks.js';
import { canManagePeople, roleLabel, signedIn } from './lib/session.js';
import { problemBox } from './ui.js';
import { mountInstances } from './views/instances.js';
import { mountDashboard } from './views/dashboard.js';
import { mountPeople } from './views/people.js';
import { mountSignIn } from './views/signin.js';

/** @type {(() => void) | null} */
let unmount = null;
/** @type {import('./lib/session.js').Me | null} who is signed in (auth "open": everyone) */
let me = null;
/** the sign-in is showing: routes wait for it */
let signingIn = false;

const main = /** @type {HTMLElement} */ (document.getElementById('main'));

function clearView() {
  if (unmount) unmount();
  unmount = null;
  main.replaceChildren();
  document.getElementById('conn-slot')?.replaceChildren();
}

function route() {
  if (signingIn) return;
  clearView();
  const m = /^#\/instances\/(\d+)/.exec(location.hash);
  if (m) {
    unmount = mountDashboard(main, Number(m[1]));
  } else if (location.hash.startsWith('#/people') && me && canManagePeople(me)) {
    unmount = mountPeople(main, me);
  } else {
    unmount = mountInstances(main);
  }
  hooks.route = location.hash || '#/';
}

/** Who is signed in, in the top bar, with a sign-out button (token mode only). */
function renderAccount() {
  const slot = /** @type {HTMLElement} */ (document.getElementById('account-slot'));
  const people = document.getElementById('nav-people');
  if (people) people.hidden = !canManagePeople(me);
  hooks.me = me;
  if (!me || !signedIn(me)) {
    slot.replaceChildren();
    return;
  }
  const out = h('button', { type: 'button', class: 'small', id: 'sign-out' }, 'Sign out');
  out.addEventListener('click', signOut);
  replace(slot, h('span', { class: 'who', id: 'signed-in-as', dataset: { name: me.name, role: me.role } },
    'Signed in as ', h('strong', null, me.name), ` (${roleLabel(me)})`), out);
}

async function signOut() {
  try {
    await del('/session');
  } catch (e) {
    if (!(e instanceof ApiError && e.problem.status === 401)) {
      replace(main, problemBox(e, 'Signing out'));
      return;
    }
  }
  showSignIn('You are signed out.');
}

/** @param {string} [notice] */
function showSignIn(notice) {
  signingIn = true;
  me = null;
  renderAccount();
  clearView();
  unmount = mountSignIn(main, async () => {
    signingIn = false;
    await start();
  }, notice);
}

/** Ask who we are; sign in first if the server wants it. */
async function start() {
  try {
    me = await get('/me');
  } catch (e) {
    if (e instanceof ApiError && e.problem.status === 401) {
      showSignIn();
      return;
    }
    me = null; // the server is unreachable or failing: the views say so themselves
  }
  renderAccount();
  route();
}

window.addEventListener(UNAUTHORIZED_EVENT, () => {
  // a request (or the stream) found the sign-in ended: ask again, once
  if (!signingIn && signedIn(me)) showSignIn('Your sign-in has ended (signed out elsewhere, timed out, or the token was revoked): sign in again.');
});

initTheme();
window.addEventListener('hashchange', route);
start();
