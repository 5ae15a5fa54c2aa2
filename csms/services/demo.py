"""Demo data for a developer's first run: one location with its owner, two stations with two connectors
and an operator tariff, id tags, and a driver with money to charge with.

Development only: ``csms seed-demo`` refuses to run with ``APP_ENV=production``. The demo users'
passwords come from ``CSMS_DEMO_OWNER_PASSWORD`` and ``CSMS_DEMO_DRIVER_PASSWORD``; without one, a
random password is generated when the user is created and shown once in the summary (never logged,
never hard-coded). The driver's wallet is credited once through the ledger, as an audited adjustment
by ``system:seed-demo`` whose transfer id is fixed per driver.

Idempotent: running it again changes nothing that exists (an owner, a tariff or a location set by
hand is kept, the credit is not repeated), except that a password variable different from the stored
password replaces it.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

import trio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from csms.services import ledger
from csms.store import catalog
from csms.store import stations as store
from csms.store.users import create_user

if TYPE_CHECKING:
    from csms.store.db import Conn, Database
    from csms.store.users import UserRole

DEMO_LOCATION = "Bishkek Demo Hub"
DEMO_STATIONS = ("DEMO-1", "DEMO-2")
DEMO_TAGS = {"DEMO-TAG-1": "Accepted", "DEMO-TAG-2": "Accepted", "DEMO-BLOCKED": "Blocked"}
DEMO_OWNER_EMAIL = "owner@demo.csms"
DEMO_DRIVER_EMAIL = "driver@demo.csms"
DEMO_DRIVER_CREDIT_TYIYN = 100_000  # 1,000 som: about 80 kWh at the demo price
DEMO_TARIFF = "Demo standard"
DEMO_PRICE_PER_KWH_TYIYN = 1200  # 12 som per kWh
OWNER_PASSWORD_ENV = "CSMS_DEMO_OWNER_PASSWORD"
DRIVER_PASSWORD_ENV = "CSMS_DEMO_DRIVER_PASSWORD"

_hasher = PasswordHasher()  # argon2id


def _matches(password_hash: str | None, password: str) -> bool:
    try:
        return password_hash is not None and _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _user(conn: Conn, email: str, role: UserRole, name: str, password_hash: str, password: str | None
          ) -> tuple[str, bool]:
    """A demo user's id, and whether the user was created now (a new ``password`` replaces the old one)."""
    row = conn.execute("SELECT id::text, password_hash FROM users WHERE lower(email) = lower(%s)",
                       (email,)).fetchone()
    if row is None:
        user = create_user(conn, role=role, email=email, name=name, password_hash=password_hash)
        return user.id, True
    if password is not None and not _matches(row[1], password):
        conn.execute("UPDATE users SET password_hash = %s, updated_at = now() WHERE id = %s", (password_hash, row[0]))
    return str(row[0]), False


def _driver(conn: Conn, password_hash: str, password: str | None) -> tuple[bool, int]:
    """The demo driver, credited once; returns whether the driver was created now and the balance."""
    driver_id, created = _user(conn, DEMO_DRIVER_EMAIL, "driver", "Demo driver", password_hash, password)
    result = ledger.adjust_balance(conn, actor_kind="system", actor_id="seed-demo", user_id=driver_id,
                                   amount_tyiyn=DEMO_DRIVER_CREDIT_TYIYN, reason="demo balance",
                                   transfer_id=f"demo:{driver_id}:credit")
    return created, result.wallet.available


def _tariff(conn: Conn) -> str:
    catalog.lock_tariff_names(conn, None)
    existing = catalog.tariff_by_name(conn, None, DEMO_TARIFF)
    if existing is not None:
        return existing.id
    return catalog.insert_tariff(conn, None, DEMO_TARIFF, DEMO_PRICE_PER_KWH_TYIYN, 0)


def _seed(conn: Conn, owner: tuple[str, str | None], driver: tuple[str, str | None]) -> tuple[bool, bool, int]:
    owner_id, created = _user(conn, DEMO_OWNER_EMAIL, "owner", "Demo owner", *owner)
    row = conn.execute(
        """INSERT INTO locations (name, address, city, latitude, longitude, owner_id)
           VALUES (%s, 'Chui Avenue 1', 'Bishkek', 42.876400, 74.612000, %s)
           ON CONFLICT (name) DO UPDATE SET owner_id = coalesce(locations.owner_id, EXCLUDED.owner_id)
           RETURNING id""",
        (DEMO_LOCATION, owner_id),
    ).fetchone()
    assert row is not None
    location_id = row[0]
    tariff_id = _tariff(conn)
    for station_id in DEMO_STATIONS:
        store.add_station(conn, station_id, None)
        conn.execute(
            """UPDATE stations SET location_id = coalesce(location_id, %s),
                   connector_count = coalesce(connector_count, 2), tariff_id = coalesce(tariff_id, %s)
               WHERE id = %s""",
            (location_id, tariff_id, station_id),
        )
        for connector_id in (1, 2):
            conn.execute(
                "INSERT INTO connectors (station_id, connector_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (station_id, connector_id),
            )
    for tag, status in DEMO_TAGS.items():
        store.upsert_id_tag(conn, tag, status, None, None)
    return (created, *_driver(conn, *driver))


async def _password(chosen: str | None) -> tuple[str, str | None, str | None]:
    """``(argon2 hash, chosen password, generated password)`` for a demo user."""
    generated = secrets.token_urlsafe(12) if chosen is None else None
    password = chosen if chosen is not None else generated
    assert password is not None
    # argon2 is deliberately slow: hash off the event loop.
    return await trio.to_thread.run_sync(_hasher.hash, password), chosen, generated


def _login_note(created: bool, chosen: str | None, generated: str | None, env: str) -> str:
    if created and generated is not None:
        return f"password {generated} (shown once; set {env} to choose it)"
    if chosen is not None:
        return f"password from {env}"
    return f"password unchanged (set {env} to replace it)"


async def seed(db: Database, *, owner_password: str | None = None, driver_password: str | None = None) -> str:
    """Create the demo rows; returns a summary for the terminal (with generated passwords, once).

    Args:
        owner_password: the demo owner's password (from ``CSMS_DEMO_OWNER_PASSWORD``); None generates
            one if the owner does not exist yet.
        driver_password: the demo driver's (from ``CSMS_DEMO_DRIVER_PASSWORD``), likewise.
    """
    owner_hash, owner_chosen, owner_generated = await _password(owner_password)
    driver_hash, driver_chosen, driver_generated = await _password(driver_password)
    owner_created, driver_created, balance = await db.run(_seed, (owner_hash, owner_chosen),
                                                          (driver_hash, driver_chosen))
    som, tyiyn = divmod(DEMO_PRICE_PER_KWH_TYIYN, 100)
    return (f"demo data ready: location {DEMO_LOCATION!r} owned by {DEMO_OWNER_EMAIL} "
            f"({_login_note(owner_created, owner_chosen, owner_generated, OWNER_PASSWORD_ENV)}), "
            f"stations {', '.join(DEMO_STATIONS)} at {som}.{tyiyn:02d} som/kWh, id tags {', '.join(DEMO_TAGS)}; "
            f"driver {DEMO_DRIVER_EMAIL} "
            f"({_login_note(driver_created, driver_chosen, driver_generated, DRIVER_PASSWORD_ENV)}) "
            f"with {balance // 100}.{balance % 100:02d} som to charge with")
