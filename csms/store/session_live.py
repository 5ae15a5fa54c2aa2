"""SQL for live session updates written without a row lock: one compare-and-set statement per batch.

The usual write of a MeterValues for a charging session (``csms.services.session_billing.apply_reading``)
locks the session row, reads it, updates it and publishes its event: several round trips in a worker
thread. Between two MeterValues a session normally changes only through those same MeterValues, so
csms keeps the row it last wrote in memory, decides the change in Python from it
(``session_billing.plan_reading``, where the cost formula lives), and writes the change here, in
one autocommit statement for a whole batch of sessions, together with their meter samples:

- the samples are inserted exactly as :func:`csms.store.transactions.insert_meter_samples` does;
- each session is updated only if it is still in the state the change was planned from (status,
  energy, last sample time, transaction): a compare-and-set. The ``UPDATE`` takes the row lock like
  any writer, and PostgreSQL re-checks the condition on the newest row version if another writer
  held the lock, so a change made meanwhile by the API or the reaper is never overwritten;
- each updated session publishes its change event (:func:`csms.store.session_events.event_json`),
  delivered at commit like every other event.

A session whose condition failed is simply not in the result: the caller then writes that reading
the usual way, under the lock (its samples are already stored, and storing them again is skipped).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from csms.store.events import CHANNEL
from csms.store.session_events import event_json
from csms.store.transactions import SAMPLES_CTES, SAMPLES_INSERT, meter_samples_params, native_samples_sql

if TYPE_CHECKING:
    from datetime import datetime, timedelta

    from csms.store.sessions import SessionRow
    from csms.store.transactions import MeterSamples

_STATEMENT = f"""WITH {native_samples_sql(SAMPLES_CTES)},
stored AS ({native_samples_sql(SAMPLES_INSERT)}),
x AS (
    SELECT * FROM jsonb_to_recordset($4::jsonb) AS x(
        i integer, id uuid, tx integer, status text, energy bigint, sampled timestamptz,
        new_energy bigint, new_last bigint, new_cost bigint, new_sampled timestamptz, power bigint,
        soc integer, received_us bigint)
), s AS (
    UPDATE charging_sessions c SET
        energy_wh = coalesce(x.new_energy, c.energy_wh), meter_last_wh = coalesce(x.new_last, c.meter_last_wh),
        cost_tyiyn = coalesce(x.new_cost, c.cost_tyiyn),
        meter_sampled_at = coalesce(x.new_sampled, c.meter_sampled_at),
        power_w = coalesce(x.power, c.power_w), soc = coalesce(x.soc, c.soc), updated_at = now()
    FROM x
    WHERE c.id = x.id AND c.transaction_id = x.tx AND c.status = x.status AND c.energy_wh = x.energy
      AND c.meter_sampled_at IS NOT DISTINCT FROM x.sampled
    RETURNING c.*, x.i, x.received_us
)
SELECT e.i, e.payload, pg_notify($5, e.payload) FROM (
    SELECT s.i, {event_json("s", "s.received_us")} AS payload FROM s) AS e""".encode()

# The name the statement is prepared under on each connection that runs it.
PREPARED_NAME = b"csms_live_session_update"


@dataclass(frozen=True, slots=True)
class LiveUpdate:
    """One MeterValues of a charging session, to write with :func:`live_update_statement`.

    Attributes:
        samples: the message's meter samples.
        expected: the session row as csms last wrote it (the compare part).
        fields: the live columns to set (``session_billing.ReadingPlan.fields``, never a status change).
        received_us: when csms received the message (epoch µs), carried by the event.
    """

    samples: MeterSamples
    expected: SessionRow
    fields: dict[str, object]
    received_us: int


def live_update_statement(updates: list[LiveUpdate], earliest: datetime,
                          skew: timedelta) -> tuple[bytes, list[bytes | None]]:
    """The statement and text parameters writing ``updates``; each row of its result is
    ``(index in updates, event payload, _)`` for a session that was updated."""
    sessions = [{
        "i": i, "id": u.expected.id, "tx": u.expected.transaction_id, "status": u.expected.status,
        "energy": u.expected.energy_wh, "sampled": u.expected.meter_sampled_at,
        "new_energy": u.fields.get("energy_wh"), "new_last": u.fields.get("meter_last_wh"),
        "new_cost": u.fields.get("cost_tyiyn"), "new_sampled": u.fields.get("meter_sampled_at"),
        "power": u.fields.get("power_w"), "soc": u.fields.get("soc"), "received_us": u.received_us,
    } for i, u in enumerate(updates)]
    return _STATEMENT, [*meter_samples_params([u.samples for u in updates], earliest, skew),
                        orjson.dumps(sessions), CHANNEL.encode()]


__all__ = ["PREPARED_NAME", "LiveUpdate", "live_update_statement"]
