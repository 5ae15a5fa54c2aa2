"""GraphQL over WebSocket on Trio: the ``graphql-transport-ws`` server behind ``/graphql``.

strawberry's own WebSocket handlers need asyncio, so this module drives strawberry's schema directly
(``schema.stream``, which runs subscriptions, queries and mutations alike). One connection is one
:class:`GraphQLWebSocket`:

- The client must send ``connection_init`` within ``CSMS_WS_INIT_TIMEOUT`` seconds (else close 4408).
  Its payload may carry a credential, ``{"Authorization": "Bearer <token>"}`` or ``{"token": ...}``,
  checked like the HTTP ``Authorization`` header; a bad one closes the socket with 4403. Without
  one, the browser's cookies are tried when a cookie authenticator is installed, else the connection
  is anonymous (public fields only). A user's access token is only good until it expires: the socket
  then closes with 4403 and the client reconnects with a fresh token.
- Each ``subscribe`` runs in its own task and cancel scope inside the connection's nursery; the
  client's ``complete`` cancels it. Errors keep their typed ``extensions.code``.
- When the process stops (the events service stops), every socket closes with 1001 so clients
  reconnect, possibly to another node.
- Updates shared by many subscribers are executed and encoded once (``csms.api.ws_fanout``); the
  subscription resolvers send them straight to the socket through the operation's ``DirectDelivery``,
  and the age of each one (since csms received the charger message behind it) goes into the
  live-latency histogram served by ``GET /metrics``.
"""

from __future__ import annotations

import logging
import time
from contextlib import aclosing
from typing import TYPE_CHECKING

import trio
from quart import websocket as current_websocket
from strawberry.types.execution import ExecutionResult, PreExecutionError

from csms.api import ws_fanout
from csms.api import ws_protocol as proto
from csms.api.context import ApiContext
from csms.api.errors import ApiError
from csms.api.ws_protocol import Close, ProtocolViolation
from csms.services.tokens import InvalidToken

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from quart import Websocket
    from strawberry.schema.base import BaseSchema

    from csms.api.context import ApiServices, Principal

    Authenticate = Callable[[ApiServices, str | None], Awaitable[Principal | None]]
    CookieAuthenticate = Callable[[ApiServices, Websocket], Awaitable[Principal | None]]

log = logging.getLogger(__name__)

# Bounds the close handshake when the peer is gone or not reading.
CLOSE_TIMEOUT_S = 2.0


class TooManyOperations(ApiError):
    """The connection already runs ``CSMS_WS_MAX_OPERATIONS`` operations (``TOO_MANY_OPERATIONS``)."""

    code = "TOO_MANY_OPERATIONS"
    default_message = "Too many operations on this connection."


class GraphQLWebSocket:
    """One ``graphql-transport-ws`` connection: its handshake, its operations and its close.

    Args:
        websocket: the accepted Quart WebSocket.
        services: the process's services (database, token signer, events).
        schema: the GraphQL schema.
        authenticate: turns an ``Authorization`` value into a principal (``authenticate_bearer``).
        cookie_authenticate: turns the upgrade request's cookies into a principal, or None. It must
            check the ``Origin`` header itself: browsers send cookies on cross-site WebSockets.
    """

    def __init__(self, websocket: Websocket, services: ApiServices, schema: BaseSchema, *,
                 authenticate: Authenticate, cookie_authenticate: CookieAuthenticate | None = None) -> None:
        self.ws = websocket
        self.services = services
        self.schema = schema
        self.authenticate = authenticate
        self.cookie_authenticate = cookie_authenticate
        self.principal: Principal | None = None
        self.operations: dict[str, trio.CancelScope] = {}
        self.close_code: int | None = None
        self._session_id: str | None = None  # the login session of the access token, if any
        self._nursery: trio.Nursery | None = None
        self._headers = {k.lower(): v for k, v in websocket.headers.items()}

    async def run(self) -> None:
        """Serve the connection until either side closes it (or the process stops)."""
        settings = self.services.settings
        events = self.services.events
        # One scope for the handshake and the reading: cancelled when the process stops, and given a
        # deadline when the access token expires (callbacks and deadlines, not a task per socket).
        serving = trio.CancelScope()
        going_away: list[bool] = []
        session_ended: list[bool] = []

        def session_revoked() -> None:
            session_ended.append(True)
            serving.cancel()

        unwatch: Callable[[], None] | None = None

        def stopping() -> None:
            going_away.append(True)
            serving.cancel()

        forget = events.on_stopping(stopping) if events is not None else None
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                with serving:
                    with trio.move_on_after(settings.ws_init_timeout_s) as init:
                        expires_at = await self._handshake()
                    if init.cancelled_caught:
                        await self.close(Close.INIT_TIMEOUT, "Connection initialisation timeout")
                        return
                    if self.close_code is not None:
                        return
                    await self.ws.send(proto.CONNECTION_ACK)
                    if expires_at is not None:
                        serving.deadline = trio.current_time() + max(0.0, expires_at - time.time())
                    if self._session_id is not None:
                        unwatch = self.services.revocations.watch(self._session_id, session_revoked)
                    await self._serve()
                if going_away:
                    await self.close(Close.GOING_AWAY, "Server shutting down")
                elif session_ended:
                    await self.close(Close.FORBIDDEN, "Forbidden: the session ended")
                elif serving.cancelled_caught:
                    await self.close(Close.FORBIDDEN, "Forbidden: the access token expired")
        finally:
            if forget is not None:
                forget()
            if unwatch is not None:
                unwatch()

    async def close(self, code: int, reason: str = "") -> None:
        """Close the socket once with ``code`` and end every operation."""
        if self.close_code is None:
            self.close_code = code
            log.debug("GraphQL WebSocket closed by the server: %d %s", code, reason)
            with trio.move_on_after(CLOSE_TIMEOUT_S):
                try:
                    await self.ws.close(code, proto.reason(reason))
                except Exception as exc:  # the peer is already gone: nothing left to tell it
                    log.debug("closing a GraphQL WebSocket failed: %s", type(exc).__name__)
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    async def _receive(self) -> proto.Message:
        return proto.parse(await self.ws.receive())

    async def _handshake(self) -> float | None:
        """Wait for ``connection_init`` and authenticate it; returns when a token expires, if it does."""
        while True:
            try:
                msg = await self._receive()
            except ProtocolViolation as exc:
                await self.close(exc.code, exc.reason)
                return None
            if isinstance(msg, proto.Ping):
                await self.ws.send(proto.PONG)
            elif isinstance(msg, proto.Subscribe):
                await self.close(Close.UNAUTHORIZED, "Unauthorized")
                return None
            elif isinstance(msg, proto.ConnectionInit):
                return await self._authenticate(msg.payload)
            # pong and complete before the ack change nothing

    async def _authenticate(self, payload: dict[str, object]) -> float | None:
        try:
            credential = proto.init_credential(payload)
        except ProtocolViolation as exc:
            await self.close(exc.code, exc.reason)
            return None
        try:
            if credential is not None:
                self.principal = await self.authenticate(self.services, credential)
                if self.principal is None:
                    await self.close(Close.FORBIDDEN, "Forbidden")
                    return None
                return self._expiry(credential)
            if self.cookie_authenticate is not None:
                self.principal = await self.cookie_authenticate(self.services, self.ws)
        except Exception as exc:  # e.g. the database is unreachable: the client may retry later
            log.warning("GraphQL WebSocket authentication failed (%s)", type(exc).__name__)
            await self.close(Close.INTERNAL_ERROR, "Internal error")
        return None

    def _expiry(self, credential: str) -> float | None:
        """When an access token stops being valid (None for API keys, which are revoked instead)."""
        if self.principal is None or self.principal.kind != "user":
            return None
        token = credential.strip().partition(" ")[2].strip()
        try:
            claims = self.services.signer.verify(token)
        except InvalidToken:
            return time.time()
        self._session_id = claims.session_id  # watched: the socket closes when the session is revoked
        return float(claims.expires_at)

    async def _serve(self) -> None:
        assert self._nursery is not None
        while True:
            try:
                msg = await self._receive()
            except ProtocolViolation as exc:
                await self.close(exc.code, exc.reason)
                return
            if isinstance(msg, proto.Ping):
                await self.ws.send(proto.PONG)
            elif isinstance(msg, proto.Subscribe):
                if msg.id in self.operations:
                    await self.close(Close.SUBSCRIBER_EXISTS, f"Subscriber for {msg.id} already exists")
                    return
                if len(self.operations) >= self.services.settings.ws_max_operations:
                    await self.ws.send(proto.error_message(msg.id, [TooManyOperations()]))
                    continue
                scope = trio.CancelScope()
                self.operations[msg.id] = scope
                self._nursery.start_soon(self._operation, msg, scope)
            elif isinstance(msg, proto.Complete):
                if msg.id in self.operations:
                    self.operations.pop(msg.id).cancel()
            elif isinstance(msg, proto.ConnectionInit):
                await self.close(Close.TOO_MANY_INIT, "Too many initialisation requests")
                return

    def _context(self) -> ApiContext:
        return ApiContext(db=self.services.db, principal=self.principal, services=self.services,
                          request_headers=dict(self._headers), client_ip=self.ws.remote_addr or "")

    async def _operation(self, msg: proto.Subscribe, scope: trio.CancelScope) -> None:
        """Run one operation: ``next`` per result, then ``complete``; or one ``error``.

        A result shared by many subscribers (``ws_fanout``) is encoded once; its age is recorded in
        the live-latency metrics once it is on this socket.
        """
        metrics = self.services.events.metrics if self.services.events is not None else None
        context = self._context()
        context.extra[ws_fanout.DIRECT_DELIVERY] = ws_fanout.DirectDelivery(msg.id, self._send_update, metrics)
        try:
            with scope:
                stream = await self.schema.stream(msg.query, variable_values=msg.variables,
                                                  context_value=context, operation_name=msg.operation_name)
                async with aclosing(stream):
                    async for result in stream:
                        if not isinstance(result, ExecutionResult):  # incremental delivery is not enabled
                            continue
                        if result.errors and (result.data is None or isinstance(result, PreExecutionError)):
                            # The operation failed as a whole (bad document, refused access, a
                            # subscription that cannot start or stopped with an error): it ends here.
                            await self.ws.send(proto.error_message(msg.id, result.errors))
                            return
                        text, received_at = ws_fanout.next_message(msg.id, result)
                        await self.ws.send(text)
                        if metrics is not None:
                            metrics.update_sent(received_at)
                await self.ws.send(proto.complete_message(msg.id))
        except Exception:
            # A bug or a broken socket: never let it escape into the connection's nursery.
            log.exception("GraphQL WebSocket operation failed")
            await self.close(Close.INTERNAL_ERROR, "Internal error")
        finally:
            if self.operations.get(msg.id) is scope:
                del self.operations[msg.id]

    async def _send_update(self, text: str) -> None:
        """Send an update a subscription resolver delivers directly (``ws_fanout.DirectDelivery``).

        A broken socket closes the connection, which cancels the resolver; the error must not reach
        it, or strawberry would try to report it as a GraphQL error on that very socket.
        """
        try:
            await self.ws.send(text)
        except Exception:
            log.exception("GraphQL WebSocket send failed")
            await self.close(Close.INTERNAL_ERROR, "Internal error")


async def serve_graphql_ws(websocket: Websocket, services: ApiServices, schema: BaseSchema, *,
                           authenticate: Authenticate,
                           cookie_authenticate: CookieAuthenticate | None = None) -> None:
    """Accept a WebSocket that asked for ``graphql-transport-ws`` and serve it until it closes.

    A client that did not offer the subprotocol is accepted and closed with 4406, as graphql-ws does,
    so that it sees a close code rather than a failed handshake.
    """
    if proto.SUBPROTOCOL not in websocket.requested_subprotocols:
        await websocket.accept()
        await websocket.close(Close.SUBPROTOCOL_NOT_ACCEPTABLE, "Subprotocol not acceptable")
        return
    await websocket.accept(subprotocol=proto.SUBPROTOCOL)
    connection = GraphQLWebSocket(websocket, services, schema, authenticate=authenticate,
                                  cookie_authenticate=cookie_authenticate)
    await connection.run()


def graphql_ws_endpoint(services: ApiServices, schema: BaseSchema, *, authenticate: Authenticate,
                        cookie_authenticate: CookieAuthenticate | None = None) -> Callable[[], Awaitable[None]]:
    """The Quart WebSocket view for ``/graphql`` (Quart passes the socket as a context-local)."""

    async def graphql_ws() -> None:
        ws: Websocket = current_websocket._get_current_object()  # type: ignore[attr-defined]
        await serve_graphql_ws(ws, services, schema, authenticate=authenticate,
                               cookie_authenticate=cookie_authenticate)

    return graphql_ws


__all__ = ["GraphQLWebSocket", "TooManyOperations", "graphql_ws_endpoint", "serve_graphql_ws"]
