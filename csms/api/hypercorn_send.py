"""Let hypercorn write to a plain TCP socket without a turn of the Trio scheduler when the socket takes it.

hypercorn's Trio server sends every chunk (an HTTP body part, a WebSocket message) through
``TCPServer.protocol_send``: it takes the connection's send lock (a scheduler turn, even uncontended)
and calls ``send_all`` (another turn, which Trio takes after the data is written). A live
subscription update therefore reached its socket two turns after its task woke, and when chargers
keep the event loop busy a turn lasts milliseconds: issue #3's benchmark measured the fan-out as
about half of the ~70-100 ms from a MeterValues to its subscribers under the S1 flood, with three
scheduler steps per update sent.

:func:`install` wraps that method: when nobody holds the send lock and the stream is a plain socket,
the chunk is written at once with a non-blocking write, exactly as csms's OCPP WebSocket does. Whatever
the socket does not take right away is sent the usual way, under the lock, before anything else can
be sent, so the bytes stay in order. TLS streams and contended sends keep hypercorn's own path.

hypercorn is pinned in ``pyproject.toml`` because this reaches into its internals; :func:`install`
fails loudly if they have changed. The API tests (HTTP, GraphiQL assets, subscriptions) run on it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import trio
from hypercorn.events import Closed, RawData
from hypercorn.trio.tcp_server import TCPServer

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from hypercorn.events import Event

_original: Callable[[TCPServer, Event], Awaitable[None]] | None = None


async def _protocol_send(self: TCPServer, event: Event) -> None:
    assert _original is not None
    stream = self.stream
    if not isinstance(event, RawData) or not isinstance(stream, trio.SocketStream) or self.send_lock.locked():
        await _original(self, event)
        return
    data = event.data
    try:
        written = os.write(stream.socket.fileno(), data)
    except BlockingIOError:
        written = 0
    except OSError:  # reset by the peer, closed meanwhile, ...: what hypercorn does when send_all breaks
        await self.protocol.handle(Closed())
        return
    if written == len(data):
        return
    # The rest, under the lock taken now (it is free: nothing ran since the check), so that no other
    # send can come in between; shielded like hypercorn's own send, so it cannot stop halfway.
    self.send_lock.acquire_nowait()
    try:
        with trio.CancelScope(shield=True):
            await stream.send_all(data[written:])
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        await self.protocol.handle(Closed())
    finally:
        self.send_lock.release()


def install() -> None:
    """Wrap ``TCPServer.protocol_send`` (idempotent).

    Raises:
        RuntimeError: hypercorn no longer looks as this module expects.
    """
    global _original  # the one patch of the process, kept to call through
    current = TCPServer.protocol_send
    if current is _protocol_send:
        return
    if not callable(current) or "send_lock" not in TCPServer.__init__.__code__.co_names:
        raise RuntimeError("hypercorn's TCPServer changed: check csms.api.hypercorn_send against it")
    _original = current
    TCPServer.protocol_send = _protocol_send  # type: ignore[method-assign]
