// The physical memory map: every page frame by address, in buckets, coloured by state.
// The top band shows each bucket's dominant state, the bottom band stacks the states'
// shares.  Zoom by dragging a range, with the buttons, or with + / − and the arrow keys.

import { get } from '../api.js';
import { cssVar, h, replace, sizeCanvas } from '../dom.js';
import { PAGE_STATES, stateColour } from '../lib/colour.js';
import { formatCount, formatHex, formatPages } from '../lib/format.js';
import { bucketAt, bucketCount, bucketCounts, bucketRange, dominantStates, panRange, pfnAt, rangeFromDrag, zoomRange } from '../lib/pagemap.js';
import { problemBox } from '../ui.js';

const HEIGHT = 64;
const TOP = 18; // dominant-state band

/**
 * @param {{instanceId: number, send: (op: Record<string, unknown>) => boolean,
 *          request: (key: string, draw: () => void) => void, onInspect: (pfn: number) => void}} options
 */
export function createPageMap({ instanceId, send, request, onInspect }) {
  /** @type {import('../lib/pagemap.js').PageMap | null} */
  let map = null;
  /** @type {{min: number, max: number} | null} the whole machine */
  let bounds = null;
  /** @type {{lo: number, hi: number} | null} */
  let range = null;
  let hoverX = -1;
  /** @type {number | null} */ let dragFrom = null;
  let dragTo = -1;
  let updates = 0;
  const redraw = () => request('pagemap', draw);

  const canvas = h('canvas', {
    class: 'pagemap-canvas', tabindex: '0', role: 'img',
    'aria-label': 'Physical memory map by address. Drag to zoom into a range; keys: + and − zoom, arrows pan, 0 shows the whole machine, Enter inspects the page under the pointer.',
    'aria-describedby': 'pm-info',
  });
  const rangeText = h('span', { class: 'mono small', dataset: { range: '' } });
  const info = h('div', { class: 'hm-info', id: 'pm-info', role: 'status', 'aria-live': 'polite' }, 'Point at the map to see the pages of a bucket.');
  const problem = h('div');
  const legend = h('div', { class: 'legend', 'aria-label': 'Page states' });
  const button = (/** @type {string} */ label, /** @type {string} */ aria, /** @type {() => void} */ fn) => h('button', { type: 'button', class: 'small', 'aria-label': aria, onclick: fn }, label);
  const controls = h('div', { class: 'row' },
    button('−', 'Zoom out', () => zoom(2)),
    button('+', 'Zoom in', () => zoom(0.5)),
    button('◀', 'Pan towards low addresses', () => pan(-0.5)),
    button('▶', 'Pan towards high addresses', () => pan(0.5)),
    button('Whole machine', 'Show the whole machine', () => setRange(bounds ? { lo: bounds.min, hi: bounds.max } : null)),
    rangeText);
  const element = h('div', null, controls, canvas, legend, info, problem);

  const width = () => Math.max(64, Math.min(4096, Math.floor(canvas.clientWidth || 800)));

  async function fetchMap() {
    const q = new URLSearchParams({ width: String(width()) });
    if (range) {
      q.set('lo', String(range.lo));
      q.set('hi', String(range.hi));
    }
    try {
      const m = await get(`/instances/${instanceId}/pagemap?${q}`);
      replace(problem);
      if (!bounds) bounds = { min: m.lo, max: m.hi };
      setMap(m);
    } catch (e) {
      replace(problem, problemBox(e, 'Reading the memory map'));
    }
  }

  /** @param {import('../lib/pagemap.js').PageMap} m */
  function setMap(m) {
    map = m;
    range = { lo: m.lo, hi: m.hi };
    updates++;
    redraw();
  }

  /** @param {{lo: number, hi: number} | null} r */
  function setRange(r) {
    if (!r || !bounds) return;
    range = r;
    send({ op: 'pagemap', lo: r.lo, hi: r.hi, width: width() });
    fetchMap();
  }

  /** @param {number} factor @param {number} [centre] */
  function zoom(factor, centre) {
    if (!range || !bounds) return;
    setRange(zoomRange(range, { factor, centre, min: bounds.min, max: bounds.max, minSpan: 64 }));
  }
  /** @param {number} fraction */
  function pan(fraction) {
    if (!range || !bounds) return;
    setRange(panRange(range, fraction, bounds));
  }

  function draw() {
    if (!map) return;
    const w = canvas.clientWidth || 800;
    const ctx = sizeCanvas(canvas, w, HEIGHT);
    ctx.clearRect(0, 0, w, HEIGHT);
    const n = bucketCount(map);
    const dom = dominantStates(map);
    const colours = map.states.map(stateColour);
    const empty = cssVar('--empty-cell');
    for (let b = 0; b < n; b++) {
      const x0 = (b / n) * w;
      const x1 = ((b + 1) / n) * w;
      const bw = Math.max(1, x1 - x0);
      ctx.fillStyle = dom[b] >= 0 ? colours[dom[b]] : empty;
      ctx.fillRect(x0, 0, bw, TOP - 2);
      let total = 0;
      for (const s of map.states) total += map.counts[s][b] ?? 0;
      let y = TOP;
      const hgt = HEIGHT - TOP;
      if (total === 0) {
        ctx.fillStyle = empty;
        ctx.fillRect(x0, y, bw, hgt);
        continue;
      }
      map.states.forEach((s, si) => {
        const c = map?.counts[s][b] ?? 0;
        if (!c) return;
        const sh = (c / total) * hgt;
        ctx.fillStyle = colours[si];
        ctx.fillRect(x0, y, bw, sh);
        y += sh;
      });
    }
    if (dragFrom !== null && dragTo >= 0) {
      ctx.fillStyle = cssVar('--accent');
      ctx.globalAlpha = 0.25;
      ctx.fillRect(Math.min(dragFrom, dragTo), 0, Math.abs(dragTo - dragFrom), HEIGHT);
      ctx.globalAlpha = 1;
    } else if (hoverX >= 0) {
      const b = bucketAt(map, hoverX, w);
      ctx.strokeStyle = cssVar('--focus');
      ctx.lineWidth = 2;
      ctx.strokeRect((b / n) * w, 1, Math.max(2, w / n), HEIGHT - 2);
    }
    const span = map.hi - map.lo;
    rangeText.textContent = `pfn ${formatHex(map.lo)} – ${formatHex(map.hi)} · ${formatPages(span)} · ${formatCount(map.bucket_pages)} page${map.bucket_pages === 1 ? '' : 's'} per bucket`;
    rangeText.dataset.range = `${map.lo}-${map.hi}`;
    showTotals(map);
  }

  /** The legend: one entry per state with its pages in the range (built once per state list). */
  let legendStates = '';
  /** @type {Map<string, {entry: HTMLElement, count: HTMLElement}>} */
  const legendEntries = new Map();
  /** @param {import('../lib/pagemap.js').PageMap} m */
  function showTotals(m) {
    const key = m.states.join(',');
    if (key !== legendStates) {
      legendStates = key;
      legendEntries.clear();
      replace(legend, m.states.map((s) => {
        const count = h('span', { class: 'muted mono' });
        const entry = h('span', { dataset: { state: s } }, h('span', { class: 'swatch', style: { background: stateColour(s) } }), ` ${s} `, count);
        legendEntries.set(s, { entry, count });
        return entry;
      }));
    }
    const totals = m.totals ?? {};
    for (const [s, { entry, count }] of legendEntries) {
      const n = String(totals[s] ?? 0);
      if (entry.dataset.pages !== n) {
        entry.dataset.pages = n;
        count.textContent = formatCount(totals[s] ?? 0);
      }
    }
  }

  /** @param {PointerEvent} ev */
  const xOf = (ev) => ev.clientX - canvas.getBoundingClientRect().left;
  canvas.addEventListener('pointerdown', (ev) => {
    dragFrom = xOf(ev);
    dragTo = dragFrom;
    canvas.setPointerCapture(ev.pointerId);
  });
  canvas.addEventListener('pointermove', (ev) => {
    hoverX = xOf(ev);
    if (dragFrom !== null) dragTo = hoverX;
    if (map) {
      const b = bucketAt(map, hoverX, canvas.clientWidth);
      const [a, z] = bucketRange(map, b);
      const parts = bucketCounts(map, b).map(([s, c]) => `${s} ${formatCount(c)}`).join(', ');
      info.textContent = `pfn ${formatHex(a)} – ${formatHex(z - 1)} (${formatCount(z - a)} pages): ${parts || 'no pages'}`;
    }
    redraw();
  });
  canvas.addEventListener('pointerup', (ev) => {
    const from = dragFrom;
    dragFrom = null;
    if (from === null || !map) return;
    const sel = rangeFromDrag(map, from, xOf(ev), canvas.clientWidth);
    if (sel) setRange(sel);
    else redraw();
  });
  canvas.addEventListener('pointerleave', () => {
    hoverX = -1;
    redraw();
  });
  canvas.addEventListener('dblclick', (ev) => {
    if (map) onInspect(pfnAt(map, xOf(/** @type {any} */ (ev)), canvas.clientWidth));
  });
  canvas.addEventListener('keydown', (ev) => {
    const keys = /** @type {Record<string, () => void>} */ ({
      '+': () => zoom(0.5), '=': () => zoom(0.5), '-': () => zoom(2), '_': () => zoom(2),
      ArrowLeft: () => pan(-0.25), ArrowRight: () => pan(0.25),
      0: () => setRange(bounds ? { lo: bounds.min, hi: bounds.max } : null),
      Enter: () => { if (map) onInspect(pfnAt(map, hoverX >= 0 ? hoverX : canvas.clientWidth / 2, canvas.clientWidth)); },
    });
    if (keys[ev.key]) {
      ev.preventDefault();
      keys[ev.key]();
    }
  });
  const resize = new ResizeObserver(() => redraw());
  resize.observe(canvas);

  // states not yet in any answer still get a legend entry
  replace(legend, PAGE_STATES.map((s) => h('span', null, h('span', { class: 'swatch', style: { background: stateColour(s) } }), ` ${s}`)));

  return {
    element,
    fetch: fetchMap,
    /** A `pagemap` section from the stream (only for the range this page asked for). @param {any} m */
    fromStream(m) {
      if (!m || (range && (m.lo !== range.lo || m.hi !== range.hi))) return;
      if (!bounds) bounds = { min: m.lo, max: m.hi };
      setMap(m);
    },
    /** After a (re)connect: tell the stream the range shown. */
    resubscribe() {
      if (range) send({ op: 'pagemap', lo: range.lo, hi: range.hi, width: width() });
      else send({ op: 'pagemap', width: width() });
    },
    /** After a reset the machine may differ: start from the whole machine again. */
    forget() {
      bounds = null;
      range = null;
    },
    draw,
    hooks: {
      get map() { return map; },
      get updates() { return updates; },
      get range() { return range; },
      zoom, setRange,
    },
    destroy() { resize.disconnect(); },
  };
}
