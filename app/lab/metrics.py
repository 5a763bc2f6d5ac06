"""What ``GET /metrics`` exposes about a lab (Prometheus; ``docs/operations.md``).

Each app has its own ``CollectorRegistry`` (``Metrics.registry``), never the process-wide
default one: a test process makes many apps, and two labs in one process must not add
up.  Two kinds of figures go into it:

* observed as they happen, with prometheus-client's own metric objects: journal commit
  latency (one observation per group commit, from the journal's thread) and quota
  refusals (rare);
* read from the lab when a scraper asks (``LabCollector``): kernel calls by function,
  instances, simulated pages by queue, stream viewers and what they were sent or lost,
  workloads, and the host's load.  The hot paths only bump plain counters they keep
  anyway (a kernel call costs a ``Counter`` increment under its instance's lock, not a
  labelled metric lookup), so a scrape costs the scraper, not the students.

The API layer adds its HTTP request metrics to the same registry (``app.api.observe``).
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Final

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from app.core.constants import PQ_HOLD, PQ_NAMES

from . import machine_views, views

if TYPE_CHECKING:
    from .service import Lab

#: the ``host`` label of the per-host figures: this process, the in-process placement
#: (a multi-host placement names each of its hosts instead)
IN_PROCESS_HOST: Final = "local"
#: the load figure is the call rate over at least this many seconds (between scrapes)
LOAD_WINDOW_S: Final = 10.0
#: queue states of ``pagelab_pages``, and the summary field each is read from
PAGE_STATES: Final = (
    ("free", "v_free_count"),
    ("cache", "v_cache_count"),
    ("inactive", "v_inactive_count"),
    ("active", "v_active_count"),
    ("wired", "v_wire_count"),
)
#: quotas and server caps whose refusals are counted (``pagelab_quota_refusals_total``)
QUOTAS: Final = (
    "instances",
    "pages_per_instance",
    "pages_total",
    "calls_per_s",
    "batch_size",
    "streams",
    "workloads",
    "max_instances",
    "max_workloads",
    "page_budget",
)


class Metrics:
    """One app's registry and the metrics observed as things happen."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.journal_commit = Histogram(
            "pagelab_journal_commit_seconds",
            "Time one group commit of the call journal took (write and sync)",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.quota_refusals = PromCounter(
            "pagelab_quota_refusals",
            "Requests refused by a user's quota or a server cap, by quota",
            ["quota"],
            registry=self.registry,
        )
        for quota in QUOTAS:  # every series exists from the start (0), as rate() wants
            self.quota_refusals.labels(quota)
        self._collector: LabCollector | None = None

    def refused(self, quota: str) -> None:
        """Count one refusal by ``quota`` (one of ``QUOTAS``)."""
        self.quota_refusals.labels(quota).inc()

    def attach(self, lab: Lab) -> None:
        """Read ``lab`` at every scrape from now on (one lab at a time)."""
        self.detach()
        self._collector = LabCollector(lab)
        self.registry.register(self._collector)

    def detach(self) -> None:
        if self._collector is not None:
            self.registry.unregister(self._collector)
            self._collector = None


class LoadMeter:
    """Kernel calls a second of this host over the last ``LOAD_WINDOW_S`` seconds or more:
    the total is sampled at each scrape, and the rate taken from the newest sample at
    least that old (the first scrape says 0)."""

    def __init__(self, window_s: float = LOAD_WINDOW_S) -> None:
        self.window_s = window_s
        self.samples: deque[tuple[float, int]] = deque(maxlen=1024)

    def rate(self, total: int, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        samples = self.samples
        samples.append((now, total))
        # keep one sample at least a window old, and those after it
        while len(samples) > 2 and now - samples[1][0] >= self.window_s:
            samples.popleft()
        then, before = samples[0]
        return (total - before) / (now - then) if now > then else 0.0


class LabCollector(Collector):
    """The lab's figures at scrape time (on the event loop: the scrape is a request).
    Machines are read without their locks: a few integers each, possibly a call apart."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.load = LoadMeter()

    def collect(self) -> Iterator[Metric]:
        lab = self.lab
        instances = list(lab.instances.values())
        ok: Counter[str] = Counter(lab.retired_calls)
        refused: Counter[str] = Counter(lab.retired_refusals)
        for inst in instances:
            # a batch in a worker thread may add a function meanwhile: dict() copies in
            # one step under the GIL, where iterating the Counter could see it change
            ok.update(dict(inst.calls_by_fn))
            refused.update(dict(inst.refused_by_fn))
        calls = CounterMetricFamily(
            "pagelab_kernel_calls",
            "Kernel calls run on the lab's machines (API, batches, workloads), by function; "
            "outcome refused: the kernel or the simulator refused it (nothing changed)",
            labels=["function", "outcome"],
        )
        for fn, n in sorted(ok.items()):
            calls.add_metric([fn, "ok"], n)
        for fn, n in sorted(refused.items()):
            calls.add_metric([fn, "refused"], n)
        yield calls

        live = [i for i in instances if i.parked is None]  # in a host, this process or not
        by_state = GaugeMetricFamily(
            "pagelab_instances", "Instances hosted, in memory (live) or parked", labels=["state"]
        )
        by_state.add_metric(["live"], len(live))
        by_state.add_metric(["parked"], len(instances) - len(live))
        yield by_state

        pages = GaugeMetricFamily(
            "pagelab_pages",
            "Simulated pages of every hosted machine by queue state (machines in worker "
            "processes or on Ray as of this scrape; hold: of the machines in this process "
            "only)",
            labels=["state"],
        )
        totals = dict.fromkeys([s for s, _ in PAGE_STATES] + ["hold"], 0)
        hold_queue = PQ_NAMES[PQ_HOLD]
        for inst in instances:
            m = inst.live
            summary = inst.parked.summary if inst.parked is not None else inst.remote_summary
            if m is not None:
                summary = machine_views.summary(m)
                totals["hold"] += sum(views.queues_view(m)[hold_queue])
            if summary is None:
                continue
            for state, field in PAGE_STATES:
                totals[state] += int(summary.get(field, 0))
        for state, n in totals.items():
            pages.add_metric([state], n)
        yield pages

        hub = lab.stream
        yield GaugeMetricFamily(
            "pagelab_stream_clients",
            "WebSocket viewers connected now",
            value=sum(1 for v in hub.viewers.values() if not v.closed),
        )
        yield CounterMetricFamily(
            "pagelab_stream_frames", "Frames sent to viewers", value=hub.frames_sent
        )
        yield CounterMetricFamily(
            "pagelab_stream_frames_built",
            "Frames built (once per group of viewers that get the same bytes)",
            value=hub.frames_built,
        )
        yield CounterMetricFamily(
            "pagelab_stream_frames_dropped",
            "Frames dropped from slow viewers' outboxes or skipped for lagging viewers",
            value=hub.frames_dropped,
        )
        yield CounterMetricFamily(
            "pagelab_stream_gaps",
            "Gap notices: runs of events a slow viewer did not get",
            value=hub.gaps,
        )
        yield CounterMetricFamily(
            "pagelab_stream_events_dropped",
            "Call events lost to gaps (summed over viewers)",
            value=hub.events_dropped,
        )
        yield CounterMetricFamily(
            "pagelab_stream_closed_slow",
            "Viewers closed (1013) for taking nothing for PAGELAB_STREAM_STUCK_AFTER_S",
            value=hub.closed_slow,
        )

        runs = GaugeMetricFamily(
            "pagelab_workloads", "Workloads running or paused now", labels=["state"]
        )
        states = Counter(r.state for inst in instances for r in inst.workloads.values())
        for state in ("running", "paused"):
            runs.add_metric([state], states[state])
        yield runs

        yield CounterMetricFamily(
            "pagelab_journal_replayed_calls",
            "Journal entries replayed to rebuild machines (start, revival, restore)",
            value=lab.replayed,
        )
        yield CounterMetricFamily(
            "pagelab_snapshots_saved", "Snapshots written to the store", value=lab.snapshots_saved
        )

        host = [IN_PROCESS_HOST]
        rate = GaugeMetricFamily(
            "pagelab_host_calls_per_second",
            f"Kernel calls a second on this host over the last {LOAD_WINDOW_S:g} s or more "
            "(between scrapes)",
            labels=["host"],
        )
        rate.add_metric(host, round(self.load.rate(ok.total() + refused.total()), 3))
        yield rate
        held = GaugeMetricFamily(
            "pagelab_host_instances", "Machines this host holds in memory", labels=["host"]
        )
        held.add_metric(host, len(live))
        yield held
        structs = GaugeMetricFamily(
            "pagelab_host_page_structs",
            "Page structures this host's machines hold (what PAGELAB_PAGE_BUDGET counts)",
            labels=["host"],
        )
        structs.add_metric(host, lab.pages_held())
        yield structs
