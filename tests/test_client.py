"""``app.client`` against a real uvicorn server on 127.0.0.1 (a thread of this process).

The server's default instance and every instance a test boots is the ``tiny-16m`` preset:
phys_avail ((0x1000, 16 MiB),), 1 CPU.  Its numbers, worked out from the spec:

* §2.2: total = 16 MiB - 4 KiB = 16 773 120 bytes; first_page = 1; page_range = 4095.
  Minidump bitmap: nbits = 4096 -> 512 bytes -> one page: end = 16 773 120.
  npages = (16 773 120 - 4095*128) // 4096 = 16 248 960 // 4096 = 3967; new_end =
  trunc_page(16 248 960) = 3967*4096, so pfn 1 .. 3966 are added: v_page_count = 3966.
* §2.2 step 7: vm_low_phys_reserved = min(256 MiB, total/4 = 4 193 280): pfn 1 .. 1023
  (pfn*4096 < 4 193 280) go to the DMA reserve (§2.3); vm_dma_reserved = total/16 =
  1 048 320 bytes, i.e. 1 048 320 // 4096 = 255 pages kept.
* §2.4 step 2: each round returns at most bfree - 255 pages and the loop runs while
  bfree > 255, so exactly 1023 - 255 = 768 pages come back: v_free_count = 3966 - 1023 +
  768 = 3711, v_wire_count = v_dma_pages = 255.
* §4.2 with P = 3966, F = 3711: v_free_min = 64 + 3966//200 = 64 + 19 = 83.
* §2.3 colours: pc = (pfn ^ pfn>>10 ^ pfn>>20) & 1023.  In 1024 .. 3966, colour 0 holds
  pfn 1025 (1025^1 = 1024), 2050 (2050^2 = 2048) and 3075 (3075^3 = 3072); pages are
  added in ascending order at the head, so the head is 3075, then 2050, then 1025.
  CPU 0 of a 1-CPU machine without topology starts at colour 0*(1024/1) + 0 = 0 (§6.1),
  so the first vm_page_alloc returns pfn 3075, the next 2050.
"""

from __future__ import annotations

import itertools

import httpx
import pytest

from app.client import AsyncPageLabClient, PageLabClient, PageLabError
from app.lab.settings import Settings
from app.main import create_app

V_PAGE_COUNT = 3966  # see the module docstring
V_FREE_COUNT = 3711  # 3966 - 1023 + 768
V_WIRE_COUNT = 255  # 1 048 320 // 4096
V_FREE_MIN = 83  # 64 + 3966 // 200
FIRST_PFN = 3075  # head of PQ_FREE colour 0
SECOND_PFN = 2050

_names = itertools.count(1)


# ------------------------------------------------------------------ instances
def test_health_and_the_default_instance(client: PageLabClient) -> None:
    assert client.health() == {"status": "alive"}
    default = client.instance(1)
    assert default["name"] == "default" and default["preset"] == "tiny-16m"
    assert default["summary"]["v_page_count"] == V_PAGE_COUNT
    assert default["summary"]["v_free_count"] == V_FREE_COUNT
    assert default["summary"]["v_wire_count"] == V_WIRE_COUNT
    assert 1 in [i["id"] for i in client.instances()]


def test_create_from_memory_reset_and_delete(client: PageLabClient) -> None:
    inst = client.create_instance(
        f"client-{next(_names)}", memory="8MiB", topology=(1, 2, 1), seed=5
    )
    iid = inst["id"]
    try:
        assert inst["config"]["cpus"] == 2  # 1 socket x 2 cores x 1 thread
        assert inst["config"]["topology"] == {"sockets": 1, "cores": 2, "threads": 1}
        assert inst["config"]["seed"] == 5
        # memory="8MiB" -> phys_avail ((4096, 8 MiB),): total = 8 388 608 - 4096 =
        # 8 384 512; page_range = 2048 - 1 = 2047; bitmap 2048 bits -> one page: end =
        # 8 384 512; npages = (8 384 512 - 2047*128) // 4096 = 8 122 496 // 4096 = 1983;
        # new_end = trunc_page(8 122 496) = 1983*4096 -> pfn 1 .. 1982: 1982 pages (§2.2).
        assert inst["summary"]["v_page_count"] == 1982
        # keep 8 384 512/16 = 524 032 bytes -> 127 pages; all other reserve pages come
        # back (§2.4), so free = 1982 - 127 = 1855.
        assert inst["summary"]["v_free_count"] == 1855
        booted = inst["state_digest"]
        client.call(iid, "vm_page_alloc")
        assert client.instance(iid)["state_digest"] != booted
        again = client.reset_instance(iid)
        assert again["state_digest"] == booted  # same config and seed: the same machine
        assert again["calls"] == 0
    finally:
        client.delete_instance(iid)
    with pytest.raises(PageLabError) as err:
        client.instance(iid)
    assert err.value.status == 404 and err.value.kind == "unknown-instance"


# ------------------------------------------------------------------ calls and views
def test_call_allocates_the_head_of_color_0(client: PageLabClient, fresh: int) -> None:
    r = client.call(fresh, "vm_page_alloc", {"page_req": "VM_ALLOC_NORMAL"})
    assert r["fn"] == "vm_page_alloc"
    assert r["result"] == FIRST_PFN
    assert r["blocked"] is None and r["completed"] is None
    assert r["record"] is not None
    assert r["record"]["moves"] == [{"pfn": FIRST_PFN, "from": "PQ_FREE:0", "to": "PQ_NONE"}]
    # The allocated page is busied and on no queue (§7.1).
    page = client.page(fresh, FIRST_PFN)
    assert page["pfn"] == FIRST_PFN and page["queue"] == "PQ_NONE"
    assert page["busy"]["locked"] is True
    # Colour 0 keeps 2050 and 1025, head -> tail; lcnt 3 - 1 = 2.
    q = client.queue(fresh, "free", 0)
    assert q["queue"] == "PQ_FREE:0" and q["lcnt"] == 2 and q["pages"] == [SECOND_PFN, 1025]
    assert client.queue(fresh, "PQ_FREE", 0, offset=1, limit=1)["pages"] == [1025]
    assert client.queues(fresh)["PQ_FREE"][0] == 2
    # §5: the removal is a -1 in CPU 0's gd_vmstats and gd_vmstats_adj; the global
    # vmstats is not touched until a rollup.
    vs = client.vmstats(fresh)
    assert vs["global"]["v_free_count"] == V_FREE_COUNT
    assert vs["cpus"][0]["gd_vmstats"]["v_free_count"] == V_FREE_COUNT - 1
    assert vs["cpus"][0]["gd_vmstats_adj"]["v_free_count"] == -1
    no_record = client.call(fresh, "vm_page_alloc", record=False)
    assert no_record["result"] == SECOND_PFN and no_record["record"] is None


def test_batch_results_errors_and_digest(client: PageLabClient, fresh: int) -> None:
    # page_req=1 is VM_ALLOC_NORMAL (0x0001, §1.6) given as a number.
    out = client.batch(
        fresh,
        [("vm_page_alloc", {}), {"fn": "vm_page_alloc", "args": {"page_req": 1}}, "nope"],
    )
    assert [r.get("result") for r in out["results"][:2]] == [FIRST_PFN, SECOND_PFN]
    assert "result" not in out["results"][2] and "nope" in out["results"][2]["error"]["detail"]
    assert out["completed"] == 2 and out["errors"] == 1
    assert out["state_digest"] == client.instance(fresh)["state_digest"]
    stopped = client.batch(fresh, ["nope", "vm_page_alloc"], stop_on_error=True)
    assert len(stopped["results"]) == 1 and stopped["completed"] == 0


def test_objects_threads_dma_and_functions(client: PageLabClient, fresh: int) -> None:
    assert client.objects(fresh) == []
    oid = client.call(fresh, "vm_object_allocate", {"size": 4})["result"]
    objects = client.objects(fresh)
    assert [o["id"] for o in objects] == [oid] and objects[0]["size"] == 4
    assert client.object(fresh, oid)["pages"] == []
    # vm_page_lookup of an empty object returns NULL -> null (§11.2).
    assert client.call(fresh, "vm_page_lookup", {"object": oid, "pindex": 0})["result"] is None
    assert client.threads(fresh)["ticks"] == 0
    # 255 pages stay in the DMA reserve (module docstring).
    dma = client.dma(fresh)
    assert dma["bl_free"] == 255 and dma["vm_dma_reserved"] == 1_048_320
    assert client.pageout(fresh)["enabled"] is True
    alloc = [f for f in client.functions() if f["name"] == "vm_page_alloc"]
    assert alloc and alloc[0]["models"] == "vm_page_alloc"
    assert "tiny-16m" in [p["name"] for p in client.presets()]


def test_a_blocked_call_waits_and_reports_still_asleep(client: PageLabClient, fresh: int) -> None:
    pfn = client.call(fresh, "vm_page_alloc")["result"]  # hard-busied (§7.1)
    r = client.call(fresh, "vm_page_busy_wait", {"m": pfn}, thread=1, wait=True, timeout_s=0.05)
    assert r["result"] is None
    assert r["blocked"] is not None
    assert r["blocked"]["thread"] == 1 and r["blocked"]["channel"] == f"page:{pfn}"
    assert r["completed"] is None  # nobody woke it within the wait
    client.call(fresh, "vm_page_wakeup", {"m": pfn})
    # vm_page_busy_wait then acquires the hard busy (§18, busy row): thread 1 is idle.
    threads = {t["tid"]: t for t in client.threads(fresh)["threads"]}
    assert threads[1]["state"] == "idle"
    assert client.page(fresh, pfn)["busy"]["locked"] is True


# ------------------------------------------------------------------ sysctl, ddb
def test_sysctl_get_set_and_list(client: PageLabClient, fresh: int) -> None:
    assert client.sysctl_get(fresh, "vm.v_free_min") == V_FREE_MIN
    change = client.sysctl_set(fresh, "vm.v_free_min", 100)
    assert change == {"name": "vm.v_free_min", "old": V_FREE_MIN, "new": 100}
    assert client.sysctl_get(fresh, "vm.v_free_min") == 100
    listed = {s["name"]: s for s in client.sysctls(fresh)}
    assert listed["vm.v_free_min"]["value"] == 100 and listed["vm.v_free_min"]["writable"]
    assert listed["vm.dma_reserved"]["writable"] is False
    with pytest.raises(PageLabError) as err:
        client.sysctl_set(fresh, "vm.dma_reserved", 1)
    assert err.value.status == 422 and "read-only" in err.value.detail


def test_ddb_show_page_and_pageq(client: PageLabClient, fresh: int) -> None:
    lines = client.ddb(fresh, "show page").splitlines()
    # §16.4: 13 lines, v_free_count first, v_paging_target2 (5 * 83 = 415) last.
    assert len(lines) == 13
    assert lines[0] == f"vmstats.v_free_count: {V_FREE_COUNT}"
    assert lines[4] == f"vmstats.v_wire_count: {V_WIRE_COUNT}"
    assert lines[12] == "vmstats.v_paging_target2: 415"
    pageq = client.ddb(fresh, "pageq").splitlines()
    assert [ln.split(":")[0] for ln in pageq] == ["PQ_FREE", "PQ_CACHE", "PQ_ACTIVE", "PQ_INACTIVE"]
    free = pageq[0].split()[1:]
    assert len(free) == 1024 and free[0] == "3"  # colour 0: 1025, 2050, 3075


# ------------------------------------------------------------------ errors
def test_errors_are_problem_documents(client: PageLabClient, fresh: int) -> None:
    with pytest.raises(PageLabError) as err:
        client.call(fresh, "vm_no_such_function")
    e = err.value
    assert e.status == 404 and e.type == "/problems/unknown-function"
    assert e.kind == "unknown-function" and e.title == "Unknown kernel function"
    assert "vm_no_such_function" in e.detail and e.body["status"] == 404
    # Freeing a free page panics (§18, vm_page_free_toq row): refused, nothing changes.
    digest = client.instance(fresh)["state_digest"]
    with pytest.raises(PageLabError) as err:
        client.call(fresh, "vm_page_free", {"m": FIRST_PFN})
    assert err.value.status == 409 and err.value.kind == "kernel-panic"
    assert err.value.body["panic"] and err.value.detail.startswith("panic: ")
    assert client.instance(fresh)["state_digest"] == digest
    with pytest.raises(PageLabError) as err:
        client.sysctl_get(fresh, "vm.nope")
    assert err.value.status == 404 and err.value.kind == "not-found"
    with pytest.raises(PageLabError) as err:
        client.call(fresh, "vm_page_alloc", {"page_req": "VM_ALLOC_BOGUS"})
    assert err.value.status == 422 and err.value.kind == "validation"


def test_non_problem_errors_and_base_url() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.path.endswith("/instances"):
            return httpx.Response(200, json=[])
        return httpx.Response(502, text="bad gateway")

    transport = httpx.MockTransport(handler)
    with PageLabClient("http://lab.example/api/v1/", transport=transport) as c:
        assert c.instances() == []
        with pytest.raises(PageLabError) as err:
            c.ddb(3, "show  pageq")
    assert seen == [
        "http://lab.example/api/v1/instances",
        "http://lab.example/api/v1/instances/3/ddb/show%20pageq",
    ]
    e = err.value
    assert (e.status, e.type, e.detail, e.body) == (502, "about:blank", "bad gateway", {})
    assert e.title == "Bad Gateway"


# ------------------------------------------------------------------ the async twin
@pytest.mark.anyio
async def test_async_client_in_process() -> None:
    app = create_app(Settings(default_preset="tiny-16m"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with AsyncPageLabClient("http://test", transport=transport) as c:
            assert [i["id"] for i in await c.instances()] == [1]
            r = await c.call(1, "vm_page_alloc", {"page_req": "VM_ALLOC_NORMAL"})
            assert r["result"] == FIRST_PFN
            assert await c.sysctl_get(1, "vm.v_free_min") == V_FREE_MIN
            text = await c.ddb(1, "show page")
            assert text.count("\n") == 13
            with pytest.raises(PageLabError) as err:
                await c.instance(7)
            assert err.value.kind == "unknown-instance"
