"""What every OCPP handler receives: the calling station, the time, and the services it may use."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from csms.services.metrics import OcppMetrics

if TYPE_CHECKING:
    from datetime import datetime

    from csms.services.stations import StationService
    from csms.services.transactions import TransactionService

# A vendor-specific DataTransfer handler: (station_id, messageId, data) -> (status, data).
VendorHandler = Callable[[str, str | None, str | None], Awaitable[tuple[str, str | None]]]


@dataclass(frozen=True)
class Deps:
    """Services injected into handlers (the router table is data; nothing is looked up globally)."""

    stations: StationService
    transactions: TransactionService
    heartbeat_interval_s: int = 300
    vendors: dict[str, VendorHandler] = field(default_factory=dict)
    metrics: OcppMetrics = field(default_factory=OcppMetrics)


@dataclass(frozen=True, slots=True)
class CallContext:
    """One incoming CALL."""

    station_id: str
    received_at: datetime
    deps: Deps


Payload = dict[str, Any]
Handler = Callable[[CallContext, Payload], Awaitable[Payload]]
