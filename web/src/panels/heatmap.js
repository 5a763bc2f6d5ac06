// The queue heatmap: 5 queue types × 1024 colours, one 32 × 32 grid per type, drawn on
// canvases (no element per cell).  Colour = page count on a colour-blind-safe scale;
// NUMA sockets as bands; the last allocation's probes outlined.  Keyboard: arrow keys move
// a cursor over the cells, Enter lists the queue's pages.

import { cssVar, h, sizeCanvas } from '../dom.js';
import { lut, rgbToCss, scaleIndex, valueAt } from '../lib/colour.js';
import { formatCount } from '../lib/format.js';
import { GRID_SIDE, PQ_L2_SIZE, QUEUE_TYPES, socketOfColour } from '../lib/queues.js';
import { totals } from '../lib/state.js';

const SHORT = { PQ_FREE: 'free', PQ_INACTIVE: 'inactive', PQ_ACTIVE: 'active', PQ_CACHE: 'cache', PQ_HOLD: 'hold' };

/**
 * @param {{onSelect: (type: string, colour: number) => void, request: (key: string, draw: () => void) => void}} options
 *   request: the dashboard's redraw coalescer
 */
export function createHeatmap({ onSelect, request }) {
  const redraw = () => request('heatmap', draw);
  /** @type {Record<string, Float64Array> | null} */
  let counts = null;
  let sockets = 1;
  let scaleName = localStorage.getItem('pagelab.scale') === 'viridis' ? 'viridis' : 'cividis';
  let mode = /** @type {'log' | 'linear'} */ (localStorage.getItem('pagelab.scaleMode') === 'linear' ? 'linear' : 'log');
  let cell = 6;
  /** @type {{probes: Array<{type: string, colour: number}>, found: {type: string, colour: number} | null, seq?: number, fn?: string} | null} */
  let probes = null;
  /** @type {{type: string, colour: number} | null} */
  let hover = null;
  /** @type {{type: string, colour: number}} */
  let cursor = { type: 'PQ_FREE', colour: 0 };
  let focusedType = '';
  /** what the last draw showed, per type (the test hooks read it) */
  const drawn = Object.fromEntries(QUEUE_TYPES.map((t) => [t, new Float64Array(PQ_L2_SIZE)]));
  let draws = 0;
  let maxDrawn = 0;

  const info = h('div', { class: 'hm-info', role: 'status', 'aria-live': 'polite', id: 'hm-info' }, 'Point at a cell, or focus a grid and use the arrow keys.');
  const grids = QUEUE_TYPES.map((type) => {
    const canvas = h('canvas', {
      tabindex: '0',
      role: 'img',
      'aria-label': `${type} heatmap: page counts of its 1024 colours. Arrow keys move between colours, Enter lists the pages of the colour.`,
      'aria-describedby': 'hm-info',
      dataset: { queue: type },
    });
    const total = h('span', { class: 'muted', dataset: { total: type } }, '');
    const box = h('div', { class: 'heatmap' }, h('div', { class: 'hm-title' }, h('b', null, type), total), canvas);
    return { type, canvas, total, box };
  });

  // ---- legend
  const legendCanvas = h('canvas', { 'aria-hidden': 'true' });
  const legendMax = h('span', { class: 'mono' });
  const legendMid = h('span', { class: 'mono muted' });
  const scaleSelect = h('select', { 'aria-label': 'Colour scale' }, h('option', { value: 'cividis' }, 'cividis'), h('option', { value: 'viridis' }, 'viridis'));
  scaleSelect.value = scaleName;
  scaleSelect.addEventListener('change', () => {
    scaleName = scaleSelect.value;
    localStorage.setItem('pagelab.scale', scaleName);
    redraw();
  });
  const modeButton = h('button', { type: 'button', class: 'small', 'aria-pressed': String(mode === 'log'), title: 'Logarithmic scale: small counts stay visible next to large ones' }, 'log scale');
  modeButton.addEventListener('click', () => {
    mode = mode === 'log' ? 'linear' : 'log';
    localStorage.setItem('pagelab.scaleMode', mode);
    modeButton.setAttribute('aria-pressed', String(mode === 'log'));
    redraw();
  });
  const socketLegend = h('span', { class: 'muted' });
  const probeLegend = h('span', { class: 'muted', dataset: { probes: '0' } });
  const legend = h('div', { class: 'legend', 'aria-label': 'Heatmap legend' },
    h('span', null, 'pages per colour:'), h('span', { class: 'mono' }, '0'), h('span', { class: 'swatch', style: { background: 'var(--empty-cell)' }, title: 'empty queue' }),
    h('span', { class: 'mono' }, '1'), legendCanvas, legendMid, legendMax, scaleSelect, modeButton,
    h('span', null, h('span', { class: 'swatch probe' }), ' probed'), h('span', null, h('span', { class: 'swatch found' }), ' found'),
    probeLegend, socketLegend);

  const element = h('div', null, h('div', { class: 'heatmaps' }, grids.map((g) => g.box)), legend, info);

  // ---- geometry
  const band = () => (sockets > 1 ? 7 : 0);
  const gridWidth = () => band() + GRID_SIDE * cell;
  /** @param {number} colour */
  const cellX = (colour) => band() + (colour % GRID_SIDE) * cell;
  /** @param {number} colour */
  const cellY = (colour) => Math.floor(colour / GRID_SIDE) * cell;

  function layout() {
    const width = element.clientWidth || 900;
    const gaps = 12 * (QUEUE_TYPES.length - 1);
    cell = Math.max(3, Math.min(9, Math.floor((width - gaps - QUEUE_TYPES.length * band()) / (QUEUE_TYPES.length * GRID_SIDE))));
  }

  /** @param {string} type @param {number} colour */
  function describe(type, colour) {
    const n = counts ? counts[type][colour] : 0;
    const socket = sockets > 1 ? `, socket ${socketOfColour(colour, sockets)}` : '';
    return `${type} colour ${colour}: ${formatCount(n)} page${n === 1 ? '' : 's'}${socket}`;
  }

  function draw() {
    if (!counts) return;
    layout();
    const table = lut(scaleName).map(rgbToCss);
    const empty = cssVar('--empty-cell') || '#e4e7ec';
    const line = cssVar('--grid-line') || '#fff';
    const probeColour = cssVar('--probe') || '#d0108a';
    const foundColour = cssVar('--found') || '#000';
    const focusColour = cssVar('--focus') || '#ff9f1c';
    const muted = cssVar('--muted') || '#888';
    let max = 0;
    for (const type of QUEUE_TYPES) max = Math.max(max, totals(counts[type]).max);
    maxDrawn = max;
    const gap = cell >= 5 ? 1 : 0;
    for (const g of grids) {
      const data = counts[g.type];
      const ctx = sizeCanvas(g.canvas, gridWidth(), GRID_SIDE * cell);
      ctx.clearRect(0, 0, gridWidth(), GRID_SIDE * cell);
      // socket bands: a strip per socket on the left, and lines where the socket changes
      if (sockets > 1) {
        for (let row = 0; row < GRID_SIDE; row++) {
          const s = socketOfColour(row * GRID_SIDE, sockets);
          ctx.fillStyle = s % 2 ? muted : line;
          ctx.globalAlpha = s % 2 ? 0.55 : 1;
          ctx.fillRect(0, row * cell, band() - 2, cell);
          ctx.globalAlpha = 1;
        }
      }
      const out = drawn[g.type];
      for (let c = 0; c < PQ_L2_SIZE; c++) {
        const v = data[c];
        out[c] = v;
        ctx.fillStyle = v > 0 ? table[scaleIndex(v, max, mode)] : empty;
        ctx.fillRect(cellX(c), cellY(c), cell - gap, cell - gap);
      }
      if (sockets > 1) {
        ctx.strokeStyle = foundColour;
        ctx.lineWidth = 1.5;
        ctx.beginPath();
        for (let c = 0; c < PQ_L2_SIZE; c++) {
          const s = socketOfColour(c, sockets);
          if (c >= GRID_SIDE && socketOfColour(c - GRID_SIDE, sockets) !== s) {
            ctx.moveTo(cellX(c), cellY(c));
            ctx.lineTo(cellX(c) + cell, cellY(c));
          }
          if (c % GRID_SIDE && socketOfColour(c - 1, sockets) !== s) {
            ctx.moveTo(cellX(c), cellY(c));
            ctx.lineTo(cellX(c), cellY(c) + cell);
          }
        }
        ctx.stroke();
      }
      if (probes) {
        ctx.lineWidth = Math.max(1, cell / 4);
        ctx.setLineDash([2, 1]);
        ctx.strokeStyle = probeColour;
        for (const p of probes.probes) if (p.type === g.type) ctx.strokeRect(cellX(p.colour) + 0.5, cellY(p.colour) + 0.5, cell - 1 - gap, cell - 1 - gap);
        ctx.setLineDash([]);
        if (probes.found?.type === g.type) {
          ctx.lineWidth = Math.max(1.5, cell / 3);
          ctx.strokeStyle = foundColour;
          ctx.strokeRect(cellX(probes.found.colour) - 0.5, cellY(probes.found.colour) - 0.5, cell + 1 - gap, cell + 1 - gap);
        }
      }
      for (const mark of [hover, focusedType === g.type ? cursor : null]) {
        if (mark && mark.type === g.type) {
          ctx.lineWidth = 2;
          ctx.strokeStyle = focusColour;
          ctx.strokeRect(cellX(mark.colour) - 1, cellY(mark.colour) - 1, cell + 2 - gap, cell + 2 - gap);
        }
      }
      const t = totals(data);
      g.total.textContent = `${formatCount(t.sum)} pages`;
      g.total.dataset.pages = String(t.sum);
    }
    // legend gradient
    const lctx = sizeCanvas(legendCanvas, 128, 12);
    for (let i = 0; i < 128; i++) {
      lctx.fillStyle = table[Math.round((i / 127) * 255)];
      lctx.fillRect(i, 0, 1, 12);
    }
    legendMid.textContent = max > 4 ? `(mid ${formatCount(Math.round(valueAt(128, max, mode)))})` : '';
    legendMax.textContent = formatCount(max);
    socketLegend.textContent = sockets > 1 ? `· bands: ${sockets} NUMA sockets, ${Math.floor(PQ_L2_SIZE / sockets)} colours each` : '';
    draws++;
  }

  /** @param {MouseEvent} ev @param {HTMLCanvasElement} canvas */
  function cellAt(ev, canvas) {
    const r = canvas.getBoundingClientRect();
    const x = ev.clientX - r.left - band();
    const y = ev.clientY - r.top;
    if (x < 0 || y < 0) return -1;
    const col = Math.floor(x / cell);
    const row = Math.floor(y / cell);
    if (col >= GRID_SIDE || row >= GRID_SIDE) return -1;
    return row * GRID_SIDE + col;
  }

  for (const g of grids) {
    g.canvas.addEventListener('mousemove', (ev) => {
      const c = cellAt(ev, g.canvas);
      const next = c < 0 ? null : { type: g.type, colour: c };
      if (next?.colour !== hover?.colour || next?.type !== hover?.type) {
        hover = next;
        if (hover) info.textContent = describe(hover.type, hover.colour);
        redraw();
      }
    });
    g.canvas.addEventListener('mouseleave', () => {
      hover = null;
      redraw();
    });
    g.canvas.addEventListener('click', (ev) => {
      const c = cellAt(ev, g.canvas);
      if (c >= 0) {
        cursor = { type: g.type, colour: c };
        onSelect(g.type, c);
      }
    });
    g.canvas.addEventListener('focus', () => {
      focusedType = g.type;
      if (cursor.type !== g.type) cursor = { type: g.type, colour: cursor.colour };
      info.textContent = describe(cursor.type, cursor.colour);
      redraw();
    });
    g.canvas.addEventListener('blur', () => {
      focusedType = '';
      redraw();
    });
    g.canvas.addEventListener('keydown', (ev) => {
      const moves = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -GRID_SIDE, ArrowDown: GRID_SIDE, Home: -cursor.colour, End: PQ_L2_SIZE - 1 - cursor.colour };
      if (ev.key in moves) {
        ev.preventDefault();
        const c = Math.max(0, Math.min(PQ_L2_SIZE - 1, cursor.colour + moves[/** @type {keyof typeof moves} */ (ev.key)]));
        cursor = { type: g.type, colour: c };
        info.textContent = describe(g.type, c);
        redraw();
      } else if (ev.key === 'Enter' || ev.key === ' ') {
        ev.preventDefault();
        onSelect(g.type, cursor.colour);
      }
    });
  }

  const resize = new ResizeObserver(() => redraw());
  resize.observe(element);

  return {
    element,
    /** @param {Record<string, Float64Array>} c @param {number} nsockets */
    setCounts(c, nsockets) {
      counts = c;
      sockets = nsockets;
    },
    draw,
    /** @param {typeof probes} p */
    setProbes(p) {
      probes = p;
      if (p) {
        const where = p.found ? `found ${p.found.type}:${p.found.colour}` : 'found nothing';
        probeLegend.textContent = `· last allocation (seq ${p.seq ?? '?'}): ${p.probes.length} queue${p.probes.length === 1 ? '' : 's'} probed, ${where}`;
        probeLegend.dataset.probes = String(p.probes.length);
      }
    },
    /** the test hooks' view of what is drawn */
    hooks: {
      drawn: (/** @type {string} */ type, /** @type {number} */ colour) => drawn[type]?.[colour],
      get draws() { return draws; },
      get max() { return maxDrawn; },
      get probes() { return probes; },
      get sockets() { return sockets; },
    },
    destroy() {
      resize.disconnect();
    },
    short: SHORT,
  };
}
