// The timeline: every call the instance made, as a scrubber over seq 0..now with a density
// strip (what the calls returned: a value, NULL, or refused), the journal's page around the
// scrub position, and what can be done there: step back (restore), fork, export the trace.
// It reads the journal a page at a time (`GET …/journal?from=&limit=`), never whole: a
// journal can hold millions of calls.  At the end it follows the stream's new calls;
// scrubbed back it stays put until the user returns to the end.

import { download, get, post } from '../api.js';
import { cssVar, h, replace, sizeCanvas } from '../dom.js';
import { formatCount } from '../lib/format.js';
import { appendLive, densityBins, Follow, lastSeq, pageWindow, rowsOf, seqAt } from '../lib/timeline.js';
import { problemBox } from '../ui.js';

const PAGE = 40; // rows read and shown around the scrub position
const KNOWN = 4096; // refused calls the stream told us about, kept to show their errors
const STRIP_HEIGHT = 26;
const NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/**
 * A task run "latest wins": never two at once; asked again while running, it runs once
 * more afterwards; `gap()` ms at least between two starts (0: at once).
 * @param {() => Promise<void>} task
 * @param {() => number} gap
 */
function latestWins(task, gap) {
  let busy = false;
  let again = false;
  let lastStart = 0;
  /** @type {ReturnType<typeof setTimeout> | null} */
  let timer = null;
  const kick = () => {
    if (busy) {
      again = true;
      return;
    }
    const wait = lastStart + gap() - Date.now();
    if (wait > 0) {
      timer ??= setTimeout(() => { timer = null; kick(); }, wait);
      return;
    }
    busy = true;
    lastStart = Date.now();
    task().finally(() => {
      busy = false;
      if (again) {
        again = false;
        kick();
      }
    });
  };
  return { kick, stop: () => { if (timer) clearTimeout(timer); timer = null; } };
}

/**
 * @param {{instanceId: number, name: () => string, request: (key: string, draw: () => void) => void,
 *   onForked: (id: number) => void}} options
 */
export function createTimeline({ instanceId, name, request, onForked }) {
  const follow = new Follow();
  /** @type {import('../lib/timeline.js').Row[]} */
  let rows = [];
  /** the page the rows came from (null: the live tail, or nothing read yet) */
  let loadedFrom = /** @type {number | null} */ (null);
  /** @type {import('../lib/timeline.js').Density | null} */
  let density = null;
  /** @type {Map<number, Record<string, any>>} */
  const known = new Map();
  let pageLoads = 0;
  let densityLoads = 0;
  let densityCost = 0;
  let draws = 0;
  let stopped = false;
  /** @type {any} */ let lastRestore = null;
  /** @type {any} */ let lastFork = null;

  // ---- elements
  const help = 'Each call of this instance, numbered by seq. Drag the scrubber (or use the arrow keys, Page Up/Down, Home, End) to a call, then step back to it or fork a new instance from it.';
  const followChip = h('span', { class: 'tl-follow small', id: 'tl-follow', role: 'status', 'aria-live': 'polite', dataset: { following: 'true' } }, 'following new calls');
  const endButton = h('button', { type: 'button', class: 'small', id: 'tl-end', hidden: true }, 'Back to now');
  const exportButton = h('button', { type: 'button', class: 'small', id: 'tl-export' }, 'Export trace');
  const canvas = h('canvas', { class: 'tl-strip', role: 'img', 'aria-label': 'No calls yet', id: 'tl-strip' });
  const legend = h('div', { class: 'tl-legend small muted', 'aria-hidden': 'true' },
    h('span', null, h('i', { class: 'sw value' }), 'returned a value'),
    h('span', null, h('i', { class: 'sw null' }), 'NULL (no page, or slept)'),
    h('span', null, h('i', { class: 'sw refused' }), 'refused (an error)'));
  const scrub = h('input', { type: 'range', id: 'tl-scrub', min: '0', max: '0', step: '1', value: '0', 'aria-describedby': 'tl-help' });
  const position = h('output', { id: 'tl-pos', for: 'tl-scrub', class: 'mono', dataset: { position: '0', seq: '0' } }, 'call 0 of 0');
  const restoreButton = h('button', { type: 'button', id: 'tl-restore', class: 'danger' }, 'Restore to 0');
  const forkName = h('input', { type: 'text', id: 'tl-fork-name', maxlength: 64, autocomplete: 'off', placeholder: 'new instance name', pattern: '[A-Za-z0-9_.\\-]{1,64}' });
  const forkButton = h('button', { type: 'button', id: 'tl-fork' }, 'Fork at 0');
  const message = h('div', { id: 'tl-message', 'aria-live': 'polite' });
  const tbody = h('tbody');
  const earlier = h('button', { type: 'button', class: 'small', id: 'tl-earlier' }, '◀ Earlier');
  const later = h('button', { type: 'button', class: 'small', id: 'tl-later' }, 'Later ▶');
  const pageNote = h('span', { class: 'muted small', id: 'tl-page' });

  const list = h('div', { class: 'events-table tl-list', tabindex: '0', 'aria-label': 'The journal around the scrub position' },
    h('table', null,
      h('thead', null, h('tr', null, h('th', { class: 'num', scope: 'col' }, 'seq'), h('th', { scope: 'col' }, 'function'),
        h('th', { scope: 'col' }, 'arguments'), h('th', { scope: 'col' }, 'result'), h('th', { scope: 'col' }, 'source'))),
      tbody));

  const confirmText = h('p', { id: 'tl-confirm-text' });
  const confirmOk = h('button', { type: 'button', class: 'danger', id: 'tl-confirm-ok' }, 'Restore');
  const confirmCancel = h('button', { type: 'button', id: 'tl-confirm-cancel' }, 'Cancel');
  const dialog = h('dialog', { id: 'tl-confirm', 'aria-labelledby': 'tl-confirm-h', 'aria-describedby': 'tl-confirm-text' },
    h('h2', { id: 'tl-confirm-h' }, 'Step back?'), confirmText, h('div', { class: 'row' }, confirmCancel, confirmOk));

  const element = h('section', { class: 'panel timeline', 'aria-labelledby': 'tl-h', id: 'timeline' },
    h('div', { class: 'panel-head' }, h('h2', { id: 'tl-h' }, 'Timeline'),
      h('span', { class: 'muted small', id: 'tl-help' }, help), h('span', { class: 'spacer' }), followChip, endButton, exportButton),
    canvas, legend,
    h('div', { class: 'row tl-scrubber' }, h('label', { for: 'tl-scrub' }, 'Call'), scrub, position),
    h('div', { class: 'row tl-actions' },
      restoreButton,
      h('span', { class: 'tl-fork' }, h('label', { for: 'tl-fork-name' }, 'Fork as'), forkName, forkButton)),
    message,
    h('div', { class: 'row' }, earlier, later, pageNote),
    list,
    dialog);

  // ---- reading the journal
  const pages = latestWins(loadPage, () => (follow.following ? 250 : 0));
  const densities = latestWins(loadDensity, () => Math.max(1000, 10 * densityCost));

  async function loadPage() {
    const { from, limit } = pageWindow(follow.position, follow.seq, PAGE);
    try {
      const page = await get(`/instances/${instanceId}/journal?from=${from}&limit=${limit}`);
      if (stopped) return;
      pageLoads++;
      if (page.generation !== follow.generation && follow.generation >= 0) {
        // another machine than the one the page follows (a restore or reset is on its
        // way as a new hello, which reads the journal again)
        return;
      }
      rows = rowsOf(page.entries, from, limit, page.seq, known);
      loadedFrom = from;
      request('timeline-list', renderList);
    } catch (e) {
      if (!stopped) replace(message, problemBox(e, 'Reading the journal'));
    }
  }

  async function loadDensity() {
    const width = canvas.clientWidth || 600;
    const bins = Math.max(16, Math.min(2048, Math.floor(width)));
    const started = Date.now();
    try {
      const d = await get(`/instances/${instanceId}/journal/density?bins=${bins}`);
      if (stopped) return;
      densityCost = Date.now() - started;
      densityLoads++;
      if (d.generation !== follow.generation) return; // as in loadPage
      density = d;
      request('timeline-strip', drawStrip);
    } catch {
      // the strip keeps its last picture; the list says what is wrong with the journal
    }
  }

  /** The page to show moved: read it, unless the rows already are that page. */
  function showPosition() {
    const { from } = pageWindow(follow.position, follow.seq, PAGE);
    if (follow.following || loadedFrom !== from) pages.kick();
    else request('timeline-list', renderList);
  }

  // ---- drawing
  function renderControls() {
    scrub.max = String(follow.seq);
    scrub.value = String(follow.position);
    const n = follow.position;
    scrub.setAttribute('aria-valuetext', `call ${n} of ${follow.seq}`);
    position.textContent = `call ${formatCount(n)} of ${formatCount(follow.seq)}`;
    position.dataset.position = String(n);
    position.dataset.seq = String(follow.seq);
    restoreButton.textContent = `Restore to ${n}`;
    restoreButton.disabled = follow.after === 0;
    restoreButton.title = follow.after === 0 ? 'this is the newest call: nothing to step back over' : `the machine as it was right after call ${n}`;
    forkButton.textContent = `Fork at ${n}`;
    forkName.placeholder = suggestedName();
    followChip.dataset.following = String(follow.following);
    followChip.textContent = follow.following ? 'following new calls' : `paused at ${formatCount(n)} · ${formatCount(follow.after)} newer`;
    endButton.hidden = follow.following;
  }

  function suggestedName() {
    return `${name()}-at-${follow.position}`.replace(/[^A-Za-z0-9_.-]/g, '-').slice(0, 64);
  }

  function renderList() {
    const n = follow.position;
    const first = rows.length ? rows[0].seq : null;
    const last = rows.length ? lastSeq(rows[rows.length - 1]) : null;
    pageNote.textContent = first === null ? 'no calls yet' : `seq ${formatCount(first)}–${formatCount(/** @type {number} */ (last))}`;
    earlier.disabled = first === null || first <= 1;
    later.disabled = last === null || last >= follow.seq;
    replace(tbody, rows.map((r) => {
      const current = r.seq <= n && n <= lastSeq(r);
      const goto = h('button', { type: 'button', class: 'small mono', 'aria-label': `Move the scrubber to call ${r.seq}`, onclick: () => scrubTo(r.seq) }, String(r.seq));
      if (r.kind === 'refused') {
        const what = r.to === r.seq ? `call ${r.seq} was refused` : `calls ${r.seq}–${r.to} were refused`;
        return h('tr', { class: 'gap', dataset: { seq: String(r.seq), to: String(r.to), kind: 'refused' }, 'aria-current': current ? 'true' : null },
          h('td', { class: 'num' }, goto), h('td', { colspan: '4', class: 'muted' }, `${what} (an error changes nothing and is not journalled)`));
      }
      const res = r.error ? `${r.error.type?.split('/').pop() ?? 'error'}: ${r.error.detail ?? ''}`
        : r.blocked ? `slept on ${r.blocked.channel ?? r.blocked.wmesg ?? '?'}` : JSON.stringify(r.result ?? null);
      return h('tr', { class: r.error ? 'err' : '', dataset: { seq: String(r.seq), fn: r.fn, kind: r.error ? 'error' : r.result === null ? 'null' : 'value' }, 'aria-current': current ? 'true' : null },
        h('td', { class: 'num' }, goto),
        h('td', { class: 'mono' }, r.fn),
        h('td', { class: 'mono' }, Object.entries(r.args ?? {}).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(' ')),
        h('td', { class: 'mono res' }, res),
        h('td', { class: 'muted small' }, r.source));
    }));
    // scroll the list only (never the page): the current row in the middle, or the newest
    const cur = /** @type {HTMLElement | null} */ (tbody.querySelector('tr[aria-current="true"]'));
    if (follow.following) list.scrollTop = list.scrollHeight;
    else if (cur) list.scrollTop = cur.offsetTop - (list.clientHeight - cur.offsetHeight) / 2;
  }

  function drawStrip() {
    draws++;
    const width = Math.max(50, canvas.parentElement?.clientWidth ?? 600) - 2;
    const ctx = sizeCanvas(canvas, width, STRIP_HEIGHT);
    ctx.clearRect(0, 0, width, STRIP_HEIGHT);
    ctx.fillStyle = cssVar('--empty-cell') || '#e4e7ec';
    ctx.fillRect(0, 0, width, STRIP_HEIGHT);
    const seq = follow.seq;
    const d = density && density.seq > 0 ? density : null;
    if (d) {
      const colours = { value: cssVar('--accent') || '#0b62c4', nulls: cssVar('--warn') || '#9a6700', refused: cssVar('--danger') || '#b42318' };
      // bins are laid out over the density's own seq; newer calls (not counted yet) stay empty
      const scale = width / Math.max(seq, d.seq);
      let value = 0, nulls = 0, refused = 0;
      for (const b of densityBins(d)) {
        const x0 = (b.lo - 1) * scale;
        const w = Math.max(1, (b.hi - b.lo + 1) * scale);
        const total = b.value + b.nulls + b.refused || 1;
        let y = STRIP_HEIGHT;
        for (const [k, n] of /** @type {const} */ ([['value', b.value], ['nulls', b.nulls], ['refused', b.refused]])) {
          if (!n) continue;
          const hgt = (n / total) * STRIP_HEIGHT;
          ctx.fillStyle = colours[k];
          ctx.fillRect(x0, y - hgt, w, hgt);
          y -= hgt;
        }
        value += b.value; nulls += b.nulls; refused += b.refused;
      }
      canvas.setAttribute('aria-label', `${formatCount(d.seq)} calls: ${formatCount(value)} returned a value, ${formatCount(nulls)} NULL, ${formatCount(refused)} refused`);
    }
    if (seq > 0) {
      // what a restore at the position would discard is dimmed; the position is a line
      const x = (follow.position / seq) * width;
      ctx.fillStyle = cssVar('--panel') || '#fff';
      ctx.globalAlpha = 0.6;
      ctx.fillRect(x, 0, width - x, STRIP_HEIGHT);
      ctx.globalAlpha = 1;
      ctx.fillStyle = cssVar('--fg') || '#000';
      ctx.fillRect(Math.min(width - 2, Math.max(0, x - 1)), 0, 2, STRIP_HEIGHT);
    }
  }

  function redraw() {
    renderControls();
    request('timeline-strip', drawStrip);
  }

  // ---- the user
  /** @param {number} n */
  function scrubTo(n) {
    follow.scrub(n);
    replace(message);
    redraw();
    showPosition();
  }

  scrub.addEventListener('input', () => scrubTo(Number(scrub.value)));
  /** @param {PointerEvent} ev */
  const fromPointer = (ev) => {
    const rect = canvas.getBoundingClientRect();
    scrubTo(seqAt(ev.clientX - rect.left, rect.width, follow.seq));
  };
  canvas.addEventListener('pointerdown', (ev) => {
    canvas.setPointerCapture?.(ev.pointerId);
    fromPointer(ev);
  });
  canvas.addEventListener('pointermove', (ev) => {
    if (ev.buttons & 1) fromPointer(ev);
  });
  endButton.addEventListener('click', () => {
    follow.toEnd();
    redraw();
    showPosition();
    scrub.focus();
  });
  earlier.addEventListener('click', () => scrubTo(Math.max(0, (rows[0]?.seq ?? 1) - Math.ceil(PAGE / 2) - 1)));
  later.addEventListener('click', () => scrubTo(lastSeq(rows[rows.length - 1] ?? { kind: 'refused', seq: 0, to: 0 }) + Math.ceil(PAGE / 2)));

  /** What a restore to `n` discards, said again while calls go on behind the dialog. @param {number} n */
  function sayRestore(n) {
    const after = Math.max(0, follow.seq - n);
    const calls = `${formatCount(after)} call${after === 1 ? '' : 's'}`;
    confirmText.textContent = `Restore this instance to the machine right after call ${formatCount(n)}? `
      + `This discards the ${calls} made after it (seq ${formatCount(n + 1)}–${formatCount(follow.seq)}); `
      + 'they cannot be brought back. Fork first to keep them. Running workloads stop.';
    confirmOk.textContent = `Discard ${calls} and restore`;
    confirmOk.dataset.to = String(n);
  }

  restoreButton.addEventListener('click', () => {
    sayRestore(follow.position);
    dialog.showModal();
    confirmCancel.focus();
  });
  confirmCancel.addEventListener('click', () => dialog.close());
  confirmOk.addEventListener('click', async () => {
    const to = Number(confirmOk.dataset.to);
    dialog.close();
    restoreButton.disabled = true;
    try {
      const inst = await post(`/instances/${instanceId}/restore`, { to });
      lastRestore = { to, seq: inst.seq, generation: inst.generation, digest: inst.state_digest };
      // the stream's new hello says the same; the answer may come first
      hello(inst.seq, inst.generation);
      replace(message, h('div', { class: 'notice', role: 'status', id: 'tl-restored' }, `Restored to call ${formatCount(to)}: generation ${inst.generation}, state digest `, h('code', null, String(inst.state_digest).slice(0, 16)), '…'));
    } catch (e) {
      replace(message, problemBox(e, `Restoring to call ${to}`));
    } finally {
      renderControls();
    }
  });

  forkButton.addEventListener('click', async () => {
    const at = follow.position;
    const newName = forkName.value.trim() || suggestedName();
    if (!NAME.test(newName)) {
      replace(message, problemBox(new Error('a name is 1 to 64 letters, digits, ".", "_" or "-"'), 'Forking'));
      forkName.focus();
      return;
    }
    forkButton.disabled = true;
    try {
      const inst = await post(`/instances/${instanceId}/fork`, { at, name: newName });
      lastFork = { at, id: inst.id, name: inst.name, seq: inst.seq, digest: inst.state_digest };
      forkName.value = '';
      onForked(inst.id);
    } catch (e) {
      replace(message, problemBox(e, `Forking at call ${at}`));
    } finally {
      forkButton.disabled = false;
    }
  });

  exportButton.addEventListener('click', async () => {
    exportButton.disabled = true;
    try {
      const { blob, filename } = await download(`/instances/${instanceId}/trace`);
      const url = URL.createObjectURL(blob);
      const a = h('a', { href: url, download: filename ?? `${name()}.pagelab.jsonl`, hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (e) {
      replace(message, problemBox(e, 'Exporting the trace'));
    } finally {
      exportButton.disabled = false;
    }
  });

  // ---- the stream
  /**
   * A hello: the instance's seq and generation (a new machine after a restore or reset).
   * @param {number} seq @param {number} generation
   */
  function hello(seq, generation) {
    const restarted = generation !== follow.generation || seq < follow.seq;
    follow.update(seq, generation);
    if (restarted) {
      known.clear();
      rows = [];
      loadedFrom = null;
      density = null;
    }
    redraw();
    pages.kick();
    densities.kick();
  }

  /**
   * A frame: the seq it is stamped with and the calls it reports.
   * @param {number} seq @param {any[] | undefined} events @param {any} summary
   */
  function frame(seq, events, summary) {
    const evs = [...(events ?? []), ...(summary?.tail ?? [])];
    for (const ev of evs) {
      if (!ev.error) continue;
      known.set(ev.seq, ev);
      if (known.size > KNOWN) known.delete(/** @type {number} */ (known.keys().next().value));
    }
    if (seq === follow.seq && !evs.length) return;
    // a page that reached the newest call grows with the new ones, following or not
    const last = rows.length ? lastSeq(rows[rows.length - 1]) : 0;
    const atEnd = follow.following || (last >= follow.seq && rows.length + evs.length <= PAGE);
    follow.update(seq);
    renderControls();
    if (dialog.open) sayRestore(Number(confirmOk.dataset.to));
    if (atEnd) {
      const live = appendLive(rows, evs, PAGE);
      rows = live.rows;
      if (follow.following) loadedFrom = null;
      if (!live.contiguous || summary) pages.kick();
      else request('timeline-list', renderList);
    }
    densities.kick();
    request('timeline-strip', drawStrip);
  }

  return {
    element,
    hello,
    frame,
    /** Events were lost: the live tail is read again. */
    gap() {
      if (follow.following) pages.kick();
    },
    draw: drawStrip,
    destroy() {
      stopped = true;
      pages.stop();
      densities.stop();
      if (dialog.open) dialog.close();
    },
    hooks: {
      get position() { return follow.position; },
      get seq() { return follow.seq; },
      get generation() { return follow.generation; },
      get following() { return follow.following; },
      get rows() { return rows.map((r) => (r.kind === 'refused' ? [r.seq, r.to] : r.seq)); },
      get pageLoads() { return pageLoads; },
      get densityLoads() { return densityLoads; },
      get draws() { return draws; },
      get density() { return density; },
      get lastRestore() { return lastRestore; },
      get lastFork() { return lastFork; },
    },
  };
}
