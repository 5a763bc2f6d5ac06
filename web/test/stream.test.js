import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it, mock } from 'node:test';

/** A stand-in WebSocket: tests open, message and close it by hand. */
class FakeSocket {
  static OPEN = 1;
  /** @type {FakeSocket[]} */
  static made = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    FakeSocket.made.push(this);
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  close(code = 1000, reason = '') {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
  open() {
    this.readyState = FakeSocket.OPEN;
  }
  message(obj) {
    this.onmessage?.({ data: JSON.stringify(obj) });
  }
  drop(code = 1006, reason = '') {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
}

globalThis.WebSocket = FakeSocket;
globalThis.location = { protocol: 'http:', host: '127.0.0.1:8000' };
const { StreamClient } = await import('../src/stream.js');

function client() {
  const seen = { hellos: [], frames: [], statuses: [] };
  const c = new StreamClient({
    instanceId: 7,
    topics: ['vmstats', 'queues'],
    rate: 10,
    handlers: {
      onHello: (m) => seen.hellos.push(m),
      onFrame: (m) => seen.frames.push(m),
      onStatus: (s) => seen.statuses.push(s.state),
    },
  });
  return { c, seen };
}

const HELLO = { type: 'hello', protocol: 1, generation: 0, seq: 0 };

describe('StreamClient', () => {
  beforeEach(() => {
    FakeSocket.made = [];
    mock.timers.enable({ apis: ['setTimeout', 'setInterval'] });
  });
  afterEach(() => mock.timers.reset());

  it('connects to the instance’s stream with its topics and rate', () => {
    const { c } = client();
    c.start();
    assert.equal(FakeSocket.made.length, 1);
    assert.equal(FakeSocket.made[0].url, 'ws://127.0.0.1:8000/api/v1/instances/7/stream?topics=vmstats%2Cqueues&rate=10');
    c.stop();
  });

  it('hands hellos and frames on and counts hellos', () => {
    const { c, seen } = client();
    c.start();
    const ws = FakeSocket.made[0];
    ws.open();
    ws.message(HELLO);
    ws.message({ type: 'frame', seq: 1 });
    ws.message({ type: 'pong' });
    assert.equal(seen.hellos.length, 1);
    assert.equal(seen.frames.length, 1);
    assert.equal(c.status.state, 'connected');
    assert.equal(c.status.hellos, 1);
    assert.ok(c.send({ op: 'ping' }));
    c.stop();
  });

  it('reconnects after a dropped connection with a growing back-off, then starts over', () => {
    const { c, seen } = client();
    c.start();
    FakeSocket.made[0].message(HELLO);
    FakeSocket.made[0].drop();
    assert.equal(c.status.state, 'waiting');
    assert.equal(c.status.attempt, 1);
    mock.timers.tick(10_000);
    assert.equal(FakeSocket.made.length, 2);
    FakeSocket.made[1].drop(); // the server is still down
    assert.equal(c.status.attempt, 2);
    const wait2 = c.status.retryAt - Date.now();
    mock.timers.tick(10_000);
    assert.equal(FakeSocket.made.length, 3);
    FakeSocket.made[2].message({ ...HELLO, generation: 0, seq: 0 });
    assert.equal(c.status.state, 'connected');
    assert.equal(c.status.attempt, 0);
    assert.equal(c.status.hellos, 2);
    assert.equal(seen.hellos.length, 2);
    assert.ok(wait2 >= 0);
    c.stop();
  });

  it('does not reconnect when the server refuses the stream (1008) or the instance is gone', () => {
    const a = client();
    a.c.start();
    FakeSocket.made[0].drop(1008, 'there is no instance 7');
    assert.equal(a.c.status.state, 'failed');
    assert.equal(a.c.status.reason, 'there is no instance 7');
    mock.timers.tick(60_000);
    assert.equal(FakeSocket.made.length, 1);

    const b = client();
    b.c.start();
    const ws = FakeSocket.made[1];
    ws.message(HELLO);
    ws.message({ type: 'bye', reason: 'instance 7 was deleted' });
    ws.drop(1000, 'deleted');
    assert.equal(b.c.status.state, 'closed');
    assert.equal(b.c.status.reason, 'instance 7 was deleted');
    mock.timers.tick(60_000);
    assert.equal(FakeSocket.made.length, 2);
  });

  it('stops when the sign-in has ended (4401) or the address is blocked (4429), and says so', () => {
    const ended = [];
    const target = new EventTarget();
    globalThis.dispatchEvent = (ev) => target.dispatchEvent(ev);
    target.addEventListener('pagelab:unauthorized', (ev) => ended.push(ev.type));
    try {
      const a = client();
      a.c.start();
      FakeSocket.made[0].drop(4401, 'unauthorized: pass a valid token');
      assert.equal(a.c.status.state, 'failed');
      assert.equal(a.c.status.reason, 'your sign-in has ended');
      assert.deepEqual(ended, ['pagelab:unauthorized']);
      const b = client();
      b.c.start();
      FakeSocket.made[1].drop(4429, 'too many failed sign-ins: wait 42 s');
      assert.equal(b.c.status.state, 'failed');
      assert.match(b.c.status.reason, /wait 42 s/);
      mock.timers.tick(60_000);
      assert.equal(FakeSocket.made.length, 2); // neither reconnects by itself
      assert.equal(ended.length, 1);
    } finally {
      delete globalThis.dispatchEvent;
    }
  });

  it('reconnects after being dropped as a slow reader (1013)', () => {
    const { c } = client();
    c.start();
    FakeSocket.made[0].message(HELLO);
    FakeSocket.made[0].drop(1013, 'stuck');
    assert.equal(c.status.state, 'waiting');
    assert.match(c.status.reason, /slow reader/);
    mock.timers.tick(10_000);
    assert.equal(FakeSocket.made.length, 2);
    c.stop();
  });

  it('stops cleanly: no reconnect after stop', () => {
    const { c } = client();
    c.start();
    c.stop();
    mock.timers.tick(60_000);
    assert.equal(FakeSocket.made.length, 1);
    assert.equal(c.send({ op: 'ping' }), false);
  });
});
