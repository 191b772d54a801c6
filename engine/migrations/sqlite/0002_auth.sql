-- Accounts, browser sessions and API tokens. Secrets are never stored: sessions and
-- tokens by the SHA-256 of their random value, passwords as argon2id PHC strings.
CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    is_admin      INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT    NOT NULL
);

CREATE TABLE sessions (
    hash       TEXT    PRIMARY KEY,             -- hex SHA-256 of the cookie value
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TEXT    NOT NULL,
    expires_ms INTEGER NOT NULL                 -- Unix milliseconds
);

CREATE TABLE api_tokens (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT    NOT NULL,
    hash       TEXT    NOT NULL UNIQUE,         -- hex SHA-256 of the token
    prefix     TEXT    NOT NULL,                -- first characters, to tell tokens apart
    created_by TEXT    NOT NULL,                -- who created it (a username or "admin token")
    created_at TEXT    NOT NULL
);
