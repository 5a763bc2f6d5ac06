// Colour scales computed in the page: two colour-blind-safe sequential maps (viridis and
// cividis, sampled from matplotlib's tables and interpolated) for counts, and the Okabe–Ito
// qualitative palette for page states.

/** @typedef {[number, number, number]} RGB */

/** viridis at 0, 0.1, …, 1 */
const VIRIDIS = [
  '#440154', '#482475', '#414487', '#355f8d', '#2a788e', '#21918c',
  '#22a884', '#44bf70', '#7ad151', '#bddf26', '#fde725',
];

/** cividis at 0, 1/8, …, 1 (Nuñez, Anderton & Renslow 2018) */
const CIVIDIS = [
  [0.0, 0.135, 0.305], [0.103, 0.22, 0.436], [0.264, 0.308, 0.423],
  [0.381, 0.395, 0.436], [0.485, 0.482, 0.47], [0.605, 0.577, 0.464],
  [0.72, 0.668, 0.431], [0.849, 0.772, 0.36], [0.996, 0.909, 0.218],
].map(([r, g, b]) => /** @type {RGB} */ ([Math.round(r * 255), Math.round(g * 255), Math.round(b * 255)]));

/** @param {string} hex "#rrggbb" @returns {RGB} */
export function hexToRgb(hex) {
  const m = /^#?([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(hex);
  if (!m) throw new RangeError(`not a #rrggbb colour: ${hex}`);
  return [parseInt(m[1], 16), parseInt(m[2], 16), parseInt(m[3], 16)];
}

/** @param {RGB} rgb */
export function rgbToCss([r, g, b]) {
  return `rgb(${r} ${g} ${b})`;
}

/** @param {RGB} rgb */
export function rgbToHex([r, g, b]) {
  return `#${[r, g, b].map((v) => v.toString(16).padStart(2, '0')).join('')}`;
}

/**
 * `steps` colours evenly spread along control points, linearly interpolated.
 * @param {RGB[]} stops
 * @param {number} steps
 * @returns {RGB[]}
 */
export function interpolate(stops, steps) {
  const out = [];
  for (let i = 0; i < steps; i++) {
    const t = steps === 1 ? 0 : i / (steps - 1);
    const x = t * (stops.length - 1);
    const k = Math.min(stops.length - 2, Math.floor(x));
    const f = x - k;
    const a = stops[k];
    const b = stops[k + 1];
    out.push(/** @type {RGB} */ ([0, 1, 2].map((c) => Math.round(a[c] + (b[c] - a[c]) * f))));
  }
  return out;
}

export const SCALES = Object.freeze({
  cividis: CIVIDIS,
  viridis: VIRIDIS.map(hexToRgb),
});

/** @type {Map<string, RGB[]>} */
const cache = new Map();

/**
 * A 256-colour lookup table of a named scale.
 * @param {keyof typeof SCALES | string} name
 * @returns {RGB[]}
 */
export function lut(name) {
  let table = cache.get(name);
  if (!table) {
    const stops = SCALES[/** @type {keyof typeof SCALES} */ (name)];
    if (!stops) throw new RangeError(`unknown colour scale ${name}; scales: ${Object.keys(SCALES).join(', ')}`);
    table = interpolate(stops, 256);
    cache.set(name, table);
  }
  return table;
}

/**
 * Where a count falls on the scale, 0..255.  `log` spreads small counts apart (a queue of
 * 3 pages next to one of 3000); 0 maps to 0, `max` (and above) to 255.
 * @param {number} value
 * @param {number} max
 * @param {'log' | 'linear'} [mode]
 */
export function scaleIndex(value, max, mode = 'log') {
  if (!(value > 0) || !(max > 0)) return 0;
  const t = mode === 'log' ? Math.log1p(value) / Math.log1p(max) : value / max;
  return Math.max(0, Math.min(255, Math.round(t * 255)));
}

/**
 * The value at a scale position (the legend's tick labels): the inverse of scaleIndex.
 * @param {number} index 0..255
 * @param {number} max
 * @param {'log' | 'linear'} [mode]
 */
export function valueAt(index, max, mode = 'log') {
  const t = index / 255;
  return mode === 'log' ? Math.expm1(t * Math.log1p(max)) : t * max;
}

/**
 * Relative luminance (WCAG 2) of an sRGB colour.
 * @param {RGB} rgb
 */
export function luminance([r, g, b]) {
  const lin = (/** @type {number} */ v) => {
    const c = v / 255;
    return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  };
  return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
}

/**
 * Black or white, whichever reads better on `rgb` (the larger WCAG contrast ratio).
 * @param {RGB} rgb
 */
export function textOn(rgb) {
  const l = luminance(rgb);
  return (l + 0.05) / 0.05 >= 1.05 / (l + 0.05) ? '#000000' : '#ffffff';
}

/** Page states of the memory map in the order the legend lists them. */
export const PAGE_STATES = Object.freeze([
  'free', 'cache', 'inactive', 'active', 'hold', 'wired', 'busy', 'dma_reserve', 'none', 'unmanaged',
]);

/**
 * Okabe–Ito colours for page states (distinguishable with every common colour-vision
 * deficiency); `none` and `unmanaged` are greys that the page shades per theme.
 * @type {Readonly<Record<string, string>>}
 */
export const STATE_COLOURS = Object.freeze({
  free: '#009e73',
  cache: '#56b4e9',
  inactive: '#f0e442',
  active: '#e69f00',
  hold: '#cc79a7',
  wired: '#d55e00',
  busy: '#0072b2',
  dma_reserve: '#6f4e37',
  none: '#9a9a9a',
  unmanaged: '#d9d9d9',
});

/**
 * The colour of a state, with a fallback for states this page does not know yet.
 * @param {string} state
 */
export function stateColour(state) {
  return STATE_COLOURS[state] ?? '#ff00ff';
}
