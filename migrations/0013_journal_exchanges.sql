-- A CALL from a charger and csms's answer to it are journaled as one row: the frame as received in
-- payload, the answer as sent in answer_payload. Every frame is still kept verbatim, at half the rows
-- (and half the index entries) for the database to write. Rows written before this keep the answer
-- as a row of its own ('out', message type 3 or 4), as do the CALLs csms sends and their answers.
--
-- The columns are added without a default and the checks NOT VALID, so this takes no time however
-- long the journal is: a validated check would scan every row under an exclusive lock (2.5 s per
-- three million rows, measured), stopping every node's journal writes meanwhile. The checks hold for
-- new rows; old rows have none of the new columns set, which satisfies them anyway.
ALTER TABLE ocpp_journal
    ADD COLUMN answer_type     smallint,
    ADD COLUMN answer_payload  text,
    ADD COLUMN answered_at     timestamptz;
ALTER TABLE ocpp_journal
    ADD CONSTRAINT ocpp_journal_answer_type CHECK (answer_type IN (3, 4)) NOT VALID,
    ADD CONSTRAINT ocpp_journal_answer_whole
        CHECK ((answer_type IS NULL) = (answer_payload IS NULL) AND (answer_type IS NULL) = (answered_at IS NULL))
        NOT VALID;
