"""The instance host boundary: what the lab asks of the machines it hosts.

The lab (journal, quotas, accounts, streams, workload scheduling) never touches a
``Machine``: it names one by a *key*, ``(instance id, generation)``, and asks its host to
boot, load, call, slice a batch, read a view or a stream frame, digest, capture or drop
it.  Everything crossing the boundary is plain data (numbers, strings, dicts, lists,
bytes, ``CallResult``, ``snapshot.Capture``), so the same questions are answered by a
machine in this process, in a worker process, or in a Ray actor on another host
(``docs/placements.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, overload

import msgspec

from app.core.config import MachineConfig
from app.core.errors import (
    ConfigError,
    InvalidArgument,
    KernelPanic,
    SimulatorRefusal,
    WouldSleep,
)
from app.core.machine import CallResult
from app.core.snapshot import Capture, SnapshotError

#: A hosted machine: (instance id, generation).  A reset or restore boots the next
#: generation next to the old one, then drops the old.
Key = tuple[int, int]


@dataclass
class Ctx:
    """Where a call runs: CPU, simulated thread, nice, P_LOWMEMKILL, TDF_SYSTHREAD."""

    cpu: int = 0
    thread: int | None = None
    nice: int = 0
    lowmemkill: bool = False
    systhread: bool = False

    def compact(self) -> dict[str, Any]:
        """The fields that differ from the defaults (the CPU always)."""
        if self.thread is None and not self.nice and not self.lowmemkill and not self.systhread:
            return {"cpu": self.cpu}
        out: dict[str, Any] = {"cpu": self.cpu}
        if self.thread is not None:
            out["thread"] = self.thread
        if self.nice:
            out["nice"] = self.nice
        if self.lowmemkill:
            out["lowmemkill"] = True
        if self.systhread:
            out["systhread"] = True
        return out

    @classmethod
    def of(cls, ctx: dict[str, Any]) -> Ctx:
        """A context from its compact form (a journal entry's, a workload's)."""
        return cls(
            cpu=ctx.get("cpu", 0),
            thread=ctx.get("thread"),
            nice=ctx.get("nice", 0),
            lowmemkill=bool(ctx.get("lowmemkill", False)),
            systhread=bool(ctx.get("systhread", False)),
        )


#: A call to make: function, arguments, context.
Call = tuple[str, dict[str, Any], Ctx]


class FormCalls(Sequence[Call]):
    """The calls of a compact batch, each built when it is read (a 200 000-call batch
    never holds 200 000 argument dicts before its slices run): call ``k`` is form
    ``forms[fn[k]]`` (function, argument names, context) with the values ``args[k]``."""

    def __init__(
        self, forms: list[tuple[str, tuple[str, ...], Ctx]], fn: list[int], args: list[list[Any]]
    ) -> None:
        self.forms = forms
        self.fn = fn
        self.args = args
        #: the host's plan of each form (``shard.FormPlan``), made when a slice first
        #: runs one of its calls
        self.plans: list[Any] = [None] * len(forms)

    def __len__(self) -> int:
        return len(self.fn)

    @overload
    def __getitem__(self, k: int) -> Call: ...

    @overload
    def __getitem__(self, k: slice) -> FormCalls: ...

    def __getitem__(self, k: int | slice) -> Call | FormCalls:
        if isinstance(k, slice):  # the same forms, a part of the columns
            return FormCalls(self.forms, self.fn[k], self.args[k])
        name, names, ctx = self.forms[self.fn[k]]
        return name, dict(zip(names, self.args[k], strict=True)), ctx


_pack = msgspec.msgpack.Encoder()
_unpack = msgspec.msgpack.Decoder(tuple[list[int], list[list[Any]]])


class PackedCalls:
    """A compact batch's slice on its way to another process: its forms as they are and
    its two columns as one msgpack message, which costs the lab's process a small
    fraction of pickling them row by row (the host unpacks it: ``unpack``).  Values come
    out as JSON would give them (a tuple as a list)."""

    __slots__ = ("data", "forms")

    def __init__(self, forms: list[tuple[str, tuple[str, ...], Ctx]], data: bytes) -> None:
        self.forms = forms
        self.data = data

    @classmethod
    def of(cls, calls: FormCalls) -> PackedCalls | FormCalls:
        """``calls`` packed; as they are when a value has no msgpack form (an integer
        past 64 bits, an object): then they are pickled."""
        try:
            return cls(calls.forms, _pack.encode((calls.fn, calls.args)))
        except (TypeError, OverflowError, msgspec.EncodeError):
            return calls

    def unpack(self) -> FormCalls:
        fn, args = _unpack.decode(self.data)
        return FormCalls(self.forms, fn, args)

    def __reduce__(self) -> tuple[Any, ...]:
        return (PackedCalls, (self.forms, self.data))


class Refusal(Exception):
    """A call the host refused before it reached the machine (so it gets no seq): an
    unknown function (``unknown-function``) or a thread asleep in an earlier call
    (``conflict``).  The lab turns it into its ``LabError``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(kind, message)
        self.kind = kind
        self.message = message

    def __str__(self) -> str:
        return self.message


#: What one call of a batch or workload came to: its result, or the error that refused it.
Outcome = CallResult | Exception


@dataclass(slots=True)
class Started:
    """A machine booted or loaded: ``reason`` says why a snapshot was not usable (then
    nothing was installed under the key)."""

    reason: str | None
    page_range: int = 0
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class CallReply:
    """One call's outcome; ``done`` is its thread's outcome when it blocked and was
    resumed before the call returned; ``resolved`` the outcomes of the threads the lab
    waits for that have finished (``_thread_outcome``)."""

    outcome: Outcome
    done: dict[str, Any] | None = None
    resolved: dict[int, dict[str, Any]] = field(default_factory=dict)


@dataclass(slots=True)
class SliceReply:
    """A slice of a batch: calls ``start`` to ``start + ran``, in columns (cheap to send
    between processes): each call's result (None when refused), and by position in the
    slice the calls that blocked (``blocked``) and the errors that refused the others
    (``errors``); with records asked for, each call's record (None when refused).
    ``stopped`` when ``stop_on_error`` stopped the batch."""

    ran: int
    results: list[Any]
    blocked: dict[int, dict[str, Any]] = field(default_factory=dict)
    errors: dict[int, Exception] = field(default_factory=dict)
    records: list[dict[str, Any] | None] | None = None
    stopped: bool = False
    resolved: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: in the lab's own process, each call's arguments as the shard built them from a
    #: compact batch's columns (the lab's journal entries reuse them)
    args: list[dict[str, Any]] | None = None


@dataclass(slots=True)
class WorkloadReply:
    """A slice of a workload: the calls it made (function, arguments, context) and their
    outcomes; ``done`` when the workload finished; its stats after the slice."""

    calls: list[tuple[str, dict[str, Any], dict[str, Any]]]
    outcomes: list[Outcome]
    done: bool
    stats: dict[str, Any]
    by_fn: dict[str, int]
    active_s: float
    resolved: dict[int, dict[str, Any]] = field(default_factory=dict)


class HostLost(Exception):
    """The host process or actor holding ``shard`` died while answering: its machines
    are gone (the lab rebuilds them from the journal and snapshots)."""

    def __init__(self, shard: int, reason: str) -> None:
        super().__init__(f"instance host {shard} was lost: {reason}")
        self.shard = shard
        self.reason = reason


class UnknownKey(Exception):
    """The host does not hold that machine (it restarted, or the key was dropped)."""


class InstanceHost(Protocol):
    """Where machines live.  Calls on one key are made one at a time (the lab holds the
    instance's lock); calls on different keys may overlap."""

    name: str

    def shard_of(self, iid: int) -> int:
        """The shard (worker, actor) that holds instance ``iid``'s machines."""
        ...

    def epoch(self, shard: int) -> int:
        """How many times the shard's process was (re)started: a machine loaded in an
        earlier epoch is gone."""
        ...

    async def start(
        self,
        key: Key,
        config: MachineConfig,
        data: bytes | None = None,
        *,
        verify: bool = True,
        digest: str | None = None,
    ) -> Started:
        """Install a machine under ``key``: a boot of ``config`` or, with ``data``, a
        loaded snapshot.  With ``digest`` the loaded machine must have that state digest
        and ``config``, else ``Started.reason`` says why and nothing is installed."""
        ...

    async def replay(self, key: Key, entries: Sequence[Any]) -> int:
        """Run journal entries (``fn``, ``args``, ``ctx``) in order; the refused count."""
        ...

    async def call(
        self,
        key: Key,
        fn: str,
        args: dict[str, Any],
        ctx: Ctx,
        record: bool,
        seq: int,
        waiting: tuple[int, ...] = (),
    ) -> CallReply:
        """Run one call.  ``seq`` is the lab's seq of the instance's last call: the call
        gets the next one if it reaches the machine (the busy holders behind its
        explanations note it: ``explain.BusyHolders``)."""
        ...

    async def slice(
        self,
        key: Key,
        calls: Sequence[Call],
        start: int,
        record: bool,
        stop_on_error: bool,
        seq: int,
        waiting: tuple[int, ...] = (),
    ) -> SliceReply:
        """Run ``calls[start:]`` for at most ``BATCH_SLICE_S`` (a batch's slice); ``seq``
        as for ``call``: each call that reaches the machine takes the next one."""
        ...

    async def workload_start(
        self, key: Key, wid: int, kind: str, params: dict[str, Any] | None, seed: int
    ) -> dict[str, Any]:
        """Create workload ``wid`` next to the machine; its parameters (defaults filled
        in).  ``ValueError`` for bad parameters."""
        ...

    async def workload_slice(
        self, key: Key, wid: int, limit: int, record: bool, seq: int, waiting: tuple[int, ...] = ()
    ) -> WorkloadReply:
        """Up to ``limit`` steps of workload ``wid``; ``seq`` as for ``slice``."""
        ...

    async def workload_drop(self, key: Key, wid: int) -> None: ...

    async def view(self, key: Key, name: str, kwargs: dict[str, Any]) -> Any:
        """A named view (``app.lab.hosts.shard.VIEWS``) of the machine."""
        ...

    async def frame(self, key: Key, request: dict[str, Any]) -> dict[str, Any]:
        """What one stream tick needs from the machine (``shard.frame_material``)."""
        ...

    async def digest(self, key: Key) -> str: ...

    async def capture(self, key: Key, busy_ok: bool = True) -> Capture | str:
        """The machine's state copied out (a summary and its page range in the header's
        ``extra``), or why it cannot be (a thread sleeps in a call)."""
        ...

    async def full_record(
        self,
        config: MachineConfig,
        base: bytes | None,
        near: bytes | None,
        near_seq: int,
        entries: Sequence[Any],
        shard: int,
    ) -> tuple[dict[str, Any], int]:
        """The full record of ``entries[-1]``: a second machine (on ``shard``) from
        ``near`` (a snapshot after entry ``near_seq``, else ``base`` or a boot), the
        entries before it replayed, then it run with its record on.  Also the count
        replayed."""
        ...

    async def drop(self, key: Key) -> None: ...

    async def close(self) -> None: ...

    def load(self) -> dict[str, Any]:
        """Per-shard figures for operators (machines held, calls served)."""
        ...


# ---------------------------------------------------------------- errors across processes
_ERRORS: dict[str, type[Exception]] = {
    cls.__name__: cls
    for cls in (
        KernelPanic,
        SimulatorRefusal,
        WouldSleep,
        InvalidArgument,
        ConfigError,
        SnapshotError,
        UnknownKey,
        ValueError,
    )
}


@dataclass(frozen=True, slots=True)
class PortableError:
    """A core error as plain data: the core's errors take their fields as constructor
    arguments, which pickle does not give back, so they travel as their class name and
    fields and are raised again on the lab's side (``revive_error``)."""

    cls: str
    fields: tuple[Any, ...]


def portable(e: Exception) -> PortableError | Exception:
    """``e`` ready to cross a process boundary."""
    if isinstance(e, Refusal | HostLost):
        return e
    if isinstance(e, KernelPanic | SimulatorRefusal):
        return PortableError(type(e).__name__, (e.function, e.message))
    if isinstance(e, WouldSleep):
        return PortableError("WouldSleep", (e.function, e.channel, e.message))
    if type(e) is InvalidArgument:  # its problem kind travels too (no-such-page, ...)
        return PortableError("InvalidArgument", (str(e), e.kind))
    name = type(e).__name__
    if name in _ERRORS:
        return PortableError(name, (str(e),))
    return PortableError("RuntimeError", (f"{name}: {e}",))


def revive_error(p: PortableError) -> Exception:
    """The exception a ``PortableError`` stands for."""
    cls = _ERRORS.get(p.cls, RuntimeError)
    return cls(*p.fields)


__all__ = [
    "Call",
    "FormCalls",
    "CallReply",
    "Ctx",
    "HostLost",
    "InstanceHost",
    "Key",
    "Outcome",
    "PackedCalls",
    "PortableError",
    "Refusal",
    "SliceReply",
    "Started",
    "UnknownKey",
    "WorkloadReply",
    "portable",
    "revive_error",
]
