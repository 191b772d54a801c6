-- A cluster (PROTOCOL.md, "A cluster"): which node runs each deployment and how many
-- times it was claimed, the nodes and their heartbeats, and at most one deployment in
-- flight per app enforced by the database itself (two nodes racing for one app: the
-- loser's claim is refused, whatever the isolation level).
ALTER TABLE deployments ADD COLUMN node TEXT;
ALTER TABLE deployments ADD COLUMN attempt BIGINT NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX deployments_one_in_flight ON deployments (app_id)
    WHERE status IN ('cloning', 'building', 'deploying');

CREATE TABLE nodes (
    name       TEXT NOT NULL PRIMARY KEY,
    addr       TEXT NOT NULL,
    started_at TEXT NOT NULL,
    last_seen  TEXT NOT NULL
);
