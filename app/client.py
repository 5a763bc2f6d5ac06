"""A small typed Python client for the PageLab HTTP API (``/api/v1``), built on httpx.

    from app.client import PageLabClient

    with PageLabClient("http://127.0.0.1:8000") as lab:
        pfn = lab.call(1, "vm_page_alloc", {"page_req": "VM_ALLOC_NORMAL"})["result"]
        print(lab.page(1, pfn)["queue"], lab.sysctl_get(1, "vm.v_free_min"))

``PageLabClient`` is synchronous; ``AsyncPageLabClient`` has the same methods as
coroutines.  Both take an optional httpx ``transport`` (e.g. ``httpx.ASGITransport`` for
the async client, to talk to an app in-process).

Every error the server answers (an RFC 9457 ``application/problem+json`` document, or
any other 4xx/5xx response) is raised as ``PageLabError`` with the status, the problem
type URI, title and detail.  Transport failures (connection refused, timeouts) are
httpx's own exceptions (``httpx.TransportError`` and subclasses), not wrapped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Generic, Literal, TypedDict, TypeVar, cast
from urllib.parse import quote

import httpx

__all__ = [
    "DEFAULT_TIMEOUT",
    "DEFAULT_URL",
    "AsyncPageLabClient",
    "BatchResponse",
    "CallResponse",
    "CompactBatchResponse",
    "InstanceRef",
    "PageLabClient",
    "PageLabError",
    "SysctlChange",
    "compact_batch",
    "seqs_of",
]

#: Where ``pagelab serve`` listens by default.
DEFAULT_URL = "http://127.0.0.1:8000"
#: Seconds an ordinary request may take (booting a large machine takes a while).
DEFAULT_TIMEOUT = 60.0
#: Extra seconds granted on top of ``timeout_s`` to a call that waits for a wakeup.
WAIT_SLACK = 10.0

API = "/api/v1"
T = TypeVar("T")
#: An instance as a path names it: its id (``42``), the name of one of yours (``"box"``)
#: or ``"owner:name"`` (``"ann:box"``).
InstanceRef = int | str


# ------------------------------------------------------------------ result types
class CallResponse(TypedDict):
    """What ``POST /instances/{id}/calls/{fn}`` returns."""

    fn: str
    #: the value returned (a pfn, ``None`` where the kernel returns NULL, a bool, bits ...)
    result: Any
    #: set when the call put its thread to sleep: thread, channel, wmesg, timo
    blocked: dict[str, Any] | None
    #: with ``wait=True``: the outcome once the thread finished (``timed_out`` in it: its
    #: sleep ended by its own timeout rather than a wakeup)
    completed: dict[str, Any] | None
    #: with ``wait=True`` and a call that slept: True when the wait ended with the thread
    #: still asleep (``wait_note`` says more), False when it saw the thread finish
    timed_out: bool | None
    #: what the call changed (moves, counters, events), unless ``record=False``
    record: dict[str, Any] | None


class BatchResponse(TypedDict):
    """What ``POST /instances/{id}/calls`` returns."""

    results: list[dict[str, Any]]
    completed: int
    errors: int
    state_digest: str


class CompactBatchResponse(TypedDict, total=False):
    """What ``POST /instances/{id}/calls`` answers to a compact batch
    (``application/vnd.pagelab.batch+json``, docs/batch-format.md): columns, with only
    the refused and blocked calls listed."""

    #: calls run (fewer than sent when ``stop_on_error`` stopped the batch)
    ran: int
    completed: int
    failed: int
    #: call k's value (None for a refused call)
    results: list[Any]
    #: runs ``[index, first_seq, count]`` (``seqs_of`` expands them)
    seq: list[list[int]]
    #: ``{"index", "fn", "error", "seq"?}`` for each refused call
    errors: list[dict[str, Any]]
    #: ``{"index", "blocked"}`` for each call that slept
    blocked: list[dict[str, Any]]
    state_digest: str
    #: with ``record=True``: each call's record (None if refused)
    records: list[dict[str, Any] | None]


def seqs_of(answer: CompactBatchResponse) -> list[int | None]:
    """Each call's seq from a compact answer's runs (None: refused before it got one)."""
    out: list[int | None] = [None] * answer["ran"]
    for index, first, count in answer["seq"]:
        out[index : index + count] = range(first, first + count)
    return out


class SysctlChange(TypedDict):
    """What ``PUT /instances/{id}/sysctls/{name}`` returns."""

    name: str
    old: int
    new: int


#: One call of a batch: ``{"fn": ..., "args": {...}, "ctx": {...}}``, a tuple
#: ``(fn, args)`` / ``(fn, args, ctx)``, or just a function name.
BatchCall = (
    Mapping[str, Any]
    | tuple[str, Mapping[str, Any]]
    | tuple[str, Mapping[str, Any], Mapping[str, Any]]
    | str
)


# ------------------------------------------------------------------ errors
class PageLabError(Exception):
    """An error answered by the server.

    ``status`` is the HTTP status, ``type`` the problem type URI (``/problems/<kind>``,
    ``about:blank`` for a response that was not a problem document), ``title`` and
    ``detail`` its human-readable parts and ``body`` the whole decoded document (extra
    members such as ``function`` and ``panic`` of a kernel panic included).
    """

    def __init__(
        self, status: int, type: str, title: str, detail: str, body: dict[str, Any]
    ) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail
        self.body = body

    @property
    def kind(self) -> str:
        """The last segment of the type URI: ``unknown-instance``, ``kernel-panic`` ..."""
        return self.type.rstrip("/").rsplit("/", 1)[-1]

    @classmethod
    def from_response(cls, response: httpx.Response) -> PageLabError:
        """Parse a problem+json error response (or make the best of any other body)."""
        body: dict[str, Any] = {}
        try:
            decoded = response.json()
        except ValueError:
            decoded = None
        if isinstance(decoded, dict):
            body = decoded
        status = body.get("status")
        if not isinstance(status, int):
            status = response.status_code
        detail = body.get("detail")
        if not isinstance(detail, str):
            detail = response.text.strip() or response.reason_phrase
        return cls(
            status=status,
            type=str(body.get("type", "about:blank")),
            title=str(body.get("title", response.reason_phrase or "Error")),
            detail=detail,
            body=body,
        )


# ------------------------------------------------------------------ request building
@dataclass(frozen=True)
class _Op(Generic[T]):
    """One HTTP exchange: the request to send and how to read a successful answer."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    json: Any = None
    params: dict[str, Any] | None = None
    timeout: httpx.Timeout | None = field(default=None)
    content: bytes | None = None  # a body already encoded (then ``headers`` says its type)
    headers: dict[str, str] | None = None


def _json(response: httpx.Response) -> Any:
    return response.json()


def _text(response: httpx.Response) -> str:
    return response.text


def _nothing(response: httpx.Response) -> None:
    return None


def _seg(value: str | int) -> str:
    """One URL path segment, percent-encoded (sysctl names, DDB commands with spaces)."""
    return quote(str(value), safe="")


def _auth(token: str | None) -> dict[str, str]:
    """The Authorization header of a server in token mode (none in the open lab)."""
    return {} if not token else {"Authorization": f"Bearer {token}"}


def _ref(instance: InstanceRef) -> str:
    """An instance reference as a path segment: ``42``, ``box``, ``ann:box``."""
    if isinstance(instance, int):
        return str(int(instance))
    return quote(instance, safe=":")


def _root(base_url: str) -> str:
    """The server root: trailing slashes and a trailing ``/api/v1`` are dropped."""
    url = base_url.rstrip("/")
    if url.endswith(API):
        url = url[: -len(API)]
    return url


def _batch_item(call: BatchCall) -> dict[str, Any]:
    if isinstance(call, str):
        return {"fn": call}
    if isinstance(call, tuple):
        item: dict[str, Any] = {"fn": call[0], "args": dict(call[1])}
        if len(call) == 3:
            item["ctx"] = dict(call[2])
        return item
    return dict(call)


#: The compact batch format's media type (docs/batch-format.md).
COMPACT_BATCH = "application/vnd.pagelab.batch+json"


def compact_batch(
    calls: Iterable[BatchCall], stop_on_error: bool = False, record: bool = False
) -> dict[str, Any]:
    """A compact batch body for ``calls`` (each as ``batch`` takes them): one form per
    distinct function, argument names and context, and the ``fn`` and ``args`` columns."""
    forms: dict[tuple[str, tuple[str, ...], str], int] = {}
    table: list[dict[str, Any]] = []
    fn: list[int] = []
    args: list[list[Any]] = []
    for call in calls:
        item = _batch_item(call)
        values = item.get("args") or {}
        names = tuple(values)
        ctx = item.get("ctx")
        key = (item["fn"], names, json.dumps(ctx, sort_keys=True) if ctx else "")
        index = forms.get(key)
        if index is None:
            index = forms[key] = len(table)
            form: dict[str, Any] = {"fn": item["fn"], "args": list(names)}
            if ctx:
                form["ctx"] = dict(ctx)
            table.append(form)
        fn.append(index)
        args.append(list(values.values()))
    return {
        "forms": table,
        "fn": fn,
        "args": args,
        "stop_on_error": stop_on_error,
        "record": record,
    }


class _Ops:
    """The API's operations as ``_Op`` values, shared by the sync and async clients."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    @staticmethod
    def inst(instance_id: InstanceRef, *rest: str | int) -> str:
        return "/".join([f"{API}/instances/{_ref(instance_id)}", *(_seg(r) for r in rest)])

    def get(self, path: str, params: dict[str, Any] | None = None) -> _Op[Any]:
        return _Op("GET", path, _json, params=params)

    # instances
    def create_instance(
        self,
        name: str,
        preset: str | None,
        memory: str | int | None,
        phys_avail: Sequence[tuple[int, int]] | None,
        cpus: int | None,
        topology: Mapping[str, int] | Sequence[int] | None,
        numa: Sequence[Mapping[str, int]] | None,
        seed: int | None,
        boot_stage: Literal["early", "finished"],
        pagedaemon: bool,
        dma_reserved: int,
        policy: Mapping[str, str] | None = None,
    ) -> _Op[dict[str, Any]]:
        # only what was given: a preset brings its own seed (and the server's defaults
        # are these), so a seed sent by default would replace the preset's
        body: dict[str, Any] = {"name": name}
        if seed is not None:
            body["seed"] = seed
        if boot_stage != "finished":
            body["boot_stage"] = boot_stage
        if not pagedaemon:
            body["pagedaemon"] = False
        if preset is not None:
            body["preset"] = preset
        if memory is not None:
            body["memory"] = memory
        if phys_avail is not None:
            body["phys_avail"] = [[int(b), int(e)] for b, e in phys_avail]
        if cpus is not None:
            body["cpus"] = cpus
        if topology is not None:
            if isinstance(topology, Mapping):
                body["topology"] = dict(topology)
            else:
                sockets, cores, threads = topology
                body["topology"] = {"sockets": sockets, "cores": cores, "threads": threads}
        if numa:
            body["numa"] = [dict(n) for n in numa]
        if dma_reserved:
            body["dma_reserved"] = dma_reserved
        if policy:
            body["policy"] = dict(policy)
        return _Op("POST", f"{API}/instances", _json, json=body)

    # calls
    def call(
        self,
        instance_id: InstanceRef,
        fn: str,
        args: Mapping[str, Any] | None,
        cpu: int,
        thread: int | None,
        nice: int,
        lowmemkill: bool,
        systhread: bool,
        wait: bool,
        timeout_s: float | None,
        record: bool,
    ) -> _Op[CallResponse]:
        body: dict[str, Any] = {
            "args": dict(args or {}),
            "ctx": {
                "cpu": cpu,
                "thread": thread,
                "nice": nice,
                "lowmemkill": lowmemkill,
                "systhread": systhread,
            },
            "wait": wait,
            "record": record,
        }
        if timeout_s is not None:
            body["timeout_s"] = float(timeout_s)
        timeout = None
        if wait:
            # The server holds the answer until the thread is woken or the wait ends
            # (timeout_s, capped by the server; its own cap when timeout_s is None).
            read = None if timeout_s is None else timeout_s + max(self.timeout, WAIT_SLACK)
            timeout = httpx.Timeout(self.timeout, read=read)
        return _Op("POST", self.inst(instance_id, "calls", fn), _json, json=body, timeout=timeout)

    def batch(
        self,
        instance_id: InstanceRef,
        calls: Iterable[BatchCall],
        stop_on_error: bool,
        record: bool,
    ) -> _Op[BatchResponse]:
        body = {
            "calls": [_batch_item(c) for c in calls],
            "stop_on_error": stop_on_error,
            "record": record,
        }
        return _Op("POST", self.inst(instance_id, "calls"), _json, json=body)

    def batch_compact(
        self,
        instance_id: InstanceRef,
        calls: Iterable[BatchCall],
        stop_on_error: bool,
        record: bool,
    ) -> _Op[CompactBatchResponse]:
        body = json.dumps(compact_batch(calls, stop_on_error, record), separators=(",", ":"))
        return _Op(
            "POST",
            self.inst(instance_id, "calls"),
            _json,
            content=body.encode(),
            headers={"content-type": COMPACT_BATCH},
        )

    def queue(
        self, instance_id: InstanceRef, name: str | int, color: int, offset: int, limit: int
    ) -> _Op[dict[str, Any]]:
        # the spelling goes to the server as typed: the server reads queue types in one
        # place, for calls and views alike, and names the queue in its answer
        path = self.inst(instance_id, "queues", name, int(color))
        return self.get(path, {"offset": offset, "limit": limit})

    def sysctl_get(self, instance_id: InstanceRef, name: str) -> _Op[int]:
        def value(response: httpx.Response) -> int:
            return int(response.json()["value"])

        return _Op("GET", self.inst(instance_id, "sysctls", name), value)

    def sysctl_set(self, instance_id: InstanceRef, name: str, value: int) -> _Op[SysctlChange]:
        path = self.inst(instance_id, "sysctls", name)
        return _Op("PUT", path, _json, json={"value": value})

    def ddb(self, instance_id: InstanceRef, command: str) -> _Op[str]:
        words = " ".join(command.split())
        if not words.startswith("show "):
            words = "show " + words
        return _Op("GET", self.inst(instance_id, "ddb", words), _text)

    # broadcasts and scenarios
    def broadcast(self, instance_id: InstanceRef, course: str) -> _Op[dict[str, Any]]:
        return _Op("PUT", self.inst(instance_id, "broadcast"), _json, json={"course": course})

    def stop_broadcast(self, instance_id: InstanceRef, course: str | None) -> _Op[None]:
        params = None if course is None else {"course": course}
        return _Op("DELETE", self.inst(instance_id, "broadcast"), _nothing, params=params)

    def create_scenario(
        self,
        course: str,
        name: str,
        description: str,
        trace: str | None,
        from_instance: InstanceRef | None,
        at: int | None,
        preset: str | None,
        seed: int | None,
        calls: Iterable[BatchCall] | None,
    ) -> _Op[dict[str, Any]]:
        body: dict[str, Any] = {"name": name, "description": description}
        if trace is not None:
            body["trace"] = trace
        if from_instance is not None:
            body["from_instance"] = str(from_instance)
        if at is not None:
            body["at"] = at
        if preset is not None:
            body["preset"] = preset
        if seed is not None:
            body["seed"] = seed
        if calls is not None:
            body["calls"] = [_batch_item(c) for c in calls]
        path = f"{API}/courses/{_seg(course)}/scenarios"
        return _Op("POST", path, _json, json=body, timeout=httpx.Timeout(self.timeout, read=None))

    def start_scenario(self, scenario_id: int, name: str | None) -> _Op[dict[str, Any]]:
        body = {} if name is None else {"name": name}
        path = f"{API}/scenarios/{int(scenario_id)}/instances"
        return _Op("POST", path, _json, json=body)

    def hand_out_scenario(
        self, scenario_id: int, name: str | None, users: Sequence[str] | None
    ) -> _Op[dict[str, Any]]:
        body: dict[str, Any] = {}
        if name is not None:
            body["name"] = name
        if users is not None:
            body["users"] = list(users)
        path = f"{API}/scenarios/{int(scenario_id)}/handout"
        return _Op("POST", path, _json, json=body, timeout=httpx.Timeout(self.timeout, read=None))

    # ---------------------------------------------------------------- quotas (issue 8 §2)
    @staticmethod
    def role_quotas(role: str) -> _Op[dict[str, Any]]:
        return _Op("GET", f"{API}/quotas/roles/{_seg(role)}", _json)

    @staticmethod
    def set_role_quotas(role: str, changes: Mapping[str, float | None]) -> _Op[dict[str, Any]]:
        return _Op("PUT", f"{API}/quotas/roles/{_seg(role)}", _json, json=dict(changes))

    @staticmethod
    def user_quota(name: str) -> _Op[dict[str, Any]]:
        return _Op("GET", f"{API}/users/{_seg(name)}/quota", _json)

    @staticmethod
    def set_user_quota(name: str, changes: Mapping[str, float | None]) -> _Op[dict[str, Any]]:
        return _Op("PUT", f"{API}/users/{_seg(name)}/quota", _json, json=dict(changes))

    @staticmethod
    def clear_user_quota(name: str) -> _Op[None]:
        return _Op("DELETE", f"{API}/users/{_seg(name)}/quota", _nothing)


class _PeopleOps:
    """Accounts (token mode): users, tokens and rosters, as ``_Op`` values."""

    @staticmethod
    def create_user(
        name: str, role: str, course: str | None, label: str, expires_in_s: float | None
    ) -> _Op[dict[str, Any]]:
        body: dict[str, Any] = {"name": name, "role": role, "course": course, "label": label}
        if expires_in_s is not None:
            body["expires_in_s"] = expires_in_s
        return _Op("POST", f"{API}/users", _json, json=body)

    @staticmethod
    def issue_token(user: str, label: str, expires_in_s: float | None) -> _Op[dict[str, Any]]:
        body: dict[str, Any] = {"label": label}
        if expires_in_s is not None:
            body["expires_in_s"] = expires_in_s
        return _Op("POST", f"{API}/users/{_seg(user)}/tokens", _json, json=body)

    @staticmethod
    def revoke_token(token_id: int) -> _Op[None]:
        return _Op("DELETE", f"{API}/tokens/{int(token_id)}", _nothing)

    @staticmethod
    def import_roster(roster_csv: str, label: str, expires_in_s: float | None) -> _Op[str]:
        body: dict[str, Any] = {"roster": roster_csv, "label": label}
        if expires_in_s is not None:
            body["expires_in_s"] = expires_in_s
        return _Op("POST", f"{API}/rosters", _text, json=body)


def _checked(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        raise PageLabError.from_response(response)
    return response


# ------------------------------------------------------------------ sync client
class PageLabClient:
    """A synchronous client for one PageLab server.

    ``base_url`` is the server root (``http://127.0.0.1:8000``; a trailing ``/api/v1`` is
    accepted too); ``token`` is a bearer token for a server in token mode.  Wherever a
    method takes an instance, it takes a reference: an id, a name of yours or
    ``"owner:name"``.  ``transport`` replaces httpx's network transport (tests, in-process
    apps); ``timeout`` is the per-request limit in seconds (calls with ``wait=True`` get
    their ``timeout_s`` on top); ``token`` is sent as ``Authorization: Bearer`` (servers
    in token mode).  Use it as a context manager or call ``close()``.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        token: str | None = None,
    ) -> None:
        self.base_url = _root(base_url)
        self._ops = _Ops(timeout)
        self._http = httpx.Client(
            base_url=self.base_url, transport=transport, timeout=timeout, headers=_auth(token)
        )

    def __enter__(self) -> PageLabClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _run(self, op: _Op[T]) -> T:
        response = self._http.request(
            op.method,
            op.path,
            json=op.json,
            content=op.content,
            headers=op.headers,
            params=op.params,
            timeout=op.timeout if op.timeout is not None else httpx.USE_CLIENT_DEFAULT,
        )
        return op.parse(_checked(response))

    def _view(self, instance_id: InstanceRef, *rest: str | int) -> Any:
        return self._run(self._ops.get(self._ops.inst(instance_id, *rest)))

    # ------------------------------------------------------------ meta
    def health(self) -> dict[str, str]:
        """``GET /healthz``: ``{"status": "alive"}`` when the server is up."""
        return cast(dict[str, str], self._run(self._ops.get("/healthz")))

    def functions(self) -> list[dict[str, Any]]:
        """Every callable kernel function with its parameters and the function it models."""
        return cast(list[dict[str, Any]], self._run(self._ops.get(f"{API}/functions")))

    def presets(self) -> list[dict[str, Any]]:
        """The named machine presets."""
        return cast(list[dict[str, Any]], self._run(self._ops.get(f"{API}/presets")))

    def seams(self) -> list[dict[str, Any]]:
        """The named seams a new instance's ``policy`` may choose, with their choices."""
        return cast(list[dict[str, Any]], self._run(self._ops.get(f"{API}/seams")))

    # ------------------------------------------------------------ instances
    def instances(self) -> list[dict[str, Any]]:
        """Every instance: id, name, preset, config, summary, calls, state_digest."""
        return cast(list[dict[str, Any]], self._run(self._ops.get(f"{API}/instances")))

    def instance(self, instance_id: InstanceRef) -> dict[str, Any]:
        """One instance's view (config, vmstats summary, state digest)."""
        return cast(dict[str, Any], self._view(instance_id))

    def create_instance(
        self,
        name: str,
        preset: str | None = None,
        memory: str | int | None = None,
        phys_avail: Sequence[tuple[int, int]] | None = None,
        cpus: int | None = None,
        topology: Mapping[str, int] | Sequence[int] | None = None,
        seed: int | None = None,
        boot_stage: Literal["early", "finished"] = "finished",
        pagedaemon: bool = True,
        *,
        numa: Sequence[Mapping[str, int]] | None = None,
        dma_reserved: int = 0,
        policy: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Boot a new machine from exactly one of ``preset``, ``memory`` ("4GiB" or bytes)
        or ``phys_avail`` ranges; ``topology`` is ``{"sockets", "cores", "threads"}`` or a
        ``(sockets, cores, threads)`` tuple.  (A preset brings its own CPUs and seed; ``seed``
        None: the preset's, or 0.)  ``policy`` chooses named seams, e.g.
        ``{"page_color": "object"}`` (``seams()`` lists them)."""
        op = self._ops.create_instance(
            name,
            preset,
            memory,
            phys_avail,
            cpus,
            topology,
            numa,
            seed,
            boot_stage,
            pagedaemon,
            dma_reserved,
            policy,
        )
        return self._run(op)

    def delete_instance(self, instance_id: InstanceRef) -> None:
        """Delete an instance (threads waiting on it are released with an error)."""
        self._run(_Op("DELETE", self._ops.inst(instance_id), _nothing))

    def reset_instance(self, instance_id: InstanceRef) -> dict[str, Any]:
        """Re-boot an instance with its configuration and seed: the same machine again."""
        return self._run(_Op("POST", self._ops.inst(instance_id, "reset"), _json))

    # ------------------------------------------------------------ calls
    def call(
        self,
        instance_id: InstanceRef,
        fn: str,
        args: Mapping[str, Any] | None = None,
        *,
        cpu: int = 0,
        thread: int | None = None,
        nice: int = 0,
        lowmemkill: bool = False,
        systhread: bool = False,
        wait: bool = False,
        timeout_s: float | None = None,
        record: bool = True,
    ) -> CallResponse:
        """Run kernel function ``fn`` with named ``args`` on ``cpu`` as ``thread``.

        If the call sleeps, ``blocked`` says where; with ``wait=True`` the server holds
        the answer until another call wakes the thread (at most ``timeout_s``, capped by
        the server) and ``completed`` gives the outcome (``None`` if still asleep)."""
        op = self._ops.call(
            instance_id,
            fn,
            args,
            cpu,
            thread,
            nice,
            lowmemkill,
            systhread,
            wait,
            timeout_s,
            record,
        )
        return self._run(op)

    def batch(
        self,
        instance_id: InstanceRef,
        calls: Iterable[BatchCall],
        stop_on_error: bool = False,
        record: bool = False,
    ) -> BatchResponse:
        """Run calls in order under the instance's lock; each gets a result or an error."""
        return self._run(self._ops.batch(instance_id, calls, stop_on_error, record))

    def batch_compact(
        self,
        instance_id: InstanceRef,
        calls: Iterable[BatchCall],
        stop_on_error: bool = False,
        record: bool = False,
    ) -> CompactBatchResponse:
        """``batch`` in the compact format: the same calls (and outcome on the machine),
        sent as forms and columns and answered in columns; much faster for large
        batches.  ``seqs_of`` gives each call's seq."""
        return self._run(self._ops.batch_compact(instance_id, calls, stop_on_error, record))

    # ------------------------------------------------------------ state views
    def page(self, instance_id: InstanceRef, pfn: int) -> dict[str, Any]:
        """Every field of page ``pfn``, decoded, with why it can or cannot be freed."""
        return cast(dict[str, Any], self._view(instance_id, "pages", pfn))

    def queues(self, instance_id: InstanceRef) -> dict[str, list[int]]:
        """``lcnt`` of every queue: ``{"PQ_FREE": [1024 counts], ...}``."""
        return cast(dict[str, list[int]], self._view(instance_id, "queues"))

    def queue(
        self,
        instance_id: InstanceRef,
        name: str | int,
        color: int,
        offset: int = 0,
        limit: int = 100,
    ) -> dict[str, Any]:
        """One queue's header (lcnt, adds, lastq) and its pfns head -> tail (paged), its
        name in ``queue`` (``"PQ_FREE:5"``).  ``name`` is a queue type as the server reads
        it everywhere: ``PQ_FREE``, ``free`` (any case) or its kernel index (``1``,
        ``1025``, ``2049``, ``3073``, ``4097``)."""
        return self._run(self._ops.queue(instance_id, name, color, offset, limit))

    def vmstats(self, instance_id: InstanceRef) -> dict[str, Any]:
        """Global vmstats, each CPU's gd_vmstats / gd_vmstats_adj / gd_cnt, predicates."""
        return cast(dict[str, Any], self._view(instance_id, "vmstats"))

    def threads(self, instance_id: InstanceRef) -> dict[str, Any]:
        """Simulated threads, the wait channels they sleep on, and the tick count."""
        return cast(dict[str, Any], self._view(instance_id, "threads"))

    def objects(self, instance_id: InstanceRef) -> list[dict[str, Any]]:
        """Every VM object."""
        return cast(list[dict[str, Any]], self._view(instance_id, "objects"))

    def object(self, instance_id: InstanceRef, object_id: int) -> dict[str, Any]:
        """One VM object with its resident pages (pindex -> pfn)."""
        return cast(dict[str, Any], self._view(instance_id, "objects", object_id))

    def dma(self, instance_id: InstanceRef) -> dict[str, Any]:
        """The DMA reserve's alist: free runs and bounds."""
        return cast(dict[str, Any], self._view(instance_id, "dma"))

    def pageout(self, instance_id: InstanceRef) -> dict[str, Any]:
        """The pageout daemon's state (state, pass, vm_pages_needed, its thread ...)."""
        return cast(dict[str, Any], self._view(instance_id, "pageout"))

    # ------------------------------------------------------------ sysctl, ddb
    def sysctls(self, instance_id: InstanceRef) -> list[dict[str, Any]]:
        """Every sysctl: name, type, writable, unit, description, value, source."""
        return cast(list[dict[str, Any]], self._view(instance_id, "sysctls"))

    def sysctl_get(self, instance_id: InstanceRef, name: str) -> int:
        """The value of sysctl ``name`` (e.g. ``vm.v_free_min``)."""
        return self._run(self._ops.sysctl_get(instance_id, name))

    def sysctl_set(self, instance_id: InstanceRef, name: str, value: int) -> SysctlChange:
        """Write a read-write sysctl; returns ``{"name", "old", "new"}``."""
        return self._run(self._ops.sysctl_set(instance_id, name, value))

    def ddb(self, instance_id: InstanceRef, command: str) -> str:
        """DDB ``show page`` / ``show pageq`` (``page`` / ``pageq`` alone work too), as the
        kernel debugger prints it."""
        return self._run(self._ops.ddb(instance_id, command))

    # ------------------------------------------------------------ people (token mode)
    def me(self) -> dict[str, Any]:
        """Who this client's token is: name, role, course, quotas, the auth mode."""
        return cast(dict[str, Any], self._run(self._ops.get(f"{API}/me")))

    def create_user(
        self,
        name: str,
        role: str,
        course: str | None = None,
        *,
        label: str = "",
        expires_in_s: float | None = None,
    ) -> dict[str, Any]:
        """A new user and their first token (``token``: shown this once)."""
        return self._run(_PeopleOps.create_user(name, role, course, label, expires_in_s))

    def issue_token(
        self, user: str, *, label: str = "", expires_in_s: float | None = None
    ) -> dict[str, Any]:
        """A new token for ``user``: ``{"user", "id", "token"}``, the token shown once."""
        return self._run(_PeopleOps.issue_token(user, label, expires_in_s))

    def revoke_token(self, token_id: int) -> None:
        """Revoke a token by its id (your own; admins: anyone's)."""
        self._run(_PeopleOps.revoke_token(token_id))

    def import_roster(
        self, roster_csv: str, *, label: str = "roster", expires_in_s: float | None = None
    ) -> str:
        """Users from a CSV roster (``name,role,course``), all or nothing; answers the
        CSV ``name,token`` to hand out (the only place those tokens appear)."""
        return self._run(_PeopleOps.import_roster(roster_csv, label, expires_in_s))

    # ------------------------------------------------------------ courses (token mode)
    def broadcast(self, instance_id: InstanceRef, course: str) -> dict[str, Any]:
        """Show your instance read-only to every member of ``course`` (instructors: their
        own course; admins: any)."""
        return self._run(self._ops.broadcast(instance_id, course))

    def stop_broadcast(self, instance_id: InstanceRef, course: str | None = None) -> None:
        """Stop showing an instance to ``course`` (None: to every course)."""
        self._run(self._ops.stop_broadcast(instance_id, course))

    def broadcasts(self) -> list[dict[str, Any]]:
        """The instances broadcast to your course."""
        return cast(list[dict[str, Any]], self._run(self._ops.get(f"{API}/broadcasts")))

    def scenarios(self, course: str) -> list[dict[str, Any]]:
        """A course's scenarios."""
        path = f"{API}/courses/{_seg(course)}/scenarios"
        return cast(list[dict[str, Any]], self._run(self._ops.get(path)))

    def scenario(self, scenario_id: int) -> dict[str, Any]:
        return cast(dict[str, Any], self._run(self._ops.get(f"{API}/scenarios/{int(scenario_id)}")))

    def create_scenario(
        self,
        course: str,
        name: str,
        *,
        description: str = "",
        trace: str | None = None,
        from_instance: InstanceRef | None = None,
        at: int | None = None,
        preset: str | None = None,
        seed: int | None = None,
        calls: Iterable[BatchCall] | None = None,
    ) -> dict[str, Any]:
        """A course scenario from a ``trace`` (JSON Lines text), an instance you may read
        (``from_instance``, up to call ``at``), or a ``preset`` with setup ``calls``."""
        op = self._ops.create_scenario(
            course, name, description, trace, from_instance, at, preset, seed, calls
        )
        return self._run(op)

    def start_scenario(self, scenario_id: int, name: str | None = None) -> dict[str, Any]:
        """Your own copy of a scenario of your course (an instance's view)."""
        return self._run(self._ops.start_scenario(scenario_id, name))

    def hand_out_scenario(
        self, scenario_id: int, name: str | None = None, users: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """A copy for every student of the scenario's course (or ``users``):
        ``{"created": [...], "refused": [...]}``."""
        return self._run(self._ops.hand_out_scenario(scenario_id, name, users))

    def delete_scenario(self, scenario_id: int) -> None:
        path = f"{API}/scenarios/{int(scenario_id)}"
        self._run(_Op("DELETE", path, _nothing))

    # ------------------------------------------------------------------ async client

    # ------------------------------------------------------------ quotas (issue 8 §2)
    def role_quotas(self, role: str) -> dict[str, Any]:
        """A role's quotas now (admins and instructors)."""
        return self._run(self._ops.role_quotas(role))

    def set_role_quotas(self, role: str, **changes: float | None) -> dict[str, Any]:
        """Change some of a role's quotas (``None``: back to the default; admins)."""
        return self._run(self._ops.set_role_quotas(role, changes))

    def user_quota(self, name: str) -> dict[str, Any]:
        """A user's overrides and effective quotas."""
        return self._run(self._ops.user_quota(name))

    def set_user_quota(self, name: str, **changes: float | None) -> dict[str, Any]:
        """Override some of a user's quotas (``None`` removes that override)."""
        return self._run(self._ops.set_user_quota(name, changes))

    def clear_user_quota(self, name: str) -> None:
        """Remove every override of a user."""
        self._run(self._ops.clear_user_quota(name))


class AsyncPageLabClient:
    """The asynchronous twin of ``PageLabClient``: the same methods, as coroutines.
    ``transport`` may be ``httpx.ASGITransport(app=app)`` to talk to an app in-process."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        token: str | None = None,
    ) -> None:
        self.base_url = _root(base_url)
        self._ops = _Ops(timeout)
        self._http = httpx.AsyncClient(
            base_url=self.base_url, transport=transport, timeout=timeout, headers=_auth(token)
        )

    async def __aenter__(self) -> AsyncPageLabClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _run(self, op: _Op[T]) -> T:
        response = await self._http.request(
            op.method,
            op.path,
            json=op.json,
            content=op.content,
            headers=op.headers,
            params=op.params,
            timeout=op.timeout if op.timeout is not None else httpx.USE_CLIENT_DEFAULT,
        )
        return op.parse(_checked(response))

    async def _view(self, instance_id: InstanceRef, *rest: str | int) -> Any:
        return await self._run(self._ops.get(self._ops.inst(instance_id, *rest)))

    async def health(self) -> dict[str, str]:
        return cast(dict[str, str], await self._run(self._ops.get("/healthz")))

    async def functions(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], await self._run(self._ops.get(f"{API}/functions")))

    async def presets(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], await self._run(self._ops.get(f"{API}/presets")))

    async def seams(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], await self._run(self._ops.get(f"{API}/seams")))

    async def instances(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], await self._run(self._ops.get(f"{API}/instances")))

    async def instance(self, instance_id: InstanceRef) -> dict[str, Any]:
        return cast(dict[str, Any], await self._view(instance_id))

    async def create_instance(
        self,
        name: str,
        preset: str | None = None,
        memory: str | int | None = None,
        phys_avail: Sequence[tuple[int, int]] | None = None,
        cpus: int | None = None,
        topology: Mapping[str, int] | Sequence[int] | None = None,
        seed: int | None = None,
        boot_stage: Literal["early", "finished"] = "finished",
        pagedaemon: bool = True,
        *,
        numa: Sequence[Mapping[str, int]] | None = None,
        dma_reserved: int = 0,
        policy: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        op = self._ops.create_instance(
            name,
            preset,
            memory,
            phys_avail,
            cpus,
            topology,
            numa,
            seed,
            boot_stage,
            pagedaemon,
            dma_reserved,
            policy,
        )
        return await self._run(op)

    async def delete_instance(self, instance_id: InstanceRef) -> None:
        await self._run(_Op("DELETE", self._ops.inst(instance_id), _nothing))

    async def reset_instance(self, instance_id: InstanceRef) -> dict[str, Any]:
        return await self._run(_Op("POST", self._ops.inst(instance_id, "reset"), _json))

    async def call(
        self,
        instance_id: InstanceRef,
        fn: str,
        args: Mapping[str, Any] | None = None,
        *,
        cpu: int = 0,
        thread: int | None = None,
        nice: int = 0,
        lowmemkill: bool = False,
        systhread: bool = False,
        wait: bool = False,
        timeout_s: float | None = None,
        record: bool = True,
    ) -> CallResponse:
        op = self._ops.call(
            instance_id,
            fn,
            args,
            cpu,
            thread,
            nice,
            lowmemkill,
            systhread,
            wait,
            timeout_s,
            record,
        )
        return await self._run(op)

    async def batch(
        self,
        instance_id: InstanceRef,
        calls: Iterable[BatchCall],
        stop_on_error: bool = False,
        record: bool = False,
    ) -> BatchResponse:
        return await self._run(self._ops.batch(instance_id, calls, stop_on_error, record))

    async def batch_compact(
        self,
        instance_id: InstanceRef,
        calls: Iterable[BatchCall],
        stop_on_error: bool = False,
        record: bool = False,
    ) -> CompactBatchResponse:
        return await self._run(self._ops.batch_compact(instance_id, calls, stop_on_error, record))

    async def page(self, instance_id: InstanceRef, pfn: int) -> dict[str, Any]:
        return cast(dict[str, Any], await self._view(instance_id, "pages", pfn))

    async def queues(self, instance_id: InstanceRef) -> dict[str, list[int]]:
        return cast(dict[str, list[int]], await self._view(instance_id, "queues"))

    async def queue(
        self,
        instance_id: InstanceRef,
        name: str | int,
        color: int,
        offset: int = 0,
        limit: int = 100,
    ) -> dict[str, Any]:
        return await self._run(self._ops.queue(instance_id, name, color, offset, limit))

    async def vmstats(self, instance_id: InstanceRef) -> dict[str, Any]:
        return cast(dict[str, Any], await self._view(instance_id, "vmstats"))

    async def threads(self, instance_id: InstanceRef) -> dict[str, Any]:
        return cast(dict[str, Any], await self._view(instance_id, "threads"))

    async def objects(self, instance_id: InstanceRef) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], await self._view(instance_id, "objects"))

    async def object(self, instance_id: InstanceRef, object_id: int) -> dict[str, Any]:
        return cast(dict[str, Any], await self._view(instance_id, "objects", object_id))

    async def dma(self, instance_id: InstanceRef) -> dict[str, Any]:
        return cast(dict[str, Any], await self._view(instance_id, "dma"))

    async def pageout(self, instance_id: InstanceRef) -> dict[str, Any]:
        return cast(dict[str, Any], await self._view(instance_id, "pageout"))

    async def sysctls(self, instance_id: InstanceRef) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], await self._view(instance_id, "sysctls"))

    async def sysctl_get(self, instance_id: InstanceRef, name: str) -> int:
        return await self._run(self._ops.sysctl_get(instance_id, name))

    async def sysctl_set(self, instance_id: InstanceRef, name: str, value: int) -> SysctlChange:
        return await self._run(self._ops.sysctl_set(instance_id, name, value))

    async def ddb(self, instance_id: InstanceRef, command: str) -> str:
        return await self._run(self._ops.ddb(instance_id, command))

    # ------------------------------------------------------------ people (token mode)
    async def me(self) -> dict[str, Any]:
        return cast(dict[str, Any], await self._run(self._ops.get(f"{API}/me")))

    async def create_user(
        self,
        name: str,
        role: str,
        course: str | None = None,
        *,
        label: str = "",
        expires_in_s: float | None = None,
    ) -> dict[str, Any]:
        return await self._run(_PeopleOps.create_user(name, role, course, label, expires_in_s))

    async def issue_token(
        self, user: str, *, label: str = "", expires_in_s: float | None = None
    ) -> dict[str, Any]:
        return await self._run(_PeopleOps.issue_token(user, label, expires_in_s))

    async def revoke_token(self, token_id: int) -> None:
        await self._run(_PeopleOps.revoke_token(token_id))

    async def import_roster(
        self, roster_csv: str, *, label: str = "roster", expires_in_s: float | None = None
    ) -> str:
        return await self._run(_PeopleOps.import_roster(roster_csv, label, expires_in_s))

    async def broadcast(self, instance_id: InstanceRef, course: str) -> dict[str, Any]:
        return await self._run(self._ops.broadcast(instance_id, course))

    async def stop_broadcast(self, instance_id: InstanceRef, course: str | None = None) -> None:
        await self._run(self._ops.stop_broadcast(instance_id, course))

    async def broadcasts(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], await self._run(self._ops.get(f"{API}/broadcasts")))

    async def scenarios(self, course: str) -> list[dict[str, Any]]:
        path = f"{API}/courses/{_seg(course)}/scenarios"
        return cast(list[dict[str, Any]], await self._run(self._ops.get(path)))

    async def scenario(self, scenario_id: int) -> dict[str, Any]:
        path = f"{API}/scenarios/{int(scenario_id)}"
        return cast(dict[str, Any], await self._run(self._ops.get(path)))

    async def create_scenario(
        self,
        course: str,
        name: str,
        *,
        description: str = "",
        trace: str | None = None,
        from_instance: InstanceRef | None = None,
        at: int | None = None,
        preset: str | None = None,
        seed: int | None = None,
        calls: Iterable[BatchCall] | None = None,
    ) -> dict[str, Any]:
        op = self._ops.create_scenario(
            course, name, description, trace, from_instance, at, preset, seed, calls
        )
        return await self._run(op)

    async def start_scenario(self, scenario_id: int, name: str | None = None) -> dict[str, Any]:
        return await self._run(self._ops.start_scenario(scenario_id, name))

    async def hand_out_scenario(
        self, scenario_id: int, name: str | None = None, users: Sequence[str] | None = None
    ) -> dict[str, Any]:
        return await self._run(self._ops.hand_out_scenario(scenario_id, name, users))

    async def delete_scenario(self, scenario_id: int) -> None:
        await self._run(_Op("DELETE", f"{API}/scenarios/{int(scenario_id)}", _nothing))

    # ------------------------------------------------------------ quotas (issue 8 §2)
    async def role_quotas(self, role: str) -> dict[str, Any]:
        return await self._run(self._ops.role_quotas(role))

    async def set_role_quotas(self, role: str, **changes: float | None) -> dict[str, Any]:
        return await self._run(self._ops.set_role_quotas(role, changes))

    async def user_quota(self, name: str) -> dict[str, Any]:
        return await self._run(self._ops.user_quota(name))

    async def set_user_quota(self, name: str, **changes: float | None) -> dict[str, Any]:
        return await self._run(self._ops.set_user_quota(name, changes))

    async def clear_user_quota(self, name: str) -> None:
        await self._run(self._ops.clear_user_quota(name))
