"""Handlers for the charger-initiated 1.6 actions that are not about transactions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from csms.services.clock import charger_time, iso

if TYPE_CHECKING:
    from csms.ocpp.handlers.context import CallContext, Payload


async def boot_notification(ctx: CallContext, payload: Payload) -> Payload:
    """Persist the charger's identity; Accepted/Pending/Rejected per its registration status."""
    status = await ctx.deps.stations.boot(ctx.station_id, payload)
    # A Pending or Rejected charger retries its boot after `interval` seconds.
    interval = ctx.deps.heartbeat_interval_s if status == "Accepted" else 60
    return {"status": status, "currentTime": iso(ctx.received_at), "interval": interval}


async def heartbeat(ctx: CallContext, payload: Payload) -> Payload:
    """Answer with the time (the connection notes every message for last-seen, this one included)."""
    return {"currentTime": iso(ctx.received_at)}


async def status_notification(ctx: CallContext, payload: Payload) -> Payload:
    """Record the connector's status and its history."""
    status_at = None
    if "timestamp" in payload:
        _, status_at, _ = charger_time(payload["timestamp"], ctx.received_at)
    await ctx.deps.stations.status(ctx.station_id, payload, status_at)
    return {}


async def authorize(ctx: CallContext, payload: Payload) -> Payload:
    """Accepted / Blocked / Expired / Invalid, matching id tags case-insensitively."""
    info = await ctx.deps.stations.authorize(payload["idTag"])
    return {"idTagInfo": info.to_ocpp()}


async def data_transfer(ctx: CallContext, payload: Payload) -> Payload:
    """Hand the message to a registered vendor handler, or answer UnknownVendorId."""
    vendor = ctx.deps.vendors.get(payload["vendorId"])
    if vendor is None:
        return {"status": "UnknownVendorId"}
    status, data = await vendor(ctx.station_id, payload.get("messageId"), payload.get("data"))
    return {"status": status} if data is None else {"status": status, "data": data}


async def diagnostics_status_notification(ctx: CallContext, payload: Payload) -> Payload:
    """Record the progress of a diagnostics upload."""
    await ctx.deps.stations.set_field(ctx.station_id, "diagnostics_status", payload["status"])
    return {}


async def firmware_status_notification(ctx: CallContext, payload: Payload) -> Payload:
    """Record the progress of a firmware update."""
    await ctx.deps.stations.set_field(ctx.station_id, "firmware_status", payload["status"])
    return {}
