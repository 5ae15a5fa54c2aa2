"""The developer's first run (``./dev run``): after ``csms seed-demo`` the demo driver logs in, has money,
and charges on a demo station; seeding again neither credits again nor changes the password.

``csms seed-demo`` and ``csms ledger check`` run as real processes against the test database, the way
``./dev run`` and an operator run them.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import httpx
import trio

from csms.services import demo
from csms.services.tariffs import Price, energy_cost
from tests.api.conftest import document
from tests.conftest import charger
from tests.ledger_check import assert_ledger_clean
from tests.processes import csms_command

if TYPE_CHECKING:
    from tests.conftest import Node

ACCOUNTS, CHARGING = document("accounts.graphql"), document("charging.graphql")


async def csms(node: Node, *args: str) -> str:
    """Run the installed ``csms`` command on the node's database; its standard output."""
    done = await csms_command(node.settings.database_url or "", *args)
    assert done.returncode == 0, (done.stdout, done.stderr)
    return done.stdout.decode()


async def op(client: httpx.AsyncClient, doc: str, operation: str, token: str | None = None,
             **variables: Any) -> dict[str, Any]:
    """One operation of a ``graphql/`` document, which must succeed; its data."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await client.post("/graphql", json={"query": doc, "operationName": operation, "variables": variables},
                                 headers=headers)
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body
    return body["data"]  # type: ignore[no-any-return]


async def test_the_demo_driver_logs_in_and_charges_on_a_demo_station(node: Node) -> None:
    summary = await csms(node, "seed-demo")
    found = re.search(rf"driver {re.escape(demo.DEMO_DRIVER_EMAIL)} \(password (\S+) \(shown once", summary)
    assert found, summary
    password = found.group(1)
    assert "with 1000.00 som to charge with" in summary
    async with httpx.AsyncClient(base_url=node.graphql_url.removesuffix("/graphql"), timeout=15) as client:
        login = (await op(client, ACCOUNTS, "LoginByEmail", email=demo.DEMO_DRIVER_EMAIL, password=password))["login"]
        token = login["accessToken"]
        assert (login["user"]["role"], login["user"]["balanceTyiyn"]) == ("DRIVER", demo.DEMO_DRIVER_CREDIT_TYIYN)
        # ./dev run's chargers run their own demo transactions on connector 1: the app charges on 2.
        async with charger(node, "DEMO-1", power_w=360_000, meter_interval_s=0.05):
            session = (await op(client, CHARGING, "StartCharging", token,
                                input={"stationId": "DEMO-1", "connectorId": 2, "limitTyiyn": 10_000}))["startCharging"]
            with trio.fail_after(15):
                while (await op(client, CHARGING, "Session", token, id=session["id"]))["session"]["energyWh"] < 20:
                    await trio.sleep(0.05)
            await op(client, CHARGING, "StopCharging", token, sessionId=session["id"])
            with trio.fail_after(15):
                while (done := (await op(client, CHARGING, "Session", token, id=session["id"]))["session"]
                       )["status"] != "completed":
                    await trio.sleep(0.05)
        cost = energy_cost(done["energyWh"], Price(demo.DEMO_PRICE_PER_KWH_TYIYN))
        assert done["chargedTyiyn"] == cost > 0

        again = await csms(node, "seed-demo")
        assert password not in again and "password unchanged" in again
        me = (await op(client, ACCOUNTS, "Me", token))["me"]
        assert me["balanceTyiyn"] == demo.DEMO_DRIVER_CREDIT_TYIYN - cost  # credited once, not twice
    audits = await node.db.run(lambda conn: conn.execute(
        "SELECT actor_kind, actor_id, target, (detail->>'amount_tyiyn')::bigint FROM audit_log "
        "WHERE action = 'ledger.adjust'").fetchall())
    assert audits == [("system", "seed-demo", login["user"]["id"], demo.DEMO_DRIVER_CREDIT_TYIYN)]
    await assert_ledger_clean(node.db)
    assert (await csms(node, "ledger", "check")).startswith("ledger consistent")
