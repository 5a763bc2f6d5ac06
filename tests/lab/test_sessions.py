"""Browser sessions in the accounts (app/lab/accounts.py) on SQLite and on Postgres
(``database_url``): a session is re-checked against its token on every request, so that
revocation, expiry, age and sign-out end it; the signing key is made once per database."""

from __future__ import annotations

import pytest

from app.lab.accounts import Accounts
from app.lab.store import Store
from tests.clock import Clock

HOUR = 3600.0


@pytest.fixture
def accounts(store: Store, clock: Clock) -> Accounts:
    a = Accounts(store, clock=clock, touch_interval_s=0)
    a.create_user("ann", "student")
    a.create_user("bob", "student")
    return a


def issue(accounts: Accounts, user: str, expires_in_s: float | None = None) -> tuple[str, int]:
    token = accounts.issue_token(user, "web", expires_in_s)
    match = accounts.identify(token)
    assert match is not None
    return token, match.token_id


def test_identify_names_the_token(accounts: Accounts, clock: Clock) -> None:
    token, tid = issue(accounts, "ann", 60)
    match = accounts.identify(token)
    assert match is not None
    assert match.principal == accounts.authenticate(token)
    assert match.principal.name == "ann"
    assert [t.id for t in accounts.list_tokens("ann")] == [tid]
    assert match.expires == clock.now + 60
    assert accounts.identify("pl_nope") is None


def test_a_session_lives_while_its_token_does(accounts: Accounts, clock: Clock) -> None:
    _, tid = issue(accounts, "ann")
    signed_in = clock.now
    clock.now += HOUR
    who = accounts.session_principal(tid, signed_in, 12 * HOUR)
    assert who is not None and who.name == "ann"
    assert accounts.session_principal(tid + 1000, signed_in, 12 * HOUR) is None  # no such token
    assert accounts.revoke_token(tid)
    assert accounts.session_principal(tid, signed_in, 12 * HOUR) is None


def test_expiry_and_age_end_a_session(accounts: Accounts, clock: Clock) -> None:
    _, short = issue(accounts, "ann", 2 * HOUR)
    _, forever = issue(accounts, "ann")
    signed_in = clock.now
    clock.now += 2 * HOUR - 1
    assert accounts.session_principal(short, signed_in, 12 * HOUR) is not None
    clock.now += 1
    assert accounts.session_principal(short, signed_in, 12 * HOUR) is None
    assert accounts.session_principal(forever, signed_in, 12 * HOUR) is not None
    clock.now = signed_in + 12 * HOUR
    assert accounts.session_principal(forever, signed_in, 12 * HOUR) is None


def test_sign_out_ends_earlier_sessions_only(accounts: Accounts, clock: Clock) -> None:
    _, tid = issue(accounts, "ann")
    _, bobs = issue(accounts, "bob")
    first = clock.now
    clock.now += 10
    accounts.end_sessions(tid)
    assert accounts.session_principal(tid, first, 12 * HOUR) is None
    assert accounts.session_principal(bobs, first, 12 * HOUR) is not None  # Bob's: not his
    clock.now += 10
    second = clock.now
    assert accounts.session_principal(tid, second, 12 * HOUR) is not None
    clock.now += 10
    accounts.end_sessions(tid)  # a second sign-out moves the line
    assert accounts.session_principal(tid, second, 12 * HOUR) is None


def test_a_session_older_than_its_token_is_refused(accounts: Accounts, clock: Clock) -> None:
    """A token id reused after a deletion must not revive a cookie of the old token."""
    before = clock.now
    clock.now += 5
    _, tid = issue(accounts, "ann")
    assert accounts.session_principal(tid, before, 12 * HOUR) is None
    assert accounts.session_principal(tid, clock.now, 12 * HOUR) is not None


def test_deleting_the_user_ends_the_session(accounts: Accounts, clock: Clock) -> None:
    _, tid = issue(accounts, "bob")
    accounts.delete_user("bob")
    assert accounts.session_principal(tid, clock.now, 12 * HOUR) is None


def test_the_signing_key_is_made_once_per_database(database_url: str) -> None:
    one = Store(database_url)
    try:
        key = Accounts(one).session_secret()
        assert len(key) >= 48 and Accounts(one.engine).session_secret() == key
    finally:
        one.close()
    again = Store(database_url)  # another host, or a restart
    try:
        assert Accounts(again).session_secret() == key
    finally:
        again.close()
