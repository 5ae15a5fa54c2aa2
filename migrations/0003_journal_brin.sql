-- The journal is append-only and time-ordered: a BRIN index serves retention and time-range reads at a
-- fraction of a B-tree's cost on every insert.
DROP INDEX ocpp_journal_time;
CREATE INDEX ocpp_journal_time ON ocpp_journal USING brin (received_at);
