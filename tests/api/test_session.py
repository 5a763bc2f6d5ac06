"""The page's sign-in (issue 8 §1, §5) in token mode, on a temporary SQLite database: the
session cookie's flags, cookie authentication, CSRF on changes, foreign Origins, sign-out,
sessions ended by revocation, expiry and age, tampered cookies, the stream with a cookie
(a real uvicorn) and token guessing rate-limited per client address.

Time moves by the accounts' clock (``Accounts.clock``), never by sleeping."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

with warnings.catch_warnings():  # "use httpx2": the TestClient works, and speaks WebSocket
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from app.api.cookies import CSRF_COOKIE, SESSION_COOKIE, SessionCodec
from app.lab.accounts import Accounts
from app.lab.settings import Settings
from app.main import create_app
from tests.clock import Clock
from tests.live import live_app

API = "/api/v1"
ADMIN = "root7"
ADMIN_TOKEN = "admin-token-for-tests-0123456789abcdef"
ALICE = "alicq7"
ORIGIN = "http://testserver"  # the TestClient's own origin
EVIL = "http://evil.example"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def token_settings(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path}/x.db",
        auth="token",
        admin_name=ADMIN,
        admin_token=ADMIN_TOKEN,
        default_preset="tiny-16m",
        boot_default=False,
        **overrides,
    )


class Site:
    def __init__(self, c: TestClient) -> None:
        self.c = c
        r = c.post(f"{API}/courses", json={"name": "os101"}, headers=auth(ADMIN_TOKEN))
        assert r.status_code == 201, r.text
        r = c.post(
            f"{API}/users",
            json={"name": ALICE, "role": "student", "course": "os101"},
            headers=auth(ADMIN_TOKEN),
        )
        assert r.status_code == 201, r.text
        self.token: str = r.json()["token"]

    @property
    def accounts(self) -> Accounts:
        accounts: Accounts = self.c.app.state.lab.accounts  # type: ignore[attr-defined]
        return accounts

    def sign_in(self, token: str | None = None, **headers: str) -> httpx.Response:
        r = self.c.post(f"{API}/session", json={"token": token or self.token}, headers=headers)
        assert r.status_code == 200, r.text
        return r

    def csrf(self) -> dict[str, str]:
        value = self.c.cookies.get(CSRF_COOKIE)
        assert value
        return {"X-CSRF-Token": value}

    def instances(self) -> list[str]:
        r = self.c.get(f"{API}/instances", headers=auth(ADMIN_TOKEN))
        return sorted(i["name"] for i in r.json())

    def me(self) -> httpx.Response:
        return self.c.get(f"{API}/me")


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with TestClient(create_app(token_settings(tmp_path))) as c:
        yield Site(c)


def set_cookies(r: httpx.Response) -> dict[str, dict[str, Any]]:
    """The response's Set-Cookie headers: name -> attributes (and "value")."""
    out: dict[str, dict[str, Any]] = {}
    for header in r.headers.get_list("set-cookie"):
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        for name, morsel in jar.items():
            attrs: dict[str, Any] = {k: v for k, v in morsel.items() if v}
            attrs["value"] = morsel.value
            out[name] = attrs
    return out


def cookie_header(value: str | None) -> dict[str, str]:
    """A request's session cookie, as a browser would send it."""
    return {"Cookie": f"{SESSION_COOKIE}={value}"}


def problem(r: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["type"] == f"/problems/{kind}", body
    return body


def test_sign_in_sets_an_httponly_strict_cookie_and_a_readable_csrf_cookie(site: Site) -> None:
    r = site.sign_in()
    body = r.json()
    assert (body["name"], body["role"], body["course"]) == (ALICE, "student", "os101")
    cookies = set_cookies(r)
    session, csrf = cookies[SESSION_COOKIE], cookies[CSRF_COOKIE]
    assert session["httponly"] is True and session["samesite"].lower() == "strict"
    assert session["path"] == "/" and int(session["max-age"]) == 12 * 3600
    assert "secure" not in session  # plain http here
    assert ADMIN_TOKEN not in session["value"] and site.token not in session["value"]
    assert "httponly" not in csrf and csrf["samesite"].lower() == "strict"
    assert csrf["value"] == body["csrf_token"]
    # over https (a proxy saying so) both cookies are Secure
    r = site.sign_in(**{"X-Forwarded-Proto": "https"})
    assert all(c.get("secure") for c in set_cookies(r).values())


def test_a_short_lived_token_gives_a_short_session(site: Site) -> None:
    r = site.c.post(
        f"{API}/users/{ALICE}/tokens", json={"expires_in_s": 600}, headers=auth(site.token)
    )
    r = site.sign_in(r.json()["token"])
    assert 590 <= int(set_cookies(r)[SESSION_COOKIE]["max-age"]) <= 600


def test_the_cookie_authenticates_reads_and_changes_need_the_csrf_header(site: Site) -> None:
    c = site.c
    assert site.me().status_code == 401
    site.sign_in()
    me = site.me()
    assert me.status_code == 200 and me.json()["name"] == ALICE
    new = {"name": "lab1", "preset": "tiny-16m"}
    body = problem(c.post(f"{API}/instances", json=new), 403, "csrf")
    assert "X-CSRF-Token" in body["detail"]
    wrong = {"X-CSRF-Token": "0" * 64}
    problem(c.post(f"{API}/instances", json=new, headers=wrong), 403, "csrf")
    assert site.instances() == []  # the refused requests changed nothing
    r = c.post(f"{API}/instances", json=new, headers=site.csrf())
    assert r.status_code == 201, r.text
    iid = r.json()["id"]
    problem(c.delete(f"{API}/instances/{iid}"), 403, "csrf")
    problem(c.post(f"{API}/instances/{iid}/reset"), 403, "csrf")
    assert site.instances() == ["lab1"]
    # Bearer requests carry no ambient authority: no CSRF header needed, cookie or not
    r = c.post(f"{API}/instances", json=new | {"name": "lab2"}, headers=auth(site.token))
    assert r.status_code == 201, r.text
    # another session's CSRF token does not fit this one
    other = TestClient(c.app)
    theirs = other.post(f"{API}/session", json={"token": site.token}).json()["csrf_token"]
    assert theirs != site.csrf()["X-CSRF-Token"]
    r = c.post(f"{API}/instances/{iid}/reset", headers={"X-CSRF-Token": theirs})
    problem(r, 403, "csrf")


def test_a_foreign_origin_is_refused_even_with_the_csrf_header(site: Site) -> None:
    c = site.c
    problem(
        c.post(f"{API}/session", json={"token": site.token}, headers={"Origin": EVIL}), 403, "csrf"
    )
    assert SESSION_COOKIE not in c.cookies
    site.sign_in()
    new = {"name": "lab1", "preset": "tiny-16m"}
    body = problem(
        c.post(f"{API}/instances", json=new, headers={**site.csrf(), "Origin": EVIL}), 403, "csrf"
    )
    assert EVIL in body["detail"]
    assert site.instances() == []
    r = c.post(f"{API}/instances", json=new, headers={**site.csrf(), "Origin": ORIGIN})
    assert r.status_code == 201, r.text
    # reads are not changes: a foreign Origin may not read them anyway (no CORS)
    assert c.get(f"{API}/me", headers={"Origin": EVIL}).status_code == 200


def test_sign_out_ends_the_session_on_the_server(site: Site) -> None:
    c = site.c
    site.sign_in()
    stolen = c.cookies.get(SESSION_COOKIE)
    problem(c.delete(f"{API}/session"), 403, "csrf")  # a forged sign-out is refused too
    assert site.me().status_code == 200
    r = c.delete(f"{API}/session", headers=site.csrf())
    assert r.status_code == 204
    cleared = set_cookies(r)
    assert cleared[SESSION_COOKIE]["max-age"] == "0" and cleared[CSRF_COOKIE]["max-age"] == "0"
    assert site.me().status_code == 401
    # the old cookie, replayed, is refused: signing out is not only forgetting the cookie
    problem(c.get(f"{API}/me", headers=cookie_header(stolen)), 401, "unauthorized")
    assert c.delete(f"{API}/session").status_code == 204  # nothing left to end: fine
    site.accounts.clock = Clock(site.accounts.clock() + 1)  # a later sign-in
    site.sign_in()
    assert site.me().json()["name"] == ALICE
    assert c.get(f"{API}/me", headers=auth(site.token)).status_code == 200  # the token lives


def test_revoking_the_token_ends_its_sessions(site: Site) -> None:
    c = site.c
    r = c.post(f"{API}/users/{ALICE}/tokens", json={"label": "web"}, headers=auth(site.token))
    token, tid = r.json()["token"], r.json()["id"]
    site.sign_in(token)
    assert site.me().status_code == 200
    assert c.delete(f"{API}/tokens/{tid}", headers=auth(site.token)).status_code == 204
    body = problem(site.me(), 401, "unauthorized")
    assert "sign in again" in body["detail"]


def test_expiry_of_the_token_or_of_the_session_ends_it(site: Site) -> None:
    c = site.c
    clock = Clock(site.accounts.clock())
    site.accounts.clock = clock
    r = c.post(f"{API}/users/{ALICE}/tokens", json={"expires_in_s": 60}, headers=auth(site.token))
    site.sign_in(r.json()["token"])
    clock.now += 59
    assert site.me().status_code == 200
    clock.now += 2
    problem(site.me(), 401, "unauthorized")
    # a token that never expires: the session still ends after PAGELAB_SESSION_MAX_AGE_S
    site.sign_in()
    clock.now += 12 * 3600 - 1
    assert site.me().status_code == 200
    clock.now += 2
    problem(site.me(), 401, "unauthorized")
    assert c.get(f"{API}/me", headers=auth(site.token)).status_code == 200


def test_a_tampered_or_foreign_cookie_is_401(site: Site, tmp_path: Path) -> None:
    c = site.c
    site.sign_in()
    good = c.cookies.get(SESSION_COOKIE)
    assert good
    c.cookies.clear()
    payload, _, signature = good.rpartition(".")
    # the first character: the last one of a base64 signature carries padding bits
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    other_key = SessionCodec("another-secret-0123456789abcdefghijkl", 3600)
    admin_tid = 1  # the bootstrapped admin's token: a forged cookie must not reach it
    for cookie in (
        payload + "." + flipped,
        payload.replace(payload[2], "x" if payload[2] != "x" else "y", 1) + "." + signature,
        other_key.encode(admin_tid, site.accounts.clock()),
        "not-a-cookie",
        "",
    ):
        r = c.get(f"{API}/me", headers=cookie_header(cookie))
        assert r.status_code == 401, (cookie, r.text)
    assert c.get(f"{API}/me", headers=cookie_header(good)).json()["name"] == ALICE


def test_hosts_sharing_the_database_accept_each_others_sessions(tmp_path: Path) -> None:
    with TestClient(create_app(token_settings(tmp_path))) as one:
        site = Site(one)
        site.sign_in()
        cookie = one.cookies.get(SESSION_COOKIE)
        with TestClient(create_app(token_settings(tmp_path))) as two:
            r = two.get(f"{API}/me", headers=cookie_header(cookie))
            assert r.status_code == 200 and r.json()["name"] == ALICE
        secret = "configured-session-secret-0123456789abcdef"
        with TestClient(create_app(token_settings(tmp_path, session_secret=secret))) as three:
            # another key: the stored one's cookies are not its
            assert three.get(f"{API}/me", headers=cookie_header(cookie)).status_code == 401


def test_short_session_secrets_are_refused() -> None:
    with pytest.raises(ValueError, match="PAGELAB_SESSION_SECRET"):
        Settings(session_secret="short")


def test_the_eleventh_bad_token_is_429_and_a_valid_token_still_works(site: Site) -> None:
    c = site.c
    app = c.app
    mallory = TestClient(app, client=("10.0.0.66", 40000))
    honest = TestClient(app, client=("10.0.0.7", 40000))
    signed_in = TestClient(app, client=("10.0.0.66", 40001))  # mallory's NAT neighbour
    signed_in.post(f"{API}/session", json={"token": site.token})
    for n in range(10):
        bad = f"pl_guess{n:040d}"
        r = (
            mallory.get(f"{API}/me", headers=auth(bad))
            if n % 2
            else mallory.post(f"{API}/session", json={"token": bad})
        )
        problem(r, 401, "unauthorized")
    r = mallory.get(f"{API}/me", headers=auth("pl_guess-eleven"))
    body = problem(r, 429, "rate-limited")
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert body["retry_after"] == int(r.headers["retry-after"])
    assert "wait" in body["detail"]
    # blocked means blocked: a right guess answers the same, so guessing learns nothing
    problem(mallory.get(f"{API}/me", headers=auth(site.token)), 429, "rate-limited")
    problem(mallory.post(f"{API}/session", json={"token": site.token}), 429, "rate-limited")
    iid = c.post(
        f"{API}/instances", json={"name": "x", "preset": "tiny-16m"}, headers=auth(site.token)
    ).json()["id"]
    with mallory.websocket_connect(f"{API}/instances/{iid}/stream?token={site.token}") as ws:
        msg = ws.receive()
        assert msg["type"] == "websocket.close" and msg["code"] == 4429
    # another address is not affected, and a session signed in before is not either
    assert honest.get(f"{API}/me", headers=auth(site.token)).status_code == 200
    assert signed_in.get(f"{API}/me").json()["name"] == ALICE


def test_requests_without_credentials_are_not_guesses(site: Site) -> None:
    for _ in range(15):
        problem(site.c.get(f"{API}/me"), 401, "unauthorized")
    assert site.c.get(f"{API}/me", headers=auth(site.token)).status_code == 200


def test_open_mode_has_no_sessions() -> None:
    with TestClient(create_app(Settings(database_url="", default_preset="tiny-16m"))) as c:
        problem(c.post(f"{API}/session", json={"token": "pl_x"}), 404, "not-found")
        problem(c.delete(f"{API}/session"), 404, "not-found")
        # a cookie changes nothing and needs no CSRF header
        r = c.post(f"{API}/instances/1/reset", headers=cookie_header("x"))
        assert r.status_code == 200, r.text


def test_the_stream_takes_the_cookie_and_checks_its_origin(tmp_path: Path) -> None:
    with live_app(token_settings(tmp_path)) as live, httpx.Client(base_url=live.url) as http:
        r = http.post(f"{API}/courses", json={"name": "os101"}, headers=auth(ADMIN_TOKEN))
        r = http.post(
            f"{API}/users", json={"name": ALICE, "role": "student"}, headers=auth(ADMIN_TOKEN)
        )
        token = r.json()["token"]
        r = http.post(
            f"{API}/instances", json={"name": "w", "preset": "tiny-16m"}, headers=auth(token)
        )
        iid = r.json()["id"]
        signed = http.post(f"{API}/session", json={"token": token})
        assert signed.status_code == 200, signed.text
        cookie = f"{SESSION_COOKIE}={http.cookies[SESSION_COOKIE]}"
        url = f"{live.ws}{API}/instances/{iid}/stream"
        own = live.url
        with connect(url, additional_headers={"Cookie": cookie, "Origin": own}) as ws:
            assert '"type":"hello"' in str(ws.recv(timeout=30)).replace(" ", "")
        with pytest.raises(InvalidStatus) as refused:
            connect(url, additional_headers={"Cookie": cookie, "Origin": EVIL}, open_timeout=10)
        assert refused.value.response.status_code == 403
        # signed out: the cookie no longer opens the stream
        csrf = {"X-CSRF-Token": signed.json()["csrf_token"]}
        old = http.cookies[SESSION_COOKIE]
        assert http.delete(f"{API}/session", headers=csrf).status_code == 204
        with connect(
            url, additional_headers={"Cookie": f"{SESSION_COOKIE}={old}", "Origin": own}
        ) as ws:
            with pytest.raises(Exception) as closed:
                ws.recv(timeout=30)
            assert getattr(closed.value, "rcvd", None) is not None
            assert closed.value.rcvd.code == 4401  # type: ignore[attr-defined]
