-- Accounts (users and refresh tokens), the double-entry ledger with holds, tariffs and location owners,
-- app-started charging sessions, idempotency keys and the audit log.
-- Money is integer tyiyn (1 som = 100 tyiyn), energy integer Wh, prices tyiyn per kWh, times UTC.

-- Users ---------------------------------------------------------------------------------------------
CREATE TABLE users (
    id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    role                    text NOT NULL DEFAULT 'driver' CHECK (role IN ('driver', 'owner', 'admin')),
    status                  text NOT NULL DEFAULT 'active'
                            CHECK (status IN ('active', 'blocked', 'pending_deletion')),
    phone                   text CHECK (phone ~ '^\+[1-9][0-9]{6,14}$'),          -- E.164
    email                   text CHECK (length(email) <= 254 AND email ~ '^[^@[:space:]]+@[^@[:space:]]+$'),
    name                    text NOT NULL DEFAULT '' CHECK (length(name) <= 200),
    password_hash           text,                                                   -- argon2id
    external_issuer         text,
    external_subject        text,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    deletion_requested_at   timestamptz,
    CHECK (phone IS NOT NULL OR email IS NOT NULL OR external_subject IS NOT NULL),
    CHECK ((external_issuer IS NULL) = (external_subject IS NULL))
);
CREATE UNIQUE INDEX users_phone ON users (phone);
CREATE UNIQUE INDEX users_email ON users (lower(email));
CREATE UNIQUE INDEX users_external ON users (external_issuer, external_subject);

-- Opaque refresh tokens: only the SHA-256 is stored. Each use rotates the token (used_at set,
-- replaced_by names the successor); presenting a used token revokes its whole family.
CREATE TABLE refresh_tokens (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    family_id       uuid NOT NULL,
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_sha256    bytea NOT NULL UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    used_at         timestamptz,
    replaced_by     uuid,
    revoked_at      timestamptz
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);

-- API keys are machine credentials with a role; an owner key acts for one owner user.
ALTER TABLE api_keys DROP CONSTRAINT api_keys_role_check;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_role_check CHECK (role IN ('admin', 'owner'));
ALTER TABLE api_keys ADD COLUMN user_id uuid REFERENCES users (id) ON DELETE CASCADE;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_owner_user CHECK (role <> 'owner' OR user_id IS NOT NULL);

-- Audit log: who did what to what, and why (adjustments, refunds, edits by operators).
CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    actor_kind  text NOT NULL,            -- 'user', 'api_key', 'cli', 'system'
    actor_id    text NOT NULL,
    action      text NOT NULL,
    target      text,
    detail      jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_time ON audit_log (created_at);

-- Ledger ---------------------------------------------------------------------------------------------
-- After TigerBeetle: accounts carry four running totals and change only through transfers (the insert
-- trigger below). Accounts with no_overdraft (driver wallets) can never spend more than they hold:
-- the CHECK is evaluated on the updated row while its row lock is held, so it holds under any
-- concurrency. Σ (credits_posted − debits_posted) over all accounts is 0 by construction.
CREATE TABLE ledger_accounts (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind                text NOT NULL CHECK (kind IN ('wallet', 'owner_revenue', 'operator_revenue',
                                                      'provider_clearing', 'adjustments')),
    user_id             uuid REFERENCES users (id),
    code                text UNIQUE,      -- system accounts: 'adjustments', 'operator_revenue', 'provider_clearing:odengi'
    no_overdraft        boolean NOT NULL,
    debits_pending      bigint NOT NULL DEFAULT 0 CHECK (debits_pending >= 0),
    debits_posted       bigint NOT NULL DEFAULT 0 CHECK (debits_posted >= 0),
    credits_pending     bigint NOT NULL DEFAULT 0 CHECK (credits_pending >= 0),
    credits_posted      bigint NOT NULL DEFAULT 0 CHECK (credits_posted >= 0),
    created_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ledger_accounts_no_overdraft
        CHECK (NOT no_overdraft OR debits_posted + debits_pending <= credits_posted),
    CHECK ((user_id IS NULL) <> (code IS NULL)),
    UNIQUE (kind, user_id)
);

-- Transfers are immutable. kind:
--   single  moves amount now;
--   pending reserves amount (a hold): debits_pending/credits_pending;
--   post    resolves a pending transfer for amount ≤ the hold (the rest returns to the debit account);
--   void    resolves a pending transfer for nothing (amount = the hold, recorded for the audit).
-- A pending transfer is resolved at most once (UNIQUE pending_id).
CREATE TABLE ledger_transfers (
    id                  text PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 200),
    kind                text NOT NULL CHECK (kind IN ('single', 'pending', 'post', 'void')),
    debit_account_id    bigint NOT NULL REFERENCES ledger_accounts (id),
    credit_account_id   bigint NOT NULL REFERENCES ledger_accounts (id),
    amount              bigint NOT NULL CHECK (amount > 0),
    pending_id          text UNIQUE REFERENCES ledger_transfers (id),
    reason              text NOT NULL DEFAULT '',
    metadata            jsonb NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL DEFAULT now(),
    CHECK (debit_account_id <> credit_account_id),
    CHECK ((kind IN ('post', 'void')) = (pending_id IS NOT NULL))
);
CREATE INDEX ledger_transfers_debit ON ledger_transfers (debit_account_id, created_at);
CREATE INDEX ledger_transfers_credit ON ledger_transfers (credit_account_id, created_at);

CREATE FUNCTION ledger_apply_transfer() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    p ledger_transfers%ROWTYPE;
    d_pending bigint := 0; d_posted bigint := 0;
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
            d_pending := -p.amount;
        ELSE
            IF NEW.amount > p.amount THEN
                RAISE EXCEPTION 'ledger: post of % exceeds the hold of %', NEW.amount, p.amount
                    USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_post_exceeds_hold';
            END IF;
            d_pending := -p.amount;
            d_posted := NEW.amount;
        END IF;
    ELSIF NEW.kind = 'pending' THEN
        d_pending := NEW.amount;
    ELSE
        d_posted := NEW.amount;
    END IF;
    -- Lock the two accounts in id order so that concurrent transfers never deadlock.
    PERFORM 1 FROM ledger_accounts WHERE id IN (NEW.debit_account_id, NEW.credit_account_id)
        ORDER BY id FOR UPDATE;
    UPDATE ledger_accounts SET debits_pending = debits_pending + d_pending,
                               debits_posted = debits_posted + d_posted
        WHERE id = NEW.debit_account_id;
    UPDATE ledger_accounts SET credits_pending = credits_pending + d_pending,
                               credits_posted = credits_posted + d_posted
        WHERE id = NEW.credit_account_id;
    RETURN NEW;
END $$;
CREATE TRIGGER ledger_transfers_apply BEFORE INSERT ON ledger_transfers
    FOR EACH ROW EXECUTE FUNCTION ledger_apply_transfer();

CREATE FUNCTION ledger_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger_transfers are immutable';
END $$;
CREATE TRIGGER ledger_transfers_no_change BEFORE UPDATE OR DELETE ON ledger_transfers
    FOR EACH ROW EXECUTE FUNCTION ledger_immutable();
CREATE TRIGGER ledger_transfers_no_truncate BEFORE TRUNCATE ON ledger_transfers
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_immutable();

INSERT INTO ledger_accounts (kind, code, no_overdraft) VALUES
    ('adjustments', 'adjustments', false),
    ('operator_revenue', 'operator_revenue', false);

-- Tariffs and owners ----------------------------------------------------------------------------------
CREATE TABLE tariffs (
    id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_id                uuid REFERENCES users (id),       -- NULL: an operator tariff
    name                    text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    price_per_kwh_tyiyn     bigint NOT NULL CHECK (price_per_kwh_tyiyn BETWEEN 0 AND 10000000),
    session_fee_tyiyn       bigint NOT NULL DEFAULT 0 CHECK (session_fee_tyiyn BETWEEN 0 AND 10000000),
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE locations ADD COLUMN owner_id uuid REFERENCES users (id);
CREATE INDEX locations_owner ON locations (owner_id);
ALTER TABLE stations ADD COLUMN tariff_id uuid REFERENCES tariffs (id);
ALTER TABLE connectors ADD COLUMN tariff_id uuid REFERENCES tariffs (id);   -- overrides the station's

-- Charging sessions started from the app -----------------------------------------------------------
-- requested → accepted → charging → stopping → completed, or failed (DESIGN.md "Charging session").
-- The tariff is copied at start, so later edits never change what a running session costs.
CREATE TABLE charging_sessions (
    id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id                 uuid NOT NULL REFERENCES users (id),
    station_id              text NOT NULL REFERENCES stations (id),
    connector_id            integer NOT NULL CHECK (connector_id BETWEEN 1 AND 10),
    status                  text NOT NULL DEFAULT 'requested'
                            CHECK (status IN ('requested', 'accepted', 'charging', 'stopping', 'completed', 'failed')),
    id_tag                  text NOT NULL UNIQUE CHECK (length(id_tag) BETWEEN 1 AND 20),
    limit_tyiyn             bigint CHECK (limit_tyiyn > 0),
    energy_limit_wh         bigint CHECK (energy_limit_wh > 0),
    tariff_id               uuid REFERENCES tariffs (id),
    price_per_kwh_tyiyn     bigint NOT NULL CHECK (price_per_kwh_tyiyn >= 0),
    session_fee_tyiyn       bigint NOT NULL CHECK (session_fee_tyiyn >= 0),
    hold_tyiyn              bigint NOT NULL CHECK (hold_tyiyn > 0),
    hold_transfer_id        text NOT NULL UNIQUE REFERENCES ledger_transfers (id),
    revenue_account_id      bigint NOT NULL REFERENCES ledger_accounts (id),
    transaction_id          integer UNIQUE REFERENCES transactions (id),
    meter_start_wh          bigint,
    meter_last_wh           bigint,
    energy_wh               bigint NOT NULL DEFAULT 0 CHECK (energy_wh >= 0),
    power_w                 bigint,
    soc                     integer CHECK (soc BETWEEN 0 AND 100),
    cost_tyiyn              bigint NOT NULL DEFAULT 0 CHECK (cost_tyiyn >= 0),
    charged_tyiyn           bigint CHECK (charged_tyiyn >= 0),          -- posted at completion
    stop_reason             text,
    failure_reason          text,
    created_at              timestamptz NOT NULL DEFAULT now(),
    accepted_at             timestamptz,
    started_at              timestamptz,
    stop_requested_at       timestamptz,
    ended_at                timestamptz,
    updated_at              timestamptz NOT NULL DEFAULT now(),
    CHECK (limit_tyiyn IS NOT NULL OR energy_limit_wh IS NOT NULL),
    CHECK (charged_tyiyn IS NULL OR charged_tyiyn <= hold_tyiyn)
);
CREATE UNIQUE INDEX charging_sessions_active_connector ON charging_sessions (station_id, connector_id)
    WHERE status IN ('requested', 'accepted', 'charging', 'stopping');
CREATE INDEX charging_sessions_user ON charging_sessions (user_id, created_at DESC, id DESC);
CREATE INDEX charging_sessions_station ON charging_sessions (station_id, created_at DESC);
CREATE INDEX charging_sessions_open ON charging_sessions (status, created_at)
    WHERE status IN ('requested', 'accepted', 'charging', 'stopping');

-- Idempotency-Key: the same principal, key and operation return the first response for 24 h.
CREATE TABLE idempotency_keys (
    principal       text NOT NULL,
    key             text NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    operation       text NOT NULL,
    request_sha256  bytea NOT NULL,
    response        jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (principal, operation, key)
);
CREATE INDEX idempotency_keys_time ON idempotency_keys (created_at);
