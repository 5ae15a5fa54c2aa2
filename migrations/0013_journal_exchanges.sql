-- A CALL from a charger and csms's answer to it are journaled as one row: the frame as received in
-- payload, the answer as sent in answer_payload. Every frame is still kept verbatim, at half the rows
-- (and half the index entries) for the database to write. Rows written before this keep the answer
-- as a row of its own ('out', message type 3 or 4), as do the CALLs csms sends and their answers.
ALTER TABLE ocpp_journal
    ADD COLUMN answer_type     smallint CHECK (answer_type IN (3, 4)),
    ADD COLUMN answer_payload  text,
    ADD COLUMN answered_at     timestamptz,
    ADD CONSTRAINT ocpp_journal_answer_whole
        CHECK ((answer_type IS NULL) = (answer_payload IS NULL) AND (answer_type IS NULL) = (answered_at IS NULL));
