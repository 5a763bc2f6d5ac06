// One instance's dashboard: the stream keeps a copy of its state (lib/state.js) that the
// heatmap, memory map, chart, counters, threads and event log draw from; REST serves the
// inspector, the console, the sysctls and the workloads.

import { get, post } from '../api.js';
import { h, replace } from '../dom.js';
import { exposeHooks, hooks } from '../hooks.js';
import { createCoalescer } from '../lib/coalesce.js';
import { formatBytes, formatCount, formatDuration, physBytes } from '../lib/format.js';
import { allocProbes, socketBands } from '../lib/queues.js';
import { applyFrame, ProtocolMismatch, stateFromHello } from '../lib/state.js';
import { createChart } from '../panels/chart.js';
import { createConsole } from '../panels/console.js';
import { createCounters } from '../panels/counters.js';
import { createEvents } from '../panels/events.js';
import { createHeatmap } from '../panels/heatmap.js';
import { createInspector } from '../panels/inspector.js';
import { createPageMap } from '../panels/pagemap.js';
import { createSysctls } from '../panels/sysctls.js';
import { createThreads } from '../panels/threads.js';
import { createTimeline } from '../panels/timeline.js';
import { createWorkloads } from '../panels/workloads.js';
import { StreamClient } from '../stream.js';
import { onThemeChange } from '../theme.js';
import { problemBox, tabSet } from '../ui.js';

const TOPICS = ['vmstats', 'queues', 'events', 'threads', 'pageout', 'pages', 'pagemap'];

/**
 * @param {HTMLElement} root
 * @param {number} instanceId
 * @returns {() => void} unmount
 */
export function mountDashboard(root, instanceId) {
  const coalescer = createCoalescer((cb) => requestAnimationFrame(cb), () => performance.now());
  const request = coalescer.request;
  /** @type {import('../lib/state.js').InstanceState | null} */
  let state = null;
  /** @type {any} */ let config = null;
  let sockets = 1;
  /** @type {string[]} */ let sysctlNames = [];
  let frames = 0;
  let lastFrameLag = 0;

  // ---- header
  const title = h('h1', null, `Instance ${instanceId}`);
  const facts = h('div', { class: 'facts', dataset: { seq: '', generation: '' } });
  const headProblem = h('div');
  const resetButton = h('button', { type: 'button', class: 'small', id: 'reset-instance' }, 'Reset');
  const head = h('div', { class: 'dash-head' }, title, facts, h('span', { class: 'spacer' }), resetButton, h('a', { href: '#/', class: 'small' }, 'All instances'));
  const banner = h('div');

  // ---- connection status in the top bar
  const conn = h('span', { class: 'conn', id: 'conn', role: 'status', 'aria-live': 'polite', dataset: { state: 'connecting', hellos: '0' } },
    h('span', { class: 'dot', 'aria-hidden': 'true' }), h('span', { class: 'conn-text' }, 'connecting…'));
  const retryButton = h('button', { type: 'button', class: 'small', hidden: true }, 'Reconnect');
  document.getElementById('conn-slot')?.replaceChildren(conn, retryButton);
  /** @type {ReturnType<typeof setInterval> | null} */
  let countdown = null;

  // ---- panels
  const queueList = h('div', { class: 'queue-pages', 'aria-live': 'polite' });
  const heatmap = createHeatmap({ onSelect: (type, colour) => listQueue(type, colour), request });
  const pagemap = createPageMap({ instanceId, send: (op) => stream.send(op), request, onInspect: (pfn) => inspect(pfn) });
  const chart = createChart({ request });
  const counters = createCounters();
  const threads = createThreads();
  const inspector = createInspector({
    instanceId,
    watch: (pfns) => stream.send({ op: 'watch', pfns }),
    onQueue: (type, colour) => listQueue(type, colour),
  });
  const consolePanel = createConsole({
    instanceId,
    ncpus: () => config?.cpus ?? state?.vmstats?.cpus?.length ?? 1,
    sysctlNames: () => sysctlNames,
    onInspect: (pfn) => inspect(pfn),
    onRecord: (fn, record, seq) => showProbes(fn, record.events, seq),
  });
  const events = createEvents({ request, onInspect: (pfn) => inspect(pfn), visible: () => tabs.current === 'events' });
  const sysctls = createSysctls({ instanceId, onNames: (names) => { sysctlNames = names; } });
  const workloads = createWorkloads({ instanceId, visible: () => !document.hidden });
  const timeline = createTimeline({
    instanceId,
    name: () => state?.instance?.name ?? `instance-${instanceId}`,
    request,
    onForked: (id) => { location.hash = `#/instances/${id}`; },
  });

  const tabPanels = [
    { id: 'console', label: 'Console', panel: h('div', null, consolePanel.element) },
    { id: 'inspector', label: 'Inspector', panel: h('div', null, inspector.element) },
    { id: 'events', label: 'Events', panel: h('div', null, events.element) },
    { id: 'threads', label: 'Threads', panel: h('div', null, threads.element) },
    { id: 'sysctls', label: 'Sysctls', panel: h('div', null, sysctls.element) },
    { id: 'workloads', label: 'Workloads', panel: h('div', null, workloads.element) },
    { id: 'counters', label: 'Counters', panel: h('div', null, counters.element) },
  ];
  const tabs = tabSet(tabPanels, (id) => {
    if (id === 'sysctls') sysctls.ensure();
    if (id === 'workloads') workloads.ensure();
    if (id === 'events') events.render();
  });

  root.append(
    head, headProblem, banner,
    h('section', { class: 'panel', 'aria-labelledby': 'hm-h' },
      h('div', { class: 'panel-head' }, h('h2', { id: 'hm-h' }, 'Page queues'),
        h('span', { class: 'muted small' }, '5 queue types × 1024 colours; each cell is one colour’s queue. Click a cell (or focus a grid and press Enter) to list its pages.')),
      heatmap.element, queueList),
    h('div', { class: 'dash-grid' },
      h('div', null,
        h('section', { class: 'panel', 'aria-labelledby': 'pm-h' }, h('div', { class: 'panel-head' }, h('h2', { id: 'pm-h' }, 'Physical memory')), pagemap.element),
        h('section', { class: 'panel', 'aria-labelledby': 'ts-h' }, h('div', { class: 'panel-head' }, h('h2', { id: 'ts-h' }, 'Page counts and thresholds')), chart.element)),
      h('section', { class: 'panel', 'aria-label': 'Instance tools' }, tabs.element)),
    timeline.element);

  // ---- stream
  const stream = new StreamClient({
    instanceId,
    topics: TOPICS,
    rate: 10,
    handlers: {
      onHello: (msg) => {
        let next;
        try {
          next = stateFromHello(msg);
        } catch (e) {
          if (e instanceof ProtocolMismatch) {
            stream.fail(e.message);
            replace(banner, problemBox(e, 'Cannot follow this server'));
            return;
          }
          throw e;
        }
        const newMachine = !state || next.generation !== state.generation || next.seq < state.seq || next.instance?.id !== state.instance?.id;
        if (newMachine) {
          chart.clear();
          if (state) events.note(`A new machine state (generation ${next.generation}, seq ${next.seq}): the page starts over from it.`);
        }
        state = next;
        hooks.hellos = (hooks.hellos ?? 0) + 1;
        hooks.lastHello = { generation: msg.generation, seq: msg.seq, tick: msg.tick, time: msg.time };
        replace(banner);
        chart.setFields(state.fields);
        counters.setFields(state.fields);
        if (!Object.keys(state.fields).length) loadFields();
        heatmap.setProbes(null);
        heatmap.setCounts(state.queues, sockets);
        request('heatmap', heatmap.draw);
        chart.sample({ time: state.time, tick: state.tick, seq: state.seq }, state.vmstats);
        chart.setDaemon(state.pageout);
        request('counters', () => counters.set(state?.vmstats));
        request('threads', () => threads.set(state?.threads));
        if (state.pagemap) pagemap.fromStream(state.pagemap);
        if (newMachine) {
          pagemap.forget();
          loadInstance();
        }
        pagemap.resubscribe();
        pagemap.fetch();
        timeline.hello(state.seq, state.generation);
        consolePanel.ensureFunctions();
        if (inspector.pfn !== null) {
          stream.send({ op: 'watch', pfns: [inspector.pfn] });
          inspector.open(inspector.pfn);
        }
        showFacts();
      },
      onFrame: (msg) => {
        if (!state) return;
        frames++;
        hooks.frames = frames;
        lastFrameLag = Date.now() / 1000 - (msg.time ?? Date.now() / 1000);
        const changes = applyFrame(state, msg);
        if (changes.sections.has('queues')) request('heatmap', heatmap.draw);
        if (changes.sections.has('vmstats')) {
          chart.sample({ time: state.time, tick: state.tick, seq: state.seq }, state.vmstats);
          request('counters', () => counters.set(state?.vmstats));
        }
        if (changes.sections.has('pageout')) request('daemon', () => chart.setDaemon(state?.pageout));
        if (changes.sections.has('threads')) request('threads', () => threads.set(state?.threads));
        if (changes.sections.has('pagemap')) pagemap.fromStream(state.pagemap);
        for (const pfn of changes.pages) inspector.update(state.pages[pfn]);
        if (Array.isArray(msg.events) && msg.events.length) {
          events.addEvents(msg.events);
          for (let i = msg.events.length - 1; i >= 0; i--) {
            const ev = msg.events[i];
            if (allocProbes(ev.events)) {
              showProbes(ev.fn, ev.events, ev.seq);
              break;
            }
          }
        }
        if (msg.events_summary) {
          events.addSummary(msg.events_summary);
          const tail = msg.events_summary.tail ?? [];
          for (let i = tail.length - 1; i >= 0; i--) {
            if (allocProbes(tail[i].events)) {
              showProbes(tail[i].fn, tail[i].events, tail[i].seq);
              break;
            }
          }
        }
        timeline.frame(state.seq, msg.events, msg.events_summary);
        request('facts', showFacts);
      },
      onGap: (msg) => {
        events.addGap(msg);
        timeline.gap();
      },
      onError: (msg) => replace(banner, h('div', { class: 'notice', role: 'status' }, `The stream did not understand a message from this page: ${msg.detail ?? msg.code}`)),
      onStatus: (st) => showStatus(st),
    },
  });

  /** @param {import('../stream.js').StreamStatus} st */
  function showStatus(st) {
    conn.dataset.state = st.state;
    conn.dataset.hellos = String(st.hellos);
    hooks.connection = st.state;
    const text = /** @type {HTMLElement} */ (conn.querySelector('.conn-text'));
    if (countdown) clearInterval(countdown);
    countdown = null;
    retryButton.hidden = !(st.state === 'waiting' || st.state === 'failed');
    const say = () => {
      switch (st.state) {
        case 'connected': return 'connected';
        case 'connecting': return st.attempt ? `reconnecting (attempt ${st.attempt})…` : 'connecting…';
        case 'waiting': return `disconnected: ${st.reason ?? ''}; retrying in ${formatDuration(Math.max(0, ((st.retryAt ?? Date.now()) - Date.now()) / 1000))} (attempt ${st.attempt})`;
        case 'closed': return `closed: ${st.reason ?? ''}`;
        case 'failed': return `not connected: ${st.reason ?? ''}`;
        default: return st.state;
      }
    };
    text.textContent = say();
    if (st.state === 'waiting') countdown = setInterval(() => { text.textContent = say(); }, 250);
    if (st.state === 'closed') replace(banner, h('div', { class: 'notice', role: 'status' }, `This instance is gone (${st.reason ?? 'deleted'}). `, h('a', { href: '#/' }, 'Back to the instance list')));
    if (st.state === 'failed' && !banner.childElementCount) replace(banner, h('div', { class: 'notice', role: 'status' }, `The stream refused this page: ${st.reason ?? ''}. `, h('a', { href: '#/' }, 'Back to the instance list')));
  }
  retryButton.addEventListener('click', () => {
    replace(banner);
    stream.stopped ? stream.start() : stream.retry();
  });

  function showFacts() {
    if (!state) return;
    const s = config ? config : null;
    const inst = state.instance ?? {};
    title.textContent = `${inst.name ?? `Instance ${instanceId}`}`;
    facts.dataset.seq = String(state.seq);
    facts.dataset.generation = String(state.generation);
    facts.dataset.tick = String(state.tick);
    replace(facts,
      h('span', null, `id ${instanceId}`),
      inst.preset ? h('span', null, `preset ${inst.preset}`) : null,
      s ? h('span', null, `${formatBytes(physBytes(s.phys_avail))}, ${s.cpus} CPU${s.cpus === 1 ? '' : 's'}${sockets > 1 ? `, ${sockets} NUMA sockets` : ''}`) : null,
      h('span', { title: 'sequence number of the last kernel call included' }, `seq ${formatCount(state.seq)}`),
      h('span', { title: 'simulated clock ticks' }, `tick ${formatCount(state.tick)}`),
      h('span', { title: 'how many times the machine was reset' }, `generation ${state.generation}`),
      frames ? h('span', { title: 'how late the last frame arrived' }, `lag ${formatDuration(Math.max(0, lastFrameLag))}`) : null);
  }

  async function loadInstance() {
    try {
      const inst = await get(`/instances/${instanceId}`);
      config = inst.config;
      sockets = socketBands(config);
      heatmap.setCounts(state?.queues ?? /** @type {any} */ ({}), sockets);
      if (state) request('heatmap', heatmap.draw);
      consolePanel.refreshCtx();
      document.title = `${inst.name} · PageLab`;
      replace(headProblem);
      showFacts();
    } catch (e) {
      replace(headProblem, problemBox(e, `Reading instance ${instanceId}`));
    }
  }

  /** Units and help of the counters, for a server whose hello does not carry them. */
  async function loadFields() {
    try {
      const v = await get(`/instances/${instanceId}/vmstats`);
      chart.setFields(v.fields ?? {});
      counters.setFields(v.fields ?? {});
      if (state) counters.set(state.vmstats);
    } catch {
      // the counters still show their values; the units come with the next hello
    }
  }

  /** @param {string} fn @param {any[]} kernelEvents @param {number | null} seq */
  function showProbes(fn, kernelEvents, seq) {
    const p = allocProbes(kernelEvents);
    if (!p) return;
    heatmap.setProbes({ ...p, fn, seq: seq ?? state?.seq });
    request('heatmap', heatmap.draw);
  }

  /** @param {string} type @param {number} colour */
  async function listQueue(type, colour) {
    replace(queueList, h('p', { class: 'muted small' }, `Reading ${type}:${colour}…`));
    try {
      const q = await get(`/instances/${instanceId}/queues/${type}/${colour}?limit=200`);
      const pages = Array.isArray(q.pages) ? q.pages : [];
      replace(queueList,
        h('div', { class: 'row' },
          h('b', { class: 'mono' }, q.queue ?? `${type}:${colour}`),
          h('span', null, `${formatCount(q.lcnt)} page${q.lcnt === 1 ? '' : 's'}`),
          h('span', { class: 'muted small' }, `adds ${formatCount(q.adds)} · lastq ${q.lastq}`),
          pages.length < q.lcnt ? h('span', { class: 'muted small' }, `(first ${pages.length} shown, head → tail)`) : h('span', { class: 'muted small' }, 'head → tail'),
          h('button', { type: 'button', class: 'small', onclick: () => replace(queueList), 'aria-label': 'Close the page list' }, 'Close')),
        pages.length
          ? h('div', { class: 'pfn-list', role: 'list', 'aria-label': `Pages on ${type}:${colour}`, dataset: { queue: `${type}:${colour}` } },
            pages.map((/** @type {number} */ pfn) => h('button', { type: 'button', class: 'small mono', role: 'listitem', dataset: { pfn: String(pfn) }, onclick: () => inspect(pfn), 'aria-label': `Inspect page ${pfn}` }, String(pfn))))
          : h('p', { class: 'muted small' }, 'This queue is empty.'));
    } catch (e) {
      replace(queueList, problemBox(e, `Listing ${type}:${colour}`));
    }
  }

  /** @param {number} pfn */
  function inspect(pfn) {
    tabs.select('inspector');
    inspector.open(pfn);
  }

  resetButton.addEventListener('click', async () => {
    resetButton.disabled = true;
    try {
      await post(`/instances/${instanceId}/reset`);
      replace(headProblem);
    } catch (e) {
      replace(headProblem, problemBox(e, 'Resetting'));
    } finally {
      resetButton.disabled = false;
    }
  });

  const offTheme = onThemeChange(() => {
    request('heatmap', heatmap.draw);
    request('pagemap', pagemap.draw);
    request('timeline-strip', timeline.draw);
    chart.rebuild();
  });

  // test hooks: read what the views draw, never pixels
  exposeHooks({
    instanceId,
    get state() { return state; },
    heatmap: heatmap.hooks,
    pagemap: pagemap.hooks,
    chart: chart.hooks,
    inspector: inspector.hooks,
    console: consolePanel.hooks,
    events: events.hooks,
    workloads: workloads.hooks,
    timeline: timeline.hooks,
    stream: { get status() { return stream.status; } },
    drawStats: () => Object.fromEntries(coalescer.stats),
  });

  loadInstance();
  stream.start();

  return () => {
    stream.stop();
    if (countdown) clearInterval(countdown);
    offTheme();
    heatmap.destroy();
    pagemap.destroy();
    chart.destroy();
    workloads.destroy();
    timeline.destroy();
    document.getElementById('conn-slot')?.replaceChildren();
    document.title = 'PageLab';
    for (const k of ['instanceId', 'state', 'heatmap', 'pagemap', 'chart', 'inspector', 'console', 'events', 'workloads', 'timeline', 'stream', 'drawStats']) delete hooks[k];
    hooks.connection = 'idle';
  };
}
