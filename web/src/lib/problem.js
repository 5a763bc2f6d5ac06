// RFC 9457 problem documents (application/problem+json) as people read them: a title, what
// went wrong, and one line per invalid field.

/**
 * @typedef {object} Problem
 * @property {string} title
 * @property {string} detail
 * @property {number} status
 * @property {string} type
 * @property {Array<{field: string, message: string}>} errors
 * @property {Record<string, unknown>} extra   other members (panic, function, channel, …)
 */

const CORE = new Set(['type', 'title', 'status', 'detail', 'instance', 'errors']);

/**
 * A problem from an HTTP answer that was not a success.  Bodies that are not problem
 * documents (a proxy's HTML page, an empty body) still give a readable problem.
 * @param {number} status
 * @param {string} text the response body
 * @param {string} [statusText]
 * @returns {Problem}
 */
export function problemFromResponse(status, text, statusText = '') {
  /** @type {any} */
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (body && typeof body === 'object' && !Array.isArray(body) && (body.title || body.detail)) {
    /** @type {Record<string, unknown>} */
    const extra = {};
    for (const [k, v] of Object.entries(body)) if (!CORE.has(k)) extra[k] = v;
    return {
      title: String(body.title ?? statusText ?? 'Error'),
      detail: String(body.detail ?? ''),
      status: Number(body.status ?? status),
      type: String(body.type ?? 'about:blank'),
      errors: Array.isArray(body.errors)
        ? body.errors.map((/** @type {any} */ e) => ({ field: String(e.field ?? e.loc ?? ''), message: String(e.message ?? e.msg ?? e) }))
        : [],
      extra,
    };
  }
  const snippet = (text ?? '').replace(/<[^>]*>/g, ' ').replace(/\s+/g, ' ').trim().slice(0, 200);
  return {
    title: statusText || `HTTP ${status}`,
    detail: snippet || `the server answered ${status} without an explanation`,
    status,
    type: 'about:blank',
    errors: [],
    extra: {},
  };
}

/**
 * A problem for a request that never got an answer (server down, network cut).
 * @param {unknown} error
 * @returns {Problem}
 */
export function networkProblem(error) {
  const message = error instanceof Error ? error.message : String(error);
  return {
    title: 'The server did not answer',
    detail: `${message || 'network error'}: is the PageLab server running?`,
    status: 0,
    type: 'about:blank',
    errors: [],
    extra: {},
  };
}

/**
 * The lines to show: "Title (status)", the detail, then each invalid field.  A field error
 * that only repeats the detail is not shown twice.
 * @param {Problem} p
 * @returns {string[]}
 */
export function problemLines(p) {
  const head = p.status ? `${p.title} (HTTP ${p.status})` : p.title;
  const lines = [head];
  if (p.detail) lines.push(p.detail);
  for (const e of p.errors) {
    const line = e.field ? `${e.field}: ${e.message}` : e.message;
    if (!p.detail.includes(line)) lines.push(line);
  }
  return lines;
}

/** One line for status bars and logs. @param {Problem} p */
export function problemText(p) {
  return problemLines(p).join(' — ');
}
