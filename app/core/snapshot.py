"""Machine snapshots: a machine's full state as bytes (``dump``) and back (``load``).

A snapshot bounds the replay of a journal: load the newest one and run only the calls made
after it.  It holds *everything* that influences the machine's future, not only what
``state_digest`` hashes: the page arrays, the queue headers, vmstats and per-CPU state,
objects and their page trees, the DMA alist, the page hash, pmap mappings, the sysctl
values, threads and their sleep queues, the run queue, the pageout daemon's fields, the
seeded random generator and the console.

The state is walked generically (every field of ``MachineState`` and of each of its area
records, recursively), so a field added to the core later is captured without touching
this module; a value of a type that has no encoding here makes ``dump`` refuse, naming
it, rather than silently drop it.

Format (version 2; version 1 is still read)::

    MAGIC (8 bytes) | version: u32 | header length: u32 | header (JSON)
    | payload length: u64 | payload (zlib) | crc32 of everything before: u32

The header names the format, the ``MachineConfig`` (as plain JSON), the state digest and
the payload's size once uncompressed.  The payload is the Python-side state as JSON
followed by the numpy arrays in ``.npy`` form (read with ``allow_pickle=False``).  Nothing
is ever unpickled: users may upload snapshot files.

The state's JSON follows the fields' names: ``{"cpu", "threads", "machine": {field: ...},
"areas": {record: {field: ...}}}`` since version 2, when the flat machine became per-area
records (``vm.pq.lcnt``).  Version 1 kept every field flat under its old name
("q_lcnt", "pd_pass"); ``V1_FIELDS`` maps those to the records, so a version-1
snapshot loads into today's machine with the digest it was taken with (the digest does
not depend on where a field lives).

Threads: a thread parked inside a kernel call holds a Python generator, which cannot be
serialised.  A snapshot is therefore taken only at a *quiescent* point (``quiescent``):
no user thread sleeps or is runnable.  The one exception is the pageout daemon, which is
always asleep in its loop: the loop labels its sleeps (``vm_pageout._pageout_loop``) and a
loaded machine gives the daemon a fresh generator parked at the same label.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import random
import struct
import zlib
from collections import deque
from typing import Any

import numpy as np

from app.core.invariants import state_digest
from app.core.kern_synch import Thread, sleep_remedy
from app.core.vm_page.pagestate import FakePage
from app.core.vm_pageout import resume_pagedaemon

from .alist import Alist
from .config import MachineConfig, NumaRange, Topology
from .errors import ConfigError
from .machine import Machine
from .objects import ObjType, PageTree, VmObject
from .pages import PAGE_FIELDS, PageArray
from .seams import Policy
from .state import Cpu, MachineState
from .vmstats import VmStats

MAGIC = b"PLSNAP\r\n"  # the CR LF catches a file mangled by a text-mode transfer
FORMAT = "pagelab-snapshot"
FORMAT_VERSION = 2
#: zlib level: 1 compresses a busy 1 GiB machine's ~12 MB of arrays about as well as 6
#: (the arrays are mostly runs) in a fraction of the time (bench: ``durability``).
COMPRESSION_LEVEL = 1
#: Default cap on the uncompressed payload ``load`` accepts (a 64 GiB machine's arrays take
#: ~740 MB): a file that claims more is refused before anything is inflated.
MAX_STATE_BYTES = 1 << 30

_PREFIX = struct.Struct(">8sII")
_LENGTH = struct.Struct(">Q")
_CRC = struct.Struct(">I")

#: Classes whose instances are encoded field by field (slots, or the instance dict).
_CLASSES: dict[str, Any] = {
    "VmStats": VmStats,
    "Cpu": Cpu,
    "VmObject": VmObject,
    "Alist": Alist,
    "FakePage": FakePage,
    "Thread": Thread,
}
_ENUMS: dict[str, type[ObjType]] = {"ObjType": ObjType}
#: Fields a snapshot does not keep (``field`` or ``record.field``): views of other state,
#: rebuilt on load (the CPU the context names, the page hash's views onto its arrays),
#: Machine.call's cache of transient CPU threads (recreated on the next call), and the
#: configuration and threads, which travel apart.
_DERIVED = frozenset(
    {
        "cpu",
        "gd",
        "adj",
        "config",
        "policy",
        "hash.m",
        "hash.obj",
        "hash.pindex",
        "hash.ticks",
        "sched.idle_threads",
        "sched.threads",
    }
)
#: The page hash's views: field -> its array in ``hash.arrays``.
_HASH_VIEWS = {"m": "m", "obj": "object", "pindex": "pindex", "ticks": "ticks"}
#: The area records of ``MachineState`` (field name -> record class), in field order.
_AREAS: dict[str, Any] = {
    f.name: f.default_factory
    for f in dataclasses.fields(MachineState)
    if f.default_factory is not dataclasses.MISSING
}
#: Version 1's flat names of the fields that moved into the records (the same table as
#: the codemod that moved them); every other version-1 name is a ``MachineState`` field.
V1_FIELDS: dict[str, tuple[str, str]] = {
    "q_head": ("pq", "head"),
    "q_tail": ("pq", "tail"),
    "q_lcnt": ("pq", "lcnt"),
    "q_adds": ("pq", "adds"),
    "q_lastq": ("pq", "lastq"),
    "set_assoc_mask": ("pq", "set_assoc_mask"),
    "_selected_queue": ("pq", "selected_queue"),
    "objects": ("vmobj", "objects"),
    "next_object_id": ("vmobj", "next_object_id"),
    "page_hash_size": ("hash", "size"),
    "_hash_arrays": ("hash", "arrays"),
    "_hash_alloc_size": ("hash", "alloc_size"),
    "vm_contig_alist": ("contig", "alist"),
    "vm_contig_verbose": ("contig", "verbose"),
    "vm_low_phys_reserved": ("contig", "vm_low_phys_reserved"),
    "vm_dma_reserved": ("contig", "vm_dma_reserved"),
    **{
        name: ("pd", name)
        for name in (
            "vm_pages_needed",
            "vm_pageout_deficit",
            "vm_pages_waiting",
            "vm_pageout_pages_needed",
            "vm_page_free_hysteresis",
            "vm_max_launder",
            "vm_page_max_wired",
            "vm_pageout_stats_scan",
            "vm_pageout_stats_ticks",
        )
    },
    **{
        f"pd_{name}": ("pd", name)
        for name in (
            "enabled",
            "state",
            "q1",
            "q2",
            "q3",
            "uptime",
            "rover",
            "hold_cursor",
            "stats_cursor",
            "active_cursor",
            "counter0",
            "counter1",
            "recycle_count",
            "passes",
            "pass_tick",
            "tick_passes",
            "parked_at",
        )
    },
    "pd_pass": ("pd", "pass_"),
    "sleepq": ("sched", "sleepq"),
    "runq": ("sched", "runq"),
    "sleep_seq": ("sched", "sleep_seq"),
    "ticks": ("sched", "ticks"),
    "hz": ("sched", "hz"),
    "_tick_resumed": ("sched", "tick_resumed"),
    "pmap_mappings": ("pmap", "mappings"),
    "pmap_mapping_count": ("pmap", "mapping_count"),
    "page_zeroed": ("pmap", "page_zeroed"),
    "dnweight": ("pagestate", "dnweight"),
    "fake_pages": ("pagestate", "fake_pages"),
    "boot_stage": ("startup", "boot_stage"),
    "boot_console": ("startup", "boot_console"),
    "vm_page_array_start": ("startup", "vm_page_array_start"),
    "vm_page_array_end": ("startup", "vm_page_array_end"),
    "minidump_bitmap": ("startup", "minidump_bitmap"),
    "sysctl_values": ("sysctl", "values"),
}
_UNSET: Any = object()
_PAGEOUT_FN = "vm_pageout_thread"


class SnapshotError(Exception):
    """A snapshot that cannot be taken (the machine is not quiescent, a value has no
    encoding) or read (not a snapshot, a newer format, truncated, corrupt)."""


# ---------------------------------------------------------------- quiescence
def busy_reason(m: Machine) -> str | None:
    """Why ``m`` cannot be snapshotted now (a thread sleeps or is runnable in a call),
    or None when it is quiescent."""
    if m.trace is not None:
        return "a call is running"
    if m.sched.runq:
        return f"thread {m.sched.runq[0].tid} is runnable"
    for tid in sorted(m.sched.threads):
        th = m.sched.threads[tid]
        if th.state == "idle":
            continue
        if th.is_pagedaemon and th.state == "sleeping" and th.fn == _PAGEOUT_FN:
            continue
        return (
            f"thread {tid} is {th.state} in {th.fn} (on {th.channel}); a snapshot is taken "
            f"only when no thread sleeps in a call: {sleep_remedy(m, th, other_thread=False)}"
        )
    return None


def quiescent(m: Machine) -> bool:
    """True when no thread but the pageout daemon is inside a kernel call."""
    return busy_reason(m) is None


# ---------------------------------------------------------------- configuration
def config_to_json(config: MachineConfig) -> dict[str, Any]:
    """A configuration as plain JSON (the header's; the lab's journal uses the same shape)."""
    topo = config.topology
    return {
        "phys_avail": [list(r) for r in config.phys_avail],
        "cpus": config.cpus,
        "topology": None if topo is None else dataclasses.asdict(topo),
        "numa": [dataclasses.asdict(r) for r in config.numa],
        "seed": config.seed,
        "boot_stage": config.boot_stage,
        "dma_reserved": config.dma_reserved,
        "hz": config.hz,
        "max_pages": config.max_pages,
        "pagedaemon": config.pagedaemon,
        "name": config.name,
        "extra": dict(config.extra),
        "policy": [list(pair) for pair in config.policy],
    }


def config_from_json(data: Any) -> MachineConfig:
    """The configuration a header names, validated (``ConfigError`` if it is not one)."""
    try:
        topo = data["topology"]
        config = MachineConfig(
            phys_avail=tuple((int(b), int(e)) for b, e in data["phys_avail"]),
            cpus=int(data["cpus"]),
            topology=None if topo is None else Topology(**topo),
            numa=tuple(NumaRange(**r) for r in data["numa"]),
            seed=int(data["seed"]),
            boot_stage=data["boot_stage"],
            dma_reserved=int(data["dma_reserved"]),
            hz=int(data["hz"]),
            max_pages=int(data["max_pages"]),
            pagedaemon=bool(data["pagedaemon"]),
            name=str(data["name"]),
            extra={str(k): str(v) for k, v in data.get("extra", {}).items()},
            policy=tuple((str(s), str(c)) for s, c in data.get("policy", [])),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ConfigError(f"the configuration is not readable ({e!r})") from None
    config.validate()
    return config


# ---------------------------------------------------------------- encoding
class _Encoder:
    """Python-side state to JSON-able values; numpy arrays go to ``arrays`` (by index)."""

    def __init__(self, m: Machine) -> None:
        self.arrays: list[np.ndarray[Any, Any]] = []
        self.threads = {id(th): tid for tid, th in m.sched.threads.items()}

    def value(self, v: Any, path: str) -> Any:
        kind = type(v)
        if v is None or kind in (int, str, bool, float):
            return v
        if kind is list:
            if all(type(x) is int for x in v):  # the common case: queue headers, cursors
                return v[:]
            return [self.value(x, f"{path}[{k}]") for k, x in enumerate(v)]
        if kind is tuple:
            return {"tuple": [self.value(x, f"{path}[{k}]") for k, x in enumerate(v)]}
        if kind is dict:
            return {"dict": self.pairs(v.items(), path)}
        if kind is PageTree:
            return {"sorted": self.pairs(v.items(), path)}
        if kind is deque:
            return {"deque": [self.value(x, f"{path}[{k}]") for k, x in enumerate(v)]}
        if kind is np.ndarray:
            self.arrays.append(v)
            return {"array": len(self.arrays) - 1}
        if kind is Thread and id(v) in self.threads:
            return {"thread": self.threads[id(v)]}  # a reference into ``threads``
        if kind is Thread:
            # ``curthread`` may be a transient thread no longer in ``threads`` (a call
            # that ran on a fresh thread and returned or was refused): every call enters
            # its own thread first, so only its fields matter, not a leftover generator
            return self.thread(v, path, transient=True)
        if kind is random.Random:
            return {"random": self.value(v.getstate(), f"{path}.state")}
        if kind in _ENUMS.values():
            return {"enum": kind.__name__, "value": int(v)}
        if kind is PageArray:
            return {"pages": {name: self.value(v.arrays[name], path) for name in PAGE_FIELDS}}
        if kind in _CLASSES.values():
            return {"obj": kind.__name__, "fields": self.fields(v, path)}
        raise SnapshotError(f"{path} holds a {kind.__name__}, which has no snapshot encoding")

    def pairs(self, items: Any, path: str) -> list[list[Any]]:
        return [[self.value(k, path), self.value(x, f"{path}[{k!r}]")] for k, x in items]

    def fields(self, obj: Any, path: str) -> dict[str, Any]:
        names = _field_names(obj)
        return {name: self.value(getattr(obj, name), f"{path}.{name}") for name in names}

    def thread(self, th: Thread, path: str, transient: bool = False) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        out = {"obj": "Thread", "fields": fields}
        for name in _THREAD_FIELDS:
            if name == "gen":
                continue
            fields[name] = self.value(getattr(th, name), f"{path}.{name}")
        if th.gen is not None and not transient:
            if not (th.is_pagedaemon and th.fn == _PAGEOUT_FN):
                raise SnapshotError(f"{path} (thread {th.tid}) is inside {th.fn}")
            fields["gen"] = "pageout"
        else:
            fields["gen"] = None
        return out


def _attr_names(cls: type) -> tuple[str, ...] | None:
    """A slotted class's instance attributes: its ``__slots__`` in the source build, or
    ``__mypyc_attrs__`` when mypyc compiled it (native classes have no ``__slots__``);
    None for a class that keeps a ``__dict__``."""
    slots = getattr(cls, "__slots__", None)
    if slots is None:
        slots = getattr(cls, "__mypyc_attrs__", None)
    if slots is None:
        return None
    names = (slots,) if isinstance(slots, str) else tuple(slots)
    return tuple(n for n in names if not n.startswith("__"))


def _field_names(obj: Any) -> list[str]:
    names = _attr_names(type(obj))
    if names is not None and not hasattr(obj, "__dict__"):
        return list(names)
    return list(vars(obj))


#: A thread's fields (``Thread.__slots__``, or the compiled class's attributes).
_THREAD_FIELDS: tuple[str, ...] = _attr_names(Thread) or ()


class _Decoder:
    def __init__(self, arrays: list[np.ndarray[Any, Any]]) -> None:
        self.arrays = arrays
        self.threads: dict[int, Thread] = {}

    def value(self, v: Any) -> Any:
        if v is None or type(v) in (int, str, bool, float):
            return v
        if type(v) is list:
            if all(type(x) is int for x in v):
                return v
            return [self.value(x) for x in v]
        if type(v) is not dict or len(v) not in (1, 2):
            raise SnapshotError(f"an encoded value is malformed: {str(v)[:60]}")
        if "tuple" in v:
            return tuple(self.value(x) for x in v["tuple"])
        if "dict" in v:
            return {self.value(k): self.value(x) for k, x in v["dict"]}
        if "sorted" in v:
            return PageTree((self.value(k), self.value(x)) for k, x in v["sorted"])
        if "deque" in v:
            return deque(self.value(x) for x in v["deque"])
        if "array" in v:
            return self.arrays[v["array"]]
        if "thread" in v:
            return self.threads[v["thread"]]
        if "random" in v:
            rng = random.Random()
            rng.setstate(self.value(v["random"]))
            return rng
        if "enum" in v:
            return _ENUMS[v["enum"]](v["value"])
        if "pages" in v:
            return _page_array({name: self.value(a) for name, a in v["pages"].items()})
        if "obj" in v:
            return self.obj(v["obj"], v["fields"])
        raise SnapshotError(f"an encoded value has an unknown tag: {sorted(v)}")

    def obj(self, name: str, fields: dict[str, Any]) -> Any:
        cls = _CLASSES[name]
        if cls is Thread:
            # made by its constructor, then every field set: a class mypyc compiled
            # cannot be made by ``__new__`` alone
            th = Thread(0, 0)
            if sorted(fields) != sorted(_THREAD_FIELDS):
                raise SnapshotError(f"a Thread record has fields {sorted(fields)}")
            for slot in _THREAD_FIELDS:
                value = fields[slot]
                setattr(th, slot, None if slot == "gen" else self.value(value))
            if fields["gen"] == "pageout":
                th.gen = _PENDING_GEN  # replaced once the machine is whole
            return th
        obj = _template(name)
        expected = _field_names(obj)
        if sorted(fields) != sorted(expected):
            raise SnapshotError(f"a {name} record has fields {sorted(fields)}, not {expected}")
        for key in expected:
            setattr(obj, key, self.value(fields[key]))
        return obj


#: Placeholder for the daemon's generator until ``resume_pagedaemon`` builds it.
_PENDING_GEN: Any = object()


def _template(name: str) -> Any:
    """A freshly made object of the class, for its field names."""
    if name == "VmStats":
        return VmStats()
    if name == "Cpu":
        return Cpu(0, 0)
    if name == "VmObject":
        return VmObject(1, ObjType.OBJT_DEFAULT, 1, 0)
    if name == "Alist":
        return Alist(1)
    return FakePage(0, 0)


def _page_array(arrays: dict[str, np.ndarray[Any, Any]]) -> PageArray:
    if sorted(arrays) != sorted(PAGE_FIELDS):
        raise SnapshotError(f"the page arrays are {sorted(arrays)}, not {sorted(PAGE_FIELDS)}")
    sizes = {a.shape for a in arrays.values()}
    if len(sizes) != 1 or len(next(iter(sizes))) != 1:
        raise SnapshotError("the page arrays differ in shape")
    for name, dtype in PAGE_FIELDS.items():
        if arrays[name].dtype != np.dtype(dtype):
            raise SnapshotError(f"page array {name} has dtype {arrays[name].dtype}, not {dtype}")
    # the records are built from the canonical arrays (copied into the page array's vecs)
    try:
        return PageArray(next(iter(sizes))[0], arrays)
    except ValueError as e:
        raise SnapshotError(str(e)) from None


# ---------------------------------------------------------------- dump / load
@dataclasses.dataclass(frozen=True, slots=True)
class Capture:
    """A machine's state copied out (``capture``), not yet compressed (``pack``): the
    copy is taken while the machine holds still, the compression can run elsewhere."""

    header: dict[str, Any]
    body: bytes

    @property
    def digest(self) -> str:
        digest: str = self.header["digest"]
        return digest


def capture(m: Machine, digest: str | None = None, extra: dict[str, Any] | None = None) -> Capture:
    """Copy the machine's full state out.  ``digest`` is ``m.state_digest()`` if the
    caller has it already; ``extra`` (plain JSON) rides along in the header, for readers
    that only want the header (a summary, say).  Refuses (``SnapshotError``) when a thread other than the
    pageout daemon is inside a call."""
    reason = busy_reason(m)
    if reason is not None:
        raise SnapshotError(f"the machine is not quiescent: {reason}")
    if m.gd is not m.cpu.vmstats or m.adj is not m.cpu.adj or m.cpus[m.cpu.cpuid] is not m.cpu:
        raise SnapshotError("the calling context's CPU fields disagree")
    enc = _Encoder(m)
    threads = [[tid, enc.thread(th, f"threads[{tid}]")] for tid, th in m.sched.threads.items()]
    fields = {path: enc.value(value, path) for path, value in _walk(m)}
    state: dict[str, Any] = {
        "cpu": m.cpu.cpuid,
        "threads": threads,
        "machine": {path: v for path, v in fields.items() if "." not in path},
        "areas": {
            area: {
                path.partition(".")[2]: v
                for path, v in fields.items()
                if path.startswith(area + ".")
            }
            for area in _AREAS
        },
    }
    raw = io.BytesIO()
    text = json.dumps(state, separators=(",", ":")).encode()
    raw.write(_LENGTH.pack(len(text)))
    raw.write(text)
    for arr in enc.arrays:
        np.lib.format.write_array(raw, np.ascontiguousarray(arr), allow_pickle=False)
    body = raw.getvalue()
    header = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "config": config_to_json(m.config),
        "digest": digest if digest is not None else state_digest(m),
        "compression": "zlib",
        "state_bytes": len(body),
        "arrays": len(enc.arrays),
    }
    if extra is not None:
        header["extra"] = extra
    return Capture(header, body)


def _walk(m: MachineState) -> list[tuple[str, Any]]:
    """Every field a snapshot keeps, as (``field`` or ``record.field``, value), in the
    records' field order; refuses (``SnapshotError``) a field boot never set."""
    # curthread is declared on MachineState's base, not among its dataclass fields
    out: list[tuple[str, Any]] = [("curthread", getattr(m, "curthread", _UNSET))]
    for f in dataclasses.fields(MachineState):
        value = getattr(m, f.name, _UNSET)
        if f.name in _AREAS:
            for g in dataclasses.fields(value):
                path = f"{f.name}.{g.name}"
                if path not in _DERIVED:
                    out.append((path, getattr(value, g.name, _UNSET)))
        elif f.name not in _DERIVED:
            out.append((f.name, value))
    unset = [path for path, value in out if value is _UNSET]
    if unset:
        raise SnapshotError(f"the machine's {', '.join(unset)} were never set (not booted?)")
    return out


def pack(c: Capture) -> bytes:
    """A captured state as snapshot bytes (compressed, with header and checksum)."""
    header = json.dumps(c.header, separators=(",", ":")).encode()
    payload = zlib.compress(c.body, COMPRESSION_LEVEL)
    out = b"".join(
        (
            _PREFIX.pack(MAGIC, FORMAT_VERSION, len(header)),
            header,
            _LENGTH.pack(len(payload)),
            payload,
        )
    )
    return out + _CRC.pack(zlib.crc32(out))


def dump(m: Machine, digest: str | None = None) -> bytes:
    """The machine's full state as a snapshot (``capture`` then ``pack``)."""
    return pack(capture(m, digest))


def read_header(data: bytes) -> dict[str, Any]:
    """The header of a snapshot (format, version, config, digest, sizes), checked: the
    magic, the version, the lengths and the checksum."""
    header, _ = _split(data)
    return header


def _split(data: bytes) -> tuple[dict[str, Any], memoryview]:
    view = memoryview(data)
    if len(view) < _PREFIX.size or bytes(view[:8]) != MAGIC:
        raise SnapshotError(
            "this is not a PageLab snapshot: it does not start with the snapshot magic "
            "(export one with GET /api/v1/instances/{id}/snapshot)"
        )
    _, version, header_len = _PREFIX.unpack_from(view)
    if version > FORMAT_VERSION:
        raise SnapshotError(
            f"the snapshot has format version {version}, newer than this server reads "
            f"({FORMAT_VERSION}); load it with a newer PageLab"
        )
    if version < 1:
        raise SnapshotError(f"snapshot format version {version} does not exist")
    at = _PREFIX.size + header_len
    if len(view) < at + _LENGTH.size:
        raise SnapshotError(
            f"the snapshot is truncated: {len(view)} bytes, its header alone needs more"
        )
    (payload_len,) = _LENGTH.unpack_from(view, at)
    end = at + _LENGTH.size + payload_len
    if len(view) != end + _CRC.size:
        raise SnapshotError(
            f"the snapshot is truncated or has trailing bytes: {len(view)} bytes, its lengths "
            f"say {end + _CRC.size}"
        )
    (crc,) = _CRC.unpack_from(view, end)
    if zlib.crc32(view[:end]) != crc:
        raise SnapshotError("the snapshot is corrupt: its checksum does not match its contents")
    try:
        header = json.loads(bytes(view[_PREFIX.size : at]))
    except ValueError:
        raise SnapshotError("the snapshot's header is not JSON") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise SnapshotError(f"the snapshot's header does not name the format {FORMAT!r}")
    if header.get("version") != version:
        raise SnapshotError("the snapshot's header and prefix disagree on its version")
    return header, view[at + _LENGTH.size : end]


def load(data: bytes, *, verify: bool = True, max_state_bytes: int = MAX_STATE_BYTES) -> Machine:
    """The machine a snapshot holds.  With ``verify`` (the default) its state digest
    must equal the one recorded when it was taken.  Every problem is a
    ``SnapshotError`` saying what is wrong with the file."""
    header, payload = _split(data)
    try:
        config = config_from_json(header.get("config"))
    except ConfigError as e:
        raise SnapshotError(f"the snapshot's configuration cannot be booted: {e}") from None
    size = header.get("state_bytes")
    if type(size) is not int or not 0 < size <= max_state_bytes:
        raise SnapshotError(
            f"the snapshot's state is {size!r} bytes; this server reads at most {max_state_bytes}"
        )
    try:
        inflater = zlib.decompressobj()
        body = inflater.decompress(payload, size + 1)
    except zlib.error as e:
        raise SnapshotError(f"the snapshot is corrupt: it does not decompress ({e})") from None
    if len(body) != size or not inflater.eof:
        raise SnapshotError("the snapshot is corrupt: its state is not the size its header says")
    try:
        m = _build(config, body, header.get("arrays"), header["version"])
    except SnapshotError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
        raise SnapshotError(
            f"the snapshot's state is malformed ({type(e).__name__}: {e})"
        ) from None
    if verify:
        got = state_digest(m)
        if got != header.get("digest"):
            raise SnapshotError(
                f"the loaded machine's digest {got} differs from the recorded "
                f"{header.get('digest')}: the snapshot is corrupt or from an incompatible version"
            )
    return m


def _build(config: MachineConfig, body: bytes, count: Any, version: int) -> Machine:
    buf = io.BytesIO(body)
    (text_len,) = _LENGTH.unpack(buf.read(_LENGTH.size))
    state = json.loads(buf.read(text_len))
    if type(count) is not int or count < 0:
        raise SnapshotError("the snapshot's header does not say how many arrays it holds")
    arrays = [np.lib.format.read_array(buf, allow_pickle=False) for _ in range(count)]
    if buf.read(1):
        raise SnapshotError("the snapshot's state has bytes after its last array")
    if type(state) is not dict:
        raise SnapshotError("the snapshot's state is not a record of fields")
    dec = _Decoder(arrays)
    threads = {}
    for tid, record in state.pop("threads"):
        th = dec.value(record)
        if type(th) is not Thread or th.tid != tid:
            raise SnapshotError(f"thread record {tid!r} is malformed")
        threads[tid] = th
        dec.threads[tid] = th
    cpuid = state.pop("cpu")
    fields = _v1_fields(state) if version == 1 else _v2_fields(state)
    m = Machine()
    m.config = config
    m.policy = Policy(dict(config.policy))
    expected = _expected_fields()
    missing = {path for path, (_, required) in expected.items() if required} - set(fields)
    if missing:
        raise SnapshotError(f"the snapshot lacks the machine's {', '.join(sorted(missing))}")
    for path, value in fields.items():
        decoded = dec.value(value)
        kind = expected.get(path, (None, False))[0]
        if kind is None or not (type(decoded) is kind or decoded is None or kind is type(None)):
            raise SnapshotError(
                f"the snapshot's machine field {path[:40]!r} is not one it can have"
            )
        area, dot, name = path.rpartition(".")
        setattr(getattr(m, area) if dot else m, name, decoded)
    m.sched.threads = threads
    m.select_cpu(cpuid)
    hash_arrays = m.hash.arrays
    for attr, key in _HASH_VIEWS.items():
        view = None if hash_arrays is None else memoryview(hash_arrays[key])  # type: ignore[arg-type]
        setattr(m.hash, attr, view)
    if m.pg.size != m.page_range:
        raise SnapshotError(f"the page arrays hold {m.pg.size} pages, the machine {m.page_range}")
    for th in threads.values():
        if th.gen is _PENDING_GEN:
            if th.state != "sleeping":
                raise SnapshotError(f"the pageout daemon (thread {th.tid}) is {th.state}")
            resume_pagedaemon(m, th)
        elif th.state != "idle":
            raise SnapshotError(f"thread {th.tid} is {th.state} without a call to resume")
    return m


def _v2_fields(state: dict[str, Any]) -> dict[str, Any]:
    """Version 2's fields by path (``lcnt`` of ``areas.pq`` -> ``pq.lcnt``)."""
    fields: dict[str, Any] = {_plain(name): v for name, v in state.pop("machine").items()}
    areas = state.pop("areas")
    if state or type(areas) is not dict:
        raise SnapshotError(f"the snapshot's state has parts {sorted(state)[:5]} it cannot have")
    for area, record in areas.items():
        if area not in _AREAS or type(record) is not dict:
            raise SnapshotError(
                f"the snapshot's machine field {area[:40]!r} is not one it can have"
            )
        fields.update({f"{area}.{_plain(name)}": value for name, value in record.items()})
    return fields


def _plain(name: str) -> str:
    """A field's name as a snapshot gives it: no path of its own."""
    if type(name) is not str or "." in name:
        raise SnapshotError(f"the snapshot's machine field {name[:40]!r} is not one it can have")
    return name


def _v1_fields(state: dict[str, Any]) -> dict[str, Any]:
    """Version 1's flat fields by today's path ("q_lcnt" -> ``pq.lcnt``)."""
    fields: dict[str, Any] = {}
    for name, value in state.items():
        area, field = V1_FIELDS.get(name, ("", _plain(name)))
        fields[f"{area}.{field}" if area else field] = value
    return fields


@functools.cache
def _expected_fields() -> dict[str, tuple[type, bool]]:
    """Every field a snapshot keeps, with the type of its value in a booted machine and
    whether a snapshot must give it (a field with a default may be absent: version 1
    left out values never set).  A tiny machine is booted once to find them."""
    probe = Machine.boot(MachineConfig.from_size("4MiB", pagedaemon=True))
    defaults = {
        f"{area}.{g.name}"
        for area, cls in _AREAS.items()
        for g in dataclasses.fields(cls)
        if g.default is not dataclasses.MISSING or g.default_factory is not dataclasses.MISSING
    }
    return {path: (type(value), path not in defaults) for path, value in _walk(probe)}


__all__ = [
    "Capture",
    "FORMAT_VERSION",
    "MAGIC",
    "SnapshotError",
    "busy_reason",
    "capture",
    "config_from_json",
    "config_to_json",
    "dump",
    "load",
    "pack",
    "quiescent",
    "read_header",
]
