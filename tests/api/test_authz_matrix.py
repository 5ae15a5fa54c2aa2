"""The authorization matrix: every Query, Mutation and Subscription root field against every kind of caller.

The callers are anonymous, a driver, another driver, a station owner, another owner, an admin user and
an admin API key. The world they act in is built through the API on a full csms node with a simulated
charger: the owner's location, tariff and station AUTHZ-1, another owner's location, and the driver's
charging session at AUTHZ-1 (started with ``startCharging``, waiting for the cable).

Each row of the table names a root field, the operation sent and the outcome expected per caller, in
the order of :data:`CALLERS`:

- ``ok``: data, no error;
- ``null``: the field is null without an error (a session that is not the caller's, ``me`` of a key);
- ``hid``: the caller gets data but not the protected part: an operator-only field is null, or the
  caller's list does not hold the other person's object (``reveal`` picks that part out);
- an error code: ``U`` (UNAUTHENTICATED), ``F`` (FORBIDDEN), ``N`` (NOT_FOUND) or a domain code: the
  caller passed the access rule and was refused by a business rule.

A guard test fails when the schema has a root field the table lacks, so a new field cannot skip it.
Queries run first, then mutations in table order (they are written so that their outcomes do not
depend on who ran before), ``requestAccountDeletion`` last.
"""

from __future__ import annotations

import base64
import itertools
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from csms.api.schema import schema
from csms.config import AuthSettings, RateLimitSettings
from csms.services import accounts
from csms.store.apikeys import create_api_key
from graphql import build_schema
from tests.api.conftest import error_codes, gql
from tests.api.ws_client import WsClient
from tests.api.ws_client import error_codes as ws_error_codes
from tests.conftest import charger, make_user, node_settings, running_node
from tests.ledger_check import assert_ledger_clean
from tests.payments.conftest import payment_settings, sandbox  # noqa: F401 (sandbox: the provider fixture)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from simulators.payment_provider import PaymentSandbox
    from tests.conftest import Node

CALLERS = ("anonymous", "driver", "driver2", "owner", "owner2", "admin", "admin_key")
CODES = {"U": "UNAUTHENTICATED", "F": "FORBIDDEN", "N": "NOT_FOUND", "IB": "INSUFFICIENT_BALANCE",
         "RE": "REFUND_EXCEEDS_PAYMENT"}
PASSWORD = "correct horse battery"
STATION = "AUTHZ-1"
_unique = itertools.count()


@dataclass
class World:
    """The callers' credentials and the objects they act on."""

    node: Node
    tokens: dict[str, str | None]
    users: dict[str, str]
    location: str
    tariff: str
    session: str
    invoice: str  # the driver's top-up invoice (pending at the sandbox provider)
    refresh: dict[str, str]  # caller → a live refresh token of the probe user (for the refresh mutation)


Variables = dict[str, Any]


@dataclass(frozen=True)
class Case:
    """One root field: the operation, its variables for a caller, and the outcome for each caller."""

    kind: str  # query, mutation or subscription
    field: str
    document: str
    expect: str  # one outcome per caller, in CALLERS order
    variables: Callable[[World, str], Variables] = lambda w, c: {}
    reveal: Callable[[Any, World], Any] | None = None

    def expected(self) -> dict[str, str]:
        """Caller → outcome, with the code abbreviations spelled out."""
        outcomes = self.expect.split()
        assert len(outcomes) == len(CALLERS), self.field
        return {caller: CODES.get(o, o) for caller, o in zip(CALLERS, outcomes, strict=True)}


def _by_id(items: list[dict[str, Any]] | None, wanted: str) -> dict[str, Any] | None:
    return next((i for i in items or [] if i["id"] == wanted), None)


def _edges(connection: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["node"] for e in connection["edges"]]


_PUSH_KEYS = {c: ec.generate_private_key(ec.SECP256R1()).public_key() for c in CALLERS}


def _push_subscription(caller: str) -> Variables:
    """A browser's push subscription for the caller (plain http to loopback is allowed in development)."""
    point = _PUSH_KEYS[caller].public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    b64 = lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=").decode()  # noqa: E731
    return {"endpoint": f"http://127.0.0.1:9/push/{caller}", "keys": {"p256dh": b64(point), "auth": b64(bytes(16))}}


def _period(w: World, c: str) -> Variables:
    return {"from": "2020-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z", "owner": w.users["owner"]}


QUERIES = [
    Case("query", "stations", "{ stations { id } }", "U F F F F ok ok"),
    Case("query", "transactions", "{ transactions { edges { cursor } } }", "U F F F F ok ok"),
    Case("query", "meterValues", "{ meterValues(transactionId: 1) { value } }", "U F F F F ok ok"),
    Case("query", "ocppMessages", '{ ocppMessages(stationId: "AUTHZ-1") { edges { node { payload } } } }',
         "U F F F F ok ok"),
    Case("query", "ocppAnomalies", "{ ocppAnomalies { edges { cursor } } }", "U F F F F ok ok"),
    Case("query", "me", "{ me { id balanceTyiyn } }", "U ok ok ok ok ok null"),
    Case("query", "csrfToken", "{ csrfToken }", "null null null null null null null"),
    Case("query", "locations", "{ locations { id ownerId } }", "hid hid hid ok hid ok ok",
         reveal=lambda v, w: (_by_id(v, w.location) or {}).get("ownerId")),
    Case("query", "location", "query($id: ID!) { location(id: $id) { id ownerId } }", "hid hid hid ok hid ok ok",
         lambda w, c: {"id": w.location}, lambda v, w: v["ownerId"]),
    Case("query", "station", "query($id: String!) { station(id: $id) { id hasPassword connectors { info } } }",
         "hid hid hid ok hid ok ok", lambda w, c: {"id": STATION}, lambda v, w: v["hasPassword"]),
    Case("query", "myLocations", "{ myLocations { id } }", "U F F ok hid ok ok",
         reveal=lambda v, w: _by_id(v, w.location)),
    Case("query", "myTariffs", "{ myTariffs { id ownerId } }", "U F F ok hid ok ok",
         reveal=lambda v, w: _by_id(v, w.tariff)),
    Case("query", "myWallet", "{ myWallet { availableTyiyn } }", "U ok ok ok ok ok F"),
    Case("query", "myWalletHistory", "{ myWalletHistory { edges { cursor } } }", "U ok ok ok ok ok F"),
    Case("query", "wallet", "query($u: ID!) { wallet(userId: $u) { availableTyiyn history { edges { cursor } } } }",
         "U F F F F ok ok", lambda w, c: {"u": w.users["driver"]}),
    Case("query", "auditLog", "{ auditLog { edges { cursor } } }", "U F F F F ok ok"),
    Case("query", "myRevenue", "query($from: DateTime!, $to: DateTime!, $owner: ID) { "
         "myRevenue(from: $from, to: $to, ownerId: $owner) { revenueTyiyn } }", "U F F ok F ok ok", _period),
    Case("query", "session", "query($id: ID!) { session(id: $id) { id holdTyiyn } }", "U ok null ok null ok ok",
         lambda w, c: {"id": w.session}),
    Case("query", "mySessions", "{ mySessions { edges { node { id } } } }", "U ok hid hid hid hid F",
         reveal=lambda v, w: _by_id(_edges(v), w.session)),
    Case("query", "sessions", "{ sessions { edges { node { id } } } }", "U F F ok hid ok ok",
         reveal=lambda v, w: _by_id(_edges(v), w.session)),
    Case("query", "invoice", "query($id: ID!) { invoice(id: $id) { id } }", "U ok null null null ok ok",
         lambda w, c: {"id": w.invoice}),
    Case("query", "myInvoices", "{ myInvoices { edges { node { id } } } }", "U ok hid hid hid hid F",
         reveal=lambda v, w: _by_id(_edges(v), w.invoice)),
    Case("query", "invoices", "{ invoices { edges { node { id } } } }", "U F F F F ok ok"),
    Case("query", "paymentAnomalies", "{ paymentAnomalies { items { id } } }", "U F F F F ok ok"),
    Case("query", "vapidPublicKey", "{ vapidPublicKey }", "ok ok ok ok ok ok ok"),
    Case("query", "myPushSubscriptions", "{ myPushSubscriptions { id } }", "U ok ok ok ok ok F"),
]

_LOCATION = "createLocation(input: $input) { id }"
MUTATIONS = [
    Case("mutation", "register", "mutation($input: RegisterInput!) { register(input: $input) { user { id } } }",
         "ok ok ok ok ok ok ok",
         lambda w, c: {"input": {"email": f"new-{c}-{next(_unique)}@example.test", "password": PASSWORD}}),
    Case("mutation", "login", "mutation($input: LoginInput!) { login(input: $input) { user { id } } }",
         "ok ok ok ok ok ok ok", lambda w, c: {"input": {"email": "probe@example.test", "password": PASSWORD}}),
    Case("mutation", "refresh", "mutation($t: String) { refresh(refreshToken: $t) { user { id } } }",
         "ok ok ok ok ok ok ok", lambda w, c: {"t": w.refresh[c]}),
    Case("mutation", "logout", "mutation($t: String) { logout(refreshToken: $t) }", "ok ok ok ok ok ok ok",
         lambda w, c: {"t": "not-a-refresh-token"}),
    Case("mutation", "createLocation", f"mutation($input: CreateLocationInput!) {{ {_LOCATION} }}",
         "U F F ok ok ok ok", lambda w, c: {"input": {"name": f"New place {c}"}}),
    Case("mutation", "updateLocation", "mutation($input: UpdateLocationInput!) { updateLocation(input: $input) { id } }",
         "U F F ok N ok ok", lambda w, c: {"input": {"id": w.location, "address": "Chui 1"}}),
    Case("mutation", "createStation", "mutation($input: CreateStationInput!) { createStation(input: $input) { id } }",
         "U F F ok N ok ok",
         lambda w, c: {"input": {"id": f"NEW-{CALLERS.index(c)}", "connectorCount": 1, "locationId": w.location}}),
    Case("mutation", "updateStation", "mutation($input: UpdateStationInput!) { updateStation(input: $input) { id } }",
         "U F F ok N ok ok", lambda w, c: {"input": {"id": STATION, "connectorCount": 2}}),
    Case("mutation", "createTariff", "mutation($input: CreateTariffInput!) { createTariff(input: $input) { id } }",
         "U F F ok ok ok ok", lambda w, c: {"input": {"name": f"Price {c}", "pricePerKwhTyiyn": 900}}),
    Case("mutation", "updateTariff", "mutation($input: UpdateTariffInput!) { updateTariff(input: $input) { id } }",
         "U F F ok N ok ok", lambda w, c: {"input": {"id": w.tariff, "name": "Owner price"}}),
    Case("mutation", "assignTariff", "mutation($s: String!, $t: ID) { assignTariff(stationId: $s, connectorId: 2, "
         "tariffId: $t) { id } }", "U F F ok N ok ok", lambda w, c: {"s": STATION, "t": w.tariff}),
    Case("mutation", "adjustBalance", "mutation($u: ID!) { adjustBalance(userId: $u, amountTyiyn: 1, "
         'reason: "matrix") { applied } }', "U F F F F ok ok", lambda w, c: {"u": w.users["driver"]}),
    # Nobody has 100,000 som: a caller who may charge gets as far as the balance check.
    Case("mutation", "startCharging", "mutation($input: StartChargingInput!) { startCharging(input: $input) { id } }",
         "U IB IB IB IB IB F",
         lambda w, c: {"input": {"stationId": STATION, "connectorId": 2, "limitTyiyn": 10_000_000}}),
    Case("mutation", "stopCharging", "mutation($id: ID!) { stopCharging(sessionId: $id) { id } }",
         "U ok F F F ok ok", lambda w, c: {"id": w.session}),
    Case("mutation", "topUp", "mutation { topUp(amountTyiyn: 1000) { id } }", "U ok ok ok ok ok F"),
    # The driver's invoice is unpaid, so an admin passes the access rule and meets the business rule.
    Case("mutation", "refundTopUp", 'mutation($id: ID!) { refundTopUp(invoiceId: $id, amountTyiyn: 100, '
         'reason: "matrix") { applied } }', "U F F F F RE RE", lambda w, c: {"id": w.invoice}),
    Case("mutation", "subscribePush", "mutation($s: PushSubscriptionInput!) { subscribePush(subscription: $s, "
         'userAgent: "matrix") { id } }', "U ok ok ok ok ok F", lambda w, c: {"s": _push_subscription(c)}),
    Case("mutation", "sendTestPush", "mutation { sendTestPush }", "U ok ok ok ok ok F"),
    Case("mutation", "unsubscribePush", "mutation($e: String!) { unsubscribePush(endpoint: $e) }",
         "U ok ok ok ok ok F", lambda w, c: {"e": _push_subscription(c)["endpoint"]}),
    Case("mutation", "requestAccountDeletion", "mutation { requestAccountDeletion { id } }", "U ok ok ok ok ok F"),
]

SUBSCRIPTIONS = [
    Case("subscription", "stationStatusChanged",
         "subscription($id: String!) { stationStatusChanged(stationId: $id) { connectorId } }",
         "ok ok ok ok ok ok ok", lambda w, c: {"id": STATION}),
    Case("subscription", "stationConnectionChanged",
         "subscription($id: String!) { stationConnectionChanged(stationId: $id) { connected } }",
         "ok ok ok ok ok ok ok", lambda w, c: {"id": STATION}),
    Case("subscription", "sessionUpdated", "subscription($id: ID!) { sessionUpdated(id: $id) { id status } }",
         "U ok F ok F ok ok", lambda w, c: {"id": w.session}),
    Case("subscription", "balanceChanged", "subscription { balanceChanged { availableTyiyn } }", "U ok ok ok ok ok F"),
    Case("subscription", "invoiceUpdated", "subscription($id: ID!) { invoiceUpdated(id: $id) { id } }",
         "U ok F F F ok ok", lambda w, c: {"id": w.invoice}),
]


# A station not on the map yet (no location): the query and the subscriptions hide it alike.
UNLISTED = "UNLISTED-1"
OFF_THE_MAP = [
    Case("query", "station", "query($id: String!) { station(id: $id) { id } }", "null null null null null ok ok",
         lambda w, c: {"id": UNLISTED}),
    *(Case("subscription", case.field, case.document, "N N N N N ok ok", lambda w, c: {"id": UNLISTED})
      for case in SUBSCRIPTIONS if case.field.startswith("station")),
]


def test_every_root_field_of_the_schema_is_in_the_matrix() -> None:
    built = build_schema(schema.as_str())
    roots = {"query": built.query_type, "mutation": built.mutation_type, "subscription": built.subscription_type}
    in_schema = {(kind, name) for kind, root in roots.items() if root is not None for name in root.fields}
    in_table = [(case.kind, case.field) for case in QUERIES + MUTATIONS + SUBSCRIPTIONS]
    assert len(in_table) == len(set(in_table))
    assert set(in_table) == in_schema, {"missing": in_schema - set(in_table), "unknown": set(in_table) - in_schema}


def outcome(case: Case, world: World, errors: list[str], value: Any) -> str:
    """What a caller got, in the table's terms."""
    if errors:
        return errors[0] if len(errors) == 1 else ",".join(errors)
    if value is None:
        return "null"
    if case.reveal is not None and case.reveal(value, world) is None:
        return "hid"
    return "ok"


async def _api(world: World, client: httpx.AsyncClient, case: Case, caller: str) -> str:
    result = await gql(client, case.document, case.variables(world, caller), token=world.tokens[caller])
    return outcome(case, world, error_codes(result), (result.get("data") or {}).get(case.field))


async def _live(world: World, case: Case, caller: str) -> str:
    token = world.tokens[caller]
    async with WsClient.connect(world.node.graphql_url.replace("http://", "ws://")) as ws:
        await ws.init({"Authorization": f"Bearer {token}"} if token else {})
        await ws.subscribe("1", case.document, case.variables(world, caller))
        message = await ws.receive_json()
    if message["type"] == "error":
        return outcome(case, world, ws_error_codes(message), None)
    assert message["type"] == "next", message
    return outcome(case, world, ws_error_codes(message), message["payload"]["data"][case.field])


@pytest.fixture
async def world(db_url: str, sandbox: PaymentSandbox) -> AsyncIterator[World]:  # noqa: F811
    """A csms node, the callers, and the objects they act on (see the module docstring)."""
    auth = replace(AuthSettings(), login_rate_limit=1000, register_rate_limit=1000)
    # Every caller runs every mutation from one address within a minute: lift the limits (tested elsewhere).
    limits = RateLimitSettings(critical_per_minute=1000, mutation_per_minute=1000)
    settings = node_settings(db_url, auth=auth, rate_limits=limits, payments=payment_settings(sandbox))
    async with running_node(settings) as node, \
            httpx.AsyncClient(base_url=node.graphql_url.removesuffix("/graphql"), timeout=15) as client:
        users: dict[str, str] = {}
        tokens: dict[str, str | None] = {"anonymous": None}
        for caller, role in (("driver", "driver"), ("driver2", "driver"), ("owner", "owner"), ("owner2", "owner"),
                             ("admin", "admin")):
            users[caller], tokens[caller] = await make_user(node.db, role)
        tokens["admin_key"] = await node.db.run(create_api_key, "matrix")

        async def ok(caller: str, document: str, **variables: Any) -> Any:
            result = await gql(client, document, variables, token=tokens[caller])
            assert "errors" not in result, result
            return next(iter(result["data"].values()))

        tariff = await ok("owner", "mutation($i: CreateTariffInput!) { createTariff(input: $i) { id } }",
                          i={"name": "Owner price", "pricePerKwhTyiyn": 1000})
        place = await ok("owner", "mutation($input: CreateLocationInput!) { createLocation(input: $input) { id } }",
                         input={"name": "Owner depot"})
        await ok("owner2", "mutation($input: CreateLocationInput!) { createLocation(input: $input) { id } }",
                 input={"name": "Other depot"})
        await ok("owner", "mutation($i: CreateStationInput!) { createStation(input: $i) { id } }",
                 i={"id": STATION, "connectorCount": 2, "locationId": place["id"], "tariffId": tariff["id"]})
        await ok("admin_key", "mutation($i: CreateStationInput!) { createStation(input: $i) { id } }",
                 i={"id": UNLISTED, "connectorCount": 1})
        async with charger(node, STATION, remote_start_mode="accept_no_start"):
            await ok("admin_key", 'mutation($u: ID!) { adjustBalance(userId: $u, amountTyiyn: 5000, reason: "x") '
                     "{ applied } }", u=users["driver"])
            session = await ok("driver", "mutation($i: StartChargingInput!) { startCharging(input: $i) { id } }",
                               i={"stationId": STATION, "connectorId": 1, "limitTyiyn": 5000})
            sandbox.webhook_url = f"http://127.0.0.1:{node.ready.http_port}/webhooks/payments/odengi"
            invoice = await ok("driver", "mutation { topUp(amountTyiyn: 2500) { id } }")
            yield World(node, tokens, users, place["id"], tariff["id"], session["id"], invoice["id"], {})
        await assert_ledger_clean(node.db)  # after every test in this world: adjustments, holds, a void


async def _mismatches(cases: list[Case], ask: Callable[[Case, str], Awaitable[str]]) -> list[str]:
    """Every caller against every case (the callers of one case at once); what differed from the table."""
    failures: list[str] = []

    async def one(case: Case, caller: str, expected: str) -> None:
        got = await ask(case, caller)
        if got != expected:
            failures.append(f"{case.field} as {caller}: expected {expected}, got {got}")

    for case in cases:
        async with trio.open_nursery() as nursery:
            for caller, expected in case.expected().items():
                nursery.start_soon(one, case, caller, expected)
    return sorted(failures)


async def test_queries_and_mutations(world: World) -> None:
    async with httpx.AsyncClient(base_url=world.node.graphql_url.removesuffix("/graphql"), timeout=15) as client:
        # The probe user whom login and refresh act on, with one session (refresh token family) per caller.
        await accounts.create_account(world.node.db, role="driver", phone=None, email="probe@example.test",
                                      password=PASSWORD)
        for caller in CALLERS:
            result = await gql(client, "mutation($i: LoginInput!) { login(input: $i) { refreshToken } }",
                               {"i": {"email": "probe@example.test", "password": PASSWORD}})
            world.refresh[caller] = result["data"]["login"]["refreshToken"]
        assert await _mismatches(QUERIES + MUTATIONS, lambda case, caller: _api(world, client, case, caller)) == []


async def test_subscriptions(world: World) -> None:
    assert await _mismatches(SUBSCRIPTIONS, lambda case, caller: _live(world, case, caller)) == []


async def test_a_station_off_the_map_is_hidden_from_the_query_and_the_subscriptions_alike(world: World) -> None:
    async with httpx.AsyncClient(base_url=world.node.graphql_url.removesuffix("/graphql"), timeout=15) as client:

        async def ask(case: Case, caller: str) -> str:
            if case.kind == "query":
                return await _api(world, client, case, caller)
            return await _live(world, case, caller)

        assert await _mismatches(OFF_THE_MAP, ask) == []
