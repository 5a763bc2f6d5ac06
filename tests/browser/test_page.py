"""The browser page end to end: create an instance, watch an allocation move the heatmap
and the chart, inspect the page, run a workload, set a sysctl, read errors, survive a
server restart.  Values are read from the page's data attributes and its test hooks
(``window.__pagelab``), never from pixels; every wait is Playwright's, on a condition."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from .conftest import Console, Server, publish_screenshot, save_screenshot

FIRST_ALLOC_PFN = 3075  # tiny-16m: colour 0 holds pfns 1025, 2050, 3075; the head is 3075


def new_instance(server: Server, name: str, **body: Any) -> int:
    inst = server.api("POST", "/instances", json={"name": name, "preset": "tiny-16m", **body})
    return int(inst["id"])


def open_dashboard(page: Any, server: Server, instance: int) -> None:
    page.goto(f"{server.url}/#/instances/{instance}")
    expect(page.locator("#conn")).to_have_attribute("data-state", "connected")
    page.wait_for_function("window.__pagelab.state && window.__pagelab.heatmap.draws > 0")


def hook(page: Any, expr: str) -> Any:
    return page.evaluate(f"() => window.__pagelab.{expr}")


def call(page: Any, fn: str, fill: dict[str, str] | None = None, *, sent: bool = True) -> None:
    """Call `fn` from the console with the given argument fields filled in; with `sent`,
    wait until the server has answered."""
    page.get_by_role("tab", name="Console").click()
    page.locator("#fn-filter").fill("")
    page.locator("#fn-select").select_option(fn)
    for name, value in (fill or {}).items():
        page.locator(f"#arg-{name}").fill(value)
    before = hook(page, "console.calls")
    page.locator("#run-call").click()
    if sent:
        page.wait_for_function(f"window.__pagelab.console.calls > {before}")


def test_create_instances_from_the_page(page: Any, server: Server) -> None:
    page.goto(server.url)
    expect(page.get_by_role("heading", name="Instances")).to_be_visible()
    expect(page.locator("#preset-select option[value='tiny-16m']")).to_have_count(1)
    page.locator("#preset-select").select_option("tiny-16m")
    page.locator("#preset-name").fill("from-preset")
    page.locator("#create-preset").click()
    expect(page).to_have_url(re.compile(r"#/instances/\d+$"))
    expect(page.locator("#conn")).to_have_attribute("data-state", "connected")
    expect(page.get_by_role("heading", name="from-preset")).to_be_visible()

    # a custom two-socket machine: the heatmap splits its colours into two socket bands
    page.get_by_role("link", name="All instances").click()
    page.locator("#custom-name").fill("two-sockets")
    page.locator("#custom-memory").fill("32MiB")
    page.locator("#custom-sockets").fill("2")
    page.locator("#custom-cores").fill("1")
    # a named seam, chosen in the (folded) policy section: classic BSD page colouring
    page.locator("#seams summary").click()
    expect(page.locator("#seam-page_color")).to_have_value("kernel")
    page.locator("#seam-page_color").select_option("object")
    page.locator("#create-custom").click()
    expect(page.get_by_role("heading", name="two-sockets")).to_be_visible()
    page.wait_for_function("window.__pagelab.heatmap && window.__pagelab.heatmap.sockets === 2")
    listed = {i["name"]: i for i in server.api("GET", "/instances")}
    assert {"from-preset", "two-sockets"} <= set(listed)
    assert listed["two-sockets"]["config"]["policy"] == {"page_color": "object"}
    assert listed["from-preset"]["config"]["policy"] == {}


def test_allocation_moves_heatmap_and_chart_and_opens_in_the_inspector(
    page: Any, server: Server
) -> None:
    iid = new_instance(server, "alloc")
    open_dashboard(page, server, iid)
    assert hook(page, "heatmap.drawn('PQ_FREE', 0)") == 3
    free_before = hook(page, "chart.last.v_free_count")
    assert free_before == 3711

    call(page, "vm_page_alloc")  # the form's defaults: VM_ALLOC_NORMAL
    result = page.locator("#call-result [data-fn='vm_page_alloc']")
    expect(result).to_have_attribute("data-result", str(FIRST_ALLOC_PFN))
    # the stream's delta reaches the heatmap: PQ_FREE colour 0 lost its head page
    page.wait_for_function("window.__pagelab.heatmap.drawn('PQ_FREE', 0) === 2")
    # the allocation's probes are outlined: it found PQ_FREE colour 0
    page.wait_for_function(
        "window.__pagelab.heatmap.probes && window.__pagelab.heatmap.probes.found.colour === 0"
    )
    expect(page.locator("[data-total='PQ_FREE']")).to_have_attribute("data-pages", "3710")

    # global vmstats move at a rollup (a tick), as in the kernel: then the chart follows
    call(page, "tick")
    page.wait_for_function("window.__pagelab.chart.seriesLast('v_free_count') === 3710")
    assert hook(page, "chart.last.v_free_count") == 3710
    expect(page.locator("[data-free]")).to_have_attribute("data-free", "3710")
    # simulated ticks on the x axis: one point per tick, the same last value
    page.get_by_role("button", name=re.compile("^X axis: wall time")).click()
    page.wait_for_function(
        "window.__pagelab.chart.axis === 'ticks' && window.__pagelab.chart.seriesLast('v_free_count') === 3710"
    )

    # the result links to the inspector
    call(page, "vm_page_alloc")
    pfn = int(result.get_attribute("data-result"))
    assert pfn != FIRST_ALLOC_PFN
    page.locator("#call-result").get_by_role(
        "button", name=f"Inspect page {pfn}", exact=True
    ).first.click()
    body = page.locator("#panel-inspector [data-pfn]")
    expect(body).to_have_attribute("data-pfn", str(pfn))
    expect(body).to_have_attribute("data-queue", "PQ_NONE")
    expect(body.get_by_text("PBUSY_LOCKED")).to_be_visible()
    expect(body.locator("[data-bits='valid']")).to_have_count(1)
    expect(body.locator("[data-bits='dirty']")).to_have_count(1)
    expect(body.get_by_text("Explanation")).to_be_visible()

    # the inspector watches the page: unbusying it shows up without asking
    call(page, "vm_page_wakeup", {"m": str(pfn)})
    page.get_by_role("tab", name="Inspector").click()
    expect(body.get_by_text("PBUSY_LOCKED")).to_have_count(0)

    # the event log saw the calls
    page.get_by_role("tab", name="Events").click()
    expect(page.locator("#panel-events tr[data-fn='vm_page_alloc']")).to_have_count(2)
    expect(page.locator("#panel-events tr[data-fn='tick']")).to_have_count(1)
    page.locator("#events-filter").select_option("vm_page_alloc")
    expect(page.locator("#panel-events tr[data-fn='tick']")).to_have_count(0)
    expect(page.locator("#panel-events tr[data-fn='vm_page_alloc']")).to_have_count(2)
    page.locator("#events-pause").click()
    expect(page.locator("#events-pause")).to_have_attribute("aria-pressed", "true")


def test_heatmap_cells_are_reachable_by_keyboard(page: Any, server: Server) -> None:
    iid = new_instance(server, "keys")
    open_dashboard(page, server, iid)
    grid = page.locator("canvas[data-queue='PQ_FREE']")
    grid.focus()
    page.keyboard.press("ArrowRight")
    expect(page.locator("#hm-info")).to_contain_text("PQ_FREE colour 1:")
    page.keyboard.press("Enter")
    pages = page.locator("[data-queue='PQ_FREE:1'] [data-pfn]")
    expect(pages.first).to_be_visible()
    pages.first.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#panel-inspector [data-pfn]")).to_have_attribute("data-queue", "PQ_FREE:1")


def test_workload_starts_runs_and_stops(page: Any, server: Server) -> None:
    iid = new_instance(server, "work")
    open_dashboard(page, server, iid)
    page.get_by_role("tab", name="Workloads").click()
    expect(page.locator("#wl-kind option[value='churn']")).to_have_count(1)
    page.locator("#wl-kind").select_option("churn")
    page.get_by_text("Seed, rate and limits").click()
    page.locator("#wl-rate").fill("500")
    page.locator("#wl-start").click()
    row = page.locator("tr[data-workload]").first
    expect(row).to_have_attribute("data-state", "running")
    # its calls reach the page through the stream
    page.wait_for_function(
        "window.__pagelab.workloads.runs.length === 1 && window.__pagelab.workloads.runs[0].calls > 0"
    )
    page.wait_for_function("window.__pagelab.frames > 2")
    controls = page.locator("tr[data-controls]").first
    controls.get_by_role("button", name=re.compile(r"^Pause workload")).click()
    expect(row).to_have_attribute("data-state", "paused")
    calls = int(row.locator("[data-calls]").get_attribute("data-calls"))
    controls.get_by_role("button", name=re.compile(r"^Step")).click()  # 10 calls, by default
    expect(row.locator("[data-calls]")).to_have_attribute("data-calls", str(calls + 10))
    controls.get_by_role("button", name=re.compile(r"^Stop workload")).click()
    expect(page.locator("tr[data-workload]").first).to_have_attribute("data-state", "stopped")
    runs = server.api("GET", f"/instances/{iid}/workloads")
    assert [r["state"] for r in runs] == ["stopped"]


def test_sysctl_edit_and_readable_errors(page: Any, server: Server, console: Console) -> None:
    iid = new_instance(server, "knobs")
    open_dashboard(page, server, iid)
    page.get_by_role("tab", name="Sysctls").click()
    page.locator("#sysctl-filter").fill("vm.v_free_min")
    field = page.get_by_label("vm.v_free_min (pages)")
    field.fill("100")
    field.press("Enter")
    expect(page.locator("#panel-sysctls [role='status']")).to_contain_text("vm.v_free_min")
    expect(page.locator("#panel-sysctls [role='status']")).to_contain_text("100 pages")
    assert server.api("GET", f"/instances/{iid}/sysctls/vm.v_free_min")["value"] == 100

    # a value the page can check itself: said at once, nothing sent
    field.fill("lots")
    field.press("Enter")
    expect(page.locator("#panel-sysctls [role='alert']").first).to_contain_text(
        '"lots" is not a whole number'
    )
    assert server.api("GET", f"/instances/{iid}/sysctls/vm.v_free_min")["value"] == 100

    # a call the kernel would panic on: refused, with the kernel's message
    console.allow(r"status of 409")
    call(page, "vm_page_free", {"m": "3"})
    alert = page.locator("#panel-console .problem[role='alert']")
    expect(alert).to_contain_text("Kernel panic refused (HTTP 409)")
    expect(alert).to_contain_text("panic: page is not busied")

    # a form error found before sending
    call(page, "vm_page_free", {"m": "not-a-page"}, sent=False)
    expect(alert).to_contain_text('m: "not-a-page" is not a whole number')

    # the server's validation problem, field by field
    console.allow(r"status of 422")
    page.goto(f"{server.url}/#/")
    page.locator("#custom-name").fill("bad")
    page.locator("#custom-memory").fill("12 parsecs")
    page.locator("#create-custom").click()
    problem = page.locator("form .problem[role='alert']")
    expect(problem).to_contain_text("Creating the instance: Invalid request (HTTP 422)")
    expect(problem).to_contain_text("12 parsecs")


def test_deleted_and_unknown_instances_are_said_plainly(
    page: Any, server: Server, console: Console
) -> None:
    iid = new_instance(server, "doomed")
    open_dashboard(page, server, iid)
    server.api("DELETE", f"/instances/{iid}")
    conn = page.locator("#conn")
    expect(conn).to_have_attribute("data-state", "closed")
    expect(page.get_by_role("link", name="Back to the instance list")).to_be_visible()

    console.allow(r"status of 404")
    page.goto(f"{server.url}/#/instances/9999")
    expect(conn).to_have_attribute("data-state", "failed")
    expect(conn).to_contain_text("there is no instance 9999")
    expect(page.locator(".problem[role='alert']").first).to_contain_text(
        "Unknown instance (HTTP 404)"
    )


def test_reconnects_after_a_server_restart(page: Any, own_server: Server, console: Console) -> None:
    # while the server is down, Chromium logs each refused WebSocket and request
    console.allow(r"WebSocket connection to .* failed")
    console.allow(
        r"Failed to load resource: net::ERR_(CONNECTION_REFUSED|CONNECTION_RESET|EMPTY_RESPONSE)"
    )
    open_dashboard(page, own_server, 1)
    page.wait_for_function("window.__pagelab.hellos === 1")
    conn = page.locator("#conn")
    own_server.crash()
    expect(conn).to_have_attribute("data-state", re.compile("waiting|connecting"))
    expect(conn).to_contain_text("disconnected")
    own_server.start()
    expect(conn).to_have_attribute("data-state", "connected", timeout=30_000)
    # a fresh hello from the new process replaced the state; the page works on as before
    page.wait_for_function("window.__pagelab.hellos === 2")
    call(page, "vm_page_alloc")
    page.wait_for_function("window.__pagelab.heatmap.drawn('PQ_FREE', 0) === 2")


def test_dashboard_screenshots_light_and_dark(page: Any, server: Server) -> None:
    # a 64 MiB machine under memory pressure: free pages fall below the paging thresholds,
    # the pageout daemon wakes and recovers them; every colour of every queue moves
    iid = server.api(
        "POST",
        "/instances",
        json={"name": "pressure-demo", "memory": "64MiB", "cpus": 2, "seed": 3},
    )["id"]
    open_dashboard(page, server, iid)
    server.api(
        "POST", f"/instances/{iid}/workloads", json={"kind": "pressure", "seed": 1, "rate": 30000}
    )
    page.get_by_role("tab", name="Workloads").click()
    expect(page.locator("tr[data-workload]").first).to_have_attribute(
        "data-state", "finished", timeout=60_000
    )
    page.wait_for_function(
        "window.__pagelab.state.pageout.passes > 0 && window.__pagelab.chart.points > 10"
    )
    page.evaluate("window.scrollTo(0, 0)")
    light = save_screenshot(page, "dashboard-light.png")
    publish_screenshot(light)
    toggle = page.locator("#theme-toggle")
    while page.evaluate("document.documentElement.dataset.theme") != "dark":
        toggle.click()
    expect(toggle).to_have_attribute("data-theme", "dark")
    page.wait_for_function("window.__pagelab.heatmap.draws > 0")
    save_screenshot(page, "dashboard-dark.png")
    toggle.click()  # back to auto: the system's (light) scheme
    expect(toggle).to_have_text("Theme: auto")


def test_docs_are_served_from_this_server(page: Any, server: Server) -> None:
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    page.goto(f"{server.url}/docs")
    expect(page).to_have_title("PageLab API")
    expect(page.locator(".opblock").first).to_be_visible()
    foreign = [u for u in requested if not u.startswith(server.url)]
    assert not foreign, foreign


def test_a_bulk_calls_record_is_summarised_in_the_console(page: Any, server: Server) -> None:
    """A contiguous allocation of 12 000 pages moves more pages than an answer lists
    (PAGELAB_RECORD_MAX_MOVES, 10 000): the console says how many moved, by queue pair,
    lists the first ones and links the full record."""
    iid = new_instance(server, "bulk", preset="teaching-1g")
    open_dashboard(page, server, iid)
    # its `high` defaults to 2^64 - 1, which JavaScript cannot hold: the field stays empty
    call(page, "vm_contig_pg_alloc", {"size": str(12_000 * 4096)})
    note = page.locator("#call-result [data-summarised='true']")
    expect(note).to_contain_text(re.compile(r"12\W?000 page moves"))  # grouped digits
    expect(note).to_contain_text("PQ_FREE->PQ_NONE")
    expect(
        page.locator("#call-result h3").filter(
            has_text=re.compile(r"Moves \(first 50 of 12\W?000\)")
        )
    ).to_be_visible()
    href = note.get_by_role("link", name="Download the full record").get_attribute("href")
    assert href is not None and re.fullmatch(rf"/api/v1/instances/{iid}/journal/\d+/record", href)
    full = server.api("GET", href.removeprefix("/api/v1"))
    assert len(full["moves"]) == 12_000
