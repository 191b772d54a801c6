-- Apps and their deployments. Timestamps are RFC 3339 text in UTC with milliseconds.
CREATE TABLE apps (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT    NOT NULL UNIQUE,
    repo_url     TEXT    NOT NULL,
    branch       TEXT    NOT NULL,
    dockerfile   TEXT    NOT NULL,
    port         INTEGER,
    env          TEXT    NOT NULL DEFAULT '{}', -- JSON object of name -> value
    container_id TEXT,                          -- the container serving the app now
    url          TEXT,                          -- where that container answers
    created_at   TEXT    NOT NULL
);

CREATE TABLE deployments (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id        INTEGER NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    status        TEXT    NOT NULL,
    stage         TEXT    NOT NULL,
    progress      INTEGER NOT NULL,
    message       TEXT    NOT NULL,
    error_message TEXT    NOT NULL DEFAULT '',
    failed_stage  TEXT,
    commit_sha    TEXT,
    image         TEXT,
    container_id  TEXT,
    url           TEXT,
    created_at    TEXT    NOT NULL,
    started_at    TEXT,
    finished_at   TEXT,
    duration      REAL
);

CREATE INDEX deployments_by_app ON deployments (app_id, id);
CREATE INDEX deployments_by_status ON deployments (status, id);
