"""The ``Idempotency-Key`` request header, read the same way by every money-moving mutation.

``topUp``, ``refundTopUp``, ``startCharging``, ``stopCharging`` and ``adjustBalance`` accept it. The
services store the key with the first result (``csms.services.idempotency``, table
``idempotency_keys``), scoped to the caller and the operation, for 24 hours: a retry with the same key
and input gets the first result, and the same key with other input is refused with
``IDEMPOTENCY_KEY_REUSED`` (``IDEMPOTENCY_KEY_IN_PROGRESS`` while the first request is running).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from csms.api.errors import BadUserInput
from csms.services import idempotency

if TYPE_CHECKING:
    from csms.api.context import ApiContext

IDEMPOTENCY_HEADER = "idempotency-key"


def idempotency_key(context: ApiContext) -> str | None:
    """The request's Idempotency-Key, or None without one.

    Raises:
        BadUserInput: the key is not 1-200 printable ASCII characters.
    """
    key = context.request_headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    if not idempotency.valid_key(key):
        raise BadUserInput("Idempotency-Key must be 1-200 printable ASCII characters.")
    return key
