"""Stations: who may connect, what they report about themselves, and id tag authorisation.

Heartbeats and last-seen times are not billing-relevant, so they live in memory and a flusher writes
them every second (DESIGN.md "Hot paths"); status notifications go through group commit.

A station's ``last_seen`` is written at most once per :data:`LAST_SEEN_RESOLUTION_S`. Writing every
station heard from in the last flush interval made, with 10,000 chargers, an UPDATE of ~5,000 rows
every 5 s; that statement competed with the group commit for the database's core and its WAL
flushes, and was what lifted the 10,000-charger benchmark's p99 above 20 ms (measured: 17 ms without
the flush, 24-51 ms with it). With the resolution, each flush updates a few hundred rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from time import monotonic
from typing import TYPE_CHECKING, Any

import trio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from csms.services.clock import utcnow
from csms.store import stations as store

if TYPE_CHECKING:
    from datetime import datetime

    from csms.services.commit import GroupCommitter
    from csms.store.db import Conn, Database

log = logging.getLogger(__name__)

# How stale a station's stored last_seen may be while it is talking to this node (see the docstring).
LAST_SEEN_RESOLUTION_S = 15.0

_hasher = PasswordHasher()
# Verified against when a station has no hash, so an unknown station costs as much as a known one.
_DUMMY_HASH = _hasher.hash("csms-dummy-password")


def hash_password(password: str) -> str:
    """argon2id hash of a station's Basic-auth password."""
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Check a password against an argon2 hash in constant time (argon2 compares digests safely)."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True, slots=True)
class IdTagInfo:
    """The OCPP idTagInfo answered for an id tag."""

    status: str
    expiry_date: datetime | None = None
    parent_id_tag: str | None = None

    def to_ocpp(self) -> dict[str, Any]:
        """As an OCPP 1.6 ``idTagInfo`` object."""
        out: dict[str, Any] = {"status": self.status}
        if self.expiry_date is not None:
            out["expiryDate"] = self.expiry_date.isoformat().replace("+00:00", "Z")
        if self.parent_id_tag is not None:
            out["parentIdTag"] = self.parent_id_tag
        return out


class StationService:
    """Business rules for station identity, presence, status and authorisation."""

    def __init__(self, db: Database, committer: GroupCommitter, *, node_id: str,
                 accept_unknown: bool = False) -> None:
        self.db = db
        self.committer = committer
        self.node_id = node_id
        self.accept_unknown = accept_unknown
        self._seen: dict[str, datetime] = {}
        # For each connected station: when it was last heard from, and when its last_seen was last
        # queued for writing (monotonic()).
        self._heard_at: dict[str, float] = {}
        self._queued_at: dict[str, float] = {}
        # Socket changes on this node not yet written to charger_connections (True = connected).
        self._links: dict[str, bool] = {}

    async def lookup_for_handshake(self, station_id: str) -> store.StationAuth | None:
        """Find the station a charger claims to be; registers it first in accept-unknown mode."""
        auth, created = await self.db.run(_lookup, station_id, self.accept_unknown)
        if created:
            log.info("registered unknown station %s (accept-unknown mode)", station_id)
        return auth

    async def check_password(self, auth: store.StationAuth | None, password: str) -> bool:
        """Verify Basic-auth credentials off the event loop (argon2 is deliberately slow)."""
        hashed = auth.password_hash if auth else None
        return await trio.to_thread.run_sync(verify_password, hashed, password)

    async def add_station(self, station_id: str, password: str | None) -> bool:
        """Register a station (CLI, demo data). False when it exists already."""
        hashed = hash_password(password) if password else None
        return await self.db.run(store.add_station, station_id, hashed)

    async def boot(self, station_id: str, payload: dict[str, Any]) -> str:
        """Persist what the charger says about itself; returns its registration status."""
        self.touch(station_id)
        return await self.committer.submit(lambda conn: store.record_boot(conn, station_id, payload))

    def touch(self, station_id: str) -> None:
        """Note that the station was heard from now (flushed later, to within LAST_SEEN_RESOLUTION_S)."""
        now = monotonic()
        self._heard_at[station_id] = now
        if now - self._queued_at.get(station_id, -LAST_SEEN_RESOLUTION_S) >= LAST_SEEN_RESOLUTION_S:
            self._queued_at[station_id] = now
            self._seen[station_id] = utcnow()

    async def status(self, station_id: str, payload: dict[str, Any], status_at: datetime | None) -> None:
        """Record a StatusNotification: current connector status and history."""
        await self.committer.submit(
            lambda conn: store.record_status(
                conn, station_id, int(payload["connectorId"]), payload["status"], payload["errorCode"],
                payload.get("info"), payload.get("vendorId"), payload.get("vendorErrorCode"), status_at,
            )
        )

    async def set_field(self, station_id: str, column: str, value: str) -> None:
        """Record a diagnostics or firmware status notification."""
        await self.db.run(store.set_station_field, station_id, column, value)

    async def authorize(self, id_tag: str) -> IdTagInfo:
        """Decide the idTagInfo for an id tag (case-insensitive; expiry enforced)."""
        row = await self.db.run(store.get_id_tag, id_tag)
        return id_tag_info(row, utcnow())

    def connected(self, station_id: str) -> None:
        """This node now holds the station's socket (written with the next presence flush).

        Connection state is informational (the API's ``connected``), so it is batched like last-seen
        times instead of costing every handshake a database round trip.
        """
        self.touch(station_id)
        self._links[station_id] = True

    def disconnected(self, station_id: str) -> None:
        """The station's socket on this node closed (written with the next presence flush)."""
        self._links[station_id] = False
        heard_at = self._heard_at.pop(station_id, None)
        if heard_at is not None and heard_at > self._queued_at.pop(station_id, heard_at):
            # Heard from since its last queued time: the exact last time goes out with the next flush.
            self._seen[station_id] = utcnow() - timedelta(seconds=monotonic() - heard_at)

    async def flush_presence(self) -> None:
        """Write buffered last-seen times, connection changes and this node's liveness."""
        seen, self._seen = self._seen, {}
        links, self._links = self._links, {}
        await self.db.run(_flush, seen, links, self.node_id)

    async def run_presence(self, *, interval_s: float = 1.0,
                           task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Flush presence every ``interval_s`` until cancelled; a last flush and node removal on exit."""
        await self.db.run(store.node_alive, self.node_id)
        task_status.started()
        try:
            while True:
                await trio.sleep(interval_s)
                try:
                    await self.flush_presence()
                except Exception as exc:  # the next round retries; presence is best-effort
                    log.warning("presence flush failed: %s", exc)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await self.flush_presence()
                await self.db.run(store.node_gone, self.node_id)


def _flush(conn: Conn, seen: dict[str, datetime], links: dict[str, bool], node_id: str) -> None:
    store.node_alive(conn, node_id)
    store.touch_last_seen(conn, seen)
    store.set_links(conn, node_id, [s for s, up in links.items() if up], [s for s, up in links.items() if not up])


def _lookup(conn: Conn, station_id: str, create: bool) -> tuple[store.StationAuth | None, bool]:
    auth = store.get_station_auth(conn, station_id)
    if auth is not None or not create:
        return auth, False
    store.add_station(conn, station_id, None)
    return store.get_station_auth(conn, station_id), True


def id_tag_info(row: store.IdTagRow | None, now: datetime) -> IdTagInfo:
    """The idTagInfo for a stored id tag (None → Invalid)."""
    if row is None:
        return IdTagInfo("Invalid")
    status = row.status
    if status == "Accepted" and row.expiry_date is not None and row.expiry_date <= now:
        status = "Expired"
    return IdTagInfo(status, row.expiry_date, row.parent_id_tag)
