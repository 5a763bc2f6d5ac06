"""State views over HTTP: a page (every field, flags, queue, explanation), queue counts and
queue pages, vmstats and predicates, objects, threads, the DMA reserve, the pageout daemon,
sysctls and DDB.

Numbers of the tiny-16m default instance are worked out in ``conftest.py`` (spec §2, §4.2).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .conftest import API, DEFAULT, call, create, page, problem, result

INST = f"{API}/instances/{DEFAULT}"
QUEUE_NAMES = ["PQ_FREE", "PQ_INACTIVE", "PQ_ACTIVE", "PQ_CACHE", "PQ_HOLD"]


def pc_of(pfn: int) -> int:
    """§2.3 colour twist."""
    return (pfn ^ (pfn >> 10) ^ (pfn >> 20)) & 1023


async def get(c: httpx.AsyncClient, path: str) -> Any:
    r = await c.get(f"{INST}{path}")
    assert r.status_code == 200, r.text
    return r.json()


# ------------------------------------------------------------------ pages
@pytest.mark.anyio
async def test_page_view_has_every_field(client: httpx.AsyncClient) -> None:
    p = await page(client, 1025)
    assert set(p) == {
        "pfn",
        "phys_addr",
        "queue",
        "queue_index",
        "pc",
        "flags",
        "flag_names",
        "busy_count",
        "busy",
        "wire_count",
        "hold_count",
        "object",
        "pindex",
        "act_count",
        "valid",
        "dirty",
        "pat_mode",
        "waiters",
        "mappings",
        "explain",
    }
    # a free page at boot: pc = 1025 ^ 1 = 1024 & 1023 = 0, on PQ_FREE + 0 = queue 1 (§1.5)
    assert p["phys_addr"] == 1025 * 4096
    assert p["pc"] == 0 and p["queue"] == "PQ_FREE:0" and p["queue_index"] == 1
    assert p["flags"] == 0 and p["wire_count"] == 0 and p["busy_count"] == 0
    # §2.3: boot sets write-back, PAT mode 6 on x86_64
    assert p["pat_mode"] == 6
    assert p["explain"]["where"].startswith("on PQ_FREE")
    # a page of the DMA reserve (pfn 1..255 stay, conftest): wired once, FICTITIOUS|UNQUEUED
    d = await page(client, 200)
    assert d["queue"] == "PQ_NONE" and d["wire_count"] == 1
    assert d["flag_names"] == ["PG_FICTITIOUS", "PG_UNQUEUED"]
    assert d["flags"] == 0x8 | 0x800


@pytest.mark.anyio
async def test_page_outside_the_machine_is_404(client: httpx.AsyncClient) -> None:
    # pfn 0 is below first_page (1); 4096 is beyond page_range (pfn 1..4095)
    for pfn in (0, 4096, 1 << 40, (1 << 40) + 1):
        body = problem(await client.get(f"{INST}/pages/{pfn}"), 404, "no-such-page")
        assert "outside" in body["detail"]
    # pfn 4000 has a page structure but is not managed (it holds the page array itself)
    body = problem(await client.get(f"{INST}/pages/4000"), 404, "no-such-page")
    assert "not a page the VM manages" in body["detail"]
    problem(await client.get(f"{INST}/pages/{1 << 63}"), 422, "validation")  # not an int64


@pytest.mark.anyio
async def test_flag_names_queue_names_and_mappings(client: httpx.AsyncClient) -> None:
    pfn = await result(client, "vm_page_alloc")  # 3075, pc 0
    await call(client, "vm_page_flag_set", {"m": pfn, "bits": "PG_REFERENCED|PG_NOSYNC"})
    await call(client, "pmap_enter", {"m": pfn, "pmap": 1, "writeable": True})
    await call(client, "vm_page_activate", {"m": pfn})
    p = await page(client, pfn)
    # PG_WRITEABLE 0x10 | PG_MAPPED 0x20 | PG_REFERENCED 0x80 | PG_NOSYNC 0x400 (§1.4)
    assert p["flags"] == 0x10 | 0x20 | 0x80 | 0x400
    assert p["flag_names"] == ["PG_WRITEABLE", "PG_MAPPED", "PG_REFERENCED", "PG_NOSYNC"]
    # PQ_ACTIVE = 2049 (§1.5), colour 0
    assert p["queue"] == "PQ_ACTIVE:0" and p["queue_index"] == 2049
    assert p["mappings"]["mappings"] == [
        {"pmap": 1, "writable": True, "referenced": False, "modified": False}
    ]
    ex = p["explain"]
    assert not ex["can_free_now"]
    assert any("mapped in a pmap" in b for b in ex["blockers"])
    assert ex["where"].startswith("on PQ_ACTIVE")


@pytest.mark.anyio
async def test_explain_names_every_blocker(client: httpx.AsyncClient) -> None:
    pfn = await result(client, "vm_page_alloc")
    free_now = await page(client, pfn)
    assert free_now["explain"]["can_free_now"] and free_now["explain"]["blockers"] == []
    await call(client, "vm_page_wire", {"m": pfn})
    await call(client, "vm_page_hold", {"m": pfn})
    await call(client, "vm_page_io_start", {"m": pfn})
    p = await page(client, pfn)
    assert (p["wire_count"], p["hold_count"], p["busy"]["soft_count"]) == (1, 1, 1)
    ex = p["explain"]
    assert ex["can_free_now"] is False
    text = " | ".join(ex["blockers"])
    assert "wired 1 time" in text and "held 1 time" in text and "soft-busied 1 time" in text
    # the page view and vm_page_free agree: freeing it now panics
    r = await call(client, "vm_page_free", {"m": pfn}, ok=False)
    problem(r, 409, "kernel-panic")


@pytest.mark.anyio
async def test_explain_held_page_on_pq_hold_and_unbusied_page(client: httpx.AsyncClient) -> None:
    pfn = await result(client, "vm_page_alloc")  # 3075, pc 0
    await call(client, "vm_page_hold", {"m": pfn})
    await call(client, "vm_page_free", {"m": pfn})  # §8.2: held -> PQ_HOLD tail
    p = await page(client, pfn)
    assert p["queue"] == "PQ_HOLD:0" and p["queue_index"] == 4097
    assert p["explain"]["where"].startswith("on PQ_HOLD")
    assert any("not hard-busied" in b for b in p["explain"]["blockers"])
    assert any("held 1 time" in b for b in p["explain"]["blockers"])
    counts = await get(client, "/queues")
    assert counts["PQ_HOLD"][0] == 1


@pytest.mark.anyio
async def test_page_waiters_are_listed(client: httpx.AsyncClient) -> None:
    pfn = await result(client, "vm_page_alloc")
    await call(client, "vm_page_busy_wait", {"m": pfn}, ctx={"thread": 5})
    await call(client, "vm_page_busy_wait", {"m": pfn}, ctx={"thread": 9})
    p = await page(client, pfn)
    assert p["waiters"] == [5, 9] and p["explain"]["waiters"] == [5, 9]
    assert p["busy"]["wanted"]


# ------------------------------------------------------------------ queues
@pytest.mark.anyio
async def test_queue_counts_are_5_by_1024_arrays(client: httpx.AsyncClient) -> None:
    counts = await get(client, "/queues")
    assert set(counts) == set(QUEUE_NAMES)
    assert all(len(counts[q]) == 1024 for q in QUEUE_NAMES)
    assert sum(counts["PQ_FREE"]) == 3711  # v_free_count at boot (conftest)
    assert all(sum(counts[q]) == 0 for q in QUEUE_NAMES[1:])
    free = counts["PQ_FREE"]
    # colour 0: pfn 1025, 2050, 3075 (pfn 0 does not exist)
    assert free[0] == 3
    # colour 100: pfn 1125 (101^1), 2150 (102^2), 3175 (103^3); pfn 100 stays in the DMA reserve
    assert free[100] == 3
    # colour 300: pfn 300 (given back by startup_finish), 1325, 2350, 3375
    assert free[300] == 4
    # colour 1000: pfn 1000, 2025 (1001^1), 3050 (1002^2); 1003^3 -> pfn 4075 > 3966
    assert free[1000] == 3
    await call(client, "vm_page_alloc")
    await call(client, "vm_page_activate", {"m": 3075})
    counts = await get(client, "/queues")
    assert counts["PQ_FREE"][0] == 2 and counts["PQ_ACTIVE"][0] == 1


@pytest.mark.anyio
async def test_queue_pages_head_to_tail_with_paging(client: httpx.AsyncClient) -> None:
    q = await get(client, "/queues/PQ_FREE/300")
    # boot adds ascending at the head (3375 first in line), then startup_finish frees
    # pfn 300 to the head (§2.3, §2.4)
    assert q == {
        "queue": "PQ_FREE:300",
        "lcnt": 4,
        "adds": 0,
        "lastq": -1,
        "pages": [300, 3375, 2350, 1325],
    }
    assert all(pc_of(p) == 300 for p in q["pages"])
    q = await get(client, "/queues/PQ_FREE/300?offset=1&limit=2")
    assert q["pages"] == [3375, 2350] and q["lcnt"] == 4
    q = await get(client, "/queues/PQ_FREE/300?offset=4")
    assert q["pages"] == []
    q = await get(client, "/queues/PQ_INACTIVE/5")
    assert q["queue"] == "PQ_INACTIVE:5" and q["pages"] == [] and q["lcnt"] == 0


@pytest.mark.anyio
async def test_deactivate_bumps_adds_and_lists_the_tail(client: httpx.AsyncClient) -> None:
    a = await result(client, "vm_page_alloc")  # 3075
    b = await result(client, "vm_page_alloc")  # 2050
    await call(client, "vm_page_deactivate", {"m": a})
    await call(client, "vm_page_deactivate", {"m": b})
    q = await get(client, "/queues/PQ_INACTIVE/0")
    # §1.5: adds counts deactivations to the tail; both went to the tail in turn
    assert q["pages"] == [a, b] and q["lcnt"] == 2 and q["adds"] == 2


@pytest.mark.anyio
@pytest.mark.parametrize(
    "path",
    [
        "/queues/PQ_NONE/0",
        "/queues/pq_fre/0",
        "/queues/1042/0",
        "/queues/PQ_FREE/1024",
        "/queues/PQ_FREE/-1",
        "/queues/PQ_FREE/0?limit=0",
        "/queues/PQ_FREE/0?limit=10001",
        "/queues/PQ_FREE/0?offset=-1",
    ],
)
async def test_bad_queue_requests(client: httpx.AsyncClient, path: str) -> None:
    problem(await client.get(f"{INST}{path}"), 422, "validation")


# ------------------------------------------------------------------ vmstats
@pytest.mark.anyio
async def test_vmstats_global_per_cpu_and_predicates(client: httpx.AsyncClient) -> None:
    v = await get(client, "/vmstats")
    g = v["global"]
    # conftest / §4.2 with P = 3966, F = 3711
    assert (g["v_page_size"], g["v_page_count"], g["v_free_count"]) == (4096, 3966, 3711)
    assert (g["v_free_min"], g["v_free_reserved"], g["v_free_severe"]) == (83, 48, 41)
    assert (g["v_pageout_free_min"], g["v_interrupt_free_min"]) == (27, 17)  # 20+7, 10+7
    assert (g["v_free_target"], g["v_paging_wait"], g["v_paging_start"]) == (166, 166, 249)
    assert (g["v_paging_target1"], g["v_paging_target2"]) == (332, 415)
    assert g["v_inactive_target"] == 231 and g["v_wire_count"] == 255
    assert "v_cache_min" not in g and "v_cache_max" not in g  # §4.1: gone
    assert [c["cpu"] for c in v["cpus"]] == [0]
    cpu0 = v["cpus"][0]
    assert cpu0["gd_vmstats"]["v_free_count"] == 3711
    assert set(cpu0["gd_vmstats_adj"].values()) == {0}
    # §2.4 step 2: the 768 pages given back went through vm_page_free (v_tfree)
    assert cpu0["gd_cnt"]["v_tfree"] == 768
    # FC = 3711 is above every threshold: no predicate holds
    assert set(v["predicates"].values()) == {False}
    assert set(v["predicates"]) >= {
        "vm_paging_severe",
        "vm_paging_min",
        "vm_paging_wait",
        "vm_paging_start",
        "vm_paging_target1",
        "vm_paging_target2",
        "vm_paging_inactive",
    }

    await call(client, "vm_page_alloc")
    v = await get(client, "/vmstats")
    # §5: -1 pending in gd_vmstats_adj and in the snapshot; the global count lags
    assert v["global"]["v_free_count"] == 3711
    assert v["cpus"][0]["gd_vmstats"]["v_free_count"] == 3710
    assert v["cpus"][0]["gd_vmstats_adj"]["v_free_count"] == -1
    await call(client, "vmstats_rollup")
    v = await get(client, "/vmstats")
    assert v["global"]["v_free_count"] == 3710
    assert v["cpus"][0]["gd_vmstats_adj"]["v_free_count"] == 0


@pytest.mark.anyio
async def test_predicates_follow_the_cpu_snapshot(client: httpx.AsyncClient) -> None:
    r = await client.put(f"{INST}/sysctls/vm.v_free_min", json={"value": 4000})
    assert r.status_code == 200
    # the sysctl writes the global vmstats; predicates read CPU 0's snapshot (§4.3, §5)
    v = await get(client, "/vmstats")
    assert v["global"]["v_free_min"] == 4000 and v["cpus"][0]["gd_vmstats"]["v_free_min"] == 83
    assert v["predicates"]["vm_paging_min"] is False
    await call(client, "vmstats_rollup")  # copies global -> calling CPU's snapshot
    p = (await get(client, "/vmstats"))["predicates"]
    # FC = FR = 3711: min: 4000 > 3711; start: v_free_min 4000 > FR 3711;
    # inactive: 3711 + 0 < 4000 + 231.  severe: 41 > 3711 no, 48 > 3711 no;
    # wait: 166 > 3711 no; target1: 332 no; target2: 415 no.
    assert p == {
        **{k: False for k in p},
        "vm_paging_min": True,
        "vm_paging_start": True,
        "vm_paging_inactive": True,
    }


# ------------------------------------------------------------------ objects
@pytest.mark.anyio
async def test_objects_and_their_pages(client: httpx.AsyncClient) -> None:
    assert await get(client, "/objects") == []
    obj = await result(
        client, "vm_object_allocate", {"type": "OBJT_SWAP", "size": 16, "pg_color": 7}
    )
    objs = await get(client, "/objects")
    assert len(objs) == 1
    o = objs[0]
    assert (o["id"], o["type"], o["size"], o["pg_color"], o["resident_page_count"]) == (
        obj,
        "OBJT_SWAP",
        16,
        7,
        0,
    )
    got = [await result(client, "vm_page_alloc", {"object": obj, "pindex": k}) for k in (2, 0, 1)]
    # §6.1, 1 CPU: colour = pindex + 7.  Heads (block 3, low ^ 3 = colour):
    # colour 9 -> 3072 + 10 = 3082; colour 7 -> 3072 + 4 = 3076; colour 8 -> 3072 + 11 = 3083
    assert got == [3082, 3076, 3083]
    o = await get(client, f"/objects/{obj}")
    assert o["resident_page_count"] == 3
    assert o["pages"] == [
        {"pindex": 0, "pfn": 3076},
        {"pindex": 1, "pfn": 3083},
        {"pindex": 2, "pfn": 3082},
    ]
    body = problem(await client.get(f"{INST}/objects/{obj + 1}"), 404, "not-found")
    assert f"no object {obj + 1}" in body["detail"]


# ------------------------------------------------------------------ threads, dma, pageout
@pytest.mark.anyio
async def test_threads_and_channels(client: httpx.AsyncClient) -> None:
    t = await get(client, "/threads")
    assert t["ticks"] == 0
    daemon = next(th for th in t["threads"] if th["name"] == "pagedaemon")
    # §15.2: the idle daemon sleeps on vm_pages_needed for hz/10 = 10 ticks
    assert daemon["state"] == "sleeping" and daemon["channel"] == "vm_pages_needed"
    assert daemon["deadline"] == 10 and daemon["systhread"] is True
    assert t["channels"] == {"vm_pages_needed": [daemon["tid"]]}
    pfn = await result(client, "vm_page_alloc")
    await call(client, "vm_page_busy_wait", {"m": pfn, "msg": "hold on"}, ctx={"thread": 3})
    t = await get(client, "/threads")
    assert t["channels"][f"page:{pfn}"] == [3]
    th = next(x for x in t["threads"] if x["tid"] == 3)
    assert (th["state"], th["wmesg"], th["call"]) == ("sleeping", "hold on", "vm_page_busy_wait")
    assert th["args"] == {"m": pfn, "msg": "hold on"}


@pytest.mark.anyio
async def test_dma_reserve_view(client: httpx.AsyncClient) -> None:
    d = await get(client, "/dma")
    # conftest: pfn 1..255 stay in the reserve after startup_finish
    assert d == {
        "bl_free": 255,
        "free_runs": [[1, 255]],
        "vm_low_phys_reserved": 1 << 20,
        "vm_dma_reserved": 1048320,
    }


@pytest.mark.anyio
async def test_pageout_view_and_an_idle_loop(client: httpx.AsyncClient) -> None:
    p = await get(client, "/pageout")
    assert p["enabled"] is True and p["state"] == "IDLE"
    assert (p["pass"], p["vm_pages_needed"], p["vm_pageout_deficit"]) == (0, 0, 0)
    assert p["thread"]["state"] == "sleeping"
    q3 = p["q3"]
    # §15.2: each loop does one hold/stats colour (q3 += 1) before sleeping hz/10 ticks;
    # 10 ticks end one sleep, the timed-out daemon finds nothing to do and loops once
    await call(client, "tick", {"n": 10})
    p = await get(client, "/pageout")
    assert p["q3"] == q3 + 1 and p["state"] == "IDLE" and p["thread"]["deadline"] == 20


# ------------------------------------------------------------------ sysctls
@pytest.mark.anyio
async def test_sysctl_list_has_units_and_help(client: httpx.AsyncClient) -> None:
    items = await get(client, "/sysctls")
    by_name = {s["name"]: s for s in items}
    assert all(s["unit"] and s["description"] and s["type"] for s in items)
    assert by_name["vm.v_free_min"]["writable"] is True and by_name["vm.v_free_min"]["value"] == 83
    assert by_name["vm.dma_free_pages"]["writable"] is False
    assert by_name["vm.dma_free_pages"]["value"] == 255
    assert by_name["vm.stats.vm.v_page_count"]["value"] == 3966
    # §16.2 defaults
    assert by_name["vm.page_free_hysteresis"]["value"] == 16
    assert by_name["vm.anonmem_decline"]["value"] == 1
    assert by_name["vm.pageout_lock_miss"]["writable"] is False


@pytest.mark.anyio
async def test_sysctl_get_and_put(client: httpx.AsyncClient) -> None:
    assert await get(client, "/sysctls/vm.v_free_min") == {"name": "vm.v_free_min", "value": 83}
    r = await client.put(f"{INST}/sysctls/vm.v_free_min", json={"value": 100})
    assert r.status_code == 200 and r.json() == {"name": "vm.v_free_min", "old": 83, "new": 100}
    assert (await get(client, "/sysctls/vm.v_free_min"))["value"] == 100
    # §16.3: straight into the global vmstats; nothing derived is recomputed
    g = (await get(client, "/vmstats"))["global"]
    assert g["v_free_min"] == 100 and g["v_free_reserved"] == 48


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("name", "value", "status", "kind", "words"),
    [
        ("vm.dma_free_pages", 1, 422, "validation", "read-only"),
        ("vm.pageout_lock_miss", 1, 422, "validation", "read-only"),
        ("vm.anonmem_decline", -1, 422, "validation", "u_int"),  # u_int: 0 .. 2^32-1
        ("vm.page_free_hysteresis", 1 << 31, 422, "validation", "int"),  # int: .. 2^31-1
        ("vm.no_such_thing", 1, 404, "not-found", "vm.no_such_thing"),
    ],
)
async def test_sysctl_put_refusals(
    client: httpx.AsyncClient, name: str, value: int, status: int, kind: str, words: str
) -> None:
    before = await client.get(f"{INST}/sysctls/{name}")
    body = problem(await client.put(f"{INST}/sysctls/{name}", json={"value": value}), status, kind)
    assert words in body["detail"]
    after = await client.get(f"{INST}/sysctls/{name}")
    assert after.status_code == before.status_code and after.text == before.text


@pytest.mark.anyio
async def test_sysctl_value_must_be_an_integer(client: httpx.AsyncClient) -> None:
    for value in ("100", True, 1.5, None):
        r = await client.put(f"{INST}/sysctls/vm.v_free_min", json={"value": value})
        problem(r, 422, "validation")
    problem(await client.get(f"{INST}/sysctls/vm.nope"), 404, "not-found")


# ------------------------------------------------------------------ DDB
@pytest.mark.anyio
async def test_ddb_show_page(client: httpx.AsyncClient) -> None:
    await call(client, "vm_page_alloc")
    r = await client.get(f"{INST}/ddb/show page")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    core = await result(client, "ddb", {"command": "show page"})
    assert r.text == core
    # §16.4: 13 lines in this order, from the global vmstats (not rolled up first)
    fields = [
        "v_free_count",
        "v_cache_count",
        "v_inactive_count",
        "v_active_count",
        "v_wire_count",
        "v_free_reserved",
        "v_free_min",
        "v_free_target",
        "v_inactive_target",
        "v_paging_wait",
        "v_paging_start",
        "v_paging_target1",
        "v_paging_target2",
    ]
    g = (await get(client, "/vmstats"))["global"]
    assert r.text == "".join(f"vmstats.{f}: {g[f]}\n" for f in fields)
    assert r.text.startswith("vmstats.v_free_count: 3711\n")  # the alloc is still pending


@pytest.mark.anyio
async def test_ddb_show_pageq(client: httpx.AsyncClient) -> None:
    await call(client, "vm_page_alloc")
    await call(client, "vm_page_deactivate", {"m": 3075})
    r = await client.get(f"{INST}/ddb/show pageq")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert r.text == await result(client, "ddb", {"command": "show pageq"})
    lines = r.text.splitlines()
    # §16.4: FREE, CACHE, ACTIVE, INACTIVE (no HOLD), each " <lcnt>" for 1024 colours
    assert [ln.split(":")[0] for ln in lines] == ["PQ_FREE", "PQ_CACHE", "PQ_ACTIVE", "PQ_INACTIVE"]
    counts = await get(client, "/queues")
    for ln in lines:
        name, _, rest = ln.partition(":")
        assert rest == "".join(f" {n}" for n in counts[name])
    free = [int(x) for x in lines[0].split()[1:]]
    inactive = [int(x) for x in lines[3].split()[1:]]
    assert free[0] == 2 and inactive[0] == 1  # 3075 moved from PQ_FREE:0 to PQ_INACTIVE:0


@pytest.mark.anyio
async def test_ddb_unknown_command(client: httpx.AsyncClient) -> None:
    body = problem(await client.get(f"{INST}/ddb/show map"), 404, "not-found")
    assert body["commands"] == ["show page", "show pageq"]
    assert "DDB has no command 'show map'" in body["detail"]
    problem(await client.get(f"{API}/instances/42/ddb/show page"), 404, "unknown-instance")


@pytest.mark.anyio
async def test_the_stream_protocol_is_served_and_linked_from_the_openapi_description(
    client: httpx.AsyncClient,
) -> None:
    r = await client.get("/protocol/stream")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/markdown")
    assert r.text.startswith("# PageLab stream protocol, version 1")
    description = (await client.get("/openapi.json")).json()["info"]["description"]
    assert "/protocol/stream" in description


# ------------------------------------------------------------------ console and topology
@pytest.mark.anyio
async def test_boot_console(client: httpx.AsyncClient) -> None:
    body = await get(client, "/console")
    # conftest: 768 of the 1023 reserve pages go back, 255 stay free in the alist:
    # used (v_dma_pages 255 - bl_free 255) * 4 = 0k, available 255 * 4 = 1020k
    assert body["boot"] == ["DMA space used: 0k, remaining available: 1020k"]
    assert body["lines"][: len(body["boot"])] == body["boot"]


@pytest.mark.anyio
async def test_topology_of_the_default_instance(client: httpx.AsyncClient) -> None:
    body = await get(client, "/topology")
    assert body == {
        "probed": False,
        "sockets": 1,
        "cores": 1,
        "threads": 1,
        "cpus": [{"cpu": 0, "socket": 0, "core": 0, "thread": 0}],
        "numa": [],
        "numa_organized": False,
    }


@pytest.mark.anyio
async def test_topology_maps_cpus_and_takes_physids_modulo_the_sockets(
    client: httpx.AsyncClient,
) -> None:
    inst = await create(
        client,
        {
            "name": "numa",
            "memory": "16MiB",
            "cpus": 4,
            "topology": {"sockets": 2, "cores": 1, "threads": 2},
            # ACPI physical ids 2 and 3 on a 2-socket machine
            "numa": [
                {"base": 0x1000, "size": 0x7FF000, "socket": 2},
                {"base": 0x800000, "size": 0x800000, "socket": 3},
            ],
        },
    )
    r = await client.get(f"{API}/instances/{inst['id']}/topology")
    body = r.json()
    # cpuid = (socket * cores + core) * threads + thread
    assert body["cpus"] == [
        {"cpu": 0, "socket": 0, "core": 0, "thread": 0},
        {"cpu": 1, "socket": 0, "core": 0, "thread": 1},
        {"cpu": 2, "socket": 1, "core": 0, "thread": 0},
        {"cpu": 3, "socket": 1, "core": 0, "thread": 1},
    ]
    # socket_mod = 1024 / 2 = 512: physid 2 -> socket 0, colours 0..511; 3 -> 1, 512..1023
    assert body["numa"] == [
        {"base": 0x1000, "size": 0x7FF000, "physid": 2, "socket": 0, "colors": [0, 511]},
        {"base": 0x800000, "size": 0x800000, "physid": 3, "socket": 1, "colors": [512, 1023]},
    ]
    assert body["probed"] and body["numa_organized"]
    # pfn 2056 (physid 3's range): boot colour 8 ^ 2 = 10 -> 10 % 512 + 512 = 522
    assert (await page(client, 2056, inst["id"]))["pc"] == 522
    console = (await client.get(f"{API}/instances/{inst['id']}/console")).json()
    assert console["boot"][0] == "vm_page: avg 2 pages per queue, 1024 queues"
