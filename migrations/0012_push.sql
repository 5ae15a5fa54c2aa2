-- Web push (VAPID): browser subscriptions, the once-only claims of notifications, and the state that
-- turns repeated events into one notification per crossing (low balance) or per outage (station offline).

-- A browser's push subscription (PushSubscription.toJSON()). An endpoint is a capability URL that
-- belongs to one browser profile, so it belongs to at most one user: subscribing it again (another
-- account logged in on that browser) moves it. last_used_at is refreshed when the app subscribes again
-- and when a push is delivered; subscriptions unused for 90 days are deleted.
CREATE TABLE push_subscriptions (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    endpoint        text NOT NULL UNIQUE CHECK (length(endpoint) BETWEEN 1 AND 2048),
    p256dh          text NOT NULL CHECK (length(p256dh) BETWEEN 80 AND 100),     -- 65 bytes, base64url
    auth            text NOT NULL CHECK (length(auth) BETWEEN 20 AND 30),        -- 16 bytes, base64url
    user_agent      text NOT NULL DEFAULT '' CHECK (length(user_agent) <= 300),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    last_used_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX push_subscriptions_user ON push_subscriptions (user_id, last_used_at);
CREATE INDEX push_subscriptions_last_used ON push_subscriptions (last_used_at);

-- Every csms process hears every event. Before a process sends a notification it claims it here;
-- only the process whose INSERT wins sends, so each notification goes out once across processes.
-- event_key names what happened ('session:<id>:completed', 'low_balance:<n>', ...). Rows are pruned
-- after 30 days (a later duplicate of a month-old event is not expected).
CREATE TABLE push_notifications (
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    event_key   text NOT NULL CHECK (length(event_key) BETWEEN 1 AND 200),
    kind        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, event_key)
);
CREATE INDEX push_notifications_time ON push_notifications (created_at);

-- Low balance is announced once per crossing: `low` remembers which side of the threshold the wallet
-- was last seen on, and `crossings` numbers the downward crossings (the claim key).
CREATE TABLE push_balance_state (
    user_id     uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    low         boolean NOT NULL,
    crossings   bigint NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- A station that the presence job found without a live connection: noticed_at is when it first did;
-- notified_at is when its owner was told it is offline (NULL: not yet, or not at all for a station
-- silent for more than a week). The row goes when the station is connected again ("back online" is
-- sent only when "offline" was).
CREATE TABLE push_station_state (
    station_id  text PRIMARY KEY REFERENCES stations (id) ON DELETE CASCADE,
    noticed_at  timestamptz NOT NULL DEFAULT now(),
    notified_at timestamptz
);
