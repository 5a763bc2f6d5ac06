// PageLab's page: a hash router between the instance list (#/) and one instance's
// dashboard (#/instances/<id>).

import './styles.css';
import 'uplot/dist/uPlot.min.css';

import { initTheme } from './theme.js';
import { hooks } from './hooks.js';
import { mountInstances } from './views/instances.js';
import { mountDashboard } from './views/dashboard.js';

/** @type {(() => void) | null} */
let unmount = null;

function route() {
  const main = /** @type {HTMLElement} */ (document.getElementById('main'));
  if (unmount) unmount();
  unmount = null;
  main.replaceChildren();
  const slot = document.getElementById('conn-slot');
  slot?.replaceChildren();
  const m = /^#\/instances\/(\d+)/.exec(location.hash);
  if (m) {
    unmount = mountDashboard(main, Number(m[1]));
  } else {
    unmount = mountInstances(main);
  }
  hooks.route = location.hash || '#/';
}

initTheme();
window.addEventListener('hashchange', route);
route();
