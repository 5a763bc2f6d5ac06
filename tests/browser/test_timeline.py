"""The timeline panel end to end: calls show up live, the scrubber stops following when
moved back, a fork at N and a restore to N give the machine after call N (checked against
a replay of the trace's first N calls), errors come from the problem's detail, and the
trace downloads.  Every wait is Playwright's, on a condition of the page or the API."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
from playwright.sync_api import expect

from .conftest import ROOT, Console, Server, save_screenshot
from .test_page import hook, new_instance, open_dashboard

N = 4  # the call the test steps back to


def post_call(
    server: Server, iid: int, fn: str, args: dict[str, Any] | None = None
) -> httpx.Response:
    return httpx.post(
        f"{server.url}/api/v1/instances/{iid}/calls/{fn}", json={"args": args or {}}, timeout=30.0
    )


def replayed_digest(server: Server, iid: int, upto: int, name: str) -> str:
    """The digest of a new instance made from the first calls (seq <= upto) of the
    instance's trace: boot and replay, independent of fork and restore."""
    trace = httpx.get(f"{server.url}/api/v1/instances/{iid}/trace", timeout=30.0).text.splitlines()
    head, calls = trace[0], [ln for ln in trace[1:] if json.loads(ln)["seq"] <= upto]
    r = httpx.post(
        f"{server.url}/api/v1/traces",
        params={"name": name},
        content="\n".join([head, *calls]) + "\n",
        headers={"content-type": "application/x-ndjson"},
        timeout=30.0,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["state_digest"])


def test_scrub_fork_and_restore_at_a_call(page: Any, server: Server, console: Console) -> None:
    journal_reads: list[dict[str, list[str]]] = []
    page.on(
        "request",
        lambda r: (
            journal_reads.append(parse_qs(urlparse(r.url).query))
            if urlparse(r.url).path.endswith("/journal")
            else None
        ),
    )
    iid = new_instance(server, "timeline")
    open_dashboard(page, server, iid)
    scrub = page.locator("#tl-scrub")
    pos = page.locator("#tl-pos")

    # seqs 1-3 allocate, 4 is refused (a kernel panic), 5 allocates, 6-9 tick
    for _ in range(3):
        assert post_call(server, iid, "vm_page_alloc").status_code == 200
    assert post_call(server, iid, "vm_page_wakeup", {"m": 5}).status_code == 409
    assert post_call(server, iid, "vm_page_alloc").status_code == 200
    for _ in range(4):
        assert post_call(server, iid, "tick").status_code == 200

    # live: the scrubber is at the end and the list ends with the newest call
    expect(pos).to_have_attribute("data-seq", "9")
    expect(pos).to_have_attribute("data-position", "9")
    expect(page.locator("#tl-follow")).to_have_attribute("data-following", "true")
    expect(page.locator("#timeline tr[data-seq='9'][data-fn='tick']")).to_have_attribute(
        "aria-current", "true"
    )
    # the refused call is listed with its error (from the stream) or as refused (journal)
    expect(page.locator("#timeline tr[data-seq='4']")).to_have_attribute(
        "data-kind", re.compile("error|refused")
    )
    # the density strip counted 8 journalled calls and one refusal
    page.wait_for_function(
        "(() => { const d = window.__pagelab.timeline.density;"
        " return d && d.seq === 9 && d.calls.reduce((a, b) => a + b, 0) === 8; })()"
    )
    expect(page.locator("#tl-strip")).to_have_attribute(
        "aria-label", re.compile(r"^9 calls: 8 returned a value, 0 NULL, 1 refused")
    )

    # scrub back with the keyboard: End, then five steps left -> call 4
    scrub.focus()
    page.keyboard.press("End")
    for _ in range(9 - N):
        page.keyboard.press("ArrowLeft")
    expect(pos).to_have_attribute("data-position", str(N))
    expect(page.locator("#tl-follow")).to_have_attribute("data-following", "false")
    expect(page.locator(f"#timeline tr[data-seq='{N}']")).to_have_attribute("aria-current", "true")

    # a new call while scrubbed back: the seq moves on, the position stays
    assert post_call(server, iid, "tick").status_code == 200
    expect(pos).to_have_attribute("data-seq", "10")
    expect(pos).to_have_attribute("data-position", str(N))
    expect(page.locator("#tl-follow")).to_contain_text("6 newer")
    # the page shown reached the newest call, so it grows with it (the list is short)
    expect(page.locator("#timeline tr[data-seq='10'][data-fn='tick']")).to_have_count(1)

    # the journal is read a page at a time, never whole
    assert journal_reads and all(int(q["limit"][0]) <= 40 for q in journal_reads), journal_reads

    expected = replayed_digest(server, iid, N, "replay-at-4")

    # a fork under a name already taken is refused, with the problem's detail
    console.allow(r"status of 409")
    page.locator("#tl-fork-name").fill("replay-at-4")
    page.locator("#tl-fork").click()
    expect(page.locator("#tl-message .problem[role='alert']")).to_contain_text("replay-at-4")

    # the trace downloads as JSON Lines: a header and the calls
    with page.expect_download() as dl:
        page.locator("#tl-export").click()
    lines = Path(dl.value.path()).read_text().splitlines()
    assert json.loads(lines[0])["format"] == "pagelab-trace" and json.loads(lines[0])["calls"] == 9
    assert dl.value.suggested_filename == "timeline.pagelab.jsonl"

    if os.environ.get("PAGELAB_PUBLISH_SCREENSHOTS") == "1":
        shot = save_screenshot(page, "timeline-full.png")
        page.locator("#timeline").screenshot(path=str(shot.with_name("timeline.png")))
        shutil.copyfile(
            shot.with_name("timeline.png"), ROOT / "docs" / "screenshots" / "timeline.png"
        )

    # the strip follows the theme (it is a canvas: drawn again with the dark colours)
    draws = hook(page, "timeline.draws")
    toggle = page.locator("#theme-toggle")
    while page.evaluate("document.documentElement.dataset.theme") != "dark":
        toggle.click()
    page.wait_for_function(f"window.__pagelab.timeline.draws > {draws}")
    page.locator("#timeline").screenshot(
        path=str(
            save_screenshot(page, "dashboard-timeline-dark.png").with_name("timeline-dark.png")
        )
    )
    while page.evaluate("document.documentElement.dataset.theme") is not None:
        toggle.click()

    # restore to N: the dialog says how many calls go; the page starts over at N
    page.locator("#tl-restore").click()
    dialog = page.locator("#tl-confirm")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("discards the 6 calls made after it (seq 5–10)")
    page.locator("#tl-confirm-cancel").click()  # cancelling changes nothing
    expect(dialog).to_be_hidden()
    assert server.api("GET", f"/instances/{iid}")["seq"] == 10
    page.locator("#tl-restore").click()
    page.locator("#tl-confirm-ok").click()
    expect(page.locator("#tl-restored")).to_contain_text(f"Restored to call {N}: generation 1")
    # the stream's new hello (generation 1) resynced the dashboard and the timeline
    page.wait_for_function(
        f"window.__pagelab.lastHello.generation === 1 && window.__pagelab.state.seq === {N}"
    )
    page.wait_for_function("window.__pagelab.timeline.generation === 1")
    expect(pos).to_have_attribute("data-seq", str(N))
    expect(pos).to_have_attribute("data-position", str(N))
    expect(page.locator("#tl-follow")).to_have_attribute("data-following", "true")
    expect(page.locator("#timeline tr[data-seq='5']")).to_have_count(0)
    restored = server.api("GET", f"/instances/{iid}")
    assert (restored["seq"], restored["generation"]) == (N, 1)
    assert restored["state_digest"] == expected

    # fork at 2 opens the new instance; its digest is the replay's
    scrub.focus()
    page.keyboard.press("Home")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    expect(pos).to_have_attribute("data-position", "2")
    page.locator("#tl-fork-name").fill("forked-at-2")
    page.locator("#tl-fork").click()
    expect(page.get_by_role("heading", name="forked-at-2")).to_be_visible()
    fork_id = int(re.search(r"#/instances/(\d+)$", page.url).group(1))  # type: ignore[union-attr]
    assert fork_id != iid
    expect(page.locator("#conn")).to_have_attribute("data-state", "connected")
    expect(pos).to_have_attribute("data-seq", "2")
    fork = server.api("GET", f"/instances/{fork_id}")
    assert fork["seq"] == 2
    assert fork["state_digest"] == replayed_digest(server, iid, 2, "replay-at-2")
    assert hook(page, "timeline.rows") == [1, 2]


def test_a_long_journal_is_read_a_page_at_a_time(page: Any, server: Server) -> None:
    journal_reads: list[dict[str, list[str]]] = []
    page.on(
        "request",
        lambda r: (
            journal_reads.append(parse_qs(urlparse(r.url).query))
            if urlparse(r.url).path.endswith("/journal")
            else None
        ),
    )
    iid = new_instance(server, "long-timeline")
    open_dashboard(page, server, iid)
    # 20 000 calls as fast as they go: the stream summarises them, the timeline reads the tail
    server.api(
        "POST", f"/instances/{iid}/workloads", json={"kind": "churn", "rate": "max", "steps": 20000}
    )
    seq = 20000
    page.wait_for_function(f"window.__pagelab.timeline.seq === {seq}", timeout=60_000)
    pos = page.locator("#tl-pos")
    expect(pos).to_have_attribute("data-position", str(seq))
    expect(page.locator(f"#timeline tr[data-seq='{seq}']")).to_have_attribute(
        "aria-current", "true"
    )
    page.wait_for_function(
        f"(() => {{ const d = window.__pagelab.timeline.density; return d && d.seq === {seq}"
        " && d.calls.length > 16 && d.calls.length * d.width >= d.seq; })()"
    )
    density = hook(page, "timeline.density")
    width = density["width"]
    first = httpx.get(
        f"{server.url}/api/v1/instances/{iid}/journal", params={"limit": width}
    ).json()["entries"]
    assert density["calls"][0] == sum(1 for e in first if e["seq"] <= width) > 0
    assert sum(density["calls"]) <= seq

    # a click in the middle of the strip scrubs there; the list is the page around it
    strip = page.locator("#tl-strip")
    box = strip.bounding_box()
    strip.click(position={"x": box["width"] / 2, "y": box["height"] / 2})
    expect(page.locator("#tl-follow")).to_have_attribute("data-following", "false")
    middle = int(pos.get_attribute("data-position"))
    assert abs(middle - seq // 2) <= seq // 100
    page.wait_for_function(
        f"(() => {{ const r = window.__pagelab.timeline.rows.flat(); return r.length && r[0] <= {middle} && {middle} <= r[r.length - 1]; }})()"
    )
    rows = page.locator("#timeline tbody tr")
    assert 1 <= rows.count() <= 40
    expect(page.locator("#timeline tr[aria-current='true']")).to_have_count(1)
    # "Later" moves on by about a page; "Back to now" follows again
    page.locator("#tl-later").click()
    expect(pos).not_to_have_attribute("data-position", str(middle))
    assert middle < int(pos.get_attribute("data-position")) <= middle + 60
    page.locator("#tl-end").click()
    expect(pos).to_have_attribute("data-position", str(seq))
    expect(page.locator("#tl-follow")).to_have_attribute("data-following", "true")
    assert journal_reads and all(int(q["limit"][0]) <= 40 for q in journal_reads)

    # a restore from elsewhere (the API) reaches the page as a new hello: it starts over
    page.locator("#tl-scrub").fill("500")
    expect(page.locator("#tl-follow")).to_have_attribute("data-following", "false")
    server.api("POST", f"/instances/{iid}/restore", json={"to": 100})
    expect(pos).to_have_attribute("data-seq", "100")
    expect(pos).to_have_attribute("data-position", "100")
    expect(page.locator("#tl-follow")).to_have_attribute("data-following", "true")
    page.wait_for_function(
        "window.__pagelab.timeline.generation === 1 && window.__pagelab.timeline.rows.flat().pop() === 100"
    )
    page.wait_for_function(
        "window.__pagelab.timeline.density && window.__pagelab.timeline.density.seq === 100"
    )
