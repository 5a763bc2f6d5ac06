"""The stream publisher: live views of instances for any number of viewers
(protocol: ``docs/stream-protocol.md``).

A kernel call never waits for a viewer: it only appends its record to the instance's
bounded ring and bumps the instance's seq (``Instance.record``).  Viewers are grouped in
*tiers*, one per (instance, rate).  Each tier has one publishing task that, once per tick,
takes the instance's lock briefly, reads what its viewers subscribe to, and builds every
section once; viewers with the same subscription get the very same string.  Each viewer
has its own bounded outbox and a sender task, so a slow viewer only ever slows itself:
state sections are coalesced (after a drop, the next frame carries them in full), events
are dropped oldest first with a ``gap`` message naming the lost seq range, and a viewer
that takes nothing for ``stuck_after_s`` seconds is closed with 1013.

Nothing here knows about HTTP or WebSocket: a viewer is reached through a ``Sink`` (send a
text, close with a code), which the API layer adapts from its WebSocket.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import time
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import structlog

from app.core.constants import PQ_BASES, PQ_L2_SIZE, PQ_NAMES
from app.core.errors import InvalidArgument

from .fields import VMSTATS_HELP

if TYPE_CHECKING:
    from .service import Instance, Lab

log = structlog.get_logger(__name__)

PROTOCOL_VERSION = 1
TOPICS: tuple[str, ...] = ("vmstats", "queues", "events", "threads", "pageout", "pages", "pagemap")
STATE_TOPICS = frozenset({"vmstats", "queues", "threads", "pageout", "pages", "pagemap"})
DEFAULT_TOPICS = ("vmstats", "queues")
MIN_RATE, MAX_RATE, DEFAULT_RATE = 1, 30, 10
DEFAULT_PAGEMAP_WIDTH = 512
#: Events shown with a summary (the newest ones), so a viewer still sees concrete calls.
SUMMARY_TAIL = 16
#: Control messages (hello, ack, error, pong) a viewer may leave unread before it is
#: considered abusive and closed.
MAX_CONTROL_PENDING = 64

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TRY_AGAIN_LATER = 1013
#: the user has as many streams open as their quota ``streams`` allows (HTTP's 429, in
#: the 4xxx range the protocol leaves to applications)
CLOSE_TOO_MANY_STREAMS = 4429


class Sink(Protocol):
    """Where a viewer's messages go (a WebSocket, adapted by the API layer)."""

    async def send(self, text: str) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


class StreamError(Exception):
    """A viewer's request that cannot be honoured (answered with an ``error`` message, or
    a 1008 close at connect)."""

    code = CLOSE_POLICY


class StreamQuotaError(StreamError):
    """A connection over its user's ``streams`` quota (closed with 4429 at connect)."""

    code = CLOSE_TOO_MANY_STREAMS


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


@dataclass(slots=True)
class StreamSettings:
    events_per_frame: int = 256
    buffer_frames: int = 32
    stuck_after_s: float = 5.0
    watch_pages: int = 256
    lag_s: float = 3.0


@dataclass(slots=True)
class Frame:
    """A frame waiting in a viewer's outbox: its sections (already encoded) so that it
    can be re-rendered without its state sections when older frames are dropped."""

    seq: int
    tick: int
    time: float
    sections: dict[str, str]
    events_from: int | None  # the seq range of the calls its events section covers
    events_to: int | None
    text: str | None = None
    behind: bool = False  # stripped of its state: the viewer's state lags until a full one

    def render(self) -> str:
        if self.text is None:
            head = f'{{"type":"frame","seq":{self.seq},"tick":{self.tick},"time":{self.time:.6f}'
            if self.behind:
                head += ',"behind":true'
            body = "".join(f',"{name}":{text}' for name, text in self.sections.items())
            self.text = head + body + "}"
        return self.text


@dataclass(slots=True)
class Gap:
    from_seq: int
    to_seq: int

    def render(self) -> str:
        return _dumps(
            {
                "type": "gap",
                "from_seq": self.from_seq,
                "to_seq": self.to_seq,
                "reason": "slow consumer: events dropped oldest first",
            }
        )


@dataclass(slots=True)
class Control:
    text: str

    def render(self) -> str:
        return self.text


Item = Frame | Gap | Control


@dataclass(eq=False)
class Viewer:
    """One connection: what it subscribes to and its bounded outbox."""

    id: int
    instance_id: int
    sink: Sink
    topics: set[str]
    rate: int
    watch: tuple[int, ...] = ()
    pagemap_params: tuple[int | None, int | None, int] = (None, None, DEFAULT_PAGEMAP_WIDTH)
    needs_hello: bool = True
    needs_full: set[str] = field(default_factory=set)
    event_seq: int = 0  # events up to this seq were queued for this viewer
    outbox: deque[Item] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    sender: asyncio.Task[None] | None = None
    sending: bool = False
    last_progress: float = field(default_factory=time.monotonic)
    closed: bool = False
    #: the user the connection is of (counted against their ``streams`` quota)
    owner: str = ""
    leaving: bool = False  # told bye; closing once its outbox is out
    # acknowledgements (op "ack"): what the viewer has taken in, by frame build time
    acked_time: float | None = None
    last_ack: float = 0.0  # monotonic time of its last ack
    sent_time: float = 0.0  # build time of the newest frame handed to its connection
    lagging: bool = False  # behind by more than lag_s: new frames are dropped until it catches up
    lag_gap: Gap | None = None  # the events it missed meanwhile, told when it is back
    close_code: int | None = None
    frames_sent: int = 0
    bytes_sent: int = 0
    messages_sent: int = 0
    gaps: int = 0
    dropped_events: int = 0
    connected: float = field(default_factory=time.time)

    def frames_pending(self) -> int:
        return sum(1 for it in self.outbox if isinstance(it, Frame))

    def stats(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "instance": self.instance_id,
            "topics": sorted(self.topics),
            "rate": self.rate,
            "pending": len(self.outbox),
            "frames_sent": self.frames_sent,
            "messages_sent": self.messages_sent,
            "bytes_sent": self.bytes_sent,
            "gaps": self.gaps,
            "dropped_events": self.dropped_events,
            "closed": self.closed,
            "close_code": self.close_code,
        }


@dataclass(eq=False)
class Tier:
    """The viewers of one instance at one rate, and what they were last sent."""

    instance_id: int
    rate: int
    viewers: set[Viewer] = field(default_factory=set)
    task: asyncio.Task[None] | None = None
    generation: int = -1
    primed: bool = False
    seq: int = -1
    event_seq: int = 0
    fn_counts: Counter[str] = field(default_factory=Counter)
    move_counts: Counter[str] = field(default_factory=Counter)
    error_count: int = 0
    last: dict[str, str] = field(default_factory=dict)
    queues: np.ndarray | None = None
    pages: dict[int, str] = field(default_factory=dict)
    pagemaps: dict[tuple[int | None, int | None, int], str] = field(default_factory=dict)
    frames_built: int = 0


def _queue_counts(m: Any) -> np.ndarray:
    return np.asarray(m.pq.lcnt, dtype=np.int64)


_TYPE_OF_QUEUE = tuple(PQ_NAMES[b] for b in PQ_BASES)


def _queue_delta(old: np.ndarray, new: np.ndarray) -> dict[str, list[list[int]]]:
    """The queue cells whose lcnt changed, as ``{type: [[colour, lcnt], ...]}`` (numpy
    does the per-cell work: at full churn thousands of cells change between two ticks)."""
    idx = np.flatnonzero(old[1:] != new[1:])  # queue index - 1; PQ_NONE never counts
    if not len(idx):
        return {}
    kinds = idx // PQ_L2_SIZE
    pairs = np.column_stack((idx % PQ_L2_SIZE, new[idx + 1]))
    cuts = np.searchsorted(kinds, np.arange(1, len(PQ_BASES)))
    changed: dict[str, list[list[int]]] = {}
    for k, part in enumerate(np.split(pairs, cuts)):
        if len(part):
            changed[_TYPE_OF_QUEUE[k]] = part.tolist()
    return changed


def _full_queues(counts: np.ndarray) -> dict[str, Any]:
    as_list = counts.tolist()
    return {
        "full": True,
        "counts": {PQ_NAMES[b]: as_list[b : b + PQ_L2_SIZE] for b in PQ_BASES},
    }


class StreamHub:
    """Every viewer of every instance of one lab."""

    def __init__(self, lab: Lab, settings: StreamSettings | None = None) -> None:
        self.lab = lab
        self.settings = settings or StreamSettings()
        self.tiers: dict[tuple[int, int], Tier] = {}
        self.viewers: dict[int, Viewer] = {}
        self._next_id = 1
        self.frames_built = 0
        self.closed_slow = 0
        #: since start, over every viewer (``GET /metrics``): frames sent, frames dropped
        #: or skipped for slow viewers, gap notices, and the events those gaps lost
        self.frames_sent = 0
        self.frames_dropped = 0
        self.gaps = 0
        self.events_dropped = 0
        self._event_viewers: dict[int, int] = {}

    def records_wanted(self, instance_id: int) -> bool:
        """Whether someone watches this instance's events: then its calls are recorded
        in full (page moves, counter deltas, the kernel's events), else only named."""
        return self._event_viewers.get(instance_id, 0) > 0

    def _recount(self, instance_id: int) -> None:
        self._event_viewers[instance_id] = sum(
            1
            for v in self.viewers.values()
            if v.instance_id == instance_id and "events" in v.topics and not v.closed
        )

    # ------------------------------------------------------------------ connections
    def parse_topics(self, raw: Iterable[Any]) -> set[str]:
        out: set[str] = set()
        for t in raw:
            if not isinstance(t, str) or t not in TOPICS:
                raise StreamError(f"unknown topic {t!r}; topics: {', '.join(TOPICS)}")
            out.add(t)
        return out

    @staticmethod
    def check_rate(rate: Any) -> int:
        if type(rate) is not int or not MIN_RATE <= rate <= MAX_RATE:
            raise StreamError(
                f"rate must be an integer number of frames per second from {MIN_RATE} to "
                f"{MAX_RATE}, got {rate!r}"
            )
        return rate

    def streams_of(self, owner: str) -> int:
        """Connections of ``owner`` open now."""
        return sum(1 for v in self.viewers.values() if v.owner == owner and not v.closed)

    def connect(
        self,
        instance_id: int,
        sink: Sink,
        topics: Iterable[str] | None,
        rate: int | None,
        owner: str = "",
        max_streams: int | None = None,
    ) -> Viewer:
        """A new viewer: its ``hello`` goes out at its tier's next tick (so the snapshot
        and the frames after it are built from the same state).  Raises ``StreamError``
        for bad topics or rate, ``StreamQuotaError`` when ``owner`` already has
        ``max_streams`` connections open; the caller checked the instance exists."""
        chosen = self.parse_topics(DEFAULT_TOPICS if topics is None else topics)
        rate = DEFAULT_RATE if rate is None else self.check_rate(rate)
        if max_streams is not None and self.streams_of(owner) >= max_streams:
            self.lab.metrics.refused("streams")
            raise StreamQuotaError(
                f"quota 'streams' allows you {max_streams} open at once: close one, or "
                "ask an instructor or admin"
            )
        viewer = Viewer(self._next_id, instance_id, sink, chosen, rate, owner=owner)
        self._next_id += 1
        self.viewers[viewer.id] = viewer
        viewer.sender = asyncio.get_running_loop().create_task(self._send_loop(viewer))
        self._join(viewer)
        return viewer

    def disconnect(self, viewer: Viewer) -> None:
        """The connection ended (the client left, or we closed it)."""
        viewer.closed = True
        self.viewers.pop(viewer.id, None)
        self._leave(viewer)
        if viewer.sender is not None and viewer.sender is not asyncio.current_task():
            viewer.sender.cancel()
        viewer.wake.set()

    def _join(self, viewer: Viewer) -> None:
        key = (viewer.instance_id, viewer.rate)
        tier = self.tiers.get(key)
        if tier is None:
            tier = Tier(viewer.instance_id, viewer.rate)
            self.tiers[key] = tier
            # serves every viewer of the tier: not the log context (request id) of the
            # connection that happened to start it
            tier.task = asyncio.get_running_loop().create_task(
                self._tier_loop(tier), context=contextvars.Context()
            )
        tier.viewers.add(viewer)
        self._recount(viewer.instance_id)

    def _leave(self, viewer: Viewer) -> None:
        self._recount(viewer.instance_id)
        key = (viewer.instance_id, viewer.rate)
        tier = self.tiers.get(key)
        if tier is None:
            return
        tier.viewers.discard(viewer)
        if not tier.viewers:
            del self.tiers[key]
            if tier.task is not None and tier.task is not asyncio.current_task():
                tier.task.cancel()

    # ------------------------------------------------------------------ client messages
    async def handle(self, viewer: Viewer, text: str) -> None:
        """A message from the viewer; answered with ``ack``, ``pong`` or ``error`` (a
        viewer's own ack needs no answer).  A bad message never closes the connection."""
        try:
            reply = await self._handle(viewer, text)
        except StreamError as e:
            reply = {"type": "error", "code": "bad-message", "detail": str(e)}
        if reply is not None:
            self._control(viewer, reply)

    def _acked(self, viewer: Viewer, t: float) -> None:
        """The viewer has taken in every frame built up to ``t``.  A lagging viewer that
        has caught up with all it was sent gets frames again (state in full first)."""
        if viewer.acked_time is None or t > viewer.acked_time:
            viewer.acked_time = t
        viewer.last_ack = time.monotonic()
        if viewer.lagging and viewer.acked_time >= viewer.sent_time:
            viewer.lagging = False
            if viewer.lag_gap is not None:
                gap, viewer.lag_gap = viewer.lag_gap, None
                self._push(viewer, gap)

    def reject(self, viewer: Viewer, detail: str) -> None:
        """Answer a message the API layer could not even read."""
        self._control(viewer, {"type": "error", "code": "bad-message", "detail": detail})

    async def _handle(self, viewer: Viewer, text: str) -> dict[str, Any] | None:
        try:
            msg = json.loads(text)
        except ValueError:
            raise StreamError(
                'messages must be JSON objects such as {"op": "subscribe", "topics": ["events"]}'
            ) from None
        if not isinstance(msg, dict):
            raise StreamError('a message must be a JSON object with an "op"')
        op = msg.get("op")
        allowed = {
            "subscribe": {"op", "topics", "rate"},
            "unsubscribe": {"op", "topics"},
            "rate": {"op", "rate"},
            "watch": {"op", "pfns"},
            "pagemap": {"op", "lo", "hi", "width"},
            "resync": {"op"},
            "ping": {"op"},
            "ack": {"op", "time"},
        }
        if op not in allowed:
            raise StreamError(f"unknown op {op!r}; ops: {', '.join(allowed)}")
        extra = set(msg) - allowed[op]
        if extra:
            raise StreamError(
                f"{op} takes {', '.join(sorted(allowed[op] - {'op'})) or 'nothing'}; "
                f"unknown: {', '.join(sorted(extra))}"
            )
        if op == "ping":
            return {"type": "pong"}
        if op == "ack":
            t = msg.get("time")
            if not isinstance(t, int | float) or isinstance(t, bool) or not 0 < t < 1e11:
                raise StreamError("ack needs the time of a frame you took in, as the frame gave it")
            self._acked(viewer, float(t))
            return None
        if op == "resync":
            self._want_hello(viewer)
            return {"type": "ack", "op": "resync"}
        if op in ("subscribe", "unsubscribe"):
            raw = msg.get("topics", [])
            if not isinstance(raw, list):
                raise StreamError('topics must be a list such as ["vmstats", "events"]')
            topics = self.parse_topics(raw)
            rate = self.check_rate(msg["rate"]) if "rate" in msg else None
            if op == "subscribe":
                added = topics - viewer.topics
                viewer.topics |= topics
                viewer.needs_full |= added & STATE_TOPICS
                if "events" in added:
                    inst = self.lab.instances.get(viewer.instance_id)
                    viewer.event_seq = inst.seq if inst is not None else 0
            else:
                viewer.topics -= topics
                viewer.needs_full -= topics
            self._recount(viewer.instance_id)
            if rate is not None and rate != viewer.rate:
                self._move(viewer, rate)
            return {"type": "ack", "op": op, "topics": sorted(viewer.topics), "rate": viewer.rate}
        if op == "rate":
            self._move(viewer, self.check_rate(msg.get("rate")))
            return {"type": "ack", "op": "rate", "rate": viewer.rate}
        if op == "watch":
            pfns = msg.get("pfns")
            limit = self.settings.watch_pages
            if not isinstance(pfns, list) or not all(type(p) is int for p in pfns):
                raise StreamError("pfns must be a list of page frame numbers (integers)")
            if len(pfns) > limit:
                raise StreamError(f"watch at most {limit} pages at once, not {len(pfns)}")
            if viewer.instance_id in self.lab.instances:
                try:
                    await self.lab.view(viewer.instance_id, "pfns_valid", pfns=pfns)
                except InvalidArgument as e:
                    raise StreamError(str(e)) from None
            viewer.watch = tuple(dict.fromkeys(pfns))
            viewer.needs_full.add("pages")
            return {"type": "ack", "op": "watch", "pfns": list(viewer.watch)}
        # pagemap
        lo, hi, width = msg.get("lo"), msg.get("hi"), msg.get("width", DEFAULT_PAGEMAP_WIDTH)
        for name, value in (("lo", lo), ("hi", hi)):
            if value is not None and type(value) is not int:
                raise StreamError(f"{name} must be a page frame number (an integer) or null")
        if type(width) is not int or not 1 <= width <= 4096:
            raise StreamError(f"width must be an integer from 1 to 4096, got {width!r}")
        if viewer.instance_id in self.lab.instances:
            try:  # validate now, so the error reaches the viewer instead of a silent frame
                await self.lab.view(viewer.instance_id, "pagemap", lo=lo, hi=hi, width=1)
            except InvalidArgument as e:
                raise StreamError(str(e)) from None
        viewer.pagemap_params = (lo, hi, width)
        viewer.needs_full.add("pagemap")
        return {"type": "ack", "op": "pagemap", "lo": lo, "hi": hi, "width": width}

    def _move(self, viewer: Viewer, rate: int) -> None:
        """Change a viewer's rate: it joins another tier, whose last state differs, so
        its next frame carries every state topic in full."""
        self._leave(viewer)
        viewer.rate = rate
        viewer.needs_full |= viewer.topics & STATE_TOPICS
        self._join(viewer)

    def _want_hello(self, viewer: Viewer) -> None:
        viewer.needs_hello = True
        viewer.outbox = deque(it for it in viewer.outbox if isinstance(it, Control))

    # ------------------------------------------------------------------ outboxes
    def _control(self, viewer: Viewer, message: dict[str, Any] | str) -> None:
        if viewer.closed:
            return
        text = message if isinstance(message, str) else _dumps(message)
        if sum(1 for it in viewer.outbox if isinstance(it, Control)) >= MAX_CONTROL_PENDING:
            self._close(viewer, CLOSE_POLICY, "too many unread replies")
            return
        self._push(viewer, Control(text))

    def _push(self, viewer: Viewer, item: Item) -> None:
        if isinstance(item, Frame) and viewer.acked_time is not None:
            if not viewer.lagging and viewer.sent_time - viewer.acked_time > self.settings.lag_s:
                viewer.lagging = True
            if viewer.lagging:  # it has seconds of frames still to take in: skip this one
                self._skip(viewer, item)
                return
        if not viewer.outbox and not viewer.sending:
            viewer.last_progress = time.monotonic()
        viewer.outbox.append(item)
        if isinstance(item, Frame) and viewer.frames_pending() > self.settings.buffer_frames:
            self._drop_oldest(viewer)
        viewer.wake.set()

    def _skip(self, viewer: Viewer, frame: Frame) -> None:
        """A frame a lagging viewer does not get: its events join one gap, told when the
        viewer is back (not one message per skipped frame, which would only add to what
        it has to wade through); its state comes in full then."""
        viewer.needs_full |= viewer.topics & STATE_TOPICS
        self.frames_dropped += 1
        if frame.events_from is None or frame.events_to is None:
            return
        lost = frame.events_to - frame.events_from + 1
        viewer.dropped_events += lost
        self.events_dropped += lost
        if viewer.lag_gap is None:
            viewer.lag_gap = Gap(frame.events_from, frame.events_to)
            viewer.gaps += 1
            self.gaps += 1
        else:
            viewer.lag_gap.to_seq = frame.events_to

    def _drop_oldest(self, viewer: Viewer) -> None:
        """Make room in a slow viewer's outbox: drop the oldest frame, keep its events'
        seq range as a gap, and strip the state sections of the frames left (they were
        deltas against the dropped one); the next frame built carries them in full."""
        box = viewer.outbox
        k = next(i for i, it in enumerate(box) if isinstance(it, Frame))
        frame = box[k]
        assert isinstance(frame, Frame)
        del box[k]
        self.frames_dropped += 1
        if frame.events_from is not None and frame.events_to is not None:
            lost = frame.events_to - frame.events_from + 1
            viewer.dropped_events += lost
            self.events_dropped += lost
            before = box[k - 1] if k > 0 else None
            if isinstance(before, Gap):
                before.to_seq = frame.events_to
            else:
                box.insert(k, Gap(frame.events_from, frame.events_to))
                viewer.gaps += 1
                self.gaps += 1
        for it in box:
            if isinstance(it, Frame) and not it.behind:
                it.sections = {n: t for n, t in it.sections.items() if n not in STATE_TOPICS}
                it.behind = True
                it.text = None
        viewer.needs_full |= viewer.topics & STATE_TOPICS
        # a frame left with nothing to say is dropped without a gap
        viewer.outbox = deque(it for it in box if not (isinstance(it, Frame) and not it.sections))

    async def _send_loop(self, viewer: Viewer) -> None:
        try:
            while not viewer.closed:
                if not viewer.outbox:
                    viewer.wake.clear()
                    await viewer.wake.wait()
                    continue
                item = viewer.outbox.popleft()
                text = item.render()
                viewer.sending = True
                await viewer.sink.send(text)
                viewer.sending = False
                viewer.last_progress = time.monotonic()
                viewer.messages_sent += 1
                viewer.bytes_sent += len(text)
                if isinstance(item, Frame):
                    viewer.frames_sent += 1
                    self.frames_sent += 1
                    viewer.sent_time = item.time
        except asyncio.CancelledError:
            raise
        except Exception:
            # the connection broke under us; the receive side will notice and disconnect
            viewer.closed = True

    def _close(self, viewer: Viewer, code: int, reason: str) -> asyncio.Task[None] | None:
        """Close a viewer's connection from our side (slow, deleted, shutting down);
        returns the task sending the close (None if it was closed already)."""
        if viewer.closed:
            return None
        viewer.closed = True
        viewer.close_code = code
        if viewer.sender is not None:
            viewer.sender.cancel()
        self.viewers.pop(viewer.id, None)
        self._leave(viewer)

        async def close() -> None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(viewer.sink.close(code, reason), timeout=5)

        return asyncio.get_running_loop().create_task(close())

    def _check_stuck(self, tier: Tier) -> None:
        limit = self.settings.stuck_after_s
        now = time.monotonic()
        for viewer in list(tier.viewers):
            unacked = (
                viewer.acked_time is not None
                and viewer.sent_time > viewer.acked_time
                and now - viewer.last_ack > limit
            )
            if unacked or (
                (viewer.outbox or viewer.sending) and now - viewer.last_progress > limit
            ):
                self.closed_slow += 1
                self._close(
                    viewer,
                    CLOSE_TRY_AGAIN_LATER,
                    f"the viewer took nothing for {limit:g} s; reconnect when ready",
                )

    # ------------------------------------------------------------------ instance events
    async def instance_deleted(self, instance_id: int) -> None:
        leaving = [
            v for v in self.viewers.values() if v.instance_id == instance_id and not v.leaving
        ]
        for viewer in leaving:
            viewer.leaving = True
            self._leave(viewer)  # no more frames
            self._control(viewer, {"type": "bye", "reason": f"instance {instance_id} was deleted"})
        for viewer in leaving:
            await self._flush_then_close(viewer, CLOSE_NORMAL, "instance deleted")

    async def close_all(self, code: int = CLOSE_GOING_AWAY) -> int:
        """Close every viewer with ``code`` (the server is stopping) and return once each
        close frame is sent (or 5 s passed for one that takes nothing); returns how many."""
        closing = [
            self._close(viewer, code, "the server is shutting down")
            for viewer in list(self.viewers.values())
        ]
        for tier in list(self.tiers.values()):
            if tier.task is not None:
                tier.task.cancel()
        self.tiers.clear()
        sent = [task for task in closing if task is not None]
        await asyncio.gather(*sent, return_exceptions=True)
        return len(sent)

    async def _flush_then_close(self, viewer: Viewer, code: int, reason: str) -> None:
        # give the sender up to a second to deliver the bye; a stuck viewer is closed anyway
        deadline = time.monotonic() + 1.0
        while (viewer.outbox or viewer.sending) and not viewer.closed:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.01)
        self._close(viewer, code, reason)

    # ------------------------------------------------------------------ publishing
    async def _tier_loop(self, tier: Tier) -> None:
        period = 1.0 / tier.rate
        loop = asyncio.get_running_loop()
        due = loop.time()
        while tier.viewers:
            try:
                await self.publish(tier)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not freeze every viewer: log it, go on
                log.exception("stream publish failed", instance=tier.instance_id)
            due += period
            delay = due - loop.time()
            if delay < 0:  # we fell behind (a long call held the lock): skip, never burst
                due = loop.time()
                delay = 0.0
            await asyncio.sleep(delay)

    async def publish(self, tier: Tier) -> None:
        """One tick of one tier: build its sections once, hand them to every viewer."""
        self._check_stuck(tier)
        viewers = [v for v in tier.viewers if not v.closed]
        if not viewers:
            return
        inst = self.lab.instances.get(tier.instance_id)
        if inst is None:
            await self.instance_deleted(tier.instance_id)
            return
        lab = self.lab
        async with lab.hold(inst):
            snap = self._read(tier, inst, viewers)
            if snap is not None:
                request = snap.pop("request")
                material = await lab.ask(inst, lambda k: lab.host.frame(k, request))
                if "summary" in material:
                    material["summary"] = {
                        "id": inst.id,
                        "name": inst.name,
                        "preset": inst.preset,
                        "summary": material["summary"],
                    }
                snap.update(material)
        if snap is not None:
            self._deliver(tier, inst, viewers, snap)

    def _read(self, tier: Tier, inst: Instance, viewers: list[Viewer]) -> dict[str, Any] | None:
        """Everything this tick needs from the lab's side of the instance, read under its
        lock, and in ``request`` what it needs from the machine (``Shard.frame``: plain
        Python objects; encoding happens after the lock is released)."""
        if inst.generation != tier.generation:  # a new tier, or the machine was reset
            reset = tier.generation >= 0
            tier.generation = inst.generation
            tier.primed = False
            tier.last.clear()
            tier.pages.clear()
            tier.pagemaps.clear()
            tier.queues = None
            tier.event_seq = inst.seq
            tier.fn_counts = inst.fn_counts.copy()
            tier.move_counts = inst.move_counts.copy()
            tier.error_count = inst.error_count
            for v in viewers:
                if reset:  # everyone starts over from a new hello
                    self._want_hello(v)
                else:  # viewers moved here from another tier: their state in full
                    v.needs_full |= v.topics & STATE_TOPICS
        hellos = [v for v in viewers if v.needs_hello]
        fulls = [v for v in viewers if v.needs_full and not v.needs_hello]
        if tier.primed and tier.seq == inst.seq and not hellos and not fulls:
            return None  # nothing happened since the last tick
        wanted: set[str] = set()
        for v in viewers:
            wanted |= v.topics
        if hellos or not tier.primed:
            wanted |= {"vmstats", "queues", "threads", "pageout"}
        snap: dict[str, Any] = {
            "seq": inst.seq,
            "previous_seq": tier.seq if tier.primed else -1,
            "time": round(time.time(), 6),  # as frames render it: acks compare equal
            "hellos": hellos,
            "fulls": fulls,
        }
        request: dict[str, Any] = {"wanted": sorted(wanted), "summary": bool(hellos)}
        snap["fn_counts"] = inst.fn_counts.copy()
        snap["move_counts"] = inst.move_counts.copy()
        snap["error_count"] = inst.error_count
        if "events" in wanted:
            low = min([tier.event_seq] + [v.event_seq for v in viewers if "events" in v.topics])
            newest: list[dict[str, Any]] = []
            for e in reversed(inst.ring):
                if e["seq"] <= low:
                    break
                newest.append(e)
            newest.reverse()
            snap["ring"] = newest
        if "pages" in wanted:
            pfns: set[int] = set()
            for v in viewers:
                if "pages" in v.topics:
                    pfns.update(v.watch)
            request["pfns"] = sorted(pfns)
        if "pagemap" in wanted:
            request["pagemaps"] = list(
                dict.fromkeys(v.pagemap_params for v in viewers if "pagemap" in v.topics)
            )
        snap["request"] = request
        return snap

    def _events_section(
        self, tier: Tier, snap: dict[str, Any], start: int, cache: dict[int, tuple[str, str]]
    ) -> tuple[str, str] | None:
        """The events after seq ``start`` up to this tick: ``("events", json)`` or, when
        there are more than a frame carries, ``("events_summary", json)``."""
        end: int = snap["seq"]
        if end <= start:
            return None
        if start in cache:
            return cache[start]
        ring = [e for e in snap["ring"] if e["seq"] > start]
        count = end - start
        if count <= self.settings.events_per_frame and len(ring) == count:
            out = ("events", _dumps(ring))
        else:
            if start == tier.event_seq:  # exact, whatever the ring still holds
                by_fn = snap["fn_counts"] - tier.fn_counts
                moves = snap["move_counts"] - tier.move_counts
                errors = snap["error_count"] - tier.error_count
            else:  # a viewer that joined this tier late: what the ring still holds
                by_fn = Counter(e["fn"] for e in ring)
                moves = Counter()
                for e in ring:
                    for mv in e.get("moves", ()):
                        src = mv["from"].partition(":")[0]
                        dst = mv["to"].partition(":")[0]
                        moves[f"{src}->{dst}"] += 1
                errors = sum(1 for e in ring if "error" in e)
            summary = {
                "from_seq": start + 1,
                "to_seq": end,
                "count": count,
                "errors": errors,
                "by_fn": dict(by_fn.most_common()),
                "moves": dict(moves.most_common()),
                "tail": ring[-SUMMARY_TAIL:],
            }
            out = ("events_summary", _dumps(summary))
        cache[start] = out
        return out

    def _deliver(
        self, tier: Tier, inst: Instance, viewers: list[Viewer], snap: dict[str, Any]
    ) -> None:
        seq, tick, now = snap["seq"], snap["tick"], snap["time"]
        hellos: list[Viewer] = snap["hellos"]
        fulls: set[Viewer] = set(snap["fulls"])
        # --- state sections, shared by everyone whose state matches the tier's
        changed: dict[str, str] = {}
        full: dict[str, str] = {}
        for name in ("vmstats", "threads", "pageout"):
            if name in snap:
                text = _dumps(snap[name])
                full[name] = text
                if tier.last.get(name) != text:
                    changed[name] = text
                    tier.last[name] = text
        counts: np.ndarray | None = snap.get("queues")
        if counts is not None:
            full_queues = None
            if tier.queues is not None:
                delta = _queue_delta(tier.queues, counts)
                if delta:
                    changed["queues"] = _dumps({"full": False, "changed": delta})
            else:
                full_queues = _full_queues(counts)
                changed["queues"] = _dumps(full_queues)
            if hellos or fulls:
                full_queues = full_queues or _full_queues(counts)
                full["queues"] = _dumps(full_queues)
            tier.queues = counts
        page_text: dict[int, str] = {}
        page_changed: set[int] = set()
        for pfn, info in snap.get("pages", {}).items():
            text = _dumps(info)
            page_text[pfn] = text
            if tier.pages.get(pfn) != text:
                page_changed.add(pfn)
                tier.pages[pfn] = text
        map_text: dict[tuple[int | None, int | None, int], str] = {}
        map_changed: set[tuple[int | None, int | None, int]] = set()
        for key, body in snap.get("pagemaps", {}).items():
            text = _dumps(body)
            map_text[key] = text
            if tier.pagemaps.get(key) != text:
                map_changed.add(key)
                tier.pagemaps[key] = text
        # --- hellos: the snapshot this tick's frames are built on
        if hellos:
            limits = {
                "events_per_frame": self.settings.events_per_frame,
                "watch_pages": self.settings.watch_pages,
                "buffer_frames": self.settings.buffer_frames,
                "stuck_after_s": self.settings.stuck_after_s,
            }
            fields = {n: {"unit": u, "help": h} for n, (u, h) in VMSTATS_HELP.items()}
            assert counts is not None
            queues_text = _dumps(_full_queues(counts)["counts"])
            snapshot = (
                f'{{"vmstats":{full["vmstats"]},"queues":{queues_text},'
                f'"threads":{full["threads"]},"pageout":{full["pageout"]}}}'
            )
            common = _dumps(
                {
                    "protocol": PROTOCOL_VERSION,
                    "generation": inst.generation,
                    "seq": seq,
                    "tick": tick,
                    "time": now,
                    "instance": snap["summary"],
                    "fields": fields,
                    "limits": limits,
                }
            )
            for v in hellos:
                head = _dumps({"type": "hello", "topics": sorted(v.topics), "rate": v.rate})
                text = head[:-1] + "," + common[1:-1] + ',"snapshot":' + snapshot + "}"
                v.outbox = deque(it for it in v.outbox if isinstance(it, Control))
                self._push(v, Control(text))
                v.needs_hello = False
                v.needs_full = set(v.topics & {"pages", "pagemap"})
                v.event_seq = seq
        # --- frames: one string per distinct (topics, full, watch, pagemap) group
        events_cache: dict[int, tuple[str, str]] = {}
        built: dict[tuple[Any, ...], Frame | None] = {}
        hello_set = set(hellos)
        for v in viewers:
            if v.closed or (v in hello_set and not v.needs_full):
                continue
            want_full = set(v.needs_full)
            events = None
            if "events" in v.topics:
                events = self._events_section(tier, snap, v.event_seq, events_cache)
            key = (
                frozenset(v.topics),
                frozenset(want_full),
                v.watch if "pages" in v.topics else (),
                v.pagemap_params if "pagemap" in v.topics else None,
                events[1] if events is not None else None,
            )
            if key in built:
                frame = built[key]
            else:
                frame = self._build_frame(
                    v,
                    want_full,
                    events,
                    snap,
                    changed,
                    full,
                    counts,
                    page_text,
                    page_changed,
                    map_text,
                    map_changed,
                )
                if frame is not None:
                    tier.frames_built += 1
                    self.frames_built += 1
                built[key] = frame
            if "events" in v.topics:
                v.event_seq = seq
            v.needs_full.clear()
            if frame is not None:
                # each viewer gets its own Frame record (its outbox may strip it later)
                # sharing the rendered text
                mine = Frame(
                    frame.seq,
                    frame.tick,
                    frame.time,
                    frame.sections,
                    frame.events_from,
                    frame.events_to,
                    frame.text,
                )
                self._push(v, mine)
        tier.primed = True
        tier.seq = seq
        tier.event_seq = seq
        tier.fn_counts = snap["fn_counts"]
        tier.move_counts = snap["move_counts"]
        tier.error_count = snap["error_count"]

    def _build_frame(
        self,
        v: Viewer,
        want_full: set[str],
        events: tuple[str, str] | None,
        snap: dict[str, Any],
        changed: dict[str, str],
        full: dict[str, str],
        counts: np.ndarray | None,
        page_text: dict[int, str],
        page_changed: set[int],
        map_text: dict[tuple[int | None, int | None, int], str],
        map_changed: set[tuple[int | None, int | None, int]],
    ) -> Frame | None:
        """The frame for one group of viewers (same topics, same needs): rendered once."""
        sections: dict[str, str] = {}
        for name in ("vmstats", "queues", "threads", "pageout"):
            if name not in v.topics:
                continue
            if name in want_full:
                if name == "queues" and counts is not None:
                    sections[name] = full.get("queues") or _dumps(_full_queues(counts))
                elif name in full:
                    sections[name] = full[name]
            elif name in changed:
                sections[name] = changed[name]
        if "pages" in v.topics and v.watch:
            full_pages = "pages" in want_full
            pick = [p for p in v.watch if p in page_text and (full_pages or p in page_changed)]
            if pick:
                sections["pages"] = "{" + ",".join(f'"{p}":{page_text[p]}' for p in pick) + "}"
        if "pagemap" in v.topics:
            pkey = v.pagemap_params
            if pkey in map_text and ("pagemap" in want_full or pkey in map_changed):
                sections["pagemap"] = map_text[pkey]
        ev_from = ev_to = None
        if events is not None:
            sections[events[0]] = events[1]
            ev_from, ev_to = v.event_seq + 1, snap["seq"]
        if not sections and snap["seq"] == snap["previous_seq"]:
            return None  # nothing to say (a bare frame still says "current at seq")
        frame = Frame(snap["seq"], snap["tick"], snap["time"], sections, ev_from, ev_to)
        frame.render()
        return frame

    # ------------------------------------------------------------------ introspection
    def stats(self) -> dict[str, Any]:
        return {
            "viewers": len(self.viewers),
            "tiers": len(self.tiers),
            "frames_built": self.frames_built,
            "closed_slow": self.closed_slow,
        }
