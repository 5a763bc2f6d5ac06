"""The page in token mode (issue 8 §1): sign in with a token, see your instances, watch one
over the stream (the session cookie authenticates the WebSocket), change something (the
CSRF header), sign out; an admin's People view creates a user, shows the token once and
turns a CSV roster into a tokens file to download.

The server is ``python -m app.serve`` in token mode with its SQLite database in a
temporary folder.  A visitor who is not signed in makes the page's ``GET /me`` answer 401,
which Chromium logs as a failed resource: announced with ``console.allow``."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from .conftest import Console, Server, _server, save_screenshot

ADMIN = "root"
ADMIN_TOKEN = "browser-admin-token-0123456789abcdefghij"
NOT_SIGNED_IN = r"status of 401"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory, chromium_path: Path) -> Iterator[Server]:
    s = _server(tmp_path_factory, "token-server")
    folder = s.log.parent
    s.env.update(
        PAGELAB_AUTH="token",
        PAGELAB_DATABASE_URL=f"sqlite:///{folder}/lab.db",
        PAGELAB_ADMIN_NAME=ADMIN,
        PAGELAB_ADMIN_TOKEN=ADMIN_TOKEN,
        PAGELAB_BOOT_DEFAULT="0",
    )
    s.start()
    try:
        s.api("POST", "/courses", json={"name": "os101"}, headers=bearer(ADMIN_TOKEN))
        yield s
    finally:
        s.kill()


def new_student(server: Server, name: str) -> str:
    made = server.api(
        "POST",
        "/users",
        json={"name": name, "role": "student", "course": "os101"},
        headers=bearer(ADMIN_TOKEN),
    )
    return str(made["token"])


def sign_in(page: Any, token: str) -> None:
    expect(page.get_by_role("heading", name="Sign in to PageLab")).to_be_visible()
    page.get_by_label("Token", exact=True).fill(token)
    page.get_by_role("button", name="Sign in").click()


def test_sign_in_see_the_instances_stream_change_and_sign_out(
    page: Any, token_server: Server, console: Console
) -> None:
    console.allow(NOT_SIGNED_IN)
    token = new_student(token_server, "ann")
    inst = token_server.api(
        "POST", "/instances", json={"name": "ann-lab", "preset": "tiny-16m"}, headers=bearer(token)
    )
    page.goto(token_server.url)

    # a wrong token: a clear refusal, and still signed out
    sign_in(page, "pl_not-a-real-token")
    problem = page.locator("#signin-problem [role='alert']")
    expect(problem).to_contain_text("Not signed in")
    expect(problem).to_contain_text("unknown, revoked or expired")
    expect(page.get_by_label("Token", exact=True)).to_have_attribute("aria-invalid", "true")
    save_screenshot(page, "signin-refused.png")

    page.get_by_label("Token", exact=True).fill("")
    sign_in(page, token)
    expect(page.locator("#signed-in-as")).to_have_attribute("data-name", "ann")
    expect(page.locator("#signed-in-as")).to_contain_text("student, os101")
    expect(page.get_by_role("heading", name="Instances")).to_be_visible()
    expect(page.locator(f"tr[data-instance='{inst['id']}']")).to_have_attribute(
        "data-name", "ann-lab"
    )
    expect(page.locator("#nav-people")).to_be_hidden()  # students manage nobody
    # the session cookie is HttpOnly: the page's script cannot read it
    cookies = page.evaluate("() => document.cookie")
    assert "pagelab_csrf=" in cookies and "pagelab_session" not in cookies

    # the stream opens with the cookie alone
    page.get_by_role("link", name="Open ann-lab").first.click()
    expect(page.locator("#conn")).to_have_attribute("data-state", "connected")

    # a change goes through with the CSRF header (Reset on the list)
    page.get_by_role("link", name="Instances", exact=True).click()
    page.get_by_role("button", name="Reset ann-lab").click()
    expect(page.get_by_role("status").filter(has_text="Reset ann-lab")).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in to PageLab")).to_be_visible()
    expect(page.locator("#signed-in-as")).to_have_count(0)
    page.reload()  # the cookie is gone: still signed out
    expect(page.get_by_role("heading", name="Sign in to PageLab")).to_be_visible()


def test_an_admin_creates_people_and_imports_a_roster(
    page: Any, token_server: Server, console: Console, tmp_path: Path
) -> None:
    console.allow(NOT_SIGNED_IN)
    page.goto(token_server.url)
    sign_in(page, ADMIN_TOKEN)
    expect(page.locator("#signed-in-as")).to_have_attribute("data-role", "admin")
    page.locator("#nav-people").click()
    expect(page).to_have_url(re.compile(r"#/people$"))
    expect(page.get_by_role("heading", name="People")).to_be_visible()

    page.get_by_label("Name", exact=True).fill("cara")
    page.get_by_label("Role").select_option("student")
    page.get_by_label("Course").fill("os101")
    page.get_by_role("button", name="Create user").click()
    shown = page.locator("#issued-token")
    expect(shown).to_have_text(re.compile(r"^pl_"))
    token = shown.inner_text()
    me = httpx.get(f"{token_server.url}/api/v1/me", headers=bearer(token), timeout=30)
    assert me.json()["name"] == "cara"

    # a bad name is refused before sending
    page.get_by_label("Name", exact=True).fill("no spaces please")
    page.get_by_role("button", name="Create user").click()
    expect(page.get_by_role("alert").filter(has_text="name: 1 to 64")).to_be_visible()

    roster = tmp_path / "roster.csv"
    roster.write_text("name,role,course\ndan,student,os101\neve,observer,os202\n")
    page.get_by_label("CSV file").set_input_files(str(roster))
    page.get_by_role("button", name="Import").click()
    link = page.get_by_role("link", name="Download tokens.csv")
    expect(link).to_be_visible()
    with page.expect_download() as download:
        link.click()
    assert download.value.suggested_filename == "tokens.csv"
    save_screenshot(page, "people.png")
    rows = list(csv.reader(io.StringIO(Path(download.value.path()).read_text())))
    assert rows[0] == ["name", "token"] and [r[0] for r in rows[1:]] == ["dan", "eve"]
    me = httpx.get(f"{token_server.url}/api/v1/me", headers=bearer(rows[2][1]), timeout=30)
    assert (me.json()["name"], me.json()["course"]) == ("eve", "os202")
