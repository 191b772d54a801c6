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

-- Every deployment's log lines, where every node can read them: each node keeps a copy
-- in its own log store (logstore.rs), filled from here when another node writes
-- (NOTIFY slipway_lines carries only the deployment and seq, never the text). Bytes,
-- since TEXT cannot hold NUL. A frozen node that lost its claim cannot add lines:
-- whoever ended its deployment took the next seq first.
CREATE TABLE log_lines (
    deployment_id BIGINT NOT NULL,
    seq           BIGINT NOT NULL,
    at_ms         BIGINT NOT NULL,
    line          BYTEA  NOT NULL,
    PRIMARY KEY (deployment_id, seq)
);
