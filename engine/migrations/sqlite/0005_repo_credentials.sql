-- Credentials written into a repository URL (https://user:token@host/...) are kept apart
-- from it: `repo_url` never holds any, and this column (JSON {"username", "password"})
-- is read only by the worker that clones. URLs saved before this migration are split at
-- the next start (engine::db::split_repo_credentials), which needs Rust's URL handling.
ALTER TABLE apps ADD COLUMN repo_credentials TEXT;
