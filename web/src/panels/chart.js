// The time series (uPlot): free, cache, inactive, active and wired pages, with the paging
// thresholds as dashed lines; beside it the paging predicates and the pageout daemon.
// The x axis is wall time or simulated ticks.

import uPlot from 'uplot';

import { cssVar, h, replace } from '../dom.js';
import { formatCount } from '../lib/format.js';
import { COUNTERS, SERIES, Samples, THRESHOLDS } from '../lib/series.js';

const LINE_COLOURS = {
  v_free_count: '#009e73',
  v_cache_count: '#56b4e9',
  v_inactive_count: '#c9b800',
  v_active_count: '#e69f00',
  v_wire_count: '#d55e00',
};
const THRESHOLD_COLOURS = ['#cc79a7', '#b42318', '#0072b2', '#7a5195', '#6b7280', '#9ca3af', '#c9b800'];

const LABELS = {
  v_free_count: 'free', v_cache_count: 'cache', v_inactive_count: 'inactive', v_active_count: 'active', v_wire_count: 'wired',
  v_free_reserved: 'free_reserved', v_free_min: 'free_min', v_free_target: 'free_target', v_paging_start: 'paging_start',
  v_paging_target1: 'paging_target1', v_paging_target2: 'paging_target2', v_inactive_target: 'inactive_target',
};

/**
 * @param {{request: (key: string, draw: () => void) => void}} options
 */
export function createChart({ request }) {
  const samples = new Samples(3000);
  let axis = /** @type {'time' | 'ticks'} */ (localStorage.getItem('pagelab.axis') === 'ticks' ? 'ticks' : 'time');
  let showThresholds = localStorage.getItem('pagelab.thresholds') !== '0';
  /** 'all': the y axis fits every line; 'near': it stops a little above the thresholds */
  let yRange = localStorage.getItem('pagelab.yrange') === 'near' ? 'near' : 'all';
  /** @type {uPlot | null} */
  let plot = null;
  /** @type {Record<string, number>} */
  let last = {};
  let setDataCalls = 0;
  /** @type {Record<string, {unit: string, help: string}>} */
  let fields = {};

  const holder = h('div', { class: 'chart-wrap', role: 'img', 'aria-label': 'Page counts over time with the paging thresholds' });
  const axisButton = h('button', { type: 'button', class: 'small', 'aria-label': 'X axis: wall time (click for simulated ticks)' }, '');
  const thresholdsButton = h('button', { type: 'button', class: 'small', 'aria-pressed': String(showThresholds) }, 'thresholds');
  const nearButton = h('button', { type: 'button', class: 'small', 'aria-pressed': String(yRange === 'near'), title: 'Zoom the y axis to the paging thresholds' }, 'zoom to thresholds');
  const summary = h('div', { class: 'small mono', 'aria-live': 'off', dataset: { free: '' } });
  const predicates = h('div', { class: 'indicators', 'aria-label': 'Paging predicates (vm_paging_*)', role: 'group' });
  const daemon = h('div', { class: 'indicators', 'aria-label': 'Pageout daemon', role: 'group' });
  const element = h('div', null,
    h('div', { class: 'row' }, h('span', { class: 'muted small' }, 'x axis:'), axisButton, thresholdsButton, nearButton, summary),
    holder,
    h('div', { class: 'row small' }, h('span', { class: 'muted' }, 'paging predicates:'), predicates),
    h('div', { class: 'row small' }, h('span', { class: 'muted' }, 'pageout daemon:'), daemon));

  const labelAxis = () => {
    axisButton.textContent = axis === 'time' ? 'wall time' : 'simulated ticks';
    axisButton.setAttribute('aria-label', axis === 'time' ? 'X axis: wall time (click for simulated ticks)' : 'X axis: simulated ticks (click for wall time)');
  };
  labelAxis();
  axisButton.addEventListener('click', () => {
    axis = axis === 'time' ? 'ticks' : 'time';
    localStorage.setItem('pagelab.axis', axis);
    labelAxis();
    rebuild();
  });
  thresholdsButton.addEventListener('click', () => {
    showThresholds = !showThresholds;
    localStorage.setItem('pagelab.thresholds', showThresholds ? '1' : '0');
    thresholdsButton.setAttribute('aria-pressed', String(showThresholds));
    if (plot) THRESHOLDS.forEach((_, i) => plot?.setSeries(1 + COUNTERS.length + i, { show: showThresholds }));
  });

  nearButton.addEventListener('click', () => {
    yRange = yRange === 'near' ? 'all' : 'near';
    localStorage.setItem('pagelab.yrange', yRange);
    nearButton.setAttribute('aria-pressed', String(yRange === 'near'));
    if (plot) plot.setData(plot.data);
  });

  /** The y range: everything, or [0, 1.5 × the highest threshold] when zoomed. */
  function yScale(/** @type {uPlot} */ _u, /** @type {number} */ min, /** @type {number} */ max) {
    if (yRange === 'near') {
      const top = Math.max(0, ...THRESHOLDS.map((n) => last[n] ?? 0));
      if (top > 0) return /** @type {uPlot.Range.MinMax} */ ([0, Math.ceil(top * 1.5)]);
    }
    return /** @type {uPlot.Range.MinMax} */ ([Math.min(0, min ?? 0), Math.max(1, Math.ceil((max ?? 1) * 1.05))]);
  }

  function options() {
    const fg = cssVar('--muted') || '#666';
    const grid = cssVar('--border') || '#ddd';
    const width = Math.max(300, holder.clientWidth || 700);
    /** @type {uPlot.Options} */
    const opts = {
      width,
      height: 240,
      legend: { live: true },
      cursor: { drag: { x: true, y: false } },
      scales: { x: { time: axis === 'time' }, y: { range: yScale } },
      axes: [
        { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid }, label: axis === 'time' ? '' : 'ticks', labelSize: axis === 'time' ? 0 : 18 },
        { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid }, size: 76, values: (_u, vals) => vals.map((v) => formatCount(v)) },
      ],
      series: [
        { label: axis === 'time' ? 'time' : 'tick', value: axis === 'time' ? (_u, v) => (v == null ? '—' : new Date(v * 1000).toLocaleTimeString()) : (_u, v) => (v == null ? '—' : String(v)) },
        ...COUNTERS.map((name) => ({
          label: LABELS[/** @type {keyof typeof LABELS} */ (name)], stroke: LINE_COLOURS[/** @type {keyof typeof LINE_COLOURS} */ (name)], width: 2,
          value: (/** @type {any} */ _u, /** @type {number | null} */ v) => (v == null ? '—' : formatCount(v)),
        })),
        ...THRESHOLDS.map((name, i) => ({
          label: LABELS[/** @type {keyof typeof LABELS} */ (name)], stroke: THRESHOLD_COLOURS[i], width: 1, dash: [5, 4], show: showThresholds, points: { show: false },
          value: (/** @type {any} */ _u, /** @type {number | null} */ v) => (v == null ? '—' : formatCount(v)),
        })),
      ],
    };
    return opts;
  }

  function rebuild() {
    plot?.destroy();
    holder.replaceChildren();
    plot = new uPlot(options(), /** @type {uPlot.AlignedData} */ (samples.data(axis)), holder);
    // uPlot's legend rows: say each series' unit and meaning on hover
    holder.querySelectorAll('.u-legend .u-series').forEach((row, i) => {
      const name = i === 0 ? null : SERIES[i - 1];
      const f = name ? fields[name] : null;
      if (f) row.setAttribute('title', `${name} (${f.unit}): ${f.help}`);
    });
  }

  function draw() {
    if (!plot) rebuild();
    else {
      plot.setData(/** @type {uPlot.AlignedData} */ (samples.data(axis)));
      setDataCalls++;
    }
  }

  const resize = new ResizeObserver(() => {
    if (plot && holder.clientWidth && Math.abs(plot.width - holder.clientWidth) > 4) plot.setSize({ width: holder.clientWidth, height: 240 });
  });
  resize.observe(holder);

  return {
    element,
    /** @param {Record<string, {unit: string, help: string}>} f */
    setFields(f) {
      fields = f ?? {};
    },
    /**
     * One sample from the state (after a hello or a frame with vmstats).
     * @param {{time: number, tick: number, seq: number}} at
     * @param {any} vmstats
     */
    sample(at, vmstats) {
      const global = vmstats?.global ?? {};
      samples.push(at, global);
      last = Object.fromEntries(SERIES.map((n) => [n, global[n]]));
      summary.dataset.free = String(global.v_free_count ?? '');
      summary.textContent = `free ${formatCount(global.v_free_count)} · cache ${formatCount(global.v_cache_count)} · inactive ${formatCount(global.v_inactive_count)} · active ${formatCount(global.v_active_count)} · wired ${formatCount(global.v_wire_count)}`;
      request('chart', draw);
      replace(predicates, Object.entries(vmstats?.predicates ?? {}).map(([name, on]) =>
        h('span', { class: `chip${on ? ' on' : ''}`, dataset: { predicate: name, on: String(Boolean(on)) }, title: `${name}(): ${on ? 'true' : 'false'}` }, `${name.replace(/^vm_paging_/, '')}${on ? ' ✓' : ''}`)));
    },
    /** @param {any} pageout the pageout section */
    setDaemon(pageout) {
      if (!pageout) return;
      const t = pageout.thread ?? {};
      replace(daemon,
        h('span', { class: `chip${pageout.state && pageout.state !== 'IDLE' ? ' on' : ''}`, dataset: { daemon: String(pageout.state) } }, `state ${pageout.state}`),
        h('span', { class: 'chip' }, `pass ${pageout.pass}`),
        h('span', { class: 'chip' }, `passes ${formatCount(pageout.passes)}`),
        h('span', { class: 'chip' }, `pages_needed ${pageout.vm_pages_needed}`),
        h('span', { class: 'chip' }, `deficit ${formatCount(pageout.vm_pageout_deficit)}`),
        pageout.enabled === false ? h('span', { class: 'chip bad' }, 'disabled') : null,
        t.state ? h('span', { class: 'chip' }, `thread ${t.state}${t.wmesg ? ` (${t.wmesg})` : ''}`) : null);
    },
    /** A new machine (reset, or another instance after a reconnect): start over. */
    clear() {
      samples.clear();
      request('chart', draw);
    },
    rebuild,
    hooks: {
      get last() { return last; },
      get points() { return samples.length; },
      get axis() { return axis; },
      get setDataCalls() { return setDataCalls; },
      seriesLast: (/** @type {string} */ name) => {
        const i = SERIES.indexOf(name);
        const data = plot?.data?.[i + 1];
        return data && data.length ? data[data.length - 1] : undefined;
      },
    },
    destroy() {
      resize.disconnect();
      plot?.destroy();
    },
  };
}
