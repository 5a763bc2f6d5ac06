"""The named seams over HTTP: listed at ``GET /api/v1/seams``, chosen per instance with
``policy`` when it is created, shown in its configuration, refused by name when
unknown, and kept across a restart (the journal replays under the same choices)."""

from __future__ import annotations

import httpx
import pytest

from app.lab.settings import Settings

from .conftest import API, serve

pytestmark = pytest.mark.anyio


async def test_the_seams_are_listed_with_their_kernel_functions(client: httpx.AsyncClient) -> None:
    r = await client.get(f"{API}/seams")
    assert r.status_code == 200
    seams = {s["name"]: s for s in r.json()}
    assert seams["page_color"]["function"] == "vm_get_pg_color"
    assert seams["dontneed"]["function"] == "vm_page_dontneed"
    assert seams["free_queue_end"]["function"] == "_vm_page_add_queue_spinlocked"
    assert [c["name"] for c in seams["free_queue_end"]["choices"]] == ["kernel", "tail"]


async def test_an_instance_takes_a_policy_and_shows_it(client: httpx.AsyncClient) -> None:
    r = await client.post(
        f"{API}/instances",
        json={"name": "bsd", "memory": "16MiB", "policy": {"page_color": "none"}},
    )
    assert r.status_code == 201, r.text
    inst = r.json()
    assert inst["config"]["policy"] == {"page_color": "none"}
    iid = inst["id"]
    # colour 0 for everyone: on this 1-CPU box pindex 5 would be colour 5 under the kernel
    r = await client.post(
        f"{API}/instances/{iid}/calls/vm_page_alloc",
        json={"args": {"object": None, "pindex": 5, "page_req": "VM_ALLOC_NORMAL"}},
    )
    (event,) = [e for e in r.json()["record"]["events"] if e["event"] == "alloc"]
    assert event["color"] == 0 and event["color_policy"] == "none"
    assert event["found_queue"] == {"queue": "PQ_FREE", "color": 0}
    # the explanation names the seam, not the kernel's formula it did not follow
    assert "sets the seam page_color to 'none'" in event["color_why"]
    assert "color_from" not in event
    # a preset takes a policy too; the kernel's choice is the default and not shown
    r = await client.post(
        f"{API}/instances",
        json={
            "name": "p",
            "preset": "tiny-16m",
            "policy": {"dontneed": "tail", "page_color": "kernel"},
        },
    )
    assert r.status_code == 201 and r.json()["config"]["policy"] == {"dontneed": "tail"}


@pytest.mark.parametrize(
    ("policy", "words"),
    [
        ({"page_colour": "none"}, "no seam named 'page_colour'; did you mean 'page_color'"),
        ({"page_color": "random"}, "its choices: kernel, object, cpu, none"),
    ],
)
async def test_an_unknown_seam_or_choice_is_refused_by_name(
    client: httpx.AsyncClient, policy: dict[str, str], words: str
) -> None:
    before = (await client.get(f"{API}/instances")).json()
    r = await client.post(
        f"{API}/instances", json={"name": "bad", "memory": "16MiB", "policy": policy}
    )
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    assert words in r.json()["detail"]
    assert (await client.get(f"{API}/instances")).json() == before


async def test_a_policy_survives_a_restart(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/lab.db"
    settings = Settings(
        default_preset="tiny-16m", database_url=url, snapshot_on_shutdown=False, snapshot_every=0
    )
    async with serve(settings) as c:
        r = await c.post(
            f"{API}/instances",
            json={"name": "fifo", "memory": "16MiB", "policy": {"free_queue_end": "tail"}},
        )
        iid = r.json()["id"]
        pfns = []
        for _ in range(3):
            r = await c.post(f"{API}/instances/{iid}/calls/vm_page_alloc", json={"args": {}})
            pfns.append(r.json()["result"])
        for pfn in pfns:
            await c.post(f"{API}/instances/{iid}/calls/vm_page_free", json={"args": {"m": pfn}})
        before = (await c.get(f"{API}/instances/{iid}")).json()
    async with serve(settings) as c:
        after = (await c.get(f"{API}/instances/{iid}")).json()
        assert after["config"]["policy"] == {"free_queue_end": "tail"}
        assert after["state_digest"] == before["state_digest"]
        # colour 0 of this box holds 3 pages, all three taken and freed in turn: FIFO
        # hands out the one freed first (the kernel's LIFO would give the last, 1025)
        assert pfns == [3075, 2050, 1025]
        r = await c.post(f"{API}/instances/{iid}/calls/vm_page_alloc", json={"args": {}})
        assert r.json()["result"] == 3075
