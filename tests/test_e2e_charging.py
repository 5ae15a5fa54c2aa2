"""End to end, the way the product is used: a phone app on a standard GraphQL client, a real charger.

The app is the ``gql`` package (asyncio, run in a thread): HTTP (httpx transport) for queries and
mutations, ``graphql-transport-ws`` (websockets transport) for subscriptions, sending the operation
documents of ``graphql/``. Everyone logs in through the API. The world outside the app (the charger,
and the driver plugging the cable in) is a simulated charge point on the test's Trio loop, which the
app reaches through ``trio.from_thread``.

The other money scenarios of issue #3 are in ``tests/charging/`` (concurrent starts beyond the
balance, a charger that never starts, the limit reached, a StopTransaction replayed after a restart).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import trio
from gql import Client, GraphQLRequest
from gql.transport.httpx import HTTPXAsyncTransport
from gql.transport.websockets import WebsocketsTransport

from csms.services import accounts
from csms.services.tariffs import Price, energy_cost
from simulators.chargepoint import ChargePoint
from tests.api.conftest import document
from tests.ledger_check import assert_ledger_clean
from tests.processes import csms_command

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from gql.client import AsyncClientSession

    from tests.conftest import Node

PASSWORD = "correct horse battery"
STATION = "E2E-1"
STATION_PASSWORD = "e2e-station-secret-0042"
PRICE = Price(1234, 150)  # 12.34 som per kWh plus a 1.50 som session fee
CREDIT = 500_000
LIMIT = 200_000
ACCOUNTS, CATALOG, CHARGING, WALLET, LIVE, DRIVER, OWNER = (
    document(f"{name}.graphql") for name in ("accounts", "catalog", "charging", "wallet", "subscriptions", "driver",
                                             "owner"))


@dataclass
class Site:
    """The physical world, on the Trio side: the charge point, and the driver's hand on the cable."""

    node: Node
    nursery: trio.Nursery
    charger: ChargePoint | None = None

    async def install_charger(self) -> None:
        """Power the charge point up (the owner created its station) and wait for its boot."""
        self.charger = ChargePoint(self.node.ocpp_url, STATION, password=STATION_PASSWORD, power_w=360_000,
                                   meter_interval_s=0.05, remote_start_mode="accept_no_start",
                                   answer_delays={"RemoteStartTransaction": 2.0})
        await self.nursery.start(self.charger.run)

    async def plug_in(self) -> None:
        """The driver plugs the cable in: the charger starts the transaction the app asked for."""
        assert self.charger is not None
        [tag] = [p["idTag"] for a, p in self.charger.received if a == "RemoteStartTransaction"]
        await self.charger.start_transaction(1, tag)


@dataclass
class Journey:
    """What the app saw."""

    driver_id: str = ""
    owner_id: str = ""
    started: dict[str, Any] = field(default_factory=dict)
    stopped: dict[str, Any] = field(default_factory=dict)
    updates: list[dict[str, Any]] = field(default_factory=list)
    balances: list[dict[str, Any]] = field(default_factory=list)
    home: dict[str, Any] = field(default_factory=dict)  # DriverHome: me, myWallet, the latest session
    history: list[dict[str, Any]] = field(default_factory=list)
    dashboard_before: dict[str, Any] = field(default_factory=dict)  # OwnerDashboard
    dashboard_after: dict[str, Any] = field(default_factory=dict)


async def call(session: AsyncClientSession, doc: str, operation: str, headers: dict[str, str] | None = None,
               **variables: Any) -> dict[str, Any]:
    """One operation of a ``graphql/`` document; its data (gql raises on GraphQL errors)."""
    request = GraphQLRequest(doc, variable_values=variables, operation_name=operation)
    extra = {"extra_args": {"headers": headers}} if headers else {}
    result: dict[str, Any] = await session.execute(request, **extra)
    return result


def http(url: str, token: str | None = None) -> Client:
    """The app's HTTP client, as one user (or nobody)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return Client(transport=HTTPXAsyncTransport(url=url, headers=headers, timeout=15))


async def until(predicate: Callable[[], bool], what: str, timeout: float = 15) -> None:
    """Wait until ``predicate()`` holds (the subscriptions fill the lists it reads)."""
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def watch(live: AsyncClientSession, operation: str, into: list[dict[str, Any]], **variables: Any) -> None:
    """Append every message of a subscription to ``into`` until cancelled."""
    request = GraphQLRequest(LIVE, variable_values=variables, operation_name=operation)
    async for data in live.subscribe(request):
        into.append(next(iter(data.values())))


async def app(http_url: str, ws_url: str, site: Callable[[Callable[[], Awaitable[None]]], Awaitable[None]]
              ) -> Journey:
    """Owner, admin and driver use the API; ``site(fn)`` runs ``fn`` in the physical world."""
    seen = Journey()
    email = f"driver-{uuid.uuid4().hex[:8]}@example.test"
    async with asyncio.timeout(90), http(http_url) as anonymous:
        registered = await call(anonymous, ACCOUNTS, "Register",
                                input={"email": email, "password": PASSWORD, "name": "Aida"})
        seen.driver_id = registered["register"]["user"]["id"]
        assert registered["register"]["user"]["balanceTyiyn"] == 0
        tokens = {}
        for who, address in (("driver", email), ("owner", "owner@e2e.test"), ("admin", "admin@e2e.test")):
            login = (await call(anonymous, ACCOUNTS, "LoginByEmail", email=address, password=PASSWORD))["login"]
            tokens[who] = login["accessToken"]
            if who == "owner":
                seen.owner_id = login["user"]["id"]
        period = {"from": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
                  "to": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}

        async with http(http_url, tokens["owner"]) as owner:  # the owner puts a priced station on the map
            tariff = (await call(owner, CATALOG, "CreateTariff", input={
                "name": "E2E fast", "pricePerKwhTyiyn": PRICE.per_kwh_tyiyn,
                "sessionFeeTyiyn": PRICE.session_fee_tyiyn}))["createTariff"]
            place = (await call(owner, CATALOG, "CreateLocation", input={
                "name": "E2E depot", "city": "Bishkek", "latitude": 42.87, "longitude": 74.6}))["createLocation"]
            await call(owner, CATALOG, "CreateStation", input={
                "id": STATION, "connectorCount": 2, "locationId": place["id"], "tariffId": tariff["id"],
                "password": STATION_PASSWORD})
            seen.dashboard_before = await call(owner, OWNER, "OwnerDashboard", **period)
        await site(Site.install_charger)

        async with http(http_url, tokens["admin"]) as admin:
            credit = await call(admin, WALLET, "AdjustBalance", {"Idempotency-Key": str(uuid.uuid4())},
                                userId=seen.driver_id, amountTyiyn=CREDIT, reason="e2e welcome credit")
            assert credit["adjustBalance"]["applied"] is True

        transport = WebsocketsTransport(url=ws_url, init_payload={"Authorization": f"Bearer {tokens['driver']}"},
                                        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL])
        async with http(http_url, tokens["driver"]) as driver, Client(transport=transport) as live, \
                asyncio.TaskGroup() as tasks:
            balance = tasks.create_task(watch(live, "Balance", seen.balances))
            await until(lambda: len(seen.balances) >= 1, "the first balance")
            start = tasks.create_task(call(driver, CHARGING, "StartCharging", {"Idempotency-Key": str(uuid.uuid4())},
                                           input={"stationId": STATION, "connectorId": 1, "limitTyiyn": LIMIT}))
            # The charger takes two seconds to answer RemoteStart: the session is `requested` meanwhile.
            session_id = None
            while session_id is None:
                page = (await call(driver, CHARGING, "MySessions", first=1))["mySessions"]
                session_id = page["edges"][0]["node"]["id"] if page["edges"] else None
                await asyncio.sleep(0.02)
            updates = tasks.create_task(watch(live, "LiveSession", seen.updates, id=session_id))
            seen.started = (await start)["startCharging"]
            await until(lambda: any(u["status"] == "accepted" for u in seen.updates), "accepted")
            await site(Site.plug_in)
            await until(lambda: len({u["energyWh"] for u in seen.updates if u["status"] == "charging"}) >= 4,
                        "rising energy")
            seen.stopped = (await call(driver, CHARGING, "StopCharging", {"Idempotency-Key": str(uuid.uuid4())},
                                       sessionId=session_id))["stopCharging"]
            await until(lambda: seen.updates[-1]["status"] == "completed", "completed")
            seen.home = await call(driver, DRIVER, "DriverHome")
            history = (await call(driver, WALLET, "MyWalletHistory", first=10))["myWalletHistory"]
            seen.history = [e["node"] for e in history["edges"]]
            await until(lambda: seen.balances[-1]["heldTyiyn"] == 0
                        and seen.balances[-1]["availableTyiyn"] == seen.home["myWallet"]["availableTyiyn"],
                        "the last balance")
            balance.cancel()
            updates.cancel()

        async with http(http_url, tokens["owner"]) as owner:
            seen.dashboard_after = await call(owner, OWNER, "OwnerDashboard", **period)
    return seen


async def test_driver_charges_from_the_app_watches_live_and_pays_exactly_for_the_energy(node: Node) -> None:
    for role, email in (("owner", "owner@e2e.test"), ("admin", "admin@e2e.test")):
        await accounts.create_account(node.db, role=role, phone=None, email=email, password=PASSWORD)
    token = trio.lowlevel.current_trio_token()
    async with trio.open_nursery() as nursery:
        site = Site(node, nursery)

        async def in_the_world(fn: Callable[[Site], Awaitable[None]]) -> None:
            await asyncio.to_thread(trio.from_thread.run, fn, site, trio_token=token)

        seen = await trio.to_thread.run_sync(
            asyncio.run, app(node.graphql_url, node.graphql_url.replace("http://", "ws://"), in_the_world))
        nursery.cancel_scope.cancel()

    rows = await node.db.run(lambda conn: conn.execute(
        "SELECT meter_start_wh, meter_stop_wh, stop_reason FROM transactions").fetchall())
    [(meter_start, meter_stop, reason)] = rows
    energy = meter_stop - meter_start
    cost = energy_cost(energy, PRICE)
    assert energy > 0 and reason == "Remote"

    # Live updates: every state of the machine, in order, with energy and cost rising together.
    statuses = [u["status"] for u in seen.updates]
    assert statuses[0] == "requested"
    order = ["requested", "accepted", "charging", "stopping", "completed"]
    assert [order.index(s) for s in statuses] == sorted(order.index(s) for s in statuses), statuses
    assert {"requested", "accepted", "charging", "completed"} <= set(statuses)
    assert seen.started["status"] == "accepted" and seen.started["holdTyiyn"] == LIMIT
    assert seen.stopped["status"] in ("stopping", "completed")
    charging = [u for u in seen.updates if u["status"] in ("charging", "stopping")]
    energies = [u["energyWh"] for u in charging]
    assert energies == sorted(energies) and len(set(energies)) >= 4
    assert all(u["costTyiyn"] == energy_cost(u["energyWh"], PRICE) for u in charging)
    assert [u["costTyiyn"] for u in charging] == sorted(u["costTyiyn"] for u in charging)
    assert charging[-1]["powerW"] == 360_000
    done = seen.updates[-1]
    assert (done["energyWh"], done["chargedTyiyn"], done["costTyiyn"]) == (energy, cost, cost)

    # The bill: exactly energy x tariff, wherever the app looks.
    assert seen.home["me"]["balanceTyiyn"] == CREDIT - cost
    assert seen.home["myWallet"] == {"availableTyiyn": CREDIT - cost, "heldTyiyn": 0, "postedTyiyn": CREDIT - cost}
    [latest] = [e["node"] for e in seen.home["mySessions"]["edges"]]
    assert (latest["id"], latest["status"], latest["chargedTyiyn"]) == (done["id"], "completed", cost)
    assert seen.balances[0] == {"availableTyiyn": CREDIT, "heldTyiyn": 0}
    assert {"availableTyiyn": CREDIT - LIMIT, "heldTyiyn": LIMIT} in seen.balances
    assert seen.balances[-1] == {"availableTyiyn": CREDIT - cost, "heldTyiyn": 0}
    assert [(e["kind"], e["amountTyiyn"]) for e in seen.history] == [
        ("POST", -cost), ("HOLD", -LIMIT), ("TRANSFER", CREDIT)]
    assert sum(e["amountTyiyn"] for e in seen.history if e["settled"]) == CREDIT - cost
    # The owner earned the same, and sees the session at their connected, priced station.
    before, after = seen.dashboard_before, seen.dashboard_after
    assert (before["myRevenue"]["revenueTyiyn"], before["myRevenue"]["sessions"]) == (0, 0)
    assert before["sessions"]["edges"] == []
    assert (after["myRevenue"]["revenueTyiyn"], after["myRevenue"]["sessions"]) == (cost, 1)
    assert [(e["node"]["id"], e["node"]["chargedTyiyn"]) for e in after["sessions"]["edges"]] == [(done["id"], cost)]
    [[station]] = [place["stations"] for place in after["myLocations"]]
    assert (station["id"], station["tariff"]["pricePerKwhTyiyn"]) == (STATION, PRICE.per_kwh_tyiyn)

    await assert_ledger_clean(node.db)
    checked = await csms_command(node.settings.database_url or "", "ledger", "check")  # as operators run it
    assert checked.returncode == 0, (checked.stdout, checked.stderr)
