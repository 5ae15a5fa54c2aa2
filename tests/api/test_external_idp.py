"""External identity provider tokens, checked against our own provider simulator over real HTTP."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from csms.services.external_tokens import ExternalTokenVerifier
from csms.services.tokens import InvalidToken
from simulators.identity_provider import IdentityProvider
from tests.api.auth_support import ME, post, start_auth_api
from tests.api.conftest import error_codes
from tests.conftest import TEST_SIGNER

if TYPE_CHECKING:
    import trio

    from csms.store.db import Database

AUDIENCE = "csms-test"
HS_SECRET = "hs256-shared-secret-0123456789abcdef"


@pytest.fixture
async def idp(nursery: trio.Nursery) -> IdentityProvider:
    provider = IdentityProvider(hs256_secret=HS_SECRET)
    await nursery.start(provider.serve)
    return provider


async def start(db: Database, nursery: trio.Nursery, idp: IdentityProvider, **extra: object) -> str:
    return await start_auth_api(db, nursery, external_jwt_issuer=idp.issuer, external_jwt_audience=AUDIENCE,
                                external_jwks_url=f"{idp.url}/.well-known/jwks.json",
                                external_jwt_hs256_secret=HS_SECRET, external_jwks_refetch_s=0.0, **extra)


async def me(client: httpx.AsyncClient, token: str) -> dict[str, object]:
    _, body = await post(client, ME, headers={"Authorization": f"Bearer {token}"})
    return body


async def test_rs256_es256_and_hs256_tokens_map_to_drivers(db: Database, nursery: trio.Nursery,
                                                           idp: IdentityProvider) -> None:
    url = await start(db, nursery, idp)
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        seen = {}
        for alg in ("RS256", "ES256", "HS256"):
            token = idp.mint(f"user-{alg}", audience=AUDIENCE, alg=alg, name=f"Name {alg}")
            body = await me(client, token)
            assert "errors" not in body, (alg, body)
            user = body["data"]["me"]  # type: ignore[index]
            assert (user["role"], user["status"], user["name"], user["email"], user["phone"]) == (  # type: ignore[index]
                "DRIVER", "ACTIVE", f"Name {alg}", None, None)
            seen[alg] = user["id"]  # type: ignore[index]
            # The same subject again is the same user, not a new one.
            again = await me(client, idp.mint(f"user-{alg}", audience=AUDIENCE, alg=alg))
            assert again["data"]["me"]["id"] == seen[alg]  # type: ignore[index]
        assert len(set(seen.values())) == 3
    rows = await db.run(lambda conn: conn.execute(
        "SELECT external_issuer, external_subject, role FROM users ORDER BY external_subject").fetchall())
    assert rows == [(idp.issuer, f"user-{alg}", "driver") for alg in ("ES256", "HS256", "RS256")]
    assert idp.jwks_requests == 1  # both asymmetric keys came with one fetch


async def test_wrong_issuer_audience_key_or_expiry_is_rejected(db: Database, nursery: trio.Nursery,
                                                               idp: IdentityProvider) -> None:
    url = await start(db, nursery, idp)
    rogue_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rogue_ec = ec.generate_private_key(ec.SECP256R1())
    bad = {
        "RS256 wrong issuer": idp.mint("u", audience=AUDIENCE, issuer="https://other.example"),
        "RS256 wrong audience": idp.mint("u", audience="someone-else"),
        "ES256 wrong audience": idp.mint("u", audience="someone-else", alg="ES256"),
        "HS256 wrong issuer": idp.mint("u", audience=AUDIENCE, alg="HS256", issuer="https://other.example"),
        "HS256 wrong audience": idp.mint("u", audience="someone-else", alg="HS256"),
        "HS256 wrong secret": idp.mint("u", audience=AUDIENCE, alg="HS256", secret="x" * 40),
        "expired": idp.mint("u", audience=AUDIENCE, expires_in=-120),
        "RS256 forged with the right kid": idp.mint("u", audience=AUDIENCE, key=rogue_rsa),
        "ES256 forged with the right kid": idp.mint("u", audience=AUDIENCE, alg="ES256", key=rogue_ec),
        "unknown kid": idp.mint("u", audience=AUDIENCE, kid="made-up", key=rogue_rsa),
        "ES256 token naming the RS256 key": idp.mint("u", audience=AUDIENCE, alg="ES256",
                                                     kid=idp.kid_for("RS256"), key=rogue_ec),
    }
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        for name, token in bad.items():
            assert error_codes(await me(client, token)) == ["UNAUTHENTICATED"], name
    assert await db.run(lambda conn: conn.execute("SELECT count(*) FROM users").fetchone()) == (0,)


async def test_our_own_tokens_still_work_alongside(db: Database, nursery: trio.Nursery,
                                                   idp: IdentityProvider) -> None:
    url = await start(db, nursery, idp)
    from tests.conftest import make_user

    user_id, token = await make_user(db)
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        assert (await me(client, token))["data"]["me"]["id"] == user_id  # type: ignore[index]
        assert error_codes(await me(client, TEST_SIGNER.issue(user_id, "driver", now=0))) == ["UNAUTHENTICATED"]
    assert idp.jwks_requests == 0  # our tokens never touch the provider


async def test_rotated_keys_are_fetched_but_unknown_kids_are_rate_limited(idp: IdentityProvider) -> None:
    now = [1000.0]
    verifier = ExternalTokenVerifier(issuer=str(idp.issuer), audience=AUDIENCE,
                                     jwks_url=f"{idp.url}/.well-known/jwks.json", min_refetch_s=60.0,
                                     clock=lambda: now[0])
    assert (await verifier.verify(idp.mint("a", audience=AUDIENCE))).subject == "a"
    assert idp.jwks_requests == 1
    # A flood of made-up key ids costs the provider nothing within the refetch interval.
    for n in range(5):
        with pytest.raises(InvalidToken):
            await verifier.verify(idp.mint("a", audience=AUDIENCE, kid=f"bogus-{n}"))
    assert idp.jwks_requests == 1
    # The provider rotates: the new kid is unknown until the interval has passed, then fetched once.
    idp.rotate("RS256")
    fresh = idp.mint("b", audience=AUDIENCE)
    with pytest.raises(InvalidToken):
        await verifier.verify(fresh)
    assert idp.jwks_requests == 1
    now[0] += 61
    assert (await verifier.verify(fresh)).subject == "b"
    assert idp.jwks_requests == 2
    # A failed fetch keeps the keys we have.
    idp.jwks_status = 503
    now[0] += 3600
    assert (await verifier.verify(idp.mint("c", audience=AUDIENCE))).subject == "c"
    assert idp.jwks_requests == 3


async def test_unreachable_provider_rejects_without_failing_the_request(db: Database, nursery: trio.Nursery) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    provider = IdentityProvider(issuer="https://idp.example")
    url = await start_auth_api(db, nursery, external_jwt_issuer="https://idp.example", external_jwt_audience=AUDIENCE,
                               external_jwks_url=f"http://127.0.0.1:{closed_port}/jwks.json")
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        body = await me(client, provider.mint("u", audience=AUDIENCE))
    assert error_codes(body) == ["UNAUTHENTICATED"]


async def test_simulator_mints_over_http(idp: IdentityProvider) -> None:
    async with httpx.AsyncClient(base_url=str(idp.url), timeout=10) as client:
        discovery = (await client.get("/.well-known/openid-configuration")).json()
        assert discovery["jwks_uri"] == f"{idp.url}/.well-known/jwks.json"
        minted = await client.post("/token", json={"sub": "cli-user", "aud": AUDIENCE, "alg": "ES256"})
        assert minted.status_code == 200
        assert (await client.post("/token", json={"aud": AUDIENCE})).status_code == 400
    verifier = ExternalTokenVerifier(issuer=str(idp.issuer), audience=AUDIENCE,
                                     jwks_url=discovery["jwks_uri"])
    assert (await verifier.verify(minted.json()["access_token"])).subject == "cli-user"
