"""Instances over HTTP: create (preset, memory, phys_avail, topology, NUMA), list, get,
delete, reset, and the refusals (names, quotas, caps, absurd inputs).

Boot numbers of the 16 MiB layouts are worked out in ``conftest.py``'s docstring (spec §2).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.core.machine import Machine

from .conftest import API, DEFAULT, call, create, page, problem

SIXTEEN_MIB = 16 * 1024 * 1024


def boots_counter(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Count ``Machine.boot`` calls: a refused configuration must never reach the boot."""
    booted: list[Any] = []
    real = Machine.boot.__func__  # type: ignore[attr-defined]

    def spy(cls: type[Machine], config: Any) -> Machine:
        booted.append(config)
        m: Machine = real(cls, config)
        return m

    monkeypatch.setattr(Machine, "boot", classmethod(spy))
    return booted


# ------------------------------------------------------------------ create
@pytest.mark.anyio
async def test_create_from_preset(client: httpx.AsyncClient) -> None:
    inst = await create(client, {"name": "p", "preset": "tiny-16m"})
    assert inst["id"] == 2 and inst["name"] == "p" and inst["preset"] == "tiny-16m"
    assert inst["config"]["phys_avail"] == [[0x1000, SIXTEEN_MIB]]
    assert inst["config"]["cpus"] == 1
    s = inst["summary"]
    # conftest: pfn 1..3966 managed, 3711 free after the DMA reserve gave back 768 pages
    assert s["v_page_count"] == 3966
    assert s["v_free_count"] == 3711
    assert s["v_wire_count"] == 255 and s["v_dma_pages"] == 255
    assert s["vm_low_phys_reserved"] == 1 << 20
    assert inst["calls"] == 0


@pytest.mark.anyio
async def test_create_from_memory_size_with_cpus(client: httpx.AsyncClient) -> None:
    inst = await create(client, {"name": "m", "memory": "16MiB", "cpus": 2, "seed": 3})
    # memory -> one range from 4 KiB (page 0 kept by the BIOS)
    assert inst["config"]["phys_avail"] == [[4096, SIXTEEN_MIB]]
    assert inst["config"]["cpus"] == 2 and inst["config"]["seed"] == 3
    assert inst["config"]["topology"] is None
    s = inst["summary"]
    assert s["ncpus"] == 2
    # §2.4: ncpus_fit 2 -> set_assoc_mask = 1024/2 - 1 = 511
    assert s["set_assoc_mask"] == 511
    assert s["v_page_count"] == 3966  # same map as tiny-16m


@pytest.mark.anyio
async def test_memory_in_bytes_is_accepted(client: httpx.AsyncClient) -> None:
    inst = await create(client, {"name": "b", "memory": SIXTEEN_MIB})
    assert inst["config"]["phys_avail"] == [[4096, SIXTEEN_MIB]]


@pytest.mark.anyio
async def test_create_from_phys_avail_with_a_hole(client: httpx.AsyncClient) -> None:
    # 4 KiB .. 636 KiB, a hole, then 1 MiB .. 16 MiB
    body = {"name": "holes", "phys_avail": [[0x1000, 0x9F000], [0x100000, SIXTEEN_MIB]]}
    inst = await create(client, body)
    iid = inst["id"]
    s = inst["summary"]
    # §2.2: first_page = 1, page_range = 4096 - 1 = 4095 (the hole included)
    assert s["first_page"] == 1 and s["vm_page_array_size"] == 4095
    # total = 0x9E000 + 0xF00000 = 16 375 808; npages = (16 375 808 - 4095*128)//4096 = 3870
    # (not limiting); new_end = trunc_page(16 773 120 - 524 160) = 3967 pages.
    # Range 0 gives pfn 1..158 (0x9F000/4096 = 159), range 1 pfn 256..3966: 158 + 3711
    assert s["v_page_count"] == 158 + 3711
    # pfn 200 (0xC8000) is in the hole: no such page
    problem(await client.get(f"{API}/instances/{iid}/pages/200"), 404, "no-such-page")
    # pfn 100 is RAM below vm_low_phys_reserved: a DMA-reserve page (§2.3).  It stays
    # there: startup_finish gives back 902 - 249 = 653 pages from the highest free chunks
    # (§2.4), all inside pfn 256..999 (744 pages), so pfn 1..158 are never returned.
    # (902 = 158 + 744 DMA pages below total/4 = 4 093 952 bytes; keep 1 023 488 // 4096.)
    p = await page(client, 100, iid)
    assert p["queue"] == "PQ_NONE" and p["wire_count"] == 1
    assert {"PG_FICTITIOUS", "PG_UNQUEUED"} <= set(p["flag_names"])


@pytest.mark.anyio
async def test_create_with_early_boot_stage(client: httpx.AsyncClient) -> None:
    inst = await create(client, {"name": "e", "memory": "16MiB", "boot_stage": "early"})
    s = inst["summary"]
    assert s["boot_stage"] == "early"
    # §2.4: before vm_page_startup_finish the mask is 15
    assert s["set_assoc_mask"] == 15
    # the whole DMA reserve (pfn 1..1023) is still held: 3966 - 1023 free
    assert s["v_free_count"] == 3966 - 1023
    assert s["v_dma_pages"] == 1023


@pytest.mark.anyio
async def test_create_with_topology(client: httpx.AsyncClient) -> None:
    body = {"name": "t", "memory": "16MiB", "topology": {"sockets": 2, "cores": 2, "threads": 1}}
    inst = await create(client, body)
    cfg = inst["config"]
    assert cfg["cpus"] == 4  # 2 x 2 x 1
    assert cfg["topology"] == {"sockets": 2, "cores": 2, "threads": 1}
    # §6.1 with a probed topology: cpuscale = 1024/2/2/1 = 256; CPU 3 = socket 1, core 1:
    # c = 1*512 + 1*256 + 0 + (7 + 0) % 256 = 775
    r = await call(
        client, "vm_get_pg_color", {"cpuid": 3, "object": None, "pindex": 7}, instance=inst["id"]
    )
    assert r.json()["result"] == 775
    # no NUMA ranges given: memory is split evenly by address over the 2 sockets
    assert [n["socket"] for n in cfg["numa"]] == [0, 1]
    assert cfg["numa"][0]["base"] == 0x1000
    assert cfg["numa"][1]["base"] + cfg["numa"][1]["size"] == SIXTEEN_MIB


@pytest.mark.anyio
async def test_numa_placement_recolors_pages_by_socket(client: httpx.AsyncClient) -> None:
    # Low 8 MiB on socket 1, high 8 MiB on socket 0 (the reverse of the even split).
    numa = [
        {"base": 0x1000, "size": 8 * 1024 * 1024 - 0x1000, "socket": 1},
        {"base": 8 * 1024 * 1024, "size": 8 * 1024 * 1024, "socket": 0},
    ]
    topo = {"sockets": 2, "cores": 1, "threads": 1}
    swapped = await create(
        client, {"name": "n1", "memory": "16MiB", "topology": topo, "numa": numa}
    )
    even = await create(client, {"name": "n0", "memory": "16MiB", "topology": topo})
    assert swapped["config"]["numa"] == numa
    # pfn 300 (1.2 MiB) sits in the DMA reserve during vm_numa_organize (§3.1): it is
    # recoloured, not queued: pc = (300 % 512) + socket*512, socket_mod = 1024/2 = 512.
    # startup_finish later frees [256, 512) to PQ_FREE + pc (§2.4).
    p1 = await page(client, 300, swapped["id"])
    assert p1["pc"] == 300 + 512 and p1["queue"] == "PQ_FREE:812"
    p0 = await page(client, 300, even["id"])
    assert p0["pc"] == 300 and p0["queue"] == "PQ_FREE:300"


# ------------------------------------------------------------------ list / get / delete
@pytest.mark.anyio
async def test_list_and_get(client: httpx.AsyncClient) -> None:
    await create(client, {"name": "second", "memory": "16MiB"})
    r = await client.get(f"{API}/instances")
    assert r.status_code == 200
    listed = r.json()
    assert [i["name"] for i in listed] == ["default", "second"]
    assert [i["id"] for i in listed] == [1, 2]
    r = await client.get(f"{API}/instances/2")
    assert r.status_code == 200
    got = r.json()
    assert set(got) >= {"id", "name", "preset", "config", "summary", "calls", "state_digest"}
    assert got["state_digest"] == listed[1]["state_digest"]
    assert len(got["state_digest"]) == 32 and int(got["state_digest"], 16) >= 0
    assert got["config"]["boot_stage"] == "finished"
    assert got["preset"] is None


@pytest.mark.anyio
async def test_get_counts_calls_and_digest_moves(client: httpx.AsyncClient) -> None:
    before = (await client.get(f"{API}/instances/{DEFAULT}")).json()
    await call(client, "vm_page_alloc")
    after = (await client.get(f"{API}/instances/{DEFAULT}")).json()
    assert after["calls"] == before["calls"] + 1
    assert after["state_digest"] != before["state_digest"]
    # one page left PQ_FREE (still pending in gd_vmstats_adj: the global count lags, §5)
    assert after["summary"]["v_free_count"] == before["summary"]["v_free_count"]


@pytest.mark.anyio
async def test_delete_then_404(client: httpx.AsyncClient) -> None:
    inst = await create(client, {"name": "gone", "memory": "16MiB"})
    r = await client.delete(f"{API}/instances/{inst['id']}")
    assert r.status_code == 204 and r.content == b""
    problem(await client.get(f"{API}/instances/{inst['id']}"), 404, "unknown-instance")
    problem(await client.delete(f"{API}/instances/{inst['id']}"), 404, "unknown-instance")
    r = await client.post(f"{API}/instances/{inst['id']}/calls/vm_page_alloc", json={})
    problem(r, 404, "unknown-instance")
    # the name is free again
    again = await create(client, {"name": "gone", "memory": "16MiB"})
    assert again["id"] != inst["id"]


# ------------------------------------------------------------------ reset
@pytest.mark.anyio
async def test_reset_gives_the_machine_of_a_fresh_boot(client: httpx.AsyncClient) -> None:
    body = {"name": "r1", "memory": "16MiB", "cpus": 2, "seed": 11}
    a = await create(client, body)
    fresh = await create(client, {**body, "name": "r2"})
    assert a["state_digest"] == fresh["state_digest"]  # the name is not machine state
    obj = (await call(client, "vm_object_allocate", instance=a["id"])).json()["result"]
    await call(client, "vm_page_alloc", {"object": obj, "pindex": 3}, instance=a["id"])
    await call(client, "tick", {"n": 5}, instance=a["id"])
    dirty = (await client.get(f"{API}/instances/{a['id']}")).json()
    assert dirty["state_digest"] != fresh["state_digest"]
    r = await client.post(f"{API}/instances/{a['id']}/reset")
    assert r.status_code == 200
    reset = r.json()
    assert reset["id"] == a["id"] and reset["name"] == "r1"
    assert reset["calls"] == 0
    assert reset["state_digest"] == fresh["state_digest"]
    assert reset["summary"] == fresh["summary"]
    # the object is gone with the old machine
    problem(await client.get(f"{API}/instances/{a['id']}/objects/{obj}"), 404, "not-found")


@pytest.mark.anyio
async def test_reset_unknown_instance(client: httpx.AsyncClient) -> None:
    problem(await client.post(f"{API}/instances/77/reset"), 404, "unknown-instance")


# ------------------------------------------------------------------ refusals
@pytest.mark.anyio
async def test_names_are_unique(client: httpx.AsyncClient) -> None:
    body = problem(
        await client.post(f"{API}/instances", json={"name": "default", "memory": "16MiB"}),
        409,
        "conflict",
    )
    assert "default" in body["detail"]
    r = await client.get(f"{API}/instances")
    assert len(r.json()) == 1


@pytest.mark.anyio
async def test_max_instances_quota(served: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    async with served(max_instances=2) as c:
        await create(c, {"name": "two", "memory": "16MiB"})  # default + this = 2
        booted = boots_counter(monkeypatch)
        body = problem(
            await c.post(f"{API}/instances", json={"name": "three", "memory": "16MiB"}),
            429,
            "quota",
        )
        assert "2" in body["detail"]
        assert booted == []
        # deleting one frees a slot
        assert (await c.delete(f"{API}/instances/2")).status_code == 204
        await create(c, {"name": "three", "memory": "16MiB"})


@pytest.mark.anyio
async def test_max_pages_refuses_a_bigger_machine_before_booting(
    served: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # tiny-16m needs 4095 page structures; a cap of 4096 lets it boot
    async with served(max_pages=4096) as c:
        booted = boots_counter(monkeypatch)
        # 32 MiB from 4 KiB: page_range = 8192 - 1 = 8191 > 4096
        body = problem(
            await c.post(f"{API}/instances", json={"name": "big", "memory": "32MiB"}),
            422,
            "validation",
        )
        assert "8191" in body["detail"] and "4096" in body["detail"]
        assert booted == []
        # exactly at the cap: 16 MiB + 4 KiB -> page_range = 4097 - 1 = 4096 boots
        await create(c, {"name": "ok", "phys_avail": [[0x1000, SIXTEEN_MIB + 0x1000]]})
        assert len(booted) == 1


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"memory": 2**60}, "4 PiB"),  # beyond the 52-bit physical address space
        ({"memory": "1048576TiB"}, "4 PiB"),  # 2^60 spelled with a unit
        ({"memory": "9" * 5000}, "4 PiB"),  # too many digits to convert
        ({"memory": "lots"}, "size"),
        ({"memory": "16MiB", "cpus": 0}, "cpus"),
        ({"memory": "16MiB", "cpus": 257}, "cpus"),
        (
            {"phys_avail": [[0x1000 * (2 * k + 1), 0x1000 * (2 * k + 2)] for k in range(65)]},
            "phys_avail",
        ),
        ({"phys_avail": [[-4096, SIXTEEN_MIB]]}, "phys_avail"),
        ({"phys_avail": [[SIXTEEN_MIB, 0x1000]]}, "phys_avail"),
        ({"memory": "16MiB", "topology": {"sockets": 0}}, "sockets"),
        ({"memory": "16MiB", "seed": -1}, "seed"),
        ({"memory": "16MiB", "boot_stage": "late"}, "boot_stage"),
        ({"memory": "16MiB", "colour": 1}, "colour"),
        ({"memory": "16MiB", "cpus": "2"}, "cpus"),
    ],
)
async def test_absurd_inputs_are_refused_without_booting(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, body: dict[str, Any], field: str
) -> None:
    booted = boots_counter(monkeypatch)
    r = await client.post(f"{API}/instances", json={"name": "x", **body})
    p = problem(r, 422, "validation")
    assert field in p["detail"], p["detail"]
    assert booted == []
    assert len((await client.get(f"{API}/instances")).json()) == 1


@pytest.mark.anyio
async def test_negative_pfn_is_refused(client: httpx.AsyncClient) -> None:
    """No page has a negative pfn: the view and the call say so alike (issue 11)."""
    view = problem(await client.get(f"{API}/instances/{DEFAULT}/pages/-1"), 404, "no-such-page")
    r = await call(client, "vm_page_free", {"m": -1}, ok=False)
    p = problem(r, 404, "no-such-page")
    assert "-1" in p["detail"] and p["detail"] == view["detail"]


@pytest.mark.anyio
async def test_unknown_preset_is_404(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    booted = boots_counter(monkeypatch)
    r = await client.post(f"{API}/instances", json={"name": "x", "preset": "cray-1"})
    p = problem(r, 404, "not-found")
    assert "cray-1" in p["detail"] and "tiny-16m" in p["detail"]  # names the presets
    assert booted == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    "body",
    [
        {},
        {"preset": "tiny-16m", "memory": "16MiB"},
        {"memory": "16MiB", "phys_avail": [[4096, SIXTEEN_MIB]]},
        {"preset": "tiny-16m", "phys_avail": [[4096, SIXTEEN_MIB]]},
        {"cpus": 2},
    ],
)
async def test_exactly_one_memory_source(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    p = problem(
        await client.post(f"{API}/instances", json={"name": "x", **body}), 422, "validation"
    )
    assert "exactly one of preset, memory or phys_avail" in p["detail"]


@pytest.mark.anyio
async def test_bad_names_are_refused(client: httpx.AsyncClient) -> None:
    for name in ("", "a b", "x" * 65, "../etc"):
        r = await client.post(f"{API}/instances", json={"name": name, "memory": "16MiB"})
        p = problem(r, 422, "validation")
        assert "name" in p["detail"]


@pytest.mark.anyio
async def test_presets_are_listed_with_descriptions(client: httpx.AsyncClient) -> None:
    r = await client.get(f"{API}/presets")
    assert r.status_code == 200
    presets = {p["name"]: p for p in r.json()}
    # the four machines plus the tiny one the tests use
    assert set(presets) >= {"teaching-1g", "workstation-16g", "server-2s-64g", "pc-holes"}
    assert all(p["description"] for p in presets.values())
    assert presets["tiny-16m"]["phys_avail"] == [[0x1000, SIXTEEN_MIB]]
    # the PC map has a hole below 1 MiB: its first range ends before 640 KiB
    assert presets["pc-holes"]["phys_avail"][0][1] <= 640 * 1024
    assert presets["pc-holes"]["phys_avail"][1][0] == 1 << 20
