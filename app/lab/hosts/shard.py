"""A shard: the machines one host process (or actor) holds, and everything done to them.

``Shard`` is synchronous and knows nothing of asyncio or the journal: each placement
runs the same ``Shard`` — in the lab's process (``InProcessHost``), in a worker process
(``WorkerHost``) or in a Ray actor (``RayHost``) — and only the way a question reaches it
differs.  With ``portable`` (another process) the core's errors in its answers are
turned into ``PortableError``s, which survive pickling.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from app.core import snapshot
from app.core.calls import object_by_id, page_index
from app.core.ddb import ddb_command
from app.core.errors import (
    InvalidArgument,
    WouldSleep,
    did_you_mean,
)
from app.core.machine import CallResult, Machine
from app.core.registry import REGISTRY
from app.core.sysctl import sysctl_get, sysctl_list
from app.core.vm_page2 import pfn_of

from .. import machine_views as mv
from .. import views
from ..explain import (
    BusyHolders,
    annotate,
    explain_call,
    holder_fields,
    holder_plan,
    precall,
    sleep_why,
)
from ..pagemap import pagemap
from ..workloads import CORE_ERRORS, WORKLOADS, Workload, outcome_of
from .base import (
    Call,
    CallReply,
    Ctx,
    FormCalls,
    Key,
    Outcome,
    PackedCalls,
    PortableError,
    Refusal,
    SliceReply,
    Started,
    UnknownKey,
    WorkloadReply,
)
from .base import (
    portable as to_portable,
)

#: Longest a slice of a batch runs before the lab lets other requests in.
BATCH_SLICE_S = 0.010
#: Longest a workload's slice runs.
WORKLOAD_SLICE_S = 0.010


def run_entry(m: Machine, e: Any, record: bool = False) -> CallResult:
    """Run one journalled call on ``m`` in the context it ran in (CPU, thread, nice)."""
    ctx = e.ctx
    return m.call(
        e.fn,
        e.args,
        cpu=ctx.get("cpu", 0),
        thread=ctx.get("thread"),
        nice=ctx.get("nice", 0),
        lowmemkill=bool(ctx.get("lowmemkill", False)),
        systhread=bool(ctx.get("systhread", False)),
        record=record,
    )


#: The key of a journalled result that records a refusal: a call the core refused with
#: ``WouldSleep`` after it had changed the machine (``errors.WouldSleep``: what the kernel
#: did before it would hang stays done).  Such a call is journalled with
#: ``{REFUSED: problem}`` as its result, so that a replay makes the same changes.
REFUSED = "refused"


def refused_result(problem: dict[str, Any]) -> dict[str, Any]:
    """The journalled result of a call refused with ``WouldSleep`` (``problem`` as
    ``problem_of`` describes it)."""
    return {REFUSED: problem}


def expects_refusal(e: Any, err: Exception) -> bool:
    """Is ``err`` the refusal that journal entry ``e`` recorded (``refused_result``)?"""
    r = e.result
    return (
        isinstance(err, WouldSleep)
        and isinstance(r, dict)
        and isinstance(r.get(REFUSED), dict)
        and r[REFUSED].get("type") == "would-sleep"
    )


def replay_onto(m: Machine, entries: Sequence[Any], holders: BusyHolders | None = None) -> int:
    """Run ``entries`` in order on ``m``; how many were refused unexpectedly.  Only
    accepted calls and calls refused with ``WouldSleep`` (marked: ``refused_result``) are
    journalled, so no other refusal should happen: one that does means the journal and
    the core disagree (the lab logs the count).  With ``holders``, the busy holders are
    noted as the calls ran the first time (each under its journalled seq), so a rebuilt
    machine names the same holders as before."""
    refused = 0
    for e in entries:
        pages = holders.before(m, e.fn, e.args) if holders is not None else []
        try:
            result = run_entry(m, e)
        except CORE_ERRORS as err:
            if not expects_refusal(e, err):
                refused += 1
            continue
        if holders is not None:
            explain_call(m, holders, e.fn, pages, result, e.seq)
    return refused


def unknown_function(fn: str) -> str:
    """The detail of an ``unknown-function`` problem, with the closest names."""
    return (
        f"there is no kernel function named {fn!r}{did_you_mean(fn, REGISTRY)} "
        "(GET /api/v1/functions lists them)"
    )


def thread_outcome(m: Machine, tid: int) -> dict[str, Any] | None:
    """How the call thread ``tid`` slept in ended, once it has: its result or error,
    and ``timed_out``: whether its last sleep ended by its own timeout (ticks passed)
    rather than a wakeup.  None while it still sleeps."""
    th = m.sched.threads.get(tid)
    if th is None or th.state != "idle":
        return None
    if th.last_error is not None:
        return {
            "thread": tid,
            "fn": th.last_fn,
            "error": th.last_error,
            "timed_out": th.timed_out,
        }
    return {"thread": tid, "fn": th.last_fn, "result": th.last_result, "timed_out": th.timed_out}


def parked_reason(m: Machine, fn: str, ctx: Ctx, holders: BusyHolders) -> str | None:
    """Why the call cannot run now if its thread is parked (asleep in an earlier call):
    a conflict with the machine's state (409), not a malformed request, explained by
    ``explain.sleep_why`` (a self-deadlock said plainly, a timeout only if there is one).
    Simulator verbs (``tick``, ``wakeup``, ``sysctl``, ``ddb``) run outside threads and
    are never parked."""
    if not REGISTRY[fn].on_thread:
        return None
    tid = ctx.cpu if ctx.thread is None else ctx.thread
    th = m.sched.threads.get(tid)
    if th is None or th.state == "idle":
        return None
    return sleep_why(m, holders, tid)


# ---------------------------------------------------------------- views by name
def _objects(m: Machine) -> list[dict[str, Any]]:
    return [
        {
            "id": o.id,
            "addr": o.addr,
            "type": o.type.name,
            "size": o.size,
            "pg_color": o.pg_color,
            "ref_count": o.ref_count,
            "generation": o.generation,
            "resident_page_count": o.resident_page_count,
            "flags": o.flags,
        }
        for o in m.vmobj.objects.values()
    ]


def _object(m: Machine, object_id: int) -> dict[str, Any]:
    o = object_by_id(m, object_id)
    return {
        "id": o.id,
        "addr": o.addr,
        "type": o.type.name,
        "size": o.size,
        "pg_color": o.pg_color,
        "resident_page_count": o.resident_page_count,
        "pages": [{"pindex": p, "pfn": pfn_of(m, i)} for p, i in sorted(o.pages.items())],
    }


def _pfns_valid(m: Machine, pfns: list[int]) -> bool:
    for pfn in pfns:
        page_index(m, pfn, "pfn")  # InvalidArgument for a pfn the machine does not manage
    return True


def page_with_holder(m: Machine, holders: BusyHolders | None, pfn: int) -> dict[str, Any]:
    """The page view with ``busy.holder``: who took its hard busy, as the lab saw it."""
    out = views.page_view(m, pfn)
    out["busy"]["holder"] = holder_fields(m, holders, pfn) if holders is not None else None
    return out


#: The views the API and the stream read, by name: each takes the machine and keyword
#: arguments and returns plain data (``InvalidArgument`` for a thing it does not have).
VIEWS: dict[str, Callable[..., Any]] = {
    "summary": mv.summary,
    "page": lambda m, pfn: page_with_holder(m, None, pfn),  # Shard.view passes holders
    "pfns_valid": _pfns_valid,
    "queues": views.queues_view,
    "queue": lambda m, queue, offset, limit: mv.queue_info(m, queue, offset, limit),
    "vmstats": views.vmstats_view,
    "objects": _objects,
    "object": _object,
    "threads": views.threads_view,
    "pagemap": pagemap,
    "dma": mv.dma_alist_view,
    "pageout": views.pageout_view,
    "topology": views.topology_view,
    "console": views.console_view,
    "sysctls": sysctl_list,
    "sysctl": sysctl_get,
    "ddb": ddb_command,
    "invariants": lambda m: m.check_invariants(),
}


def frame_material(
    m: Machine, request: dict[str, Any], holders: BusyHolders | None = None
) -> dict[str, Any]:
    """Everything one stream tick reads from a machine (plain data; encoding happens
    in the lab): ``request`` names the topics wanted, whether a hello needs the
    summary, the pfns watched and the pagemap parameters.  The page topic is the view
    the API answers (``page_with_holder``: the machine's ``holders`` name who holds a
    page busy)."""
    wanted: set[str] = set(request["wanted"])
    out: dict[str, Any] = {"tick": m.sched.ticks}
    if "vmstats" in wanted:
        out["vmstats"] = views.vmstats_view(m)
    if "queues" in wanted:
        out["queues"] = np.asarray(m.pq.lcnt, dtype=np.int64)
    if "threads" in wanted:
        out["threads"] = views.threads_view(m)
    if "pageout" in wanted:
        out["pageout"] = views.pageout_view(m)
    if request.get("summary"):
        out["summary"] = mv.summary(m)
    if "pages" in wanted:
        pages: dict[int, dict[str, Any] | None] = {}
        for pfn in request.get("pfns", ()):
            try:
                pages[pfn] = page_with_holder(m, holders, pfn)
            except InvalidArgument:
                pages[pfn] = None
        out["pages"] = pages
    if "pagemap" in wanted:
        maps: dict[tuple[int | None, int | None, int], Any] = {}
        for params in request.get("pagemaps", ()):
            lo, hi, width = params
            try:
                maps[params] = pagemap(m, lo, hi, width)
            except InvalidArgument as e:
                maps[params] = {"error": str(e)}
        out["pagemaps"] = maps
    return out


def _row_reader(names: tuple[str, ...]) -> Callable[[Sequence[Any]], dict[str, Any]]:
    """A row of values as the argument dict of a form naming ``names`` (a row of another
    length is a ``ValueError``, as ``zip(strict=True)`` says it)."""
    if len(names) == 0:

        def none(row: Sequence[Any]) -> dict[str, Any]:
            () = row
            return {}

        return none
    if len(names) == 1:
        (n0,) = names

        def one(row: Sequence[Any]) -> dict[str, Any]:
            (v0,) = row
            return {n0: v0}

        return one
    if len(names) == 2:
        n0, n1 = names

        def two(row: Sequence[Any]) -> dict[str, Any]:
            v0, v1 = row
            return {n0: v0, n1: v1}

        return two
    if len(names) == 3:
        n0, n1, n2 = names

        def three(row: Sequence[Any]) -> dict[str, Any]:
            v0, v1, v2 = row
            return {n0: v0, n1: v1, n2: v2}

        return three

    def many(row: Sequence[Any]) -> dict[str, Any]:
        return dict(zip(names, row, strict=True))

    return many


#: The page arguments of a call that has none (shared: never changed).
_NO_PAGES: list[tuple[int, bool]] = []


class FormPlan(NamedTuple):
    """What ``Shard.one`` looks up for each call, looked up once for a compact batch's
    form: its function (``fn``, as sent), how a row becomes its argument dict
    (``args``), the thread it runs on (``tid``: -1 for a simulator verb, which runs on
    none; -2 for a function the registry does not have), how the busy holders follow it
    (``explain.holder_plan``: the positions of its page arguments, whether it may return
    a page it busied) and its context as ``Machine.call``'s keywords (None: the
    defaults, CPU 0 on its own thread)."""

    fn: str
    args: Callable[[Sequence[Any]], dict[str, Any]]
    tid: int
    pages: tuple[int, ...]
    busies: bool
    where: dict[str, Any] | None
    ctx: Ctx

    @classmethod
    def of(cls, fn: str, names: tuple[str, ...], ctx: Ctx) -> FormPlan:
        spec = REGISTRY.get(fn)
        if spec is None:
            tid = -2
        elif not spec.on_thread:
            tid = -1
        else:
            tid = ctx.cpu if ctx.thread is None else ctx.thread
        pages, busies = holder_plan(fn, names)
        where: dict[str, Any] | None = {
            "cpu": ctx.cpu,
            "thread": ctx.thread,
            "nice": ctx.nice,
            "systhread": ctx.systhread,
            "lowmemkill": ctx.lowmemkill,
        }
        if ctx == Ctx():
            where = None
        return cls(fn, _row_reader(names), tid, pages, busies, where, ctx)


class Shard:
    """The machines of one host, by key, and the workloads that run on them."""

    def __init__(self, portable: bool = False) -> None:
        self.machines: dict[Key, Machine] = {}
        #: per machine, which thread took each page's hard busy (``explain.BusyHolders``):
        #: kept next to the machine, started empty with it (a boot, a load, a rebuild)
        self.holders: dict[Key, BusyHolders] = {}
        self.workloads: dict[int, tuple[Key, Workload]] = {}
        self.portable = portable
        #: calls served (per-host load, for operators)
        self.calls = 0

    def machine(self, key: Key) -> Machine:
        m = self.machines.get(key)
        if m is None:
            raise UnknownKey(f"this host holds no machine {key[0]}.{key[1]}")
        return m

    def _err(self, e: Exception) -> Exception:
        """``e`` as it may travel (a ``_Carried`` core error in a portable shard)."""
        if self.portable and not isinstance(e, Refusal):
            p = to_portable(e)
            return _Carried(p) if isinstance(p, PortableError) else p
        return e

    # ------------------------------------------------------------ lifecycle
    def start(
        self,
        key: Key,
        config: Any,
        data: bytes | None = None,
        verify: bool = True,
        digest: str | None = None,
    ) -> Started:
        held: Any = None
        if data is None:
            m = Machine.boot(config)
        else:
            try:
                m = snapshot.load(data, verify=verify)
                header = snapshot.read_header(data)
                if digest is not None:
                    got = m.state_digest()
                    if m.config != config:
                        return Started("its configuration is not the instance's")
                    if got != digest:
                        return Started(f"its machine's digest {got} is not the stored {digest}")
                    if got != header["digest"]:
                        return Started("its machine's digest is not the one its header records")
            except snapshot.SnapshotError as e:
                return Started(str(e))
            # the busy holders it was taken with (``capture``): the calls before it are
            # not replayed
            extra = header.get("extra")
            held = extra.get("busy_holders") if isinstance(extra, dict) else None
        self.machines[key] = m
        self.holders[key] = BusyHolders.from_json(held)
        return Started(None, m.page_range, mv.summary(m))

    def replay(self, key: Key, entries: Sequence[Any]) -> int:
        refused = replay_onto(self.machine(key), entries, self.holders[key])
        self.calls += len(entries)
        return refused

    def drop(self, key: Key) -> None:
        self.machines.pop(key, None)
        self.holders.pop(key, None)
        for wid in [w for w, (k, _) in self.workloads.items() if k == key]:
            del self.workloads[wid]

    def full_record(
        self,
        config: Any,
        base: bytes | None,
        near: bytes | None,
        near_seq: int,
        entries: Sequence[Any],
    ) -> tuple[dict[str, Any], int]:
        """The full record of ``entries[-1]`` on a second machine: from ``near`` (a
        snapshot after entry ``near_seq``) when it loads, else ``base`` or a boot, with the
        entries before the call replayed.  Also how many were replayed."""
        before, last = entries[:-1], entries[-1]
        m: Machine | None = None
        if near is not None:
            try:
                m = snapshot.load(near)
            except snapshot.SnapshotError:
                m = None
            else:
                before = [e for e in before if e.seq > near_seq]
        if m is None:
            m = Machine.boot(config) if base is None else snapshot.load(base)
        replay_onto(m, before)
        return run_entry(m, last, record=True).record, len(before)

    # ------------------------------------------------------------ calls
    def _resolved(self, m: Machine, waiting: tuple[int, ...]) -> dict[int, dict[str, Any]]:
        out = {}
        for tid in waiting:
            done = thread_outcome(m, tid)
            if done is not None:
                out[tid] = done
        return out

    def one(
        self,
        m: Machine,
        holders: BusyHolders,
        fn: str,
        args: dict[str, Any],
        ctx: Ctx,
        record: bool,
        seq: int,
    ) -> Outcome:
        """One call, refused (``Refusal``) before it reaches the machine when the
        function is unknown or its thread is asleep (the 409 says why: ``sleep_why``).
        ``seq`` is the seq the lab gives the call if it reaches the machine: the busy
        holders note it, and a call that parks its thread gets ``blocked.why``."""
        if fn not in REGISTRY:
            return Refusal("unknown-function", unknown_function(fn))
        parked = parked_reason(m, fn, ctx, holders)
        if parked is not None:
            return Refusal("conflict", parked)
        pages = holders.before(m, fn, args)
        pre = precall(m, fn, ctx.cpu, ctx.nice, ctx.thread) if record else None
        self.calls += 1
        try:
            result = m.call(
                fn,
                args,
                cpu=ctx.cpu,
                thread=ctx.thread,
                nice=ctx.nice,
                systhread=ctx.systhread,
                lowmemkill=ctx.lowmemkill,
                record=record,
            )
        except CORE_ERRORS as e:
            return e
        explain_call(m, holders, fn, pages, result, seq)
        if record:
            annotate(m, fn, args, result, pre)
        return result

    def call(
        self,
        key: Key,
        fn: str,
        args: dict[str, Any],
        ctx: Ctx,
        record: bool,
        seq: int,
        waiting: tuple[int, ...] = (),
    ) -> CallReply:
        """One call; ``seq`` is the lab's seq of the last call before it (the call gets
        the next one if it reaches the machine)."""
        m = self.machine(key)
        out = self.one(m, self.holders[key], fn, args, ctx, record, seq + 1)
        if self.portable and not isinstance(out, CallResult):
            out = self._err(out)
        done = None
        if isinstance(out, CallResult) and out.blocked is not None:
            # it may have been resumed before it returned (it woke the pageout daemon,
            # which woke it back): then it is complete
            done = thread_outcome(m, out.blocked["thread"])
        return CallReply(out, done, self._resolved(m, waiting) if waiting else {})

    def slice(
        self,
        key: Key,
        calls: Sequence[Call] | PackedCalls,
        start: int,
        record: bool,
        stop_on_error: bool,
        seq: int,
        waiting: tuple[int, ...] = (),
    ) -> SliceReply:
        """``calls[start:]`` for at most ``BATCH_SLICE_S``; ``seq`` is the lab's seq of
        the last call before the slice (each call that reaches the machine takes the
        next one, as the lab numbers them)."""
        m = self.machine(key)
        holders = self.holders[key]
        if isinstance(calls, PackedCalls):
            calls = calls.unpack()
        if isinstance(calls, FormCalls) and not record:
            return self._slice_forms(m, holders, calls, start, stop_on_error, seq, waiting)
        deadline = time.perf_counter() + BATCH_SLICE_S
        results: list[Any] = []
        blocked: dict[int, dict[str, Any]] = {}
        errors: dict[int, Exception] = {}
        records: list[dict[str, Any] | None] | None = [] if record else None
        one = self.one
        carry = self.portable
        built: list[dict[str, Any]] | None = (
            [] if not carry and isinstance(calls, FormCalls) else None
        )
        stopped = False
        k = start
        n = len(calls)
        while k < n:
            fn, args, ctx = calls[k]
            if built is not None:
                built.append(args)
            out = one(m, holders, fn, args, ctx, record, seq + 1)
            j = k - start
            k += 1
            if isinstance(out, CallResult):
                seq += 1
                results.append(out.result)
                if out.blocked is not None:
                    blocked[j] = out.blocked
                if records is not None:
                    records.append(out.record)
            else:
                if not isinstance(out, Refusal):
                    seq += 1
                results.append(None)
                errors[j] = self._err(out) if carry else out
                if records is not None:
                    records.append(None)
                if stop_on_error:
                    stopped = True
                    break
            if k % 16 == 0 and time.perf_counter() >= deadline:
                break
        return SliceReply(
            k - start,
            results,
            blocked,
            errors,
            records,
            stopped,
            self._resolved(m, waiting) if waiting else {},
            built,
        )

    def _slice_forms(
        self,
        m: Machine,
        holders: BusyHolders,
        calls: FormCalls,
        start: int,
        stop_on_error: bool,
        seq: int,
        waiting: tuple[int, ...],
    ) -> SliceReply:
        """``slice`` of a compact batch without records: what ``one`` looks up per call
        (the function, its context, the thread it runs on, the page arguments the busy
        holders follow) is looked up once per form (``FormPlan``), and each call's
        argument dict lives only while it runs (the lab rebuilds the few it needs: those
        of refused calls).  The same checks, kernel calls, holders and outcomes as
        ``one``, call by call; a call whose function is unknown or whose thread sleeps
        goes through ``one`` itself (its refusal says why)."""
        deadline = time.perf_counter() + BATCH_SLICE_S
        results: list[Any] = []
        blocked: dict[int, dict[str, Any]] = {}
        errors: dict[int, Exception] = {}
        carry = self.portable
        plans = calls.plans
        forms, fns, rows = calls.forms, calls.fn, calls.args
        threads = m.sched.threads
        call = m.call
        before, after = holders.before_row, holders.after
        append = results.append
        refused = 0  # calls ``one`` refused (the others reached the machine here)
        stopped = False
        k = start
        n = len(fns)
        while k < n:
            f = fns[k]
            plan = plans[f]
            if plan is None:
                plan = plans[f] = FormPlan.of(*forms[f])
            fn, args_of, tid, at, busies, where, ctx = plan
            row = rows[k]
            k += 1
            out: Exception
            if tid < -1 or (
                tid >= 0 and (th := threads.get(tid)) is not None and th.state != "idle"
            ):
                # an unknown function, or its thread is parked: ``one`` refuses it
                refusal = self.one(m, holders, fn, args_of(row), ctx, False, seq + 1)
                assert isinstance(refusal, Refusal), "one runs what the plan refuses"
                refused += 1
                out = refusal
            else:
                args = args_of(row)
                pages = before(m, row, at) if at else _NO_PAGES
                try:
                    if where is None:
                        result = call(fn, args, record=False)
                    else:
                        result = call(fn, args, record=False, **where)
                except CORE_ERRORS as e:
                    out = e
                else:
                    seq += 1
                    append(result.result)
                    if result.blocked is None:
                        if pages or busies:  # ``explain_call`` for a call that did not sleep
                            after(m, fn, pages, result, m.curthread.tid, seq)
                    else:
                        explain_call(m, holders, fn, pages, result, seq)
                        blocked[k - 1 - start] = result.blocked
                    if k % 16 == 0 and time.perf_counter() >= deadline:
                        break
                    continue
            if not isinstance(out, Refusal):
                seq += 1
            append(None)
            errors[k - 1 - start] = self._err(out) if carry else out
            if stop_on_error:
                stopped = True
                break
            if k % 16 == 0 and time.perf_counter() >= deadline:
                break
        self.calls += k - start - refused
        return SliceReply(
            k - start,
            results,
            blocked,
            errors,
            None,
            stopped,
            self._resolved(m, waiting) if waiting else {},
            None,
        )

    # ------------------------------------------------------------ workloads
    def workload_start(
        self, key: Key, wid: int, kind: str, params: dict[str, Any] | None, seed: int
    ) -> dict[str, Any]:
        spec = WORKLOADS[kind]
        w = spec.create(self.machine(key), params, seed)
        self.workloads[wid] = (key, w)
        return dict(w.params)

    def workload_drop(self, key: Key, wid: int) -> None:
        self.workloads.pop(wid, None)

    def workload_slice(
        self,
        key: Key,
        wid: int,
        limit: int,
        record: bool,
        seq: int,
        waiting: tuple[int, ...] = (),
    ) -> WorkloadReply:
        """Up to ``limit`` steps of workload ``wid`` (``WORKLOAD_SLICE_S`` at most);
        ``seq`` as for ``slice``."""
        m = self.machine(key)
        holders = self.holders[key]
        held = self.workloads.get(wid)
        if held is None or held[0] != key:
            raise UnknownKey(f"this host holds no workload {wid} (it restarted)")
        w = held[1]
        started = time.perf_counter()
        deadline = started + WORKLOAD_SLICE_S
        calls: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        outcomes: list[Outcome] = []
        done = False
        while len(calls) < limit:
            call = w.next_call(m)
            if call is None:
                done = True
                break
            fn, args, ctx_in = call
            out = self.one(m, holders, fn, args, Ctx.of(ctx_in), record, seq + 1)
            if not isinstance(out, Refusal):
                seq += 1
            if isinstance(out, CallResult):
                w.observe(fn, args, ctx_in, outcome_of(out))
            else:
                w.observe(fn, args, ctx_in, out)
                out = self._err(out)
            calls.append((fn, args, ctx_in))
            outcomes.append(out)
            if time.perf_counter() >= deadline:
                break
        return WorkloadReply(
            calls,
            outcomes,
            done,
            w.stats(),
            dict(w.by_fn),
            time.perf_counter() - started,
            self._resolved(m, waiting) if waiting else {},
        )

    # ------------------------------------------------------------ reading
    def view(self, key: Key, name: str, kwargs: dict[str, Any]) -> Any:
        m = self.machine(key)
        if name == "page":  # who took its hard busy: the holders kept with the machine
            return page_with_holder(m, self.holders.get(key), **kwargs)
        return VIEWS[name](m, **kwargs)

    def frame(self, key: Key, request: dict[str, Any]) -> dict[str, Any]:
        return frame_material(self.machine(key), request, self.holders.get(key))

    def digest(self, key: Key) -> str:
        return self.machine(key).state_digest()

    def page_range(self, key: Key) -> int:
        return self.machine(key).page_range

    def capture(self, key: Key, busy_ok: bool = True) -> snapshot.Capture | str:
        """The state copied out with a summary, page range and busy holders
        (``BusyHolders.to_json``: the calls before a snapshot are not replayed) riding in
        the header; why not when a thread sleeps in a call."""
        m = self.machine(key)
        reason = snapshot.busy_reason(m)
        if reason is not None:
            return reason
        extra = {
            "summary": mv.summary(m),
            "page_range": m.page_range,
            "busy_holders": self.holders[key].to_json(),
        }
        return snapshot.capture(m, extra=extra)


class _Carried(Exception):
    """A core error carried as plain data inside an answer (``Shard.portable``); the
    host's client raises the real one again (``app.lab.hosts.base.revive_error``)."""

    def __init__(self, error: PortableError) -> None:
        super().__init__(error)
        self.error = error


def revive_outcomes(outcomes: list[Outcome]) -> list[Outcome]:
    """Outcomes from another process with their core errors made real again."""
    from .base import revive_error

    for k, out in enumerate(outcomes):
        if isinstance(out, _Carried):
            outcomes[k] = revive_error(out.error)
    return outcomes


def revive_errors(errors: dict[int, Exception]) -> None:
    """``revive_outcomes`` for a slice's errors (by position)."""
    from .base import revive_error

    for k, e in errors.items():
        if isinstance(e, _Carried):
            errors[k] = revive_error(e.error)


__all__ = [
    "BATCH_SLICE_S",
    "CORE_ERRORS",
    "VIEWS",
    "Shard",
    "frame_material",
    "replay_onto",
    "revive_errors",
    "revive_outcomes",
    "run_entry",
    "thread_outcome",
]
