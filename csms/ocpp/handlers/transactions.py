"""Handlers for StartTransaction, StopTransaction and MeterValues.

Each is answered only after its rows are committed (group commit), and each is idempotent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from csms.ocpp.handlers.context import CallContext, Payload


async def start_transaction(ctx: CallContext, payload: Payload) -> Payload:
    """Re-verify the id tag and allocate (or find, for a duplicate) the transaction id."""
    result = await ctx.deps.transactions.start(ctx.station_id, payload, ctx.received_at)
    return {"transactionId": result.transaction_id, "idTagInfo": result.id_tag_info.to_ocpp()}


async def stop_transaction(ctx: CallContext, payload: Payload) -> Payload:
    """Close the transaction; repeated or unknown stops are confirmed and recorded as anomalies."""
    info = await ctx.deps.transactions.stop(ctx.station_id, payload, ctx.received_at)
    return {} if info is None else {"idTagInfo": info.to_ocpp()}


async def meter_values(ctx: CallContext, payload: Payload) -> Payload:
    """Store every sampled value."""
    await ctx.deps.transactions.meter_values(ctx.station_id, payload, ctx.received_at)
    return {}
