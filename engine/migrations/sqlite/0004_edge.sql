-- The edge: each app's limits and its extra host names (unique across apps, 409 otherwise).
-- `apps.url` stays where the serving container answers on loopback (the edge's upstream);
-- the API shows the public address instead.
ALTER TABLE apps ADD COLUMN memory_mb INTEGER NOT NULL DEFAULT 512;
ALTER TABLE apps ADD COLUMN cpus REAL NOT NULL DEFAULT 1.0;

CREATE TABLE app_domains (
    domain TEXT    PRIMARY KEY,
    app_id INTEGER NOT NULL REFERENCES apps (id) ON DELETE CASCADE
);
CREATE INDEX app_domains_by_app ON app_domains (app_id, domain);
