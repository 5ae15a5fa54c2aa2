"""HMAC-SHA256 signatures for the payment provider: requests we send and webhooks we receive.

Every comparison of a signature uses :func:`hmac.compare_digest`, so how long a check takes says
nothing about how much of a forged signature was right.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

SIGNATURE_VERSION = "v1"


def sign(secret: str, message: bytes) -> str:
    """The hex HMAC-SHA256 of ``message`` under ``secret``."""
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def webhook_message(timestamp: str, body: bytes) -> bytes:
    """What a webhook signature covers: ``timestamp.body`` (the raw body, byte for byte)."""
    return timestamp.encode() + b"." + body


def request_message(timestamp: str, method: str, path: str, body: bytes) -> bytes:
    """What a signed API request covers: ``timestamp.METHOD.path.body``."""
    return f"{timestamp}.{method.upper()}.{path}.".encode() + body


def signature_header(secret: str, message: bytes) -> str:
    """A signature header value: ``v1=<hex>``."""
    return f"{SIGNATURE_VERSION}={sign(secret, message)}"


def matches(header: str, secrets: Iterable[str], message: bytes) -> bool:
    """True if any ``v1=`` signature in ``header`` (comma-separated) was made with any of ``secrets``.

    Every candidate pair is compared, without stopping early, in constant time each.
    """
    offered = [part.strip().partition("=") for part in header.split(",")]
    candidates = [value.encode() for version, sep, value in offered if sep and version == SIGNATURE_VERSION]
    found = False
    for secret in secrets:
        expected = sign(secret, message).encode()
        for candidate in candidates:
            found |= hmac.compare_digest(expected, candidate)
    return found
