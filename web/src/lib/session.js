// Sign-in helpers (token mode): the CSRF cookie, who may manage people, what a token field
// may hold, and the tokens file a roster gives back.  Pure functions, tested under node.

/** The cookie that holds the session's CSRF token (readable by the page on purpose). */
export const CSRF_COOKIE = 'pagelab_csrf';
/** The header that repeats it on every change. */
export const CSRF_HEADER = 'X-CSRF-Token';

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * One cookie's value from a `document.cookie` string, or null.
 * @param {string} cookies e.g. "a=1; pagelab_csrf=ab12"
 * @param {string} name
 * @returns {string | null}
 */
export function cookieValue(cookies, name) {
  for (const part of (cookies ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() !== name) continue;
    const raw = part.slice(eq + 1).trim().replace(/^"(.*)"$/, '$1');
    try {
      return decodeURIComponent(raw);
    } catch {
      return raw;
    }
  }
  return null;
}

/** Does a request of this method change something (and so need the CSRF header)? @param {string} method */
export function needsCsrf(method) {
  return !SAFE_METHODS.has(method.toUpperCase());
}

/**
 * The headers a request sends for the session: the CSRF token on changes, when there is one.
 * @param {string} method
 * @param {string} cookies `document.cookie`
 * @returns {Record<string, string>}
 */
export function sessionHeaders(method, cookies) {
  if (!needsCsrf(method)) return {};
  const csrf = cookieValue(cookies, CSRF_COOKIE);
  return csrf ? { [CSRF_HEADER]: csrf } : {};
}

/**
 * @typedef {object} Me  what GET /api/v1/me answers
 * @property {string} name
 * @property {string} role
 * @property {string | null} course
 * @property {'open' | 'token'} auth
 */

/** Does this server have accounts, and so a signed-in user to show? @param {Me | null} me */
export function signedIn(me) {
  return Boolean(me && me.auth === 'token');
}

/** May this user create people (admins anyone, instructors their course's students)? @param {Me | null} me */
export function canManagePeople(me) {
  return signedIn(me) && (me?.role === 'admin' || me?.role === 'instructor');
}

/** The roles this user may give to a new user. @param {Me | null} me @returns {string[]} */
export function creatableRoles(me) {
  if (!signedIn(me)) return [];
  if (me?.role === 'admin') return ['student', 'observer', 'instructor', 'admin'];
  if (me?.role === 'instructor') return ['student', 'observer'];
  return [];
}

/** "student, os101": a user's role and course. @param {Me} me */
export function roleLabel(me) {
  return me.course ? `${me.role}, ${me.course}` : me.role;
}

/** "ann (student, os101)": who is signed in, in a few words. @param {Me} me */
export function whoLabel(me) {
  return `${me.name} (${roleLabel(me)})`;
}

/**
 * What is wrong with a pasted token, or null if it may be sent.  Tokens handed out start
 * with pl_; an admin's may be any text of 32 characters or more, so only emptiness and
 * inner spaces (two tokens pasted, or a line break) are refused here.
 * @param {string} text
 * @returns {string | null}
 */
export function tokenProblem(text) {
  const token = text.trim();
  if (!token) return 'Paste the token you were given (it starts with pl_).';
  if (/\s/.test(token)) return 'The token has spaces or line breaks in it: paste just the token, on its own.';
  if (token.length > 512) return 'That is far longer than a token: paste just the token.';
  return null;
}

/**
 * The users of a tokens file (`name,token` lines, a header first), for a summary.
 * @param {string} csv
 * @returns {string[]}
 */
export function tokensFileNames(csv) {
  const lines = csv.split(/\r?\n/).map((l) => l.trim()).filter(Boolean);
  if (lines[0] === 'name,token') lines.shift();
  return lines.map((l) => l.split(',')[0]);
}

/**
 * Seconds from a number of days typed in a form (empty: never expires).
 * @param {string} text
 * @returns {{seconds: number | null} | {error: string}}
 */
export function expiryFromDays(text) {
  const t = text.trim();
  if (!t) return { seconds: null };
  const days = Number(t);
  if (!Number.isFinite(days) || days <= 0 || days > 3650) return { error: `expires: "${t}" is not a number of days from 1 to 3650 (empty: never)` };
  return { seconds: Math.round(days * 86400) };
}

// ---- what an instance's `access` (GET /instances) lets its viewer do
/** Why each kind of access shows an instance, in a few words. */
export const ACCESS_LABELS = {
  own: 'yours',
  admin: 'admin',
  course: 'your course (read-only)',
  shared: 'shared with you (read-only)',
  broadcast: 'broadcast to your course (read-only)',
};

/**
 * May the viewer change (call, reset, delete) an instance listed with this access?  The
 * open lab lists no access: everything is everyone's.
 * @param {string | undefined} access
 */
export function mayChange(access) {
  return access === undefined || access === 'own' || access === 'admin';
}

/** May this user hand a scenario out to the whole course (its instructor, or an admin)? @param {Me | null} me */
export function mayHandOut(me) {
  return signedIn(me) && (me?.role === 'admin' || me?.role === 'instructor');
}

/**
 * The course whose scenarios the instance list shows: the user's own (admins have none
 * unless one is given). @param {Me | null} me @returns {string | null}
 */
export function scenarioCourse(me) {
  return signedIn(me) && me?.course ? me.course : null;
}

/**
 * What a hand-out answered, in one sentence.
 * @param {{created: any[], refused: any[]}} out
 */
export function handOutSummary(out) {
  const made = out.created?.length ?? 0;
  const refused = out.refused?.length ?? 0;
  const copies = `${made} cop${made === 1 ? 'y' : 'ies'} handed out`;
  if (!refused) return `${copies}.`;
  const who = out.refused.map((/** @type {any} */ r) => `${r.user}: ${r.detail ?? r.type ?? "refused"}`).join('; ');
  return `${copies}; ${refused} refused (${who}).`;
}
