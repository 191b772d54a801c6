-- Deploy on git push: each app's webhook secret (server-only: it checks signatures) and
-- the deliveries it received, each once (a redelivery answers what the first did).
ALTER TABLE apps ADD COLUMN webhook_secret TEXT;

CREATE TABLE webhook_deliveries (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id        INTEGER NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    delivery      TEXT    NOT NULL,   -- the forge's delivery id
    forge         TEXT    NOT NULL,   -- github, gitea, forgejo, gitlab
    event         TEXT    NOT NULL,
    received_at   TEXT    NOT NULL,
    deployment_id INTEGER,            -- what it queued
    ignored       TEXT,               -- or why it queued nothing
    UNIQUE (app_id, delivery)
);
CREATE INDEX webhook_deliveries_by_app ON webhook_deliveries (app_id, id);
