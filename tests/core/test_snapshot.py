"""Tests for app.core.snapshot: a loaded snapshot is the same machine — same digest, same
invariants, and, the strong test, the same future: the golden streams continued from
snapshots taken mid-stream give every frozen outcome."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest

from app.core import snapshot
from app.core.config import MachineConfig, NumaRange, Topology
from app.core.invariants import check_invariants, state_digest
from app.core.machine import Machine
from app.core.snapshot import SnapshotError
from app.core.vm_pageout import PAGEDAEMON_TID
from app.lab.presets import PRESETS
from tests.golden.corpus import HERE, machine_for, outcome, read

GOLDEN = sorted(HERE.glob("stream-*.jsonl"))


def reload(m: Machine) -> Machine:
    return snapshot.load(snapshot.dump(m))


def busy_machine(config: MachineConfig) -> Machine:
    """A machine with objects, mapped and dirty pages, a sysctl write and some ticks."""
    m = Machine.boot(config)
    obj = m.call("vm_object_allocate", {"type": "OBJT_DEFAULT", "size": 64}).result
    for k in range(40):
        pfn = m.call("vm_page_alloc", {"object": obj, "pindex": k, "page_req": "NORMAL"}).result
        if k % 3 == 0:
            m.call("pmap_enter", {"m": pfn, "pmap": 1, "writeable": True})
        if k % 5 == 0:
            m.call("vm_page_deactivate", {"m": pfn})
        m.call("vm_page_wakeup", {"m": pfn})
    m.call("sysctl", {"name": "vm.anonmem_decline", "value": 3})
    m.call("tick", {"n": 25})
    return m


def twin_calls(m: Machine) -> list[Any]:
    """The same calls on a machine and its loaded snapshot: what they return."""
    out = []
    obj = m.call("vm_object_allocate", {"type": "OBJT_SWAP", "size": 8}).result
    for k in range(8):
        out.append(
            m.call("vm_page_alloc", {"object": obj, "pindex": k, "page_req": "NORMAL"}).result
        )
    out.append(m.call("tick", {"n": 40}).result)
    out.append(m.call("vm_page_alloc", {"page_req": "NORMAL"}).result)  # a random colour
    return out


CONFIGS = {
    "teaching-1g": PRESETS["teaching-1g"].config,
    "pc-holes": PRESETS["pc-holes"].config,
    "tiny-16m": PRESETS["tiny-16m"].config,
    "numa-2-sockets": MachineConfig.from_size(
        "16MiB", sockets=2, cores=2, threads=1, seed=5, pagedaemon=True
    ),
    "numa-ranges": MachineConfig(
        phys_avail=((0x1000, 0x1000000),),
        cpus=2,
        topology=Topology(2, 1, 1),
        numa=(NumaRange(0x1000, 0x7FF000, 1), NumaRange(0x800000, 0x800000, 0)),
        seed=3,
    ),
    "early-boot": MachineConfig.from_size("8MiB", boot_stage="early"),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_a_loaded_snapshot_is_the_same_machine_with_the_same_future(name: str) -> None:
    config = CONFIGS[name]
    m = busy_machine(config) if config.boot_stage == "finished" else Machine.boot(config)
    data = snapshot.dump(m)
    assert data.startswith(snapshot.MAGIC)
    assert snapshot.read_header(data)["config"] == snapshot.config_to_json(config)
    loaded = snapshot.load(data)
    assert loaded.config == config
    assert loaded.state_digest() == state_digest(m)
    loaded.check_invariants()
    assert loaded.console == m.console
    if config.boot_stage == "finished":
        # the random generator, the page hash, the daemon: the next calls agree too
        assert twin_calls(loaded) == twin_calls(m)
        assert loaded.state_digest() == state_digest(m)
        loaded.check_invariants()


def test_the_two_machines_share_nothing() -> None:
    m = busy_machine(CONFIGS["tiny-16m"])
    loaded = reload(m)
    digest = state_digest(m)
    loaded.call("vm_page_alloc", {"page_req": "NORMAL"})
    loaded.call("tick", {"n": 3})
    assert state_digest(m) == digest != loaded.state_digest()


def test_state_added_for_issue_9_travels_in_a_snapshot() -> None:
    """An object's kernel address (its page hash key), the boot console and the pager's
    vmmeter counters are machine state like any other."""
    m = busy_machine(CONFIGS["tiny-16m"])
    kaddr = 0xFFFFF80000001000
    oid = int(m.call("vm_object_allocate", {"addr": kaddr}).result)
    m.call("vm_page_alloc", {"object": oid, "pindex": 3, "page_req": "NORMAL"})
    m.cpus[0].meter["v_swapout"] = 5
    loaded = reload(m)
    assert loaded.vmobj.objects[oid].addr == kaddr
    assert loaded.startup.boot_console == m.startup.boot_console and loaded.startup.boot_console
    assert loaded.cpus[0].meter["v_swapout"] == 5
    assert loaded.state_digest() == state_digest(m)
    # the hash lookup by (object, pindex) still finds the page under the kernel address
    assert (
        loaded.call("vm_page_lookup", {"object": oid, "pindex": 3}).result
        == m.call("vm_page_lookup", {"object": oid, "pindex": 3}).result
    )


@pytest.mark.parametrize("path", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_golden_streams_continue_exactly_from_snapshots_taken_mid_stream(path: Path) -> None:
    header, calls = read(path)
    m = machine_for(header)
    quiet = [k for k in range(len(calls)) if k % 3 == 0]  # candidates, checked below
    taken = 0
    for k, call in enumerate(calls, start=1):
        if k - 1 in quiet and snapshot.quiescent(m) and taken < 40:
            before = state_digest(m)
            m = reload(m)  # from now on the stream runs on the loaded machine
            assert state_digest(m) == before
            taken += 1
        got = outcome(m, call)
        assert got == call["outcome"], f"call {k} {call['fn']} after {taken} snapshots"
        if "digest" in call:
            assert state_digest(m) == call["digest"], f"digest after call {k}"
    assert taken > 0
    check_invariants(m)


def pressured() -> Machine:
    """A 16 MiB machine with the pageout daemon, most of its memory allocated."""
    m = Machine.boot(MachineConfig.from_size("16MiB", seed=2, pagedaemon=True))
    obj = m.call("vm_object_allocate", {"type": "OBJT_DEFAULT", "size": 1 << 20}).result
    for k in range(m.vmstats.v_free_count - m.vmstats.v_free_min):
        pfn = m.call("vm_page_alloc", {"object": obj, "pindex": k, "page_req": "NORMAL"}).result
        if pfn is None:
            break
        m.call("vm_page_activate", {"m": pfn})
        m.call("vm_page_dirty" if k % 2 else "vm_page_wakeup", {"m": pfn})
        if k % 2:
            m.call("vm_page_wakeup", {"m": pfn})
    return m


def test_the_pageout_daemon_resumes_at_each_of_its_sleeps() -> None:
    """Under pressure the daemon sleeps at several labels of its loop (the golden
    streams reach "shortage" too); a machine reloaded at each of them goes on exactly as
    the one that never was."""
    m = pressured()
    twin = reload(m)
    labels: set[str] = set()
    objects = [
        machine.call("vm_object_allocate", {"type": "OBJT_DEFAULT", "size": 4096}).result
        for machine in (m, twin)
    ]
    for step in range(24):
        for machine, obj in zip((m, twin), objects, strict=True):
            for k in range(30):
                args = {"object": obj, "pindex": step * 30 + k, "page_req": "SYSTEM"}
                pfn = machine.call("vm_page_alloc", args).result
                if pfn is not None:
                    machine.call("vm_page_activate", {"m": pfn})
                    machine.call("vm_page_wakeup", {"m": pfn})
            if step % 2:
                machine.call("tick", {"n": 1})
        assert snapshot.quiescent(twin)
        labels.add(twin.pd.parked_at)
        twin = reload(twin)
        assert twin.sched.threads[PAGEDAEMON_TID].gen is not None
        assert twin.state_digest() == state_digest(m), f"step {step} ({twin.pd.parked_at})"
    twin.check_invariants()
    assert {"psleep", "throttle", "paging", "target"} <= labels


def test_a_machine_with_a_sleeping_thread_is_refused() -> None:
    m = pressured()
    m.call("vm_page_alloc", {"page_req": "NORMAL"})
    r = m.call("vm_wait", {"timo": 50}, thread=7)
    assert r.blocked is not None
    assert not snapshot.quiescent(m)
    with pytest.raises(SnapshotError, match="thread 7 is sleeping in vm_wait"):
        snapshot.dump(m)
    m.call("tick", {"n": 60})
    assert snapshot.quiescent(m)
    assert reload(m).state_digest() == state_digest(m)


# ---------------------------------------------------------------- bad files
@pytest.fixture(scope="module")
def good() -> bytes:
    return snapshot.dump(busy_machine(CONFIGS["tiny-16m"]))


def with_crc(body: bytes) -> bytes:
    return body + struct.pack(">I", zlib.crc32(body))


def test_bad_magic_is_refused(good: bytes) -> None:
    with pytest.raises(SnapshotError, match="not a PageLab snapshot"):
        snapshot.load(b"PK\x03\x04" + good[4:])
    with pytest.raises(SnapshotError, match="not a PageLab snapshot"):
        snapshot.load(b"")


def test_a_newer_format_version_is_refused(good: bytes) -> None:
    newer = good[:8] + struct.pack(">I", snapshot.FORMAT_VERSION + 1) + good[12:-4]
    newest = snapshot.FORMAT_VERSION
    with pytest.raises(
        SnapshotError, match=f"format version {newest + 1}, newer than this server reads"
    ):
        snapshot.load(with_crc(newer))


def test_truncated_data_is_refused(good: bytes) -> None:
    for cut in (20, len(good) // 2, len(good) - 1):
        with pytest.raises(SnapshotError, match="truncated"):
            snapshot.load(good[:cut])


def test_corrupt_bytes_are_refused(good: bytes) -> None:
    for at in (30, len(good) // 2, len(good) - 10):
        bad = bytearray(good)
        bad[at] ^= 0x40
        with pytest.raises(SnapshotError, match="corrupt"):
            snapshot.load(bytes(bad))


def rebuilt(good: bytes, edit_header: Any = None, edit_body: Any = None) -> bytes:
    """``good`` with its header or uncompressed body changed, lengths and checksum
    made right again: only the content checks can catch it."""
    import json

    header_len = struct.unpack(">I", good[12:16])[0]
    header = json.loads(good[16 : 16 + header_len])
    at = 16 + header_len
    (payload_len,) = struct.unpack(">Q", good[at : at + 8])
    body = zlib.decompress(good[at + 8 : at + 8 + payload_len])
    if edit_header is not None:
        edit_header(header)
    if edit_body is not None:  # on the state's JSON text
        (text_len,) = struct.unpack(">Q", body[:8])
        text = edit_body(body[8 : 8 + text_len])
        body = struct.pack(">Q", len(text)) + text + body[8 + text_len :]
        header["state_bytes"] = len(body)
    text = json.dumps(header).encode()
    payload = zlib.compress(body)
    out = good[:12] + struct.pack(">I", len(text)) + text + struct.pack(">Q", len(payload))
    return with_crc(out + payload)


def test_a_digest_that_does_not_match_is_refused(good: bytes) -> None:
    def other(h: dict[str, Any]) -> None:
        h["digest"] = "0" * 32

    with pytest.raises(SnapshotError, match="digest .* differs from the recorded"):
        snapshot.load(rebuilt(good, other))
    assert snapshot.load(rebuilt(good, other), verify=False).config == CONFIGS["tiny-16m"]


def test_content_that_is_not_a_machine_is_refused(good: bytes) -> None:
    def shadow(body: bytes) -> bytes:  # a field that would hide a method
        return body.replace(b'"machine":{', b'"machine":{"call":1,', 1)

    with pytest.raises(SnapshotError, match="'call' is not one it can have"):
        snapshot.load(rebuilt(good, edit_body=shadow))

    def stray(body: bytes) -> bytes:  # a field its record does not have
        return body.replace(b'"ticks":', b'"call":1,"ticks":', 1)

    with pytest.raises(SnapshotError, match="'sched.call' is not one it can have"):
        snapshot.load(rebuilt(good, edit_body=stray))

    def no_record(body: bytes) -> bytes:  # an area the machine does not have
        return body.replace(b'"areas":{', b'"areas":{"swap":{},', 1)

    with pytest.raises(SnapshotError, match="'swap' is not one it can have"):
        snapshot.load(rebuilt(good, edit_body=no_record))

    def typed(body: bytes) -> bytes:
        return body.replace(b'"objects":{"dict"', b'"objects":{"tuple"', 1)

    with pytest.raises(SnapshotError, match="'vmobj.objects' is not one it can have"):
        snapshot.load(rebuilt(good, edit_body=typed))

    def bomb(h: dict[str, Any]) -> None:
        h["state_bytes"] = 1 << 40

    with pytest.raises(SnapshotError, match="reads at most"):
        snapshot.load(rebuilt(good, bomb))

    def no_config(h: dict[str, Any]) -> None:
        h["config"]["phys_avail"] = []

    with pytest.raises(SnapshotError, match="configuration cannot be booted"):
        snapshot.load(rebuilt(good, no_config))


# ---------------------------------------------------------------- older formats
V1 = Path(__file__).parent / "snapshots"


def future(m: Machine) -> list[Any]:
    """The calls ``snapshots/make_v1.py`` ran after taking its snapshot (with the code of
    the time), and the digest after them."""
    out: list[Any] = []
    obj = m.call("vm_object_allocate", {"type": "OBJT_SWAP", "size": 64}).result
    out.append(obj)
    for k in range(12):
        out.append(
            m.call("vm_page_alloc", {"object": obj, "pindex": k, "page_req": "SYSTEM"}).result
        )
    out.append(m.call("tick", {"n": 20}).result)
    out.append(m.call("vm_page_alloc", {"page_req": "NORMAL"}).result)
    out.append(m.call("vm_page_lookup", {"object": 2, "pindex": 12}).result)
    out.append(m.call("vm_page_hash_get", {"object": 2, "pindex": 18}).result)
    out.append(m.state_digest())
    return out


def test_a_version_1_snapshot_loads_with_its_digest_and_its_future() -> None:
    """A snapshot written by format version 1 (flat fields: "q_lcnt", "pd_pass"; made
    by ``snapshots/make_v1.py`` at ff19a2e, before the per-area records) loads into
    today's machine with the digest it was taken with, and the calls that followed it
    then give what they gave then."""
    data = (V1 / "v1-8mib.plsnap").read_bytes()
    expected = json.loads((V1 / "v1-8mib.json").read_text())
    header = snapshot.read_header(data)
    assert header["version"] == 1 < snapshot.FORMAT_VERSION
    m = snapshot.load(data)  # verifies the recorded digest
    assert m.state_digest() == header["digest"] == expected["digest"]
    check_invariants(m)
    # the state that moved into records came along (not left at a record's default)
    assert m.pd.passes == 3 and m.pd.parked_at == "psleep"
    assert m.pagestate.fake_pages and m.pmap.mapping_count == 80
    assert m.hash.arrays is not None and m.hash.m is not None
    assert m.sched.threads[PAGEDAEMON_TID].gen is not None
    assert future(m) == expected["future"]
    # and it is written back in today's format, which loads to the same machine
    again = snapshot.dump(snapshot.load(data))
    assert snapshot.read_header(again)["version"] == snapshot.FORMAT_VERSION
    assert future(snapshot.load(again)) == expected["future"]


def test_a_version_1_snapshot_with_a_field_no_version_had_is_refused() -> None:
    data = (V1 / "v1-8mib.plsnap").read_bytes()
    with pytest.raises(SnapshotError, match="'pq.head' is not one it can have"):
        snapshot.load(rebuilt(data, edit_body=lambda b: b.replace(b'"q_head"', b'"pq.head"', 1)))
    with pytest.raises(SnapshotError, match="lacks the machine's pd.pass_"):
        snapshot.load(rebuilt(data, edit_body=lambda b: b.replace(b'"pd_pass"', b'"pd_pas"', 1)))
