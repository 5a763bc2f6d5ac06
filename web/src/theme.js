// Light, dark, or the system's choice (prefers-color-scheme); remembered in localStorage.

const KEY = 'pagelab.theme';
const ORDER = /** @type {const} */ (['auto', 'light', 'dark']);
/** @type {Set<() => void>} */
const listeners = new Set();

/** @returns {'auto' | 'light' | 'dark'} */
export function themeSetting() {
  const v = localStorage.getItem(KEY);
  return v === 'light' || v === 'dark' ? v : 'auto';
}

/** The theme in effect now. */
export function effectiveTheme() {
  const s = themeSetting();
  if (s !== 'auto') return s;
  return matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
}

/** @param {'auto' | 'light' | 'dark'} setting */
export function setTheme(setting) {
  if (setting === 'auto') {
    localStorage.removeItem(KEY);
    delete document.documentElement.dataset.theme;
  } else {
    localStorage.setItem(KEY, setting);
    document.documentElement.dataset.theme = setting;
  }
  updateButton();
  for (const f of listeners) f();
}

/** Call `f` whenever the effective theme may have changed (canvases redraw). @param {() => void} f */
export function onThemeChange(f) {
  listeners.add(f);
  return () => listeners.delete(f);
}

function updateButton() {
  const button = document.getElementById('theme-toggle');
  if (!button) return;
  const s = themeSetting();
  button.textContent = `Theme: ${s}`;
  button.setAttribute('aria-label', s === 'auto' ? 'Colour theme: follow the system (click for light)' : `Colour theme: ${s} (click to change)`);
  button.dataset.theme = effectiveTheme();
}

export function initTheme() {
  const s = themeSetting();
  if (s !== 'auto') document.documentElement.dataset.theme = s;
  document.getElementById('theme-toggle')?.addEventListener('click', () => {
    const next = ORDER[(ORDER.indexOf(themeSetting()) + 1) % ORDER.length];
    setTheme(next);
  });
  matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => {
    updateButton();
    for (const f of listeners) f();
  });
  updateButton();
}
