// What the page exposes to its browser tests (window.__pagelab): counts and values read from
// the same data the views draw, so tests never read pixels.

/** @type {Record<string, any>} */
export const hooks = {
  route: '',
  hellos: 0,
  frames: 0,
  connection: 'idle',
  /** @type {Record<string, any> | null} the dashboard's instance state */
  state: null,
};

/** @type {any} */ (window).__pagelab = hooks;

/**
 * Add properties to the hooks, keeping getters live (Object.assign would copy their value).
 * @param {Record<string, any>} props
 */
export function exposeHooks(props) {
  const descriptors = Object.getOwnPropertyDescriptors(props);
  for (const d of Object.values(descriptors)) d.configurable = true;
  Object.defineProperties(hooks, descriptors);
}
