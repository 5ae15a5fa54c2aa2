-- Ledger: a replayed transfer must move no money.
--
-- In 0004 the balances were updated by a BEFORE INSERT trigger. PostgreSQL runs BEFORE INSERT row
-- triggers before INSERT ... ON CONFLICT DO NOTHING decides to skip a row, so writing a transfer id a
-- second time (a retry after a cancelled Database.run that had in fact committed) skipped the row but
-- still added its amount to both accounts. AFTER INSERT row triggers run only for rows really
-- inserted, so the work is split:
--   ledger_resolve_transfer (BEFORE): a post or void takes its hold's accounts (and a void its amount),
--                                      and a post may not exceed its hold;
--   ledger_apply_transfer   (AFTER):  updates both accounts' totals under row locks taken in id order
--                                      (FOR NO KEY UPDATE, see below);
--                                      the no_overdraft CHECK is evaluated on the updated wallet row.

CREATE FUNCTION ledger_resolve_transfer() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    p ledger_transfers%ROWTYPE;
BEGIN
    IF NEW.kind IN ('post', 'void') THEN
        SELECT * INTO p FROM ledger_transfers WHERE id = NEW.pending_id;
        IF NOT FOUND OR p.kind <> 'pending' THEN
            RAISE EXCEPTION 'ledger: % is not a pending transfer', NEW.pending_id
                USING ERRCODE = 'foreign_key_violation';
        END IF;
        -- A resolution always moves between the hold's own accounts.
        NEW.debit_account_id := p.debit_account_id;
        NEW.credit_account_id := p.credit_account_id;
        IF NEW.kind = 'void' THEN
            NEW.amount := p.amount;
        ELSIF NEW.amount > p.amount THEN
            RAISE EXCEPTION 'ledger: post of % exceeds the hold of %', NEW.amount, p.amount
                USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_post_exceeds_hold';
        END IF;
    END IF;
    RETURN NEW;
END $$;

CREATE OR REPLACE FUNCTION ledger_apply_transfer() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    held bigint;
    d_pending bigint := 0; d_posted bigint := 0;
BEGIN
    IF NEW.kind IN ('post', 'void') THEN
        SELECT amount INTO STRICT held FROM ledger_transfers WHERE id = NEW.pending_id;
        d_pending := -held;
        IF NEW.kind = 'post' THEN
            d_posted := NEW.amount;
        END IF;
    ELSIF NEW.kind = 'pending' THEN
        d_pending := NEW.amount;
    ELSE
        d_posted := NEW.amount;
    END IF;
    -- Lock the two accounts in id order so that concurrent transfers never deadlock. NO KEY UPDATE,
    -- not UPDATE: by now the foreign-key checks (which fire before this trigger) hold KEY SHARE locks
    -- on both accounts, and FOR UPDATE would wait on every other transfer's KEY SHARE (a deadlock).
    -- NO KEY UPDATE still excludes every other balance update; it is what the UPDATEs take anyway.
    PERFORM 1 FROM ledger_accounts WHERE id IN (NEW.debit_account_id, NEW.credit_account_id)
        ORDER BY id FOR NO KEY UPDATE;
    UPDATE ledger_accounts SET debits_pending = debits_pending + d_pending,
                               debits_posted = debits_posted + d_posted
        WHERE id = NEW.debit_account_id;
    UPDATE ledger_accounts SET credits_pending = credits_pending + d_pending,
                               credits_posted = credits_posted + d_posted
        WHERE id = NEW.credit_account_id;
    RETURN NULL;
END $$;

DROP TRIGGER ledger_transfers_apply ON ledger_transfers;
CREATE TRIGGER ledger_transfers_resolve BEFORE INSERT ON ledger_transfers
    FOR EACH ROW EXECUTE FUNCTION ledger_resolve_transfer();
CREATE TRIGGER ledger_transfers_apply AFTER INSERT ON ledger_transfers
    FOR EACH ROW EXECUTE FUNCTION ledger_apply_transfer();

-- Wallet history pages through an account's transfers newest first, by (created_at, id).
CREATE INDEX ledger_transfers_debit_page ON ledger_transfers (debit_account_id, created_at DESC, id DESC);
CREATE INDEX ledger_transfers_credit_page ON ledger_transfers (credit_account_id, created_at DESC, id DESC);
DROP INDEX ledger_transfers_debit;
DROP INDEX ledger_transfers_credit;
