"""Issue 11 through the ``pagelab`` CLI and ``app.client`` against a real uvicorn server:
one spelling of a queue means one queue through the API, the client and the CLI; the
views (page, queue, threads, objects, pageout, dma); ``create --topology --numa
--dma-reserved``; ``run FILE`` (a scenario batch with a progress bar, ending in the
digest); DDB's answer to ``show page 3075``.

Every instance is a fresh ``tiny-16m`` box (pfns 1 .. 4095; its first vm_page_alloc takes
pfn 3075 from PQ_FREE colour 0, which holds 3075, 2050 and 1025 head to tail).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import httpx
import pytest

from app.cli import main
from app.client import PageLabClient, PageLabError

_names = itertools.count(1)


def pagelab(
    capsys: pytest.CaptureFixture[str], url: str, instance: int, *argv: str
) -> tuple[int, str, str]:
    capsys.readouterr()
    status = main(["--url", url, "--instance", str(instance), *argv])
    out, err = capsys.readouterr()
    return status, out, err


# ------------------------------------------------------------------ one spelling, one queue
@pytest.mark.parametrize(
    ("spelling", "name"),
    [
        ("PQ_FREE", "PQ_FREE"),
        ("free", "PQ_FREE"),
        ("FREE", "PQ_FREE"),
        ("pq_free", "PQ_FREE"),
        ("1", "PQ_FREE"),
        ("inactive", "PQ_INACTIVE"),
        ("1025", "PQ_INACTIVE"),
        ("Cache", "PQ_CACHE"),
        ("4097", "PQ_HOLD"),
    ],
)
def test_api_client_and_cli_agree_on_every_queue_spelling(
    url: str,
    client: PageLabClient,
    fresh: int,
    capsys: pytest.CaptureFixture[str],
    spelling: str,
    name: str,
) -> None:
    api = httpx.get(f"{url}/api/v1/instances/{fresh}/queues/{spelling}/0")
    assert api.status_code == 200, api.text
    assert api.json()["queue"] == f"{name}:0"
    assert client.queue(fresh, spelling, 0) == api.json()
    status, out, _ = pagelab(capsys, url, fresh, "queue", spelling, "0", "--json")
    assert status == 0 and json.loads(out) == api.json()
    status, out, _ = pagelab(capsys, url, fresh, "queue", spelling, "0")
    assert status == 0 and out.startswith(f"{name}:0  lcnt ")
    # and a call's queue argument reads the same spelling as the same queue
    r = client.call(fresh, "vm_page_list_find", {"basequeue": spelling, "index": 0})
    assert r["fn"] == "vm_page_list_find"
    if name == "PQ_FREE":
        assert r["result"] == 3075  # the head of PQ_FREE colour 0
    else:
        assert r["result"] is None  # nothing on the other queues of a fresh box


@pytest.mark.parametrize("spelling", ["fre", "PQ_FRE"])
def test_a_misspelt_queue_is_refused_alike_everywhere(
    url: str,
    client: PageLabClient,
    fresh: int,
    capsys: pytest.CaptureFixture[str],
    spelling: str,
) -> None:
    api = httpx.get(f"{url}/api/v1/instances/{fresh}/queues/{spelling}/0")
    assert api.status_code == 422
    detail = api.json()["detail"]
    assert f"there is no queue type {spelling!r}; did you mean 'PQ_FREE'?" in detail
    with pytest.raises(PageLabError) as info:
        client.queue(fresh, spelling, 0)
    assert info.value.detail == detail
    with pytest.raises(PageLabError) as info:
        client.call(fresh, "vm_page_list_find", {"basequeue": spelling})
    assert info.value.status == 422 and info.value.detail == detail
    status, _, err = pagelab(capsys, url, fresh, "queue", spelling, "0")
    assert status == 1 and detail in err


# ------------------------------------------------------------------ views
def test_page_view_and_a_page_outside_the_machine(
    url: str, fresh: int, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = pagelab(capsys, url, fresh, "page", "0xc03")
    assert status == 0
    lines = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    assert lines["pfn"].strip() == "3075" and lines["queue"].strip() == "PQ_FREE:0"
    assert lines["busy.locked"].strip() == "false"
    assert "where: on PQ_FREE: already free" in out
    assert "can be freed now: no" in out
    status, _, err = pagelab(capsys, url, fresh, "page", "99999")
    assert status == 1
    assert "No such page: pfn 99999 (0x1869f) is outside this machine's pages" in err


def test_queue_counts_threads_objects_pageout_and_dma(
    url: str, client: PageLabClient, fresh: int, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = pagelab(capsys, url, fresh, "queue", "free")
    assert status == 0 and out.startswith("PQ_FREE: 3711 pages  0:3 1:3 ")
    client.call(fresh, "vm_object_allocate")
    obj = client.call(fresh, "vm_object_allocate")["result"]
    pfn = client.call(fresh, "vm_page_alloc", {"object": obj, "pindex": 7})["result"]
    status, out, _ = pagelab(capsys, url, fresh, "objects")
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["ID", "TYPE", "SIZE", "RESIDENT", "REFS", "PG_COLOR"]
    assert [r[:4] for r in rows[1:]] == [
        ["1", "OBJT_DEFAULT", "0", "0"],
        [str(obj), "OBJT_DEFAULT", "0", "1"],
    ]
    status, out, _ = pagelab(capsys, url, fresh, "objects", str(obj))
    assert status == 0 and out.splitlines()[-1].split() == ["7", str(pfn)]
    status, out, _ = pagelab(capsys, url, fresh, "threads")
    daemon = [line.split() for line in out.splitlines() if "pagedaemon" in line]
    assert daemon == [
        [
            "4096",
            "pagedaemon",
            "0",
            "sleeping",
            "vm_pageout_thread",
            "vm_pages_needed",
            "psleep",
            "10",
        ]
    ]
    status, out, _ = pagelab(capsys, url, fresh, "pageout")
    assert "state:" in out and "thread.channel:" in out
    assert out.split("thread.channel:")[1].split()[0] == "vm_pages_needed"
    status, out, _ = pagelab(capsys, url, fresh, "dma")
    assert status == 0 and out.splitlines()[0].split() == ["bl_free:", "255"]
    assert out.rstrip().endswith("free runs (first pfn, pages): 1+255")
    status, out, _ = pagelab(capsys, url, fresh, "dma", "--json")
    assert json.loads(out) == client.dma(fresh)


def test_create_takes_topology_numa_and_dma_reserved(
    url: str, client: PageLabClient, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"topo-{next(_names)}"
    status, out, err = pagelab(
        capsys, url, 1, "create", name, "--memory", "16MiB", "--topology", "2x2",
        "--numa", "0x1000:0x7ff000:0", "--numa", "8MiB:8MiB:1", "--dma-reserved", "1MiB", "--json",
    )  # fmt: skip
    assert status == 0, err
    made = json.loads(out)
    try:
        assert made["config"]["cpus"] == 4
        assert made["config"]["topology"] == {"sockets": 2, "cores": 2, "threads": 1}
        assert made["config"]["numa"] == [
            {"base": 0x1000, "size": 0x7FF000, "socket": 0},
            {"base": 8 << 20, "size": 8 << 20, "socket": 1},
        ]
        assert made["config"]["dma_reserved"] == 1 << 20
    finally:
        client.delete_instance(made["id"])
    status, _, err = pagelab(
        capsys, url, 1, "create", "x", "--memory", "16MiB", "--dma-reserved", "1MB"
    )
    assert status == 2 and "'1MB' is ambiguous" in err
    status, _, err = pagelab(
        capsys, url, 1, "create", "x", "--memory", "16MiB", "--topology", "2x2", "--cpus", "3"
    )
    assert status == 1 and "cpus 3 conflicts with the topology" in err


def test_create_takes_a_policy_and_seams_lists_the_choices(
    url: str, client: PageLabClient, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = pagelab(capsys, url, 1, "seams")
    assert status == 0, err
    assert "page_color (in vm_get_pg_color)" in out
    assert "* kernel" in out and "  object" in out
    name = f"bsd-{next(_names)}"
    status, out, err = pagelab(
        capsys, url, 1, "create", name, "--memory", "16MiB",
        "--policy", "page_color=object", "--policy", "dontneed=tail", "--json",
    )  # fmt: skip
    assert status == 0, err
    made = json.loads(out)
    try:
        assert made["config"]["policy"] == {"dontneed": "tail", "page_color": "object"}
        assert client.seams()[0]["name"] == "page_color"
    finally:
        client.delete_instance(made["id"])
    status, _, err = pagelab(
        capsys, url, 1, "create", "x", "--memory", "16MiB", "--policy", "page_color"
    )
    assert status == 2 and "write SEAM=CHOICE" in err
    status, _, err = pagelab(
        capsys, url, 1, "create", "x", "--memory", "16MiB", "--policy", "page_colour=none"
    )
    assert status == 1 and "did you mean 'page_color'" in err


# ------------------------------------------------------------------ run FILE
def test_run_replays_a_scenario_file_and_ends_in_the_digest(
    url: str,
    client: PageLabClient,
    fresh: int,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    calls = [{"fn": "vm_page_alloc", "args": {"page_req": "VM_ALLOC_NORMAL"}}] * 25
    calls.append({"fn": "vm_page_free", "args": {"m": 99999}})
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps({"calls": calls}))
    status, out, err = pagelab(capsys, url, fresh, "run", str(path), "--chunk", "10")
    assert status == 1  # one call was refused
    assert "26 of 26 calls run, 1 refused" in out
    assert "replaying" in err and "26/26" in err  # rich's progress bar, on stderr
    assert "refused: call 25 vm_page_free: pfn 99999 (0x1869f) is outside" in err
    # the digest is the instance's, and the same batch on a twin gives it too
    digest = out.split("digest ")[1].split()[0]
    assert digest == client.instance(fresh)["state_digest"]
    twin = client.create_instance(f"twin-{next(_names)}", preset="tiny-16m")
    try:
        assert client.batch(twin["id"], calls)["state_digest"] == digest
    finally:
        client.delete_instance(twin["id"])
    # the compact form of the same file replays to the same digest
    compact = {
        "forms": [{"fn": "vm_page_alloc", "args": ["page_req"]}],
        "fn": [0] * 25,
        "args": [["VM_ALLOC_NORMAL"]] * 25,
    }
    path.write_text(json.dumps(compact))
    other = client.create_instance(f"compact-{next(_names)}", preset="tiny-16m")
    try:
        status, out, _ = pagelab(capsys, url, other["id"], "run", str(path), "-q")
        assert status == 0 and "25 of 25 calls run, 0 refused" in out
        before = client.instance(fresh)
        assert client.batch(other["id"], [calls[-1]])["state_digest"] == before["state_digest"]
    finally:
        client.delete_instance(other["id"])


def test_run_refuses_a_file_that_is_not_a_batch(
    url: str, fresh: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"calls": 3}')
    status, _, err = pagelab(capsys, url, fresh, "run", str(path))
    assert status == 2 and "expected a batch" in err


# ------------------------------------------------------------------ DDB
def test_ddb_show_page_with_a_page_points_to_pagelab_page(
    url: str, fresh: int, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = pagelab(capsys, url, fresh, "ddb", "show", "page", "3075")
    assert status == 1 and out == ""
    assert "DDB has no command 'show page 3075'" in err
    assert "'show page': the 13 global vmstats counters" in err and "'show pageq'" in err
    assert "pagelab page 3075" in err
    status, out, _ = pagelab(capsys, url, fresh, "ddb", "show", "page")
    assert status == 0 and out.startswith("vmstats.v_free_count: 3711\n")
