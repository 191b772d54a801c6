//! Who may use Slipway: the admin account, browser sessions and API tokens.
//!
//! Passwords are stored as argon2id PHC strings. Session cookies and API tokens are 32
//! random bytes; only their SHA-256 is stored, so a copy of the database lets nobody in.
//! Every session and token is also held in memory, keyed by that hash: checking a request
//! costs one hash and one map lookup, never a database query (monitor reconnect storms
//! stay off the database).

use crate::error::{Conflict, EngineError, Missing, Result};
use crate::time;
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use protocol::validate::FieldError;
use protocol::{ApiToken, CreatedToken};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};
use std::time::Duration;

/// How long a browser session lasts.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(14 * 24 * 3600);
/// Shortest password accepted for an account.
pub const MIN_PASSWORD: usize = 10;
const MAX_PASSWORD: usize = 1024;
/// What API tokens start with, so they are recognisable in logs and secret scanners.
pub const TOKEN_PREFIX: &str = "slw_";

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// A username, or `admin token` for `SLIPWAY_ADMIN_TOKEN`.
    pub name: String,
    pub via: Credential,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// The browser's session cookie: mutations and WebSocket upgrades must come from the
    /// dashboard's own origin.
    Session,
    /// `Authorization: Bearer` with a token created in the dashboard.
    Token,
    /// `Authorization: Bearer` with `SLIPWAY_ADMIN_TOKEN`.
    AdminToken,
}

type Digest32 = [u8; 32];

struct SessionEntry {
    username: String,
    expires_ms: i64,
}

#[derive(Default)]
struct Cache {
    has_users: bool,
    sessions: HashMap<Digest32, SessionEntry>,
    /// Token hash → token id.
    tokens: HashMap<Digest32, i64>,
}

pub struct Auth {
    pool: crate::db::Pool,
    admin_token: Option<Digest32>,
    cache: RwLock<Cache>,
}

fn digest(secret: &str) -> Digest32 {
    Sha256::digest(secret.as_bytes()).into()
}

/// 32 random bytes, as hex: a secret.
pub(crate) fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn count() {
    crate::db::QUERIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Usernames: 1 to 64 characters of letters, digits, `.`, `_` and `-`.
pub fn validate_username(name: &str) -> Result<(), FieldError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            "username",
            "must be 1 to 64 letters, digits, '.', '_' or '-'",
        ))
    }
}

pub fn validate_password(password: &str) -> Result<(), FieldError> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD {
        return Err(FieldError::new(
            "password",
            format!("must be at least {MIN_PASSWORD} characters long"),
        ));
    }
    if password.len() > MAX_PASSWORD {
        return Err(FieldError::new(
            "password",
            format!("must be at most {MAX_PASSWORD} bytes long"),
        ));
    }
    Ok(())
}

fn validate_token_name(name: &str) -> Result<(), FieldError> {
    let name_chars = name.chars().count();
    if name.trim().is_empty() || name_chars > 100 || name.chars().any(char::is_control) {
        return Err(FieldError::new(
            "name",
            "must be 1 to 100 characters without control characters",
        ));
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| EngineError::Internal(format!("password hashing task failed: {e}")))
}

impl Auth {
    /// Loads every live session and token into memory.
    pub async fn load(pool: crate::db::Pool, admin_token: Option<&str>) -> Result<Auth> {
        count();
        let has_users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&pool)
            .await?;
        count();
        sqlx::query("DELETE FROM sessions WHERE expires_ms <= ?")
            .bind(now_ms())
            .execute(&pool)
            .await?;
        count();
        let sessions: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT s.hash, u.username, s.expires_ms FROM sessions s JOIN users u ON u.id = s.user_id",
        )
        .fetch_all(&pool)
        .await?;
        count();
        let tokens: Vec<(String, i64)> = sqlx::query_as("SELECT hash, id FROM api_tokens")
            .fetch_all(&pool)
            .await?;
        let mut cache = Cache {
            has_users: has_users > 0,
            ..Cache::default()
        };
        for (hash, username, expires_ms) in sessions {
            if let Some(key) = from_hex(&hash) {
                cache.sessions.insert(
                    key,
                    SessionEntry {
                        username,
                        expires_ms,
                    },
                );
            }
        }
        for (hash, id) in tokens {
            if let Some(key) = from_hex(&hash) {
                cache.tokens.insert(key, id);
            }
        }
        Ok(Auth {
            pool,
            admin_token: admin_token.map(digest),
            cache: RwLock::new(cache),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Cache> {
        self.cache.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Cache> {
        self.cache.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether an account exists. Until one does, the dashboard offers to create the admin.
    pub fn has_users(&self) -> bool {
        self.read().has_users
    }

    /// Whether anyone can sign in at all: an account or `SLIPWAY_ADMIN_TOKEN`.
    pub fn can_authenticate(&self) -> bool {
        self.admin_token.is_some() || self.has_users()
    }

    /// Creates the admin account; only while no account exists (409 afterwards).
    pub async fn create_admin(&self, username: &str, password: &str) -> Result<String> {
        validate_username(username)?;
        validate_password(password)?;
        let password = password.to_owned();
        let hash = blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default()
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
        })
        .await?
        .map_err(|e| EngineError::Internal(format!("hashing the password failed: {e}")))?;
        count();
        let created = sqlx::query(
            "INSERT INTO users (username, password_hash, is_admin, created_at)
             SELECT ?, ?, 1, ? WHERE NOT EXISTS (SELECT 1 FROM users)",
        )
        .bind(username)
        .bind(hash)
        .bind(time::now())
        .execute(&self.pool)
        .await?;
        if created.rows_affected() == 0 {
            return Err(Conflict::AccountExists.into());
        }
        self.write().has_users = true;
        self.start_session(username).await
    }

    /// Checks a username and password; returns a new session's secret for the cookie.
    /// Unknown users and wrong passwords get the same answer, after the same work.
    pub async fn login(&self, username: &str, password: &str) -> Result<String> {
        count();
        let stored: Option<String> =
            sqlx::query_scalar("SELECT password_hash FROM users WHERE username = ?")
                .bind(username)
                .fetch_optional(&self.pool)
                .await?;
        let known = stored.is_some();
        let password = password.to_owned();
        let matches = blocking(move || {
            // Unknown users are checked against a throwaway hash, so both paths take as long.
            let stored = stored.unwrap_or_else(|| {
                static DUMMY: OnceLock<String> = OnceLock::new();
                DUMMY
                    .get_or_init(|| {
                        let salt = SaltString::generate(&mut OsRng);
                        Argon2::default()
                            .hash_password(b"not a password", &salt)
                            .map(|h| h.to_string())
                            .unwrap_or_default()
                    })
                    .clone()
            });
            PasswordHash::new(&stored)
                .map(|hash| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &hash)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await?;
        if !(known && matches) {
            return Err(EngineError::Unauthorized("wrong username or password"));
        }
        self.start_session(username).await
    }

    async fn start_session(&self, username: &str) -> Result<String> {
        let secret = random_hex();
        let key = digest(&secret);
        let expires_ms = now_ms() + SESSION_LIFETIME.as_millis() as i64;
        count();
        sqlx::query(
            "INSERT INTO sessions (hash, user_id, created_at, expires_ms)
             SELECT ?, id, ?, ? FROM users WHERE username = ?",
        )
        .bind(hex::encode(key))
        .bind(time::now())
        .bind(expires_ms)
        .bind(username)
        .execute(&self.pool)
        .await?;
        self.write().sessions.insert(
            key,
            SessionEntry {
                username: username.to_owned(),
                expires_ms,
            },
        );
        Ok(secret)
    }

    /// Ends a session; unknown secrets are ignored.
    pub async fn logout(&self, secret: &str) -> Result<()> {
        let key = digest(secret);
        self.write().sessions.remove(&key);
        count();
        sqlx::query("DELETE FROM sessions WHERE hash = ?")
            .bind(hex::encode(key))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The user of a live session cookie.
    pub fn session(&self, secret: &str) -> Option<Principal> {
        let key = digest(secret);
        let cache = self.read();
        let entry = cache.sessions.get(&key)?;
        (entry.expires_ms > now_ms()).then(|| Principal {
            name: entry.username.clone(),
            via: Credential::Session,
        })
    }

    /// The holder of a bearer token: `SLIPWAY_ADMIN_TOKEN` or a token created here.
    pub fn bearer(&self, token: &str) -> Option<Principal> {
        let key = digest(token);
        if self.admin_token == Some(key) {
            return Some(Principal {
                name: "admin token".into(),
                via: Credential::AdminToken,
            });
        }
        self.read().tokens.get(&key).map(|id| Principal {
            name: format!("token {id}"),
            via: Credential::Token,
        })
    }

    pub async fn create_token(&self, name: &str, by: &Principal) -> Result<CreatedToken> {
        let name = name.trim();
        validate_token_name(name)?;
        let token = format!("{TOKEN_PREFIX}{}", random_hex());
        let key = digest(&token);
        let prefix: String = token.chars().take(TOKEN_PREFIX.len() + 6).collect();
        let created_at = time::now();
        count();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO api_tokens (name, hash, prefix, created_by, created_at)
             VALUES (?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(name)
        .bind(hex::encode(key))
        .bind(&prefix)
        .bind(&by.name)
        .bind(&created_at)
        .fetch_one(&self.pool)
        .await?;
        self.write().tokens.insert(key, id);
        Ok(CreatedToken {
            info: ApiToken {
                id,
                name: name.to_owned(),
                prefix,
                created_by: by.name.clone(),
                created_at,
            },
            token,
        })
    }

    pub async fn tokens(&self) -> Result<Vec<ApiToken>> {
        count();
        let rows: Vec<(i64, String, String, String, String)> = sqlx::query_as(
            "SELECT id, name, prefix, created_by, created_at FROM api_tokens ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, name, prefix, created_by, created_at)| ApiToken {
                id,
                name,
                prefix,
                created_by,
                created_at,
            })
            .collect())
    }

    /// Revokes a token at once: requests carrying it are refused from now on.
    pub async fn revoke_token(&self, id: i64) -> Result<()> {
        count();
        let hash: Option<String> =
            sqlx::query_scalar("DELETE FROM api_tokens WHERE id = ? RETURNING hash")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        let hash = hash.ok_or(Missing::Token(id))?;
        if let Some(key) = from_hex(&hash) {
            self.write().tokens.remove(&key);
        }
        Ok(())
    }
}

fn from_hex(text: &str) -> Option<Digest32> {
    hex::decode(text).ok()?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh database file (an in-memory one would be one per pooled connection).
    async fn auth(admin: Option<&str>) -> Auth {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("slipway-auth-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let url = format!("sqlite://{}/auth.db", dir.display());
        let pool = crate::db::connect(&url).await.expect("database");
        Auth::load(pool, admin).await.expect("auth")
    }

    #[tokio::test]
    async fn first_account_is_created_once_and_signs_in() {
        let auth = auth(None).await;
        assert!(!auth.can_authenticate());
        let secret = auth
            .create_admin("root", "correct horse battery")
            .await
            .expect("admin");
        assert!(auth.has_users());
        assert_eq!(
            auth.session(&secret).map(|p| p.name),
            Some("root".to_owned())
        );
        let again = auth.create_admin("other", "correct horse battery").await;
        assert!(matches!(again, Err(EngineError::Conflict(_))), "{again:?}");

        let wrong = auth.login("root", "wrong password!").await;
        assert!(matches!(wrong, Err(EngineError::Unauthorized(_))));
        let nobody = auth.login("nobody", "correct horse battery").await;
        assert!(matches!(nobody, Err(EngineError::Unauthorized(_))));
        let second = auth
            .login("root", "correct horse battery")
            .await
            .expect("login");
        assert_ne!(second, secret);
        auth.logout(&second).await.expect("logout");
        assert_eq!(auth.session(&second), None);
        assert!(auth.session(&secret).is_some());
    }

    #[tokio::test]
    async fn weak_credentials_name_the_field() {
        let auth = auth(None).await;
        let short = auth.create_admin("root", "short").await;
        assert!(
            matches!(&short, Err(EngineError::Invalid(e)) if e.field == "password"),
            "{short:?}"
        );
        let bad = auth.create_admin("-rm -rf", "long enough pass").await;
        assert!(
            matches!(&bad, Err(EngineError::Invalid(e)) if e.field == "username"),
            "{bad:?}"
        );
        assert!(!auth.has_users());
    }

    #[tokio::test]
    async fn tokens_are_stored_hashed_and_revoked_at_once() {
        let auth = auth(Some("an-admin-token-of-32-characters!")).await;
        assert!(auth.can_authenticate());
        let admin = auth
            .bearer("an-admin-token-of-32-characters!")
            .expect("admin token");
        assert_eq!(admin.via, Credential::AdminToken);
        assert_eq!(auth.bearer("an-admin-token-of-32-characters"), None);

        let created = auth.create_token("ci", &admin).await.expect("token");
        assert!(created.token.starts_with(TOKEN_PREFIX));
        assert!(created.token.starts_with(&created.info.prefix));
        assert_eq!(
            auth.bearer(&created.token).map(|p| p.via),
            Some(Credential::Token)
        );
        let stored: Vec<String> = sqlx::query_scalar("SELECT hash FROM api_tokens")
            .fetch_all(&auth.pool)
            .await
            .expect("rows");
        assert_eq!(stored, vec![hex::encode(digest(&created.token))]);
        assert_eq!(
            auth.tokens().await.expect("list"),
            vec![created.info.clone()]
        );

        auth.revoke_token(created.info.id).await.expect("revoke");
        assert_eq!(auth.bearer(&created.token), None);
        assert!(matches!(
            auth.revoke_token(created.info.id).await,
            Err(EngineError::NotFound(_))
        ));
        let unnamed = auth.create_token("  ", &admin).await;
        assert!(matches!(&unnamed, Err(EngineError::Invalid(e)) if e.field == "name"));
    }

    #[tokio::test]
    async fn sessions_and_tokens_survive_a_restart() {
        let dir = std::env::temp_dir().join(format!("slipway-auth-{}-restart", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let url = format!("sqlite://{}/auth.db", dir.display());
        let pool = crate::db::connect(&url).await.expect("db");
        let auth = Auth::load(pool.clone(), None).await.expect("auth");
        let session = auth
            .create_admin("root", "correct horse battery")
            .await
            .expect("admin");
        let by = auth.session(&session).expect("principal");
        let token = auth.create_token("cli", &by).await.expect("token").token;
        pool.close().await;

        let pool = crate::db::connect(&url).await.expect("db");
        let auth = Auth::load(pool.clone(), None).await.expect("auth");
        assert!(auth.has_users());
        assert_eq!(auth.session(&session).map(|p| p.name), Some("root".into()));
        assert!(auth.bearer(&token).is_some());
        pool.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}
