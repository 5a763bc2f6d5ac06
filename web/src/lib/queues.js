// The 5 × 1024 page queues as the kernel numbers them (vm_page.h): PQ_NONE is 0, then
// PQ_L2_SIZE colours each of PQ_FREE, PQ_INACTIVE, PQ_ACTIVE, PQ_CACHE and PQ_HOLD.

export const PQ_L2_SIZE = 1024;
/** Queue types in the kernel's order (their base index is 1 + i * PQ_L2_SIZE). */
export const QUEUE_TYPES = Object.freeze(['PQ_FREE', 'PQ_INACTIVE', 'PQ_ACTIVE', 'PQ_CACHE', 'PQ_HOLD']);
export const GRID_SIDE = 32; // 32 × 32 = 1024 colours per queue type

/**
 * The queue a kernel queue index names, or null for PQ_NONE / out of range.
 * @param {number} index e.g. 1 (PQ_FREE colour 0), 1025 (PQ_INACTIVE colour 0)
 * @returns {{type: string, typeIndex: number, colour: number} | null}
 */
export function queueOfIndex(index) {
  if (!Number.isInteger(index) || index < 1 || index >= 1 + QUEUE_TYPES.length * PQ_L2_SIZE) {
    return null;
  }
  const typeIndex = Math.floor((index - 1) / PQ_L2_SIZE);
  return { type: QUEUE_TYPES[typeIndex], typeIndex, colour: (index - 1) % PQ_L2_SIZE };
}

/**
 * The kernel queue index of a queue type and colour.
 * @param {string} type
 * @param {number} colour
 */
export function indexOfQueue(type, colour) {
  const t = QUEUE_TYPES.indexOf(type);
  if (t < 0) throw new RangeError(`unknown queue type ${type}`);
  return 1 + t * PQ_L2_SIZE + colour;
}

/**
 * Parse a move endpoint such as "PQ_FREE:3" or "PQ_NONE".
 * @param {string} text
 * @returns {{type: string, colour: number | null}}
 */
export function parseQueueName(text) {
  const [type, colour] = String(text).split(':');
  return { type, colour: colour === undefined ? null : Number(colour) };
}

/**
 * The NUMA socket that owns a colour.  With several sockets and NUMA ranges the kernel
 * splits the colours into equal runs, one per socket (vm_page_startup_finish:
 * socket_mod = PQ_L2_SIZE / sockets); otherwise every colour is socket 0.
 * @param {number} colour
 * @param {number} sockets
 */
export function socketOfColour(colour, sockets) {
  if (!sockets || sockets <= 1) return 0;
  const socketMod = Math.floor(PQ_L2_SIZE / sockets);
  return Math.min(sockets - 1, Math.floor(colour / socketMod));
}

/**
 * How many socket bands the heatmap shows for an instance config (GET …/instances/{id}).
 * @param {{topology?: {sockets: number} | null, numa?: unknown[]} | null | undefined} config
 */
export function socketBands(config) {
  const sockets = config?.topology?.sockets ?? 1;
  return sockets > 1 && Array.isArray(config?.numa) && config.numa.length > 0 ? sockets : 1;
}

/**
 * A queue as an event names it, `{queue: "PQ_FREE", color: 5}` (or a bare kernel index, as
 * older records held), or null for PQ_NONE / anything else.
 * @param {unknown} ref
 * @returns {{type: string, typeIndex: number, colour: number} | null}
 */
export function queueOfRef(ref) {
  if (typeof ref === 'number') return queueOfIndex(ref);
  if (ref && typeof ref === 'object') {
    const { queue, color } = /** @type {{queue?: unknown, color?: unknown}} */ (ref);
    const typeIndex = QUEUE_TYPES.indexOf(String(queue));
    if (typeIndex < 0 || !Number.isInteger(color)) return null;
    return { type: QUEUE_TYPES[typeIndex], typeIndex, colour: /** @type {number} */ (color) };
  }
  return null;
}

/**
 * The cells an allocation examined, from a call record's kernel events (the "alloc"
 * explanation carries `probes`, the queues tried in order, and `found_queue`, each as
 * `{queue, color}`).
 * @param {Array<Record<string, any>> | undefined} kernelEvents
 * @returns {{probes: Array<{type: string, typeIndex: number, colour: number}>, found: {type: string, typeIndex: number, colour: number} | null} | null}
 */
export function allocProbes(kernelEvents) {
  if (!Array.isArray(kernelEvents)) return null;
  for (let i = kernelEvents.length - 1; i >= 0; i--) {
    const ev = kernelEvents[i];
    const kind = ev?.event ?? ev?.kind;
    if (kind === 'alloc' && Array.isArray(ev.probes)) {
      const probes = ev.probes.map(queueOfRef).filter((q) => q !== null);
      const found = ev.found_queue == null ? null : queueOfRef(ev.found_queue);
      return { probes, found };
    }
  }
  return null;
}
