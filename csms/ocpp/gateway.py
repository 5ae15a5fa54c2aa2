"""The OCPP-J gateway: listens for charge points, decides their handshakes, owns their connections.

Each accepted socket runs in its own task in the gateway's handler nursery (``trio.serve_listeners``
with ``handler_nursery``), so the gateway owns every connection task and can close them all with
1001 on shutdown. The gateway also implements the services' :class:`~csms.services.commands.CallSender`.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import ssl
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import trio

from csms.ocpp.admission import TurnAdmission
from csms.ocpp.connection import StationConnection
from csms.ocpp.handshake import Accept, HandshakeRequest, Reject, accept_websocket
from csms.ocpp.websocket import GOING_AWAY
from csms.services.commands import ChargerOffline

if TYPE_CHECKING:
    from collections.abc import Mapping

    from csms.config import Settings
    from csms.ocpp.handlers.context import Deps, Handler
    from csms.services.journal import Journal

log = logging.getLogger(__name__)

SUBPROTOCOLS = ("ocpp1.6",)
STATION_ID = re.compile(r"^[A-Za-z0-9._:*+|@-]{1,48}$")


def _basic_password(headers: Any, station_id: str) -> str | None:
    """The password of an HTTP Basic ``Authorization`` header for this station, or None."""
    raw = headers.get("Authorization")
    if not raw or not raw.lower().startswith("basic "):
        return None
    try:
        user, sep, password = base64.b64decode(raw[6:].strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    # OCPP security profile 1: the username is the charge point's identity.
    return password if sep and user == station_id else None


class Gateway:
    """Accepts OCPP 1.6J connections on the configured port (and TLS when configured)."""

    def __init__(self, settings: Settings, deps: Deps, routes: Mapping[str, Handler], journal: Journal) -> None:
        self._settings = settings
        self._deps = deps
        self._routes = routes
        self._journal = journal
        #: Spreads a flood of charger messages over short scheduler turns (csms.ocpp.admission).
        self.admission = TurnAdmission(settings.ocpp_turn_budget)
        self._connections: dict[str, StationConnection] = {}
        self._listener_scope: trio.CancelScope | None = None
        self._closing = False

    @property
    def connected_ids(self) -> list[str]:
        """Stations with an open socket on this node."""
        return list(self._connections)

    def is_connected(self, station_id: str) -> bool:
        """Whether this node holds an open socket for the station (for ChargerCommands)."""
        return station_id in self._connections

    async def serve(self, *, task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED
                    ) -> None:
        """Listen until :meth:`stop`; then wait for every connection to close. Reports the listeners."""
        s = self._settings
        async with trio.open_nursery() as handlers:
            listeners: list[Any]
            if s.ocpp_tls_cert and s.ocpp_tls_key:
                ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                ctx.load_cert_chain(s.ocpp_tls_cert, s.ocpp_tls_key)
                listeners = await trio.open_ssl_over_tcp_listeners(s.ocpp_port, ctx, host=s.ocpp_host)
            else:
                listeners = await trio.open_tcp_listeners(s.ocpp_port, host=s.ocpp_host)
            with trio.CancelScope() as self._listener_scope:
                async with trio.open_nursery() as accept:
                    await accept.start(partial(trio.serve_listeners, self._handle, listeners,  # type: ignore[misc]
                                               handler_nursery=handlers))
                    await accept.start(self.admission.run)
                    if s.ping_interval_s > 0:
                        accept.start_soon(self._keep_alive, s.ping_interval_s)
                    task_status.started([ln.transport_listener if isinstance(ln, trio.SSLListener) else ln  # type: ignore[misc]
                                         for ln in listeners])
            # Listener stopped: close every charger with 1001 (going away) so it reconnects elsewhere.
            for conn in list(self._connections.values()):
                conn.stop(GOING_AWAY, "server shutting down")

    async def _keep_alive(self, interval_s: float) -> None:
        """Ping quiet chargers and close dead ones: one sweep for all connections every quarter interval.

        One task for the node rather than a timeout per read: a timeout is a cancel scope created for
        every message, which costs CPU per message and objects that live as long as the charger is quiet.
        """
        while True:
            await trio.sleep(interval_s / 4)
            now = trio.current_time()
            for conn in list(self._connections.values()):
                conn.keep_alive(now)

    def stop(self) -> None:
        """Stop accepting and close every connection with 1001."""
        self._closing = True
        if self._listener_scope is not None:
            self._listener_scope.cancel()

    async def send_call(self, station_id: str, action: str, payload: dict[str, Any],
                        timeout_s: float | None = None) -> dict[str, Any]:
        """CallSender for :class:`~csms.services.commands.ChargerCommands`."""
        conn = self._connections.get(station_id)
        if conn is None:
            raise ChargerOffline(station_id)
        return await conn.call(action, payload, timeout_s)

    async def _handle(self, stream: trio.abc.Stream) -> None:
        try:
            # A handshake is work like a message: in a reconnect storm, new sockets wait their turn too
            # instead of crowding out the BootNotifications of those already connected.
            await self.admission.admit()
            await self._serve_connection(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the peer went away; an escaping error would take the listener down
        except Exception:
            log.exception("OCPP connection failed")
        finally:
            await trio.aclose_forcefully(stream)

    async def _serve_connection(self, stream: trio.abc.Stream) -> None:
        station: dict[str, str] = {}

        async def decide(req: HandshakeRequest) -> Accept | Reject:
            return await self._decide(req, station)

        ws = await accept_websocket(stream, decide, max_frame_bytes=self._settings.max_frame_bytes)
        if ws is None:
            return
        station_id = station["id"]
        if ws.subprotocol is None:
            # OCPP-J Part 4: no common version → complete the handshake without the header, then close.
            await ws.close(1002, "no supported OCPP version offered (ocpp1.6)")
            return
        if self._closing:
            await ws.close(GOING_AWAY, "server shutting down")
            return
        conn = StationConnection(station_id, ws, self._deps, self._routes, self._journal, self.admission,
                                 ping_interval_s=self._settings.ping_interval_s,
                                 call_timeout_s=self._settings.call_timeout_s)
        previous = self._connections.get(station_id)
        self._connections[station_id] = conn
        if previous is not None:
            log.info("%s reconnected; closing its previous connection", station_id)
            previous.stop(1000, "replaced by a new connection")
        log.info("%s connected", station_id)
        self._deps.stations.connected(station_id)
        try:
            await conn.run()
        finally:
            if self._connections.get(station_id) is conn:
                del self._connections[station_id]
                self._deps.stations.disconnected(station_id)

    async def _decide(self, req: HandshakeRequest, station: dict[str, str]) -> Accept | Reject:
        prefix = self._settings.ocpp_path_prefix
        path = req.path.split("?", 1)[0]
        if not path.startswith(prefix):
            return Reject(404, "Not Found\n")
        station_id = unquote(path[len(prefix):])
        if not STATION_ID.match(station_id):
            return Reject(404, "Not Found\n")
        auth = await self._deps.stations.lookup_for_handshake(station_id)
        if auth is None:
            return Reject(404, "Unknown charge point\n")
        if auth.password_hash is not None:
            password = _basic_password(req.headers, station_id)
            if password is None or not await self._deps.stations.check_password(auth, password):
                log.info("%s: handshake refused, bad or missing credentials", station_id)
                return Reject(401, "Unauthorized\n", [("WWW-Authenticate", 'Basic realm="csms"')])
        station["id"] = station_id
        chosen = next((p for p in req.subprotocols if p in SUBPROTOCOLS), None)
        return Accept(chosen)
