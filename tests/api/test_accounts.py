"""Accounts over real HTTP: register, login by phone or email, uniform login failures, me, deletion, blocking."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from csms.services import accounts
from csms.services.tokens import ALGORITHM, AUDIENCE, ISSUER, TokenSigner
from csms.store import ledger
from tests.api.auth_support import LOGIN, ME, PASSWORD, REGISTER, post, register, start_auth_api
from tests.api.conftest import error_codes
from tests.conftest import TEST_SIGNER
from tests.ledger_check import assert_ledger_clean

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import trio

    from csms.store.db import Conn, Database


@pytest.fixture
async def client(db: Database, nursery: trio.Nursery) -> AsyncIterator[httpx.AsyncClient]:
    url = await start_auth_api(db, nursery)
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        yield http


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def login(client: httpx.AsyncClient, password: str = PASSWORD, **identifier: str) -> dict[str, Any]:
    _, body = await post(client, LOGIN, {"input": {"password": password, **identifier}})
    return body


async def test_register_by_email_then_login_case_insensitively(client: httpx.AsyncClient) -> None:
    payload = await register(client, email="Aida@Example.KG", name="  Aida  ")
    user = payload["user"]
    assert user["email"] == "Aida@Example.KG"
    assert (user["name"], user["role"], user["status"], user["balanceTyiyn"], user["phone"]) == (
        "Aida", "DRIVER", "ACTIVE", 0, None)
    assert payload["accessToken"] and payload["refreshToken"]
    assert payload["csrfToken"] is None  # bearer mode
    body = await login(client, email="aida@example.kg")
    assert body["data"]["login"]["user"]["id"] == user["id"]
    me = (await post(client, ME, headers=bearer(body["data"]["login"]["accessToken"])))[1]
    assert me["data"]["me"]["email"] == "Aida@Example.KG"


async def test_register_by_phone_normalises_and_logs_in(client: httpx.AsyncClient) -> None:
    payload = await register(client, phone="+996 (555) 12-34-56")
    assert payload["user"]["phone"] == "+996555123456"
    body = await login(client, phone="+996555123456")
    assert body["data"]["login"]["user"]["id"] == payload["user"]["id"]
    body = await login(client, phone="+996 555 123 456")
    assert "errors" not in body


async def test_wrong_password_and_unknown_user_get_the_identical_error(client: httpx.AsyncClient) -> None:
    await register(client, email="known@example.kg", phone="+996555000111")
    answers = [
        await login(client, email="known@example.kg", password="wrong password"),
        await login(client, email="nobody@example.kg"),
        await login(client, phone="+996555000111", password="wrong password"),
        await login(client, phone="+996555999999"),
    ]
    for body in answers:
        assert body["data"] is None
        assert error_codes(body) == ["INVALID_CREDENTIALS"]
    # Same message and extensions, whatever was wrong: nothing tells which accounts exist.
    assert len({str(body["errors"][0]["message"]) + str(body["errors"][0]["extensions"]) for body in answers}) == 1


async def test_taken_phone_and_email_have_their_own_codes(client: httpx.AsyncClient, db: Database) -> None:
    await register(client, email="taken@example.kg", phone="+996555000222")
    for variables, code in (({"email": "TAKEN@example.kg"}, "EMAIL_TAKEN"),
                            ({"phone": "+996555000222"}, "PHONE_TAKEN")):
        _, body = await post(client, REGISTER, {"input": {"password": PASSWORD, **variables}})
        assert error_codes(body) == [code]
    count = await db.run(lambda conn: conn.execute("SELECT count(*) FROM users").fetchone())
    assert count == (1,)


@pytest.mark.parametrize(("fields", "field"), [
    ({"email": "a@example.kg", "password": "short"}, "password"),
    ({"email": "a@example.kg", "password": "password1"}, "password"),
    ({"email": "a@example.kg", "password": "aaaaaaaaaaaa"}, "password"),
    ({"email": "not-an-email", "password": PASSWORD}, "email"),
    ({"phone": "0555123456", "password": PASSWORD}, "phone"),
    ({"password": PASSWORD}, "phone"),
    ({"email": "a@example.kg", "password": PASSWORD, "name": "x" * 201}, "name"),
    ({"email": "a@example.kg", "password": PASSWORD, "name": "bell\x07"}, "name"),
])
async def test_bad_registration_input_changes_nothing(client: httpx.AsyncClient, db: Database,
                                                      fields: dict[str, str], field: str) -> None:
    _, body = await post(client, REGISTER, {"input": fields})
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["extensions"]["field"] == field
    assert await db.run(lambda conn: conn.execute("SELECT count(*) FROM users").fetchone()) == (0,)


async def test_login_needs_exactly_one_identifier(client: httpx.AsyncClient) -> None:
    for identifier in ({}, {"email": "a@example.kg", "phone": "+996555000333"}, {"email": "nope"}):
        body = await login(client, **identifier)
        assert error_codes(body) == ["BAD_USER_INPUT"]


async def test_me_shows_the_wallet_balance_as_long(client: httpx.AsyncClient, db: Database) -> None:
    payload = await register(client, email="rich@example.kg")
    user_id = payload["user"]["id"]
    big = 3_000_000_000_00  # 3 billion som in tyiyn: beyond GraphQL's 32-bit Int

    def top_up(conn: Conn) -> None:
        wallet = ledger.user_account(conn, user_id)
        ledger.transfer(conn, "test-topup-1", ledger.system_account(conn, ledger.ADJUSTMENTS), wallet, big)

    await db.run(top_up)
    _, body = await post(client, ME, headers=bearer(payload["accessToken"]))
    assert body["data"]["me"]["balanceTyiyn"] == big
    await assert_ledger_clean(db)


async def test_me_is_for_logged_in_callers_only(client: httpx.AsyncClient, token: str) -> None:
    assert error_codes((await post(client, ME))[1]) == ["UNAUTHENTICATED"]
    # An admin API key is nobody's account.
    assert (await post(client, ME, headers=bearer(token)))[1] == {"data": {"me": None}}


def _forged(**changes: Any) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "00000000-0000-0000-0000-000000000001", "role": "admin",
              "iat": now, "exp": now + 600, **changes.pop("claims", {})}
    key = changes.pop("key", ec.generate_private_key(ec.SECP256R1()))
    kid = changes.pop("kid", TEST_SIGNER.kid)
    return jwt.encode(claims, key, algorithm=changes.pop("alg", ALGORITHM), headers={"kid": kid})


async def test_expired_forged_and_wrong_kid_tokens_are_rejected(client: httpx.AsyncClient, db: Database) -> None:
    payload = await register(client, email="victim@example.kg")
    user_id = payload["user"]["id"]
    expired = TEST_SIGNER.issue(user_id, "driver", now=time.time() - 3600)
    other = TokenSigner.generate()
    candidates = {
        "expired": expired,
        "forged signature": _forged(claims={"sub": user_id}),  # our kid, someone else's key
        "wrong kid": other.issue(user_id, "driver"),
        "HS256 with our public key": jwt.encode({"sub": user_id, "iss": ISSUER, "aud": AUDIENCE,
                                                 "exp": int(time.time()) + 600, "iat": int(time.time())},
                                                "secret-secret-secret-secret-secret!", algorithm="HS256",
                                                headers={"kid": TEST_SIGNER.kid}),
        "tampered payload": payload["accessToken"][:-8] + "AAAAAAAA",
        "none": "eyJhbGciOiJub25lIn0." + payload["accessToken"].split(".")[1] + ".",
    }
    for name, candidate in candidates.items():
        _, body = await post(client, ME, headers=bearer(candidate))
        assert error_codes(body) == ["UNAUTHENTICATED"], name
    _, body = await post(client, ME, headers=bearer(payload["accessToken"]))
    assert body["data"]["me"]["id"] == user_id


async def test_blocked_user_logs_in_and_sees_me_but_may_not_transact(client: httpx.AsyncClient,
                                                                     db: Database) -> None:
    payload = await register(client, email="blocked@example.kg")
    user_id = payload["user"]["id"]
    await db.run(accounts.ensure_can_transact, user_id)  # active: allowed
    await accounts.set_status(db, user_id, "blocked", actor=("test", "operator"))
    body = await login(client, email="blocked@example.kg")
    assert "errors" not in body
    _, me = await post(client, ME, headers=bearer(body["data"]["login"]["accessToken"]))
    assert me["data"]["me"]["status"] == "BLOCKED"
    with pytest.raises(accounts.AccountBlocked):
        await db.run(accounts.ensure_can_transact, user_id)
    audit = await db.run(lambda conn: conn.execute("SELECT actor_kind, action, detail FROM audit_log").fetchall())
    assert audit == [("test", "user.set_status", {"from": "active", "to": "blocked"})]


REQUEST_DELETION = "mutation { requestAccountDeletion { id status } }"


async def test_request_account_deletion_revokes_sessions_and_refuses_money(client: httpx.AsyncClient,
                                                                          db: Database) -> None:
    payload = await register(client, email="leaving@example.kg")
    user_id = payload["user"]["id"]
    second = (await login(client, email="leaving@example.kg"))["data"]["login"]
    _, body = await post(client, REQUEST_DELETION, headers=bearer(payload["accessToken"]))
    assert body["data"]["requestAccountDeletion"] == {"id": user_id, "status": "PENDING_DELETION"}
    # Both devices' refresh tokens are dead.
    for refresh_token in (payload["refreshToken"], second["refreshToken"]):
        _, body = await post(client, "mutation($t: String) { refresh(refreshToken: $t) { accessToken } }",
                             {"t": refresh_token})
        assert error_codes(body) == ["INVALID_REFRESH_TOKEN"]
    with pytest.raises(accounts.AccountPendingDeletion):
        await db.run(accounts.ensure_can_transact, user_id)
    # Asking twice changes nothing (the first request's time is kept). The account may still log in and
    # look; the old access tokens end with their sessions (tests/api/test_access_token_revocation.py).
    first = await db.run(lambda conn: conn.execute("SELECT deletion_requested_at FROM users").fetchone())
    again = (await login(client, email="leaving@example.kg"))["data"]["login"]
    _, body = await post(client, REQUEST_DELETION, headers=bearer(again["accessToken"]))
    assert body["data"]["requestAccountDeletion"]["status"] == "PENDING_DELETION"
    assert await db.run(lambda conn: conn.execute("SELECT deletion_requested_at FROM users").fetchone()) == first


async def test_request_account_deletion_needs_a_user(client: httpx.AsyncClient, token: str) -> None:
    assert error_codes((await post(client, REQUEST_DELETION))[1]) == ["UNAUTHENTICATED"]
    assert error_codes((await post(client, REQUEST_DELETION, headers=bearer(token)))[1]) == ["FORBIDDEN"]


async def test_login_is_rate_limited_per_identifier_and_per_ip(db: Database, nursery: trio.Nursery) -> None:
    url = await start_auth_api(db, nursery, login_rate_limit=3, trusted_proxies=("127.0.0.1",))
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        await register(client, email="target@example.kg")

        async def attempt(ip: str, email: str) -> dict[str, Any]:
            _, body = await post(client, LOGIN, {"input": {"email": email, "password": "guess-guess"}},
                                 headers={"X-Forwarded-For": ip})
            return body

        # Per login name: three guesses from three addresses, then the fourth address is refused too.
        for ip in ("198.51.100.1", "198.51.100.2", "198.51.100.3"):
            assert error_codes(await attempt(ip, "target@example.kg")) == ["INVALID_CREDENTIALS"]
        limited = await attempt("198.51.100.4", "TARGET@example.kg")
        assert error_codes(limited) == ["RATE_LIMITED"]
        assert 1 <= limited["errors"][0]["extensions"]["retryAfterSeconds"] <= 20
        # Per address: one address guessing different names.
        for n in range(3):
            assert error_codes(await attempt("203.0.113.9", f"other{n}@example.kg")) == ["INVALID_CREDENTIALS"]
        assert error_codes(await attempt("203.0.113.9", "other9@example.kg")) == ["RATE_LIMITED"]
        # Others are unaffected.
        assert error_codes(await attempt("203.0.113.10", "other10@example.kg")) == ["INVALID_CREDENTIALS"]


async def test_register_is_rate_limited_per_ip(db: Database, nursery: trio.Nursery) -> None:
    url = await start_auth_api(db, nursery, register_rate_limit=2)
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        await register(client, email="r1@example.kg")
        await register(client, email="r2@example.kg")
        _, body = await post(client, REGISTER, {"input": {"email": "r3@example.kg", "password": PASSWORD}})
        assert error_codes(body) == ["RATE_LIMITED"]
    assert await db.run(lambda conn: conn.execute("SELECT count(*) FROM users").fetchone()) == (2,)
