// The WebSocket client of docs/stream-protocol.md: connects, hands messages on, and after a
// dropped connection reconnects with a growing back-off, starting again from a fresh hello.

import { createBackoff } from './lib/backoff.js';

export const CLOSE_NORMAL = 1000;
export const CLOSE_POLICY = 1008;
export const CLOSE_TRY_AGAIN = 1013;
/** token mode: no valid token or sign-in (the server's 4401, HTTP's 401) */
export const CLOSE_UNAUTHORIZED = 4401;
/** token mode: too many failed sign-ins from this address (4429, HTTP's 429) */
export const CLOSE_RATE_LIMITED = 4429;

/**
 * @typedef {object} StreamStatus
 * @property {'connecting' | 'connected' | 'waiting' | 'closed' | 'failed'} state
 *   waiting: disconnected, a reconnect is scheduled; closed: the instance went away;
 *   failed: the server refused us (no reconnect until asked)
 * @property {number} attempt    reconnects tried since the last hello
 * @property {number} [retryAt]  when the next try starts (ms since the epoch)
 * @property {string} [reason]
 * @property {number} hellos     hellos received on this page
 */

/**
 * @typedef {object} StreamHandlers
 * @property {(msg: any) => void} onHello
 * @property {(msg: any) => void} onFrame
 * @property {(msg: any) => void} [onGap]
 * @property {(msg: any) => void} [onError]   an `error` message (connection stays open)
 * @property {(msg: any) => void} [onAck]
 * @property {(status: StreamStatus) => void} onStatus
 */

export class StreamClient {
  /**
   * @param {{instanceId: number, topics: string[], rate: number, handlers: StreamHandlers}} options
   */
  constructor({ instanceId, topics, rate, handlers }) {
    this.instanceId = instanceId;
    this.topics = topics;
    this.rate = rate;
    this.handlers = handlers;
    this.backoff = createBackoff({ base: 250, factor: 2, max: 8000, jitter: 0.2 });
    /** @type {WebSocket | null} */
    this.ws = null;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.timer = null;
    /** @type {ReturnType<typeof setInterval> | null} */
    this.pinger = null;
    this.stopped = true;
    this.sawBye = false;
    /** @type {StreamStatus} */
    this.status = { state: 'connecting', attempt: 0, hellos: 0 };
  }

  url() {
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const q = new URLSearchParams({ topics: this.topics.join(','), rate: String(this.rate) });
    return `${scheme}://${location.host}/api/v1/instances/${this.instanceId}/stream?${q}`;
  }

  start() {
    this.stopped = false;
    this.#connect();
  }

  /** Reconnect now (the "retry" button), forgetting the back-off. */
  retry() {
    this.backoff.reset();
    this.#clearTimer();
    if (this.ws) this.ws.close();
    else this.#connect();
  }

  stop() {
    this.stopped = true;
    this.#clearTimer();
    if (this.pinger) clearInterval(this.pinger);
    this.pinger = null;
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onclose = null;
      ws.onmessage = null;
      ws.onerror = null;
      ws.close(CLOSE_NORMAL, 'page closed');
    }
  }

  /** @param {Record<string, unknown>} message */
  send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(message));
      return true;
    }
    return false;
  }

  get connected() {
    return this.status.state === 'connected';
  }

  /** @param {Partial<StreamStatus>} patch */
  #setStatus(patch) {
    this.status = { ...this.status, ...patch };
    this.handlers.onStatus(this.status);
  }

  #clearTimer() {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  #connect() {
    if (this.stopped) return;
    this.sawBye = false;
    this.#setStatus({ state: 'connecting', retryAt: undefined });
    let ws;
    try {
      ws = new WebSocket(this.url());
    } catch (e) {
      this.#scheduleReconnect(String(e));
      return;
    }
    this.ws = ws;
    ws.onmessage = (ev) => this.#onMessage(ev);
    ws.onclose = (ev) => this.#onClose(ev);
    // a failed connection also fires close, where it is handled; nothing to add here
    ws.onerror = () => {};
  }

  /** @param {MessageEvent} ev */
  #onMessage(ev) {
    let msg;
    try {
      msg = JSON.parse(ev.data);
    } catch {
      return;
    }
    try {
      this.#dispatch(msg);
    } catch (e) {
      // a message the page could not apply: its state may be off, so start again from
      // a fresh hello instead of drawing a wrong picture
      console.warn('PageLab: could not apply a stream message; resyncing', e);
      this.send({ op: 'resync' });
    }
  }

  /** @param {any} msg */
  #dispatch(msg) {
    switch (msg?.type) {
      case 'hello':
        this.backoff.reset();
        this.#setStatus({ state: 'connected', attempt: 0, reason: undefined, hellos: this.status.hellos + 1 });
        this.#startPinger();
        this.handlers.onHello(msg);
        break;
      case 'frame':
        this.handlers.onFrame(msg);
        this.#ack(msg.time);
        break;
      case 'gap':
        this.handlers.onGap?.(msg);
        break;
      case 'error':
        this.handlers.onError?.(msg);
        break;
      case 'ack':
        this.handlers.onAck?.(msg);
        break;
      case 'bye':
        this.sawBye = true;
        this.#setStatus({ reason: msg.reason ?? 'the instance was deleted' });
        break;
      default:
        break; // pong and messages of later protocol versions need nothing
    }
  }

  /**
   * Tell the server, at most twice a second, which frame the page has taken in, so that
   * it can see when the page falls behind (protocol: op "ack").
   * @param {number} time the frame's build time
   */
  #ack(time) {
    const now = Date.now();
    if (typeof time !== 'number' || now - (this.lastAck ?? 0) < 500) return;
    this.lastAck = now;
    this.send({ op: 'ack', time });
  }

  #startPinger() {
    if (this.pinger) clearInterval(this.pinger);
    this.pinger = setInterval(() => this.send({ op: 'ping' }), 20_000);
  }

  /** @param {CloseEvent} ev */
  #onClose(ev) {
    this.ws = null;
    if (this.pinger) clearInterval(this.pinger);
    this.pinger = null;
    if (this.stopped) return;
    if (this.sawBye || (ev.code === CLOSE_NORMAL && ev.reason)) {
      this.#setStatus({ state: 'closed', reason: this.status.reason ?? ev.reason ?? 'closed by the server' });
      return;
    }
    if (ev.code === CLOSE_POLICY || ev.code === CLOSE_RATE_LIMITED) {
      this.#setStatus({ state: 'failed', reason: ev.reason || 'the server refused the stream' });
      return;
    }
    if (ev.code === CLOSE_UNAUTHORIZED) {
      // reconnecting cannot help: the page signs in again (see main.js)
      this.#setStatus({ state: 'failed', reason: 'your sign-in has ended' });
      globalThis.dispatchEvent?.(new CustomEvent('pagelab:unauthorized'));
      return;
    }
    const why = ev.code === CLOSE_TRY_AGAIN ? `the server dropped a slow reader (${ev.reason || 'try again later'})` : ev.reason || 'connection lost';
    this.#scheduleReconnect(why);
  }

  /** Stop for good after a protocol the page cannot read. @param {string} reason */
  fail(reason) {
    this.stop();
    this.#setStatus({ state: 'failed', reason });
  }

  /** @param {string} reason */
  #scheduleReconnect(reason) {
    const delay = this.backoff.next();
    this.#setStatus({ state: 'waiting', attempt: this.backoff.attempt, retryAt: Date.now() + delay, reason });
    this.#clearTimer();
    this.timer = setTimeout(() => this.#connect(), delay);
  }
}
