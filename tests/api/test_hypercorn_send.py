"""hypercorn's sends written straight to the socket (csms.api.hypercorn_send): nothing lost or reordered."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import pytest
from hypercorn.trio.tcp_server import TCPServer

from csms.api import graphiql, hypercorn_send

if TYPE_CHECKING:
    from pathlib import Path

    import httpx


@pytest.fixture
def big_asset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> bytes:
    """GraphiQL assets, one of them far larger than a socket's send buffer."""
    for name in graphiql.ASSETS:
        (tmp_path / name).write_text(f"/* {name} */\n")
    # Distinct lines, so that a lost, repeated or reordered chunk changes the digest.
    body = b"".join(b"/* line %08d */\n" % i for i in range(400_000))  # 7.2 MB
    (tmp_path / next(iter(graphiql.ASSETS))).write_bytes(body)
    monkeypatch.setenv("CSMS_GRAPHIQL_DIR", str(tmp_path))
    return body


async def test_a_body_larger_than_the_socket_buffer_arrives_whole(client: httpx.AsyncClient, big_asset: bytes) -> None:
    assert TCPServer.protocol_send is hypercorn_send._protocol_send  # serve_api installed it
    for _ in range(3):  # the connection stays usable after a send that did not fit at once
        response = await client.get(f"{graphiql.STATIC_PREFIX}{next(iter(graphiql.ASSETS))}")
        assert response.status_code == 200
        assert len(response.content) == len(big_asset)
        assert hashlib.sha256(response.content).digest() == hashlib.sha256(big_asset).digest()


def test_install_is_idempotent() -> None:
    hypercorn_send.install()
    hypercorn_send.install()
    assert TCPServer.protocol_send is hypercorn_send._protocol_send
