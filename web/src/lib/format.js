// Numbers and units for people: counts with digit grouping, sizes in binary units, page
// counts with their size, and a value in the unit a counter or sysctl declares.

const GROUP = '\u202f'; // narrow no-break space: 1 048 576, readable in every locale

/**
 * An integer (or any number) with its digits grouped by three.
 * @param {number | bigint | null | undefined} n
 */
export function formatCount(n) {
  if (n === null || n === undefined) return '—';
  if (typeof n === 'number' && !Number.isFinite(n)) return String(n);
  if (typeof n === 'number' && !Number.isInteger(n)) {
    return formatDecimal(n);
  }
  const s = String(n);
  const neg = s.startsWith('-');
  const digits = neg ? s.slice(1) : s;
  const grouped = digits.replace(/\B(?=(\d{3})+(?!\d))/g, GROUP);
  return neg ? `−${grouped}` : grouped;
}

/** A non-integer with up to 3 significant decimals. @param {number} n */
export function formatDecimal(n) {
  const abs = Math.abs(n);
  const digits = abs >= 100 ? 0 : abs >= 10 ? 1 : abs >= 1 ? 2 : 3;
  const s = n.toFixed(digits).replace(/\.?0+$/, '');
  return s.startsWith('-') ? `−${s.slice(1)}` : s;
}

const BINARY = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/**
 * A byte count in binary units: 4096 → "4 KiB", 1610612736 → "1.5 GiB".
 * @param {number} bytes
 */
export function formatBytes(bytes) {
  if (bytes === null || bytes === undefined || !Number.isFinite(bytes)) return '—';
  const neg = bytes < 0;
  let v = Math.abs(bytes);
  let i = 0;
  // "1024 MiB" reads worse than "1 GiB": move up a unit when rounding would reach 1024
  while (Number(formatDecimal(v)) >= 1024 && i < BINARY.length - 1) {
    v /= 1024;
    i++;
  }
  const text = i === 0 ? String(v) : Number.isInteger(v) ? String(v) : formatDecimal(v);
  return `${neg ? '−' : ''}${text} ${BINARY[i]}`;
}

/**
 * A page count with its size: "3 711 pages (14.5 MiB)".
 * @param {number} pages
 * @param {number} [pageSize]
 */
export function formatPages(pages, pageSize = 4096) {
  if (pages === null || pages === undefined) return '—';
  const word = Math.abs(pages) === 1 ? 'page' : 'pages';
  return `${formatCount(pages)} ${word} (${formatBytes(pages * pageSize)})`;
}

/** Short hexadecimal with 0x: 12595200 → "0xc03000". @param {number} n */
export function formatHex(n) {
  if (n === null || n === undefined) return '—';
  return `0x${Math.trunc(n).toString(16)}`;
}

/**
 * A value in its declared unit, as the counters and sysctls report them
 * (`pages`, `bytes`, `ticks`, `count`, `percent`, `boolean`, `seconds`, …).
 * @param {unknown} value
 * @param {string | undefined} unit
 * @param {{pageSize?: number}} [options]
 */
export function formatValue(value, unit, options = {}) {
  if (value === null || value === undefined) return '—';
  if (typeof value === 'boolean') return value ? 'yes' : 'no';
  if (typeof value !== 'number') return String(value);
  switch (unit) {
    case 'pages':
      return formatPages(value, options.pageSize);
    case 'bytes':
      return Math.abs(value) >= 1024 ? `${formatCount(value)} B (${formatBytes(value)})` : `${formatCount(value)} B`;
    case 'ticks':
      return `${formatCount(value)} ${Math.abs(value) === 1 ? 'tick' : 'ticks'}`;
    case 'percent':
      return `${formatCount(value)} %`;
    case 'boolean':
      return value ? '1 (on)' : '0 (off)';
    case 'seconds':
      return `${formatCount(value)} s`;
    case undefined:
    case '':
    case 'count':
      return formatCount(value);
    default:
      return `${formatCount(value)} ${unit}`;
  }
}

/**
 * A duration in seconds for a status line: 0.25 → "250 ms", 4 → "4 s", 125 → "2 min 5 s".
 * @param {number} seconds
 */
export function formatDuration(seconds) {
  if (!Number.isFinite(seconds)) return '—';
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${formatDecimal(seconds)} s`;
  const m = Math.floor(seconds / 60);
  const s = Math.round(seconds - m * 60);
  return s ? `${m} min ${s} s` : `${m} min`;
}

/**
 * A memory size as the API takes it: a byte count for plain digits, else the text as
 * written ("4GiB", "512 MiB": the server reads the units and explains what it cannot read);
 * null for an empty field.
 * @param {string} text
 * @returns {number | string | null}
 */
export function parseMemory(text) {
  const t = String(text ?? '').trim();
  if (!t) return null;
  if (/^\d+$/.test(t)) return Number(t);
  return t;
}

/** Total bytes of phys_avail ranges. @param {Array<[number, number]>} ranges */
export function physBytes(ranges) {
  let total = 0;
  for (const [lo, hi] of ranges ?? []) total += hi - lo;
  return total;
}

const UNITS = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4, p: 1024 ** 5 };

/**
 * A byte count from "16MiB", "0x1000", "4 GB" (binary units, as the server reads them) or
 * plain digits; null when it cannot be read.
 * @param {string} text
 * @returns {number | null}
 */
export function parseBytes(text) {
  const t = String(text ?? '').trim();
  if (/^0x[0-9a-f]+$/i.test(t)) return Number.parseInt(t, 16);
  const m = /^(\d+(?:\.\d+)?)\s*(?:([kmgtp])(?:i?b)?|(b))?$/i.exec(t);
  if (!m) return null;
  const unit = (m[2] ?? m[3] ?? '').toLowerCase();
  const v = Number(m[1]) * UNITS[/** @type {keyof typeof UNITS} */ (unit)];
  return Number.isSafeInteger(Math.round(v)) ? Math.round(v) : null;
}

/**
 * NUMA affinity ranges written as "base+size@socket, …" (e.g. "0+512MiB@0, 512MiB+512MiB@1").
 * @param {string} text
 * @returns {{ranges: Array<{base: number, size: number, socket: number}>} | {error: string}}
 */
export function parseNumaRanges(text) {
  const parts = String(text ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  const ranges = [];
  for (const part of parts) {
    const m = /^(.+?)\s*\+\s*(.+?)\s*@\s*(\d+)$/.exec(part);
    if (!m) return { error: `cannot read "${part}": write base+size@socket, e.g. 0+512MiB@0` };
    const base = parseBytes(m[1]);
    const size = parseBytes(m[2]);
    if (base === null) return { error: `cannot read the base "${m[1]}" in "${part}"` };
    if (size === null || size <= 0) return { error: `cannot read the size "${m[2]}" in "${part}"` };
    ranges.push({ base, size, socket: Number(m[3]) });
  }
  return { ranges };
}

/**
 * The instances table's free-pages cell: the global v_free_count, marked with `*` when
 * it lags the per-CPU adjustments a rollup has not folded yet (`summary.counts_lag`),
 * with the server's sentence (`summary.lag_note`) and the folded value as its title.
 * @param {{v_free_count?: number, counts_lag?: Record<string, {global: number, pending: number, folded: number}>, lag_note?: string | null} | null | undefined} summary
 * @returns {{text: string, title: string | null}}
 */
export function freePagesCell(summary) {
  const s = summary ?? {};
  const lag = s.counts_lag?.v_free_count;
  if (!lag) return { text: formatCount(s.v_free_count), title: null };
  return {
    text: `${formatCount(s.v_free_count)}*`,
    title: s.lag_note ?? `lags: ${formatCount(lag.folded)} once vmstats_rollup or the next tick folds ${formatCount(lag.pending)} pending`,
  };
}
