"""Input checks for the catalog: station ids, names, coordinates, prices, connector counts, passwords.

Pure functions, no I/O: each returns the cleaned value or raises :class:`InvalidInput` with a message
safe to show to the caller (it never echoes a password).
"""

from __future__ import annotations

import math
import re
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

# New stations from the API get the strict form. The OCPP handshake (and the stations table) accept a
# broader alphabet for chargers registered by other means, but cap identities at 48 characters, so
# 48 is the real limit here too.
STATION_ID = re.compile(r"^[A-Z0-9-]{1,48}$")
MAX_CONNECTORS = 10
MAX_PRICE_TYIYN = 10_000_000  # per kWh: 100,000 som, far above any real price; the database agrees
MAX_FEE_TYIYN = 10_000_000
MAX_ESTIMATE_WH = 10_000_000  # 10 MWh: no single session comes close
# OCPP 1.6 security profile 1: the Basic-auth password (AuthorizationKey) is 16 to 40 characters.
PASSWORD_LENGTH = (16, 40)
_COORDINATE_STEP = Decimal("0.000001")  # locations store numeric(9, 6)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class CatalogError(Exception):
    """Base of the catalog's refusals; the message is safe to show to the caller."""


class InvalidInput(CatalogError):
    """An argument is malformed or out of range, or breaks a rule (a tariff of another owner...)."""


class NotFound(CatalogError):
    """The object does not exist, or the caller may not know that it does."""


class NotAllowed(CatalogError):
    """The caller sees the object but may not do this to it (an owner editing an operator tariff)."""


class Conflict(CatalogError):
    """A name or id is taken, or the change would strand something in use."""


def station_id(value: str) -> str:
    """A new station's OCPP identity: 1-48 of A-Z, 0-9 and '-'."""
    if not STATION_ID.match(value):
        raise InvalidInput("A station id is 1 to 48 characters of A-Z, 0-9 and '-'.")
    return value


def text(value: str | None, name: str, *, min_len: int = 0, max_len: int) -> str:
    """A trimmed single-line text of ``min_len``..``max_len`` characters."""
    if value is None:
        raise InvalidInput(f"{name} cannot be null.")
    value = value.strip()
    if _CONTROL.search(value):
        raise InvalidInput(f"{name} cannot contain control characters.")
    if not min_len <= len(value) <= max_len:
        raise InvalidInput(f"{name} must be {min_len} to {max_len} characters.")
    return value


def coordinate(value: float | None, name: str, limit: int) -> Decimal | None:
    """A latitude (limit 90) or longitude (limit 180), rounded to the 6 decimals stored."""
    if value is None:
        return None
    if not math.isfinite(value) or not -limit <= value <= limit:
        raise InvalidInput(f"{name} must be between -{limit} and {limit}.")
    return Decimal(repr(value)).quantize(_COORDINATE_STEP)


def coordinates_pair(latitude: Decimal | None, longitude: Decimal | None) -> None:
    """A location has both coordinates or neither (a point needs two)."""
    if (latitude is None) != (longitude is None):
        raise InvalidInput("latitude and longitude go together: give both or neither.")


def connector_count(value: int | None) -> int:
    """Connectors per station: 1 to 10."""
    if value is None or not 1 <= value <= MAX_CONNECTORS:
        raise InvalidInput(f"connectorCount must be between 1 and {MAX_CONNECTORS}.")
    return value


def price(value: int | None) -> int:
    """Tyiyn per kWh: 0 to 10,000,000."""
    if value is None or not 0 <= value <= MAX_PRICE_TYIYN:
        raise InvalidInput(f"pricePerKwhTyiyn must be between 0 and {MAX_PRICE_TYIYN}.")
    return value


def fee(value: int | None) -> int:
    """Tyiyn per session: 0 to 10,000,000."""
    if value is None or not 0 <= value <= MAX_FEE_TYIYN:
        raise InvalidInput(f"sessionFeeTyiyn must be between 0 and {MAX_FEE_TYIYN}.")
    return value


def energy(value: int) -> int:
    """Wh for a cost estimate: 0 to 10,000,000."""
    if not 0 <= value <= MAX_ESTIMATE_WH:
        raise InvalidInput(f"energyWh must be between 0 and {MAX_ESTIMATE_WH}.")
    return value


def password(value: str) -> str:
    """A charger's Basic-auth password: 16 to 40 printable ASCII characters."""
    low, high = PASSWORD_LENGTH
    if not low <= len(value) <= high or not all(" " <= ch <= "~" for ch in value):
        raise InvalidInput(f"A station password is {low} to {high} printable ASCII characters.")
    return value


def object_id(value: str | None, name: str) -> str | None:
    """A location, tariff or user id (a UUID), normalised; None stays None."""
    if value is None:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidInput(f"{name} is not a valid id.") from None


def changes(values: dict[str, Any], rules: dict[str, Callable[[Any], Any]]) -> dict[str, Any]:
    """Check each given field with its rule (a field without a rule is a programming error)."""
    return {name: rules[name](value) for name, value in values.items()}


# The rules of each object's fields (keys are column names).
LOCATION_FIELDS: dict[str, Callable[[Any], Any]] = {
    "name": lambda v: text(v, "name", min_len=1, max_len=200),
    "address": lambda v: text(v, "address", max_len=500),
    "city": lambda v: text(v, "city", max_len=100),
    "latitude": lambda v: coordinate(v, "latitude", 90),
    "longitude": lambda v: coordinate(v, "longitude", 180),
    "owner_id": lambda v: object_id(v, "ownerId"),
}
STATION_FIELDS: dict[str, Callable[[Any], Any]] = {
    "location_id": lambda v: object_id(v, "locationId"),
    "connector_count": connector_count,
    "tariff_id": lambda v: object_id(v, "tariffId"),
}
TARIFF_FIELDS: dict[str, Callable[[Any], Any]] = {
    "name": lambda v: text(v, "name", min_len=1, max_len=100),
    "price_per_kwh_tyiyn": price,
    "session_fee_tyiyn": fee,
    "owner_id": lambda v: object_id(v, "ownerId"),
}
