// The REST client: JSON in and out; any answer that is not a success becomes an ApiError
// carrying the RFC 9457 problem the server sent (or one that explains a network failure).
// Signed in (token mode), the browser sends the session cookie itself and every change
// repeats the session's CSRF token; a 401 tells the page (event `pagelab:unauthorized`)
// that the sign-in has ended.

import { networkProblem, problemFromResponse, problemText } from './lib/problem.js';
import { sessionHeaders } from './lib/session.js';

/** Dispatched on window when the server answers 401: the page shows its sign-in. */
export const UNAUTHORIZED_EVENT = 'pagelab:unauthorized';

export const API = '/api/v1';

export class ApiError extends Error {
  /** @param {import('./lib/problem.js').Problem} problem */
  constructor(problem) {
    super(problemText(problem));
    this.name = 'ApiError';
    this.problem = problem;
  }
}

/**
 * @param {string} method
 * @param {string} path under /api/v1
 * @param {unknown} [body]
 * @returns {Promise<any>}
 */
export async function request(method, path, body) {
  /** @type {RequestInit} */
  const init = {
    method,
    headers: { accept: 'application/json, application/problem+json', ...sessionHeaders(method, document.cookie) },
    credentials: 'same-origin',
  };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    /** @type {Record<string, string>} */ (init.headers)['content-type'] = 'application/json';
  }
  let response;
  try {
    response = await fetch(API + path, init);
  } catch (e) {
    throw new ApiError(networkProblem(e));
  }
  const text = await response.text();
  if (!response.ok) {
    const error = new ApiError(problemFromResponse(response.status, text, response.statusText));
    // a failed sign-in is the sign-in form's to show
    if (response.status === 401 && path !== '/session') window.dispatchEvent(new CustomEvent(UNAUTHORIZED_EVENT, { detail: error }));
    throw error;
  }
  if (response.status === 204 || !text) return null;
  const type = response.headers.get('content-type') ?? '';
  return type.includes('json') ? JSON.parse(text) : text;
}

export const get = (/** @type {string} */ path) => request('GET', path);
export const post = (/** @type {string} */ path, /** @type {unknown} */ body = {}) => request('POST', path, body);
export const put = (/** @type {string} */ path, /** @type {unknown} */ body) => request('PUT', path, body);
export const patch = (/** @type {string} */ path, /** @type {unknown} */ body) => request('PATCH', path, body);
export const del = (/** @type {string} */ path) => request('DELETE', path);

/** Things that rarely change, fetched once per page load. */
const once = new Map();
/** @param {string} path */
export function cached(path) {
  if (!once.has(path)) {
    once.set(path, get(path).catch((e) => {
      once.delete(path);
      throw e;
    }));
  }
  return once.get(path);
}

// ---- downloads (the timeline's trace export): the body as it came, not parsed
/**
 * @param {string} path under /api/v1
 * @returns {Promise<{blob: Blob, filename: string | null}>}
 */
export async function download(path) {
  let response;
  try {
    response = await fetch(API + path, { headers: { accept: '*/*, application/problem+json' } });
  } catch (e) {
    throw new ApiError(networkProblem(e));
  }
  if (!response.ok) throw new ApiError(problemFromResponse(response.status, await response.text(), response.statusText));
  const disposition = response.headers.get('content-disposition') ?? '';
  const filename = /filename="([^"]+)"/.exec(disposition)?.[1] ?? null;
  return { blob: await response.blob(), filename };
}
