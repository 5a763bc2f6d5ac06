"""Named seams (``app.core.seams``): each choice pinned to numbers worked out by hand, the
kernel's choice unchanged, and the choices validated, snapshotted and restored with the
configuration."""

from __future__ import annotations

from typing import Any

import pytest

from app.core import snapshot
from app.core.config import MachineConfig
from app.core.constants import PQ_ACTIVE, PQ_FREE, PQ_INACTIVE, PQ_L2_SIZE
from app.core.errors import ConfigError
from app.core.machine import Machine
from app.core.seams import SEAMS, check_policy, seams_catalogue


def _boot(**policy: str) -> Machine:
    return Machine.boot(MachineConfig.from_size("64MiB", cpus=4, seed=1, policy=policy))


def _alloc_event(m: Machine, obj: int, pindex: int, cpu: int) -> dict[str, Any]:
    r = m.call(
        "vm_page_alloc", {"object": obj, "pindex": pindex, "page_req": "VM_ALLOC_NORMAL"}, cpu=cpu
    )
    (event,) = [e for e in r.record["events"] if e["event"] == "alloc"]
    assert event["result"] == r.result
    return event


# ------------------------------------------------------------------ page_color
# 4 CPUs, no topology: cpuscale = 1024 / 4 = 256.  Object pg_color 10, pindex 300, CPU 2:
#   kernel: key = 300 + 10 = 310; colour = 2*256 + 310 % 256 = 512 + 54 = 566
#   object: (10 + 300) mod 1024 = 310, on any CPU
#   cpu:    2*256 + 300 % 256 = 512 + 44 = 556
#   none:   0
@pytest.mark.parametrize(
    ("choice", "color"), [("kernel", 566), ("object", 310), ("cpu", 556), ("none", 0)]
)
def test_page_color_choices(choice: str, color: int) -> None:
    m = _boot(page_color=choice)
    obj = m.call("vm_object_allocate", {"type": "OBJT_DEFAULT", "pg_color": 10}).result
    event = _alloc_event(m, obj, 300, cpu=2)
    assert event["color"] == color
    assert event["color_policy"] == choice
    # 64 MiB has 16 pages of every colour free: the exact queue's head is taken
    assert event["found_queue"] == PQ_FREE + color  # the lab names it PQ_FREE:<color>
    assert event["probes"] == [PQ_FREE + color]
    assert m.pg.pc[event["result"] - m.first_page] == color
    m.check_invariants()


def test_object_colouring_is_the_same_on_every_cpu_and_the_kernels_is_not() -> None:
    for choice, expect in (("object", [310] * 4), ("kernel", [54, 310, 566, 822])):
        m = _boot(page_color=choice)
        obj = m.call("vm_object_allocate", {"type": "OBJT_DEFAULT", "pg_color": 10}).result
        got = [_alloc_event(m, obj, 300 + cpu * 4096, cpu)["color"] for cpu in range(4)]
        # pindex 300 + 4096k: the same residue mod 1024 and mod 256
        assert got == expect, choice


# ------------------------------------------------------------------ free_queue_end
def _two_of_one_colour(m: Machine) -> tuple[int, int, int]:
    """Allocate two pages of colour 0 (NULL object, pindex 0, CPU 0: colour 0 on every
    choice of page_color): their pfns and the queue."""
    a = m.call("vm_page_alloc", {"object": None, "pindex": 0, "page_req": 1}).result
    b = m.call("vm_page_alloc", {"object": None, "pindex": 0, "page_req": 1}).result
    q = PQ_FREE + 0
    assert m.pg.pc[a - m.first_page] == m.pg.pc[b - m.first_page] == 0
    return a, b, q


@pytest.mark.parametrize("choice", ["kernel", "tail"])
def test_free_queue_end(choice: str) -> None:
    m = _boot(free_queue_end=choice)
    a, b, q = _two_of_one_colour(m)
    third = m.pq.head[q]  # the colour's head now: neither a nor b
    for pfn in (a, b):
        m.call("vm_page_free", {"m": pfn})
    first = m.first_page
    nxt = m.call("vm_page_alloc", {"object": None, "pindex": 0, "page_req": 1}).result
    if choice == "kernel":
        # LIFO: b was freed last, to the head, and is taken first
        assert m.pq.head[q] != b - first and nxt == b
    else:
        # FIFO: a and b wait at the tail, b last; the old head is taken first
        assert nxt == third + first
        assert m.pq.tail[q] == b - first and m.pg.prev[b - first] == a - first
    m.check_invariants()


# ------------------------------------------------------------------ dontneed
# The first vm_page_dontneed sees dnw = 1: (1 & 0x1F0) == 0, so the kernel's dice leave the
# page alone; the seam's choices deactivate it to their end.  dnweight counts all three.
@pytest.mark.parametrize(
    ("choice", "queue", "at"),
    [("kernel", PQ_ACTIVE, None), ("tail", PQ_INACTIVE, "tail"), ("head", PQ_INACTIVE, "head")],
)
def test_dontneed_choices(choice: str, queue: int, at: str | None) -> None:
    m = _boot(dontneed=choice)
    pfn = m.call("vm_page_alloc", {"object": None, "pindex": 0, "page_req": 1}).result
    m.call("vm_page_activate", {"m": pfn})
    other = m.call("vm_page_alloc", {"object": None, "pindex": 1, "page_req": 1}).result
    m.call("vm_page_deactivate", {"m": other})  # so that head and tail differ
    r = m.call("vm_page_dontneed", {"m": pfn})
    (event,) = [e for e in r.record["events"] if e["event"] == "dontneed"]
    assert m.pagestate.dnweight == 1 and event["dnw"] == 1 and event["policy"] == choice
    i = pfn - m.first_page
    assert m.pg.queue[i] - m.pg.pc[i] == queue
    if at is not None:
        q = m.pg.queue[i]
        assert (m.pq.head[q] if at == "head" else m.pq.tail[q]) == i
        assert event["branch"] == f"deactivated to the inactive {at}"
        assert f"policy sets the seam dontneed to {choice!r}" in event["why"]
    else:
        assert event["branch"] == "left alone"
        assert "dnw mod 512 = 1 < 16" in event["why"]
    m.check_invariants()


# ------------------------------------------------------------------ configuration
def test_the_catalogue_names_each_seams_kernel_function_and_choices() -> None:
    cat = {s["name"]: s for s in seams_catalogue()}
    assert set(cat) == {"page_color", "free_queue_end", "dontneed"}
    assert cat["page_color"]["function"] == "vm_get_pg_color"
    assert [c["name"] for c in cat["page_color"]["choices"]] == ["kernel", "object", "cpu", "none"]
    assert all(s["choices"][0]["name"] == "kernel" == s["default"] for s in cat.values())
    assert set(SEAMS) == set(cat)


def test_a_policy_is_checked_and_canonical() -> None:
    assert check_policy([("page_color", "none"), ("dontneed", "kernel")]) == (
        ("page_color", "none"),
    )
    assert check_policy([("page_color", "none"), ("free_queue_end", "tail")]) == (
        ("free_queue_end", "tail"),
        ("page_color", "none"),
    )
    with pytest.raises(ConfigError, match="no seam named 'page_colour'; did you mean 'page_color'"):
        check_policy([("page_colour", "none")])
    with pytest.raises(ConfigError, match="its choices: kernel, object, cpu, none"):
        check_policy([("page_color", "random")])
    with pytest.raises(ConfigError, match="given twice"):
        MachineConfig(
            phys_avail=((4096, 1 << 24),), policy=(("dontneed", "head"), ("dontneed", "tail"))
        ).validate()


def test_the_kernels_choice_everywhere_is_the_default_machine() -> None:
    """``kernel`` for every seam boots the very machine no policy boots, and runs the
    same calls to the same digest."""
    plain = Machine.boot(MachineConfig.from_size("64MiB", cpus=4, seed=1))
    explicit = _boot(page_color="kernel", free_queue_end="kernel", dontneed="kernel")
    assert explicit.config.policy == ()
    for m in (plain, explicit):
        obj = m.call("vm_object_allocate", {"type": "OBJT_DEFAULT"}).result
        for k in range(200):
            p = m.call("vm_page_alloc", {"object": obj, "pindex": k, "page_req": 1}, cpu=k % 4)
            m.call("vm_page_dontneed", {"m": p.result}, cpu=k % 4)
            if k % 3 == 0:
                m.call("vm_page_free", {"m": p.result}, cpu=k % 4)
    assert plain.state_digest() == explicit.state_digest()


def test_a_snapshot_keeps_the_policy_and_the_restored_machine_decides_alike() -> None:
    m = _boot(page_color="object", free_queue_end="tail")
    obj = m.call("vm_object_allocate", {"type": "OBJT_DEFAULT", "pg_color": 3}).result
    for k in range(50):
        m.call("vm_page_alloc", {"object": obj, "pindex": k, "page_req": 1}, cpu=k % 4)
    back = snapshot.load(snapshot.dump(m))
    assert back.config.policy == (("free_queue_end", "tail"), ("page_color", "object"))
    assert back.policy.page_color == "object" and back.policy.free_to_head is False
    for mm in (m, back):
        e = _alloc_event(mm, obj, 999, cpu=1)
        assert e["color"] == (3 + 999) % PQ_L2_SIZE
    assert m.state_digest() == back.state_digest()
