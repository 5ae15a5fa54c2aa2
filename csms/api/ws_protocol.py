"""The ``graphql-transport-ws`` protocol's messages: parsing and building them, without any I/O.

The protocol is graphql-ws's (https://github.com/enisdenjo/graphql-ws/blob/master/PROTOCOL.md); the
Trio connection that speaks it is :mod:`csms.api.ws`. A message the protocol does not allow raises
:class:`ProtocolViolation` with the close code the server must use.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from strawberry.types import ExecutionResult

    from graphql import GraphQLError

SUBPROTOCOL = "graphql-transport-ws"
# Same bound as an HTTP request body: GraphQL documents are small.
MAX_MESSAGE_CHARS = 1 << 20
# RFC 6455: a close frame's reason is at most 123 bytes.
MAX_REASON_BYTES = 123


class Close(enum.IntEnum):
    """WebSocket close codes the server uses (the 44xx ones are graphql-ws's)."""

    GOING_AWAY = 1001  # the server is shutting down; reconnect (possibly to another node)
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    BAD_REQUEST = 4400  # a malformed or unexpected message
    UNAUTHORIZED = 4401  # Subscribe before ConnectionAck
    FORBIDDEN = 4403  # the credential in ConnectionInit is invalid, or it expired
    SUBPROTOCOL_NOT_ACCEPTABLE = 4406
    INIT_TIMEOUT = 4408  # no ConnectionInit in time
    SUBSCRIBER_EXISTS = 4409  # a Subscribe reused the id of a running operation
    TOO_MANY_INIT = 4429  # a second ConnectionInit


class ProtocolViolation(Exception):
    """The client broke the protocol; close the socket with :attr:`code` and :attr:`reason`."""

    def __init__(self, code: Close, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ConnectionInit:
    """``connection_init``: the client's first message, with its (optional) credentials."""

    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Ping:
    """``ping``: answered with ``pong`` at any time."""


@dataclass(frozen=True, slots=True)
class Pong:
    """``pong``: the answer to a server ping, or a unidirectional heartbeat; ignored."""


@dataclass(frozen=True, slots=True)
class Subscribe:
    """``subscribe``: start operation ``id`` (a subscription, query or mutation)."""

    id: str
    query: str
    variables: dict[str, Any] | None
    operation_name: str | None
    extensions: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Complete:
    """``complete``: the client stops operation ``id``."""

    id: str


Message = ConnectionInit | Ping | Pong | Subscribe | Complete


def _bad(reason: str) -> ProtocolViolation:
    return ProtocolViolation(Close.BAD_REQUEST, reason)


def _optional_object(msg: dict[str, Any], name: str) -> dict[str, Any] | None:
    value = msg.get(name)
    if value is not None and not isinstance(value, dict):
        raise _bad(f"Invalid message: '{name}' must be an object")
    return value


def _id(msg: dict[str, Any]) -> str:
    op_id = msg.get("id")
    if not isinstance(op_id, str) or not op_id:
        raise _bad("Invalid message: 'id' must be a non-empty string")
    return op_id


def parse(raw: str | bytes) -> Message:
    """Decode one client message.

    Raises:
        ProtocolViolation: not a text frame, too large, not JSON, or not a message the protocol knows
            (close code 4400, or 1009 for size).
    """
    if not isinstance(raw, str):
        raise _bad("Invalid message: binary frames are not supported")
    if len(raw) > MAX_MESSAGE_CHARS:
        raise ProtocolViolation(Close.MESSAGE_TOO_BIG, "Message too big")
    try:
        msg = json.loads(raw)
    except ValueError:
        raise _bad("Invalid message: not JSON") from None
    if not isinstance(msg, dict):
        raise _bad("Invalid message: not an object")
    kind = msg.get("type")
    if kind == "connection_init":
        return ConnectionInit(_optional_object(msg, "payload") or {})
    if kind == "ping":
        _optional_object(msg, "payload")
        return Ping()
    if kind == "pong":
        _optional_object(msg, "payload")
        return Pong()
    if kind == "subscribe":
        op_id = _id(msg)
        payload = msg.get("payload")
        if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
            raise _bad("Invalid message: 'payload.query' must be a string")
        name = payload.get("operationName")
        if name is not None and not isinstance(name, str):
            raise _bad("Invalid message: 'payload.operationName' must be a string")
        return Subscribe(op_id, payload["query"], _optional_object(payload, "variables"), name,
                         _optional_object(payload, "extensions"))
    if kind == "complete":
        return Complete(_id(msg))
    if isinstance(kind, str):
        raise _bad(f"Invalid message: unexpected type {kind[:40]!r}")
    raise _bad("Invalid message: 'type' must be a string")


def init_credential(payload: dict[str, Any]) -> str | None:
    """The ``Authorization`` value carried by a ``connection_init`` payload, or None.

    Accepted forms: ``{"Authorization": "Bearer <token>"}`` (any case of the key, as graphql-ws
    clients send headers) and ``{"token": "<token>"}``.

    Raises:
        ProtocolViolation: a credential that is not a string.
    """
    for key, value in payload.items():
        if key.lower() == "authorization":
            if not isinstance(value, str):
                raise _bad("Invalid message: 'Authorization' must be a string")
            return value
    token = payload.get("token")
    if token is None:
        return None
    if not isinstance(token, str):
        raise _bad("Invalid message: 'token' must be a string")
    return f"Bearer {token}"


def reason(text: str) -> str:
    """A close reason cut to the 123 bytes a close frame can carry."""
    data = text.encode()
    if len(data) <= MAX_REASON_BYTES:
        return text
    return data[:MAX_REASON_BYTES].decode(errors="ignore")


def _dump(msg: dict[str, Any]) -> str:
    return json.dumps(msg, separators=(",", ":"))


CONNECTION_ACK = _dump({"type": "connection_ack"})
PONG = _dump({"type": "pong"})


def next_message(op_id: str, result: ExecutionResult) -> str:
    """``next``: one execution result of operation ``op_id``."""
    payload: dict[str, Any] = {"data": result.data}
    if result.errors:
        payload["errors"] = [e.formatted for e in result.errors]
    if result.extensions:
        payload["extensions"] = result.extensions
    return _dump({"id": op_id, "type": "next", "payload": payload})


def next_message_with_payload(op_id: str, payload_json: str) -> str:
    """``next`` around an already encoded payload (one encoding shared by many subscribers)."""
    return f'{{"id":{json.dumps(op_id)},"type":"next","payload":{payload_json}}}'


def error_message(op_id: str, errors: list[GraphQLError]) -> str:
    """``error``: operation ``op_id`` failed and ends (no ``complete`` follows)."""
    return _dump({"id": op_id, "type": "error", "payload": [e.formatted for e in errors]})


def complete_message(op_id: str) -> str:
    """``complete``: operation ``op_id`` has no more results."""
    return _dump({"id": op_id, "type": "complete"})
