-- The event feed (GET /api/events): one row per event, written in the same transaction
-- as the change it reports; its id orders the feed installation-wide. The newest 10,000
-- are kept.
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('deployment', 'app')),
    timestamp TEXT NOT NULL,
    data TEXT NOT NULL
);

-- Outgoing notifications when a deployment ends.
CREATE TABLE notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    url TEXT NOT NULL,
    -- A JSON array of terminal statuses.
    events TEXT NOT NULL,
    format TEXT NOT NULL CHECK (format IN ('json', 'slack')),
    secret TEXT NOT NULL,
    created_at TEXT NOT NULL
);

-- One row per notification to deliver, written in the same transaction as the
-- deployment's terminal status: a restart loses none. Delivered rows are kept a day.
CREATE TABLE notification_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    notification_id INTEGER NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    deployment_id INTEGER NOT NULL,
    status TEXT NOT NULL,
    app_name TEXT NOT NULL,
    summary TEXT NOT NULL,
    created_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at TEXT NOT NULL,
    delivered_at TEXT,
    last_error TEXT
);
CREATE INDEX notification_outbox_due ON notification_outbox (next_at) WHERE delivered_at IS NULL;
