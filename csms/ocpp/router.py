"""The routing table: each charger-initiated OCPP 1.6 action and its handler.

Routing is data, not a decorator registry: this table is the whole list. Payloads are validated
against the action's JSON schema by the codec before a handler sees them.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING

from csms.ocpp.handlers import core, transactions

if TYPE_CHECKING:
    from csms.ocpp.handlers.context import Handler

ROUTES_16: MappingProxyType[str, Handler] = MappingProxyType({
    "BootNotification": core.boot_notification,
    "Heartbeat": core.heartbeat,
    "StatusNotification": core.status_notification,
    "Authorize": core.authorize,
    "DataTransfer": core.data_transfer,
    "DiagnosticsStatusNotification": core.diagnostics_status_notification,
    "FirmwareStatusNotification": core.firmware_status_notification,
    "StartTransaction": transactions.start_transaction,
    "StopTransaction": transactions.stop_transaction,
    "MeterValues": transactions.meter_values,
})
