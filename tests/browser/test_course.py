"""The page for a student of a course (issue 8 §1, §4): an instance broadcast to the course
is listed read-only (no reset, no delete), and the course's scenarios can be started from
the instance list; the copy opens, and its digest is the scenario's.  The instructor sees
the hand-out button; the student does not."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from .conftest import Console, Server
from .test_signin import ADMIN_TOKEN, NOT_SIGNED_IN, bearer, new_student, sign_in, token_server

__all__ = ["token_server"]  # the module's server fixture, shared with the sign-in tests


def test_a_student_sees_a_broadcast_read_only_and_starts_a_scenario(
    page: Any, token_server: Server, console: Console
) -> None:
    console.allow(NOT_SIGNED_IN)
    tess = token_server.api(
        "POST",
        "/users",
        json={"name": "tess", "role": "instructor", "course": "os101"},
        headers=bearer(ADMIN_TOKEN),
    )["token"]
    demo = token_server.api(
        "POST", "/instances", json={"name": "demo", "preset": "tiny-16m"}, headers=bearer(tess)
    )
    token_server.api(
        "PUT",
        f"/instances/{demo['id']}/broadcast",
        json={"course": "os101"},
        headers=bearer(tess),
    )
    scenario = token_server.api(
        "POST",
        "/courses/os101/scenarios",
        json={
            "name": "three-pages",
            "description": "three pages allocated",
            "preset": "tiny-16m",
            "calls": [{"fn": "vm_page_alloc", "args": {}}] * 3,
        },
        headers=bearer(tess),
    )
    cara = new_student(token_server, "cara")

    page.goto(token_server.url)
    sign_in(page, cara)
    expect(page.locator("#signed-in-as")).to_have_attribute("data-name", "cara")

    # the broadcast: listed, marked, and without the buttons that would change it
    row = page.locator(f"tr[data-instance='{demo['id']}']")
    expect(row).to_have_attribute("data-access", "broadcast")
    expect(row).to_contain_text("read-only")
    expect(row.get_by_role("link", name="Open", exact=True)).to_be_visible()
    expect(row.get_by_role("button")).to_have_count(0)

    # the course's scenario: a student may start a copy, not hand it out
    sc_row = page.locator(f"tr[data-scenario='{scenario['id']}']")
    expect(sc_row).to_contain_text("three-pages")
    expect(sc_row.get_by_role("button", name=re.compile("Hand .* out"))).to_have_count(0)
    sc_row.get_by_role("button", name="Start my copy of three-pages").click()
    expect(page).to_have_url(re.compile(r"#/instances/\d+$"))
    new_id = int(page.url.rsplit("/", 1)[1])
    copy = token_server.api("GET", f"/instances/{new_id}", headers=bearer(cara))
    assert copy["state_digest"] == scenario["state_digest"]
    assert copy["seq"] == 3 and copy["name"] == "three-pages"

    # the copy is the student's own: back in the list it has its buttons
    page.goto(token_server.url + "/#/")
    own = page.locator(f"tr[data-instance='{new_id}']")
    expect(own).to_have_attribute("data-access", "own")
    expect(own.get_by_role("button", name="Reset three-pages")).to_be_visible()
    assert console.unexpected() == []


def test_the_instructor_hands_a_scenario_out_to_every_student(
    page: Any, token_server: Server, console: Console
) -> None:
    console.allow(NOT_SIGNED_IN)
    ivan = token_server.api(
        "POST",
        "/users",
        json={"name": "ivan", "role": "instructor", "course": "os101"},
        headers=bearer(ADMIN_TOKEN),
    )["token"]
    new_student(token_server, "dora")  # at least one student to hand out to
    scenario = token_server.api(
        "POST",
        "/courses/os101/scenarios",
        json={"name": "empty-box", "preset": "tiny-16m"},
        headers=bearer(ivan),
    )
    page.goto(token_server.url)
    sign_in(page, ivan)
    sc_row = page.locator(f"tr[data-scenario='{scenario['id']}']")
    sc_row.get_by_role("button", name="Hand empty-box out to every student").click()
    status = page.get_by_role("status").filter(has_text="empty-box:")
    expect(status).to_contain_text(re.compile(r"\d+ cop(y|ies) handed out"))
    handed = int(re.search(r"(\d+) cop", status.inner_text()).group(1))  # type: ignore[union-attr]
    every = token_server.api("GET", "/instances", headers=bearer(ADMIN_TOKEN))
    copies = [i for i in every if i["name"] == "empty-box"]
    assert handed == len(copies) >= 1
    assert {c["state_digest"] for c in copies} == {scenario["state_digest"]}
    assert "dora:empty-box" in {c["ref"] for c in copies}
    assert console.unexpected() == []
