"""Demo data for a developer's first run: one location, two stations with two connectors, id tags.

Idempotent: running it again changes nothing that exists.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from csms.store import stations as store

if TYPE_CHECKING:
    from csms.store.db import Conn, Database

DEMO_LOCATION = "Bishkek Demo Hub"
DEMO_STATIONS = ("DEMO-1", "DEMO-2")
DEMO_TAGS = {"DEMO-TAG-1": "Accepted", "DEMO-TAG-2": "Accepted", "DEMO-BLOCKED": "Blocked"}


def _seed(conn: Conn) -> str:
    row = conn.execute(
        """INSERT INTO locations (name, address, city, latitude, longitude)
           VALUES (%s, 'Chui Avenue 1', 'Bishkek', 42.876400, 74.612000)
           ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id""",
        (DEMO_LOCATION,),
    ).fetchone()
    assert row is not None
    location_id = row[0]
    for station_id in DEMO_STATIONS:
        store.add_station(conn, station_id, None)
        conn.execute("UPDATE stations SET location_id = %s, connector_count = 2 WHERE id = %s",
                     (location_id, station_id))
        for connector_id in (1, 2):
            conn.execute(
                "INSERT INTO connectors (station_id, connector_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (station_id, connector_id),
            )
    for tag, status in DEMO_TAGS.items():
        store.upsert_id_tag(conn, tag, status, None, None)
    return (f"demo data ready: location {DEMO_LOCATION!r}, stations {', '.join(DEMO_STATIONS)}, "
            f"id tags {', '.join(DEMO_TAGS)}")


async def seed(db: Database) -> str:
    """Create the demo rows; returns a one-line summary."""
    return await db.run(_seed)
