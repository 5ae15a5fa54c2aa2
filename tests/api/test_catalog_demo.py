"""The demo seed: an owner, an operator tariff on both demo stations, idempotent, development only."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pytest

from csms import cli
from csms.services import demo
from csms.services.stations import verify_password
from csms.store.catalog import effective_tariff
from tests.api.catalog_setup import catalog_rows, ok
from tests.conftest import TEST_SIGNER
from tests.ledger_check import assert_ledger_clean

if TYPE_CHECKING:
    import httpx

    from csms.store.db import Conn, Database


def demo_owner(conn: Conn) -> tuple[str, str, str]:
    row = conn.execute("SELECT id::text, role, password_hash FROM users WHERE email = %s",
                       (demo.DEMO_OWNER_EMAIL,)).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


def everything(conn: Conn) -> tuple[Any, ...]:
    users = conn.execute("SELECT id, role, email, password_hash FROM users ORDER BY id").fetchall()
    tags = conn.execute("SELECT id_tag, status FROM id_tags ORDER BY id_tag").fetchall()
    return (*catalog_rows(conn), tuple(users), tuple(tags))


async def test_seed_is_idempotent_and_gives_the_owner_a_priced_location(
        client: httpx.AsyncClient, db: Database) -> None:
    summary = await demo.seed(db)
    match = re.search(r"password (\S+) \(shown once", summary)
    assert match, summary
    password = match.group(1)
    assert "12.00 som/kWh" in summary
    owner_id, role, password_hash = await db.run(demo_owner)
    assert role == "owner"
    assert password_hash.startswith("$argon2id$")
    assert verify_password(password_hash, password)
    first = await db.run(everything)

    again = await demo.seed(db)
    assert password not in again
    assert "password unchanged" in again
    assert await db.run(everything) == first

    for station_id in demo.DEMO_STATIONS:
        for connector_id in (1, 2):
            found = await db.run(effective_tariff, station_id, connector_id)
            assert found is not None
            assert found[1:] == (demo.DEMO_PRICE_PER_KWH_TYIYN, 0)
    token = TEST_SIGNER.issue(owner_id, "owner")
    [hub] = await ok(client, "MyLocations", token)
    assert hub["name"] == demo.DEMO_LOCATION
    assert hub["ownerId"] == owner_id
    assert [s["id"] for s in hub["stations"]] == list(demo.DEMO_STATIONS)
    assert all(s["tariff"]["isOperatorTariff"] for s in hub["stations"])
    [public] = await ok(client, "Map")
    assert {c["tariff"]["pricePerKwhTyiyn"] for s in public["stations"] for c in s["connectors"]} == {1200}
    await assert_ledger_clean(db)  # the demo driver's credit


async def test_seed_keeps_manual_changes_and_takes_the_password_from_the_environment(db: Database) -> None:
    summary = await demo.seed(db, owner_password="first-demo-password")
    assert "first-demo-password" not in summary
    assert demo.OWNER_PASSWORD_ENV in summary

    def reprice(conn: Conn) -> None:
        conn.execute("INSERT INTO tariffs (name, price_per_kwh_tyiyn) VALUES ('Promo', 500)")
        conn.execute("UPDATE stations SET tariff_id = (SELECT id FROM tariffs WHERE name = 'Promo') WHERE id = 'DEMO-1'")

    await db.run(reprice)
    await demo.seed(db, owner_password="second-demo-password")
    _, _, password_hash = await db.run(demo_owner)
    assert verify_password(password_hash, "second-demo-password")
    assert not verify_password(password_hash, "first-demo-password")
    assert (await db.run(effective_tariff, "DEMO-1", 1))[1] == 500  # type: ignore[index]
    assert (await db.run(effective_tariff, "DEMO-2", 1))[1] == 1200  # type: ignore[index]
    before = await db.run(everything)
    await demo.seed(db, owner_password="second-demo-password")  # same password: nothing to change
    assert await db.run(everything) == before
    await assert_ledger_clean(db)


def test_seed_demo_is_refused_in_production(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
                                            ) -> None:
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv(demo.OWNER_PASSWORD_ENV, "would-be-password")
    assert cli.main(["seed-demo"]) == 2
    out = capsys.readouterr()
    assert "refused with APP_ENV=production" in out.err
    assert "would-be-password" not in out.out + out.err
