-- Charging sessions: what live metering and settlement need beyond 0004.
--   meter_sampled_at  the charger's time of the newest sample applied to the live values, so an
--                     offline replay of older MeterValues never overwrites newer power/SoC;
--   settled_by        who settled the hold: 'stop_transaction', 'meter_values' (the charger never
--                     sent StopTransaction: the reaper billed the last durable reading) or 'failed'.
-- Chargers echo the idTag we send, but OCPP compares id tags case-insensitively: StartTransaction
-- finds its session through this index.
ALTER TABLE charging_sessions ADD COLUMN meter_sampled_at timestamptz;
ALTER TABLE charging_sessions ADD COLUMN settled_by text
    CHECK (settled_by IN ('stop_transaction', 'meter_values', 'failed'));
CREATE UNIQUE INDEX charging_sessions_id_tag_upper ON charging_sessions (upper(id_tag));
