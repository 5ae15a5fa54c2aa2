"""The opening handshake of an OCPP-J WebSocket: read the HTTP upgrade, let the caller decide, answer.

Rejections (404, 401, 400) are plain HTTP responses sent before the upgrade; an accepted request becomes
a :class:`~csms.ocpp.websocket.WebSocket`. The protocol work is the ``websockets`` sans-I/O
``ServerProtocol``'s; this module only moves bytes and asks ``decide``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio
from websockets.headers import parse_subprotocol
from websockets.http11 import Request
from websockets.protocol import Protocol
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

from csms.ocpp.websocket import RECEIVE_BYTES, WebSocket

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from websockets.datastructures import Headers

__all__ = ["Accept", "HandshakeRequest", "Reject", "accept_websocket"]


@dataclass
class HandshakeRequest:
    """What :func:`accept_websocket`'s ``decide`` callback sees of an upgrade request.

    ``path`` is the request target with its query, still percent-encoded (``/ocpp/CP%201``); ``subprotocols``
    lists the offered ``Sec-WebSocket-Protocol`` values in the client's order of preference.
    """

    path: str
    headers: Headers
    subprotocols: list[str]


@dataclass
class Accept:
    """Complete the handshake with one of the offered subprotocols.

    ``None`` answers without the header, as OCPP-J asks when no offered version is supported (the caller then
    closes). A value the client did not offer is treated as ``None``: the client would fail on it.
    """

    subprotocol: str | None


@dataclass
class Reject:
    """Refuse the upgrade with a plain HTTP response, e.g. 404, 400, or 401 with ``WWW-Authenticate``."""

    status: int
    body: str
    headers: list[tuple[str, str]] = field(default_factory=list)


async def accept_websocket(
    stream: trio.abc.Stream,
    decide: Callable[[HandshakeRequest], Awaitable[Accept | Reject]],
    *,
    max_frame_bytes: int = 65536,
    handshake_timeout_s: float = 10,
    close_timeout_s: float = 5,
) -> WebSocket | None:
    """Run the opening handshake on a freshly accepted stream.

    Args:
        stream: the connection; it belongs to the returned WebSocket, or is closed when None is returned.
        decide: looks at the request (path, credentials, subprotocols) and accepts or rejects it. It runs
            only for well-formed upgrade requests, and counts against ``handshake_timeout_s``.
        max_frame_bytes: largest message accepted, fragments included; a bigger one closes with 1009.
        handshake_timeout_s: bound on the whole handshake, so that silent clients cannot pile up.
        close_timeout_s: bound on :meth:`WebSocket.close`.

    Returns:
        The open WebSocket, or None after a failed, rejected or timed-out handshake (the stream is closed).

    Raises:
        Exception: whatever ``decide`` raises; the stream is closed first.
    """
    # extensions=None: no permessage-deflate. The default select_subprotocol with no available
    # subprotocols picks none, so the handshake never fails on them; the header is set from `decide`.
    protocol = ServerProtocol(max_size=max_frame_bytes)
    ws: WebSocket | None = None
    try:
        with trio.move_on_after(handshake_timeout_s):
            ws = await _handshake(stream, protocol, decide, close_timeout_s)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        ws = None
    finally:
        if ws is None:
            await trio.aclose_forcefully(stream)
    return ws


async def _handshake(
    stream: trio.abc.Stream,
    protocol: ServerProtocol,
    decide: Callable[[HandshakeRequest], Awaitable[Accept | Reject]],
    close_timeout_s: float,
) -> WebSocket | None:
    """Read the request, answer it, and return the WebSocket if it was accepted (see accept_websocket)."""
    while True:
        data = await stream.receive_some(RECEIVE_BYTES)
        if not data:
            return None
        protocol.receive_data(data)
        events = protocol.events_received()
        if events:
            break
        if protocol.handshake_exc is not None:
            # Not HTTP (the protocol sends nothing: we send a 400), or a line too long (it queued a 414/431).
            response = protocol.reject(400, "Failed to open a WebSocket connection: invalid HTTP request.\n")
            await stream.send_all(b"".join(protocol.data_to_send()) or response.serialize())
            return None
    request = events[0]
    assert isinstance(request, Request)
    response = protocol.accept(request)
    if response.status_code == 101:
        headers = request.headers.get_all("Sec-WebSocket-Protocol")
        offered = [str(name) for value in headers for name in parse_subprotocol(value)]
        decision = await decide(HandshakeRequest(request.path, request.headers, offered))
        if isinstance(decision, Reject):
            response = protocol.reject(decision.status, decision.body)
            for name, value in decision.headers:
                response.headers[name] = value
        elif decision.subprotocol is not None and decision.subprotocol in offered:
            response.headers["Sec-WebSocket-Protocol"] = decision.subprotocol
            protocol.subprotocol = Subprotocol(decision.subprotocol)
    protocol.send_response(response)
    await stream.send_all(b"".join(protocol.data_to_send()))
    if response.status_code != 101:
        return None
    if len(events) == 1 and not protocol.reader.buffer:
        # ServerProtocol.parse keeps the handshake Request (all its headers) alive in its generator
        # frame for the connection's whole life, about 2 KB per charger. With nothing buffered the old
        # parser is between frames, so a fresh frame parser takes over without losing a byte.
        protocol.parser = Protocol.parse(protocol)
        next(protocol.parser)
    # Frames a client sent right behind its request were parsed along with it.
    return WebSocket(stream, protocol, events[1:], close_timeout_s=close_timeout_s)
