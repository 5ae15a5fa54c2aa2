"""Demo data for a developer's first run: one location with its owner, two stations with two connectors
and an operator tariff, and id tags.

Development only: ``csms seed-demo`` refuses to run with ``APP_ENV=production``. The demo owner's
password comes from ``CSMS_DEMO_OWNER_PASSWORD``; without it a random one is generated when the user
is created and shown once in the summary (never logged, never hard-coded).

Idempotent: running it again changes nothing that exists (an owner, a tariff or a location set by
hand is kept), except that a ``CSMS_DEMO_OWNER_PASSWORD`` different from the stored one replaces it.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

import trio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from csms.store import catalog
from csms.store import stations as store
from csms.store.users import create_user

if TYPE_CHECKING:
    from csms.store.db import Conn, Database

DEMO_LOCATION = "Bishkek Demo Hub"
DEMO_STATIONS = ("DEMO-1", "DEMO-2")
DEMO_TAGS = {"DEMO-TAG-1": "Accepted", "DEMO-TAG-2": "Accepted", "DEMO-BLOCKED": "Blocked"}
DEMO_OWNER_EMAIL = "owner@demo.csms"
DEMO_TARIFF = "Demo standard"
DEMO_PRICE_PER_KWH_TYIYN = 1200  # 12 som per kWh
OWNER_PASSWORD_ENV = "CSMS_DEMO_OWNER_PASSWORD"

_hasher = PasswordHasher()  # argon2id


def _matches(password_hash: str | None, password: str) -> bool:
    try:
        return password_hash is not None and _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _owner(conn: Conn, password_hash: str, password: str | None) -> tuple[str, bool]:
    """The demo owner's id, and whether the user was created now."""
    row = conn.execute("SELECT id::text, password_hash FROM users WHERE lower(email) = lower(%s)",
                       (DEMO_OWNER_EMAIL,)).fetchone()
    if row is None:
        user = create_user(conn, role="owner", email=DEMO_OWNER_EMAIL, name="Demo owner",
                           password_hash=password_hash)
        return user.id, True
    if password is not None and not _matches(row[1], password):
        conn.execute("UPDATE users SET password_hash = %s, updated_at = now() WHERE id = %s", (password_hash, row[0]))
    return str(row[0]), False


def _tariff(conn: Conn) -> str:
    catalog.lock_tariff_names(conn, None)
    existing = catalog.tariff_by_name(conn, None, DEMO_TARIFF)
    if existing is not None:
        return existing.id
    return catalog.insert_tariff(conn, None, DEMO_TARIFF, DEMO_PRICE_PER_KWH_TYIYN, 0)


def _seed(conn: Conn, password_hash: str, password: str | None) -> tuple[str, bool]:
    owner_id, created = _owner(conn, password_hash, password)
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
    return owner_id, created


async def seed(db: Database, *, owner_password: str | None = None) -> str:
    """Create the demo rows; returns a summary for the terminal (with a generated password, once).

    Args:
        owner_password: the demo owner's password (from ``CSMS_DEMO_OWNER_PASSWORD``); None generates
            one if the owner does not exist yet.
    """
    generated = secrets.token_urlsafe(12) if owner_password is None else None
    password = owner_password if owner_password is not None else generated
    assert password is not None
    # argon2 is deliberately slow: hash off the event loop.
    password_hash = await trio.to_thread.run_sync(_hasher.hash, password)
    _, created = await db.run(_seed, password_hash, owner_password)
    if created and generated is not None:
        login = f"password {generated} (shown once; set {OWNER_PASSWORD_ENV} to choose it)"
    elif owner_password is not None:
        login = f"password from {OWNER_PASSWORD_ENV}"
    else:
        login = f"password unchanged (set {OWNER_PASSWORD_ENV} to replace it)"
    som, tyiyn = divmod(DEMO_PRICE_PER_KWH_TYIYN, 100)
    return (f"demo data ready: location {DEMO_LOCATION!r} owned by {DEMO_OWNER_EMAIL} ({login}), "
            f"stations {', '.join(DEMO_STATIONS)} at {som}.{tyiyn:02d} som/kWh, id tags {', '.join(DEMO_TAGS)}")
