-- The schema of engine/migrations/sqlite/0001..0007 in PostgreSQL's words, for a cluster
-- (PROTOCOL.md, "A cluster"). The same columns and meanings; see those files for why each
-- exists. Timestamps are RFC 3339 text in UTC with milliseconds, as on SQLite.
CREATE TABLE apps (
    id               BIGSERIAL PRIMARY KEY,
    name             TEXT   NOT NULL UNIQUE,
    repo_url         TEXT   NOT NULL,
    branch           TEXT   NOT NULL,
    dockerfile       TEXT   NOT NULL,
    port             BIGINT,
    env              TEXT   NOT NULL DEFAULT '{}',
    container_id     TEXT,
    url              TEXT,
    created_at       TEXT   NOT NULL,
    memory_mb        BIGINT NOT NULL DEFAULT 512,
    cpus             DOUBLE PRECISION NOT NULL DEFAULT 1.0,
    repo_credentials TEXT,
    webhook_secret   TEXT
);

CREATE TABLE deployments (
    id            BIGSERIAL PRIMARY KEY,
    app_id        BIGINT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    status        TEXT   NOT NULL,
    progress      BIGINT NOT NULL,
    error_message TEXT   NOT NULL DEFAULT '',
    failed_stage  TEXT,
    commit_sha    TEXT,
    image         TEXT,
    container_id  TEXT,
    url           TEXT,
    created_at    TEXT   NOT NULL,
    started_at    TEXT,
    finished_at   TEXT,
    duration      DOUBLE PRECISION,
    image_from    BIGINT
);
CREATE INDEX deployments_by_app ON deployments (app_id, id);
CREATE INDEX deployments_by_status ON deployments (status, id);

CREATE TABLE users (
    id            BIGSERIAL PRIMARY KEY,
    username      TEXT   NOT NULL UNIQUE,
    password_hash TEXT   NOT NULL,
    is_admin      BIGINT NOT NULL DEFAULT 0,
    created_at    TEXT   NOT NULL
);

CREATE TABLE sessions (
    hash       TEXT   PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TEXT   NOT NULL,
    expires_ms BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    id         BIGSERIAL PRIMARY KEY,
    name       TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE,
    prefix     TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE app_domains (
    domain TEXT   PRIMARY KEY,
    app_id BIGINT NOT NULL REFERENCES apps (id) ON DELETE CASCADE
);
CREATE INDEX app_domains_by_app ON app_domains (app_id, domain);

CREATE TABLE webhook_deliveries (
    id            BIGSERIAL PRIMARY KEY,
    app_id        BIGINT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    delivery      TEXT   NOT NULL,
    forge         TEXT   NOT NULL,
    event         TEXT   NOT NULL,
    received_at   TEXT   NOT NULL,
    deployment_id BIGINT,
    ignored       TEXT,
    UNIQUE (app_id, delivery)
);
CREATE INDEX webhook_deliveries_by_app ON webhook_deliveries (app_id, id);

CREATE TABLE events (
    id        BIGSERIAL PRIMARY KEY,
    kind      TEXT NOT NULL CHECK (kind IN ('deployment', 'app')),
    timestamp TEXT NOT NULL,
    data      TEXT NOT NULL
);

CREATE TABLE notifications (
    id         BIGSERIAL PRIMARY KEY,
    url        TEXT NOT NULL,
    events     TEXT NOT NULL,
    format     TEXT NOT NULL CHECK (format IN ('json', 'slack')),
    secret     TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE notification_outbox (
    id              BIGSERIAL PRIMARY KEY,
    notification_id BIGINT NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    deployment_id   BIGINT NOT NULL,
    status          TEXT   NOT NULL,
    app_name        TEXT   NOT NULL,
    summary         TEXT   NOT NULL,
    created_at      TEXT   NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_at         TEXT   NOT NULL,
    delivered_at    TEXT,
    last_error      TEXT
);
CREATE INDEX notification_outbox_due ON notification_outbox (next_at) WHERE delivered_at IS NULL;
