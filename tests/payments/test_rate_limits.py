"""Rate limits on every mutation (per client address and per caller), and on top-ups in particular."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import pytest

from csms.api.app import create_app
from csms.api.context import ApiServices
from csms.api.ratelimit_guard import CRITICAL
from csms.api.schema import schema
from csms.api.server import serve_api
from csms.config import AuthSettings, RateLimitSettings, Settings
from csms.services.ratelimit import RateLimits
from csms.store.apikeys import create_api_key
from graphql import (
    GraphQLInputObjectType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLType,
    Undefined,
    get_named_type,
    is_enum_type,
    is_leaf_type,
)
from tests.conftest import TEST_SIGNER, make_user
from tests.ledger_check import assert_ledger_clean
from tests.payments.conftest import payment_node
from tests.payments.support import codes, op

if TYPE_CHECKING:
    import trio

    from csms.store.db import Database
    from simulators.payment_provider import PaymentSandbox

LIMITS = RateLimitSettings(critical_per_minute=2, mutation_per_minute=3)
SCALARS: dict[str, Any] = {"String": "x", "ID": "x", "Int": 1, "Long": 1, "Boolean": False, "Float": 1.0,
                           "DateTime": "2026-01-01T00:00:00Z"}


def _value(t: GraphQLType) -> Any:
    """A well-typed value for an argument (the resolvers may well refuse it: that is not the point)."""
    if isinstance(t, GraphQLNonNull):
        return _value(t.of_type)
    if isinstance(t, GraphQLList):
        return [_value(t.of_type)]
    if is_enum_type(t):
        return next(iter(t.values))  # type: ignore[attr-defined]
    if isinstance(t, GraphQLInputObjectType):
        return {name: _value(f.type) for name, f in t.fields.items()
                if isinstance(f.type, GraphQLNonNull) and f.default_value is Undefined}
    return SCALARS[t.name]  # type: ignore[attr-defined]


def _mutation_calls() -> list[tuple[str, str, dict[str, Any]]]:
    """``(field, document, variables)`` for every Mutation field of the real schema."""
    mutation = schema._schema.mutation_type
    assert mutation is not None
    calls = []
    for name, field in mutation.fields.items():
        required = {a: arg for a, arg in field.args.items() if isinstance(arg.type, GraphQLNonNull)}
        params = ", ".join(f"${a}: {arg.type}" for a, arg in required.items())
        args = ", ".join(f"{a}: ${a}" for a in required)
        selection = "" if is_leaf_type(get_named_type(field.type)) else " { __typename }"
        document = f"mutation Call{f'({params})' if params else ''} {{ {name}{f'({args})' if args else ''}{selection} }}"
        calls.append((name, document, {a: _value(arg.type) for a, arg in required.items()}))
    return calls


async def test_every_mutation_is_rate_limited(db: Database, nursery: trio.Nursery) -> None:
    settings = Settings(http_host="127.0.0.1", http_port=0, shutdown_grace_s=1.0, rate_limits=LIMITS)
    services = ApiServices(db=db, settings=settings, signer=TEST_SIGNER)
    binds: list[str] = await nursery.start(serve_api, create_app(services), settings)
    admin = await db.run(create_api_key, "rate limit test")
    calls = _mutation_calls()
    assert {"topUp", "refundTopUp", "startCharging", "login", "adjustBalance"} <= {name for name, _, _ in calls}
    async with httpx.AsyncClient(base_url=binds[0], timeout=10) as client:
        for name, document, variables in calls:
            services.rate_limits = RateLimits()  # each field starts with a full budget
            limit = LIMITS.critical_per_minute if name in CRITICAL else LIMITS.mutation_per_minute
            for _ in range(limit):
                body = (await client.post("/graphql", json={"query": document, "variables": variables},
                                          headers={"Authorization": f"Bearer {admin}"})).json()
                assert "RATE_LIMITED" not in codes(body), (name, body)
                # It really ran: any error comes from executing the field, not from the document.
                assert all("path" in error for error in body.get("errors", [])), (name, body)
            over = (await client.post("/graphql", json={"query": document, "variables": variables},
                                      headers={"Authorization": f"Bearer {admin}"})).json()
            assert codes(over) == ["RATE_LIMITED"], (name, over)
            assert over["errors"][0]["extensions"]["retryAfterSeconds"] >= 1
            assert over["data"] is None or over["data"].get(name) is None


async def test_other_mutations_share_one_budget(db: Database, nursery: trio.Nursery) -> None:
    settings = Settings(http_host="127.0.0.1", http_port=0, shutdown_grace_s=1.0, rate_limits=LIMITS)
    services = ApiServices(db=db, settings=settings, signer=TEST_SIGNER)
    binds: list[str] = await nursery.start(serve_api, create_app(services), settings)
    async with httpx.AsyncClient(base_url=binds[0], timeout=10) as client:
        logout = {"query": 'mutation { logout(refreshToken: "x") }'}
        for _ in range(LIMITS.mutation_per_minute):
            assert (await client.post("/graphql", json=logout)).json() == {"data": {"logout": True}}
        refresh = {"query": 'mutation { refresh(refreshToken: "x") { accessToken } }'}
        assert codes((await client.post("/graphql", json=refresh)).json()) == ["RATE_LIMITED"]
        # Critical mutations have their own budget; queries are not limited here.
        login = {"query": 'mutation { login(input: {email: "a@b.example", password: "wrong wrong"}) { accessToken } }'}
        assert codes((await client.post("/graphql", json=login)).json()) == ["INVALID_CREDENTIALS"]
        assert "errors" not in (await client.post("/graphql", json={"query": "{ csrfToken }"})).json()


@pytest.mark.parametrize("limit", [3])
async def test_top_up_limits_per_address_and_per_user(db_url: str, sandbox: PaymentSandbox, limit: int) -> None:
    # Behind a trusted proxy each request names its client address in X-Forwarded-For.
    proxied = {"auth": AuthSettings(trusted_proxies=("127.0.0.1",))}
    async with payment_node(db_url, sandbox, settings=proxied,
                            rate_limits=RateLimitSettings(critical_per_minute=limit)) as node, \
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.ready.http_port}", timeout=10) as api:
        _, alice = await make_user(node.db)
        _, bob = await make_user(node.db)

        async def top_up(token: str, address: str) -> dict[str, Any]:
            return await op(api, "TopUp", {"amountTyiyn": 100}, token=token, headers={"X-Forwarded-For": address})

        for _ in range(limit):
            assert codes(await top_up(alice, "203.0.113.1")) == []
        refused = await top_up(alice, "203.0.113.1")
        assert codes(refused) == ["RATE_LIMITED"]
        assert 1 <= refused["errors"][0]["extensions"]["retryAfterSeconds"] <= 60 // limit + 1
        assert codes(await top_up(alice, "203.0.113.2")) == ["RATE_LIMITED"]  # the same user elsewhere
        assert codes(await top_up(bob, "203.0.113.1")) == ["RATE_LIMITED"]  # another user at that address
        assert codes(await top_up(bob, "203.0.113.3")) == []
        assert len(sandbox.invoices) == limit + 1  # refused calls reached nothing
        await assert_ledger_clean(node.db)
