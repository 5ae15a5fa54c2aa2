-- QR top-ups through a payment provider (O!Dengi-style): invoices, the provider's webhook events
-- (deduplicated on the provider's event id) and payment anomalies for operators.
-- Money is integer tyiyn; a credit is the ledger transfer 'topup:<provider>:<payment id>'
-- (provider_clearing:<provider> → the user's wallet), so a payment can credit at most once.

-- Invoice statuses:
--   creating   the row exists; the provider has not confirmed the invoice yet (or could not be reached)
--   pending    the QR code is out and can be paid until expires_at
--   paid       at least one approved payment was credited (flags say if anything was odd)
--   declined   the provider declined a payment attempt (the payer may still pay until expiry)
--   cancelled  the provider cancelled the invoice
--   expired    our expiry job closed it (a payment approved later is still credited, and flagged)
--   failed     the provider refused to create it
CREATE TABLE payment_invoices (
    id                      uuid PRIMARY KEY,                    -- also the provider's order id
    user_id                 uuid NOT NULL REFERENCES users (id),
    provider                text NOT NULL CHECK (length(provider) BETWEEN 1 AND 40),
    amount_tyiyn            bigint NOT NULL CHECK (amount_tyiyn BETWEEN 1 AND 10000000),
    status                  text NOT NULL DEFAULT 'creating'
                            CHECK (status IN ('creating', 'pending', 'paid', 'declined', 'cancelled', 'expired',
                                              'failed')),
    provider_invoice_id     text CHECK (length(provider_invoice_id) BETWEEN 1 AND 200),
    qr_payload              text CHECK (length(qr_payload) <= 2000),
    pay_url                 text CHECK (length(pay_url) <= 2000),
    payment_id              text CHECK (length(payment_id) BETWEEN 1 AND 100),   -- the first credited payment
    credited_tyiyn          bigint NOT NULL DEFAULT 0 CHECK (credited_tyiyn >= 0),
    refunded_tyiyn          bigint NOT NULL DEFAULT 0 CHECK (refunded_tyiyn >= 0),
    flags                   text[] NOT NULL DEFAULT '{}',
    -- The provider will report nothing new about it (approved, cancelled or expired there): the
    -- reconciler stops asking.
    provider_final          boolean NOT NULL DEFAULT false,
    next_check_at           timestamptz,                         -- the reconciler's lease
    failure_reason          text,
    expires_at              timestamptz NOT NULL,
    paid_at                 timestamptz,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    CHECK (refunded_tyiyn <= credited_tyiyn),
    CHECK (expires_at > created_at)
);
CREATE UNIQUE INDEX payment_invoices_provider_id ON payment_invoices (provider, provider_invoice_id);
CREATE INDEX payment_invoices_user ON payment_invoices (user_id, created_at DESC, id DESC);
CREATE INDEX payment_invoices_time ON payment_invoices (created_at DESC, id DESC);
CREATE INDEX payment_invoices_open ON payment_invoices (expires_at) WHERE status IN ('creating', 'pending');
CREATE INDEX payment_invoices_unsettled ON payment_invoices (expires_at) WHERE NOT provider_final;
CREATE INDEX payment_invoices_flagged ON payment_invoices (created_at DESC) WHERE flags <> '{}';

-- Every webhook event we accepted, once: a replayed event id is refused before it changes anything.
CREATE TABLE payment_webhook_events (
    provider        text NOT NULL,
    event_id        text NOT NULL CHECK (length(event_id) BETWEEN 1 AND 200),
    invoice_id      uuid REFERENCES payment_invoices (id),
    status          text NOT NULL,
    payment_id      text,
    amount_tyiyn    bigint,
    outcome         text NOT NULL,            -- what it did: credited, already_credited, status, ignored
    received_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, event_id)
);
CREATE INDEX payment_webhook_events_time ON payment_webhook_events (received_at);

-- What operators must look at: a payment after expiry or cancellation, an amount that differs from
-- the invoice, a second payment of one invoice, an invoice the reconciler could not settle.
CREATE TABLE payment_anomalies (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider        text NOT NULL,
    invoice_id      uuid REFERENCES payment_invoices (id),
    kind            text NOT NULL,
    detail          jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (invoice_id, kind)
);
CREATE INDEX payment_anomalies_time ON payment_anomalies (id DESC);
