//! Who may use Slipway: the admin account, browser sessions and API tokens.
//!
//! Passwords are stored as argon2id PHC strings. Session cookies and API tokens are 32
//! random bytes; only their SHA-256 is stored, so a copy of the database lets nobody in.
//! Every session and token is also held in memory, keyed by that hash: checking a request
//! costs one hash and one map lookup, never a database query (monitor reconnect storms
//! stay off the database).
//!
//! While no account exists, a random one-time setup code is required to create the admin
//! account: it is printed at start and written to `<data dir>/setup-code` (readable by
//! its owner only), so neither a page that rebinds its name to 127.0.0.1 nor a stranger
//! reaching a fresh install through a proxy can claim it. Every password check goes
//! through a [`Throttle`]: a few at once, with backoff per address and per user.

use crate::error::{Conflict, EngineError, Missing, Result};
use crate::throttle::{Refused, Throttle};
use crate::time;
use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use protocol::validate::FieldError;
use protocol::{ApiToken, CreatedToken};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, RwLock};
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
    throttle: Throttle,
    /// The one-time code that creating the admin account needs; `None` once an account
    /// exists. A std mutex: never held across an await.
    setup: Mutex<Option<SetupCode>>,
    /// This node, in a cluster: changes are announced to the others.
    node: Option<crate::cluster::Node>,
}

struct SetupCode {
    code: String,
    /// Where it was written for the operator, removed once used.
    file: Option<PathBuf>,
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

impl From<Refused> for EngineError {
    fn from(refused: Refused) -> Self {
        EngineError::TooManyRequests {
            retry_after: refused.retry_after,
        }
    }
}

thread_local! {
    /// argon2's working memory (19 MiB), allocated once by each hashing thread and used
    /// for every hash it computes: a fresh allocation per hash left the allocator holding
    /// several such blocks per thread (300 MiB after a few dozen sign-in attempts).
    static BLOCKS: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// argon2 of `password` and `salt` into `out`, in this thread's working memory.
fn argon2_into(
    algorithm: Algorithm,
    version: Version,
    params: Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> argon2::Result<()> {
    let count = params.block_count();
    let argon2 = Argon2::new(algorithm, version, params);
    BLOCKS.with(|cell| {
        let mut blocks = cell.borrow_mut();
        if blocks.len() < count {
            blocks.resize(count, Block::default());
        }
        argon2.hash_password_into_with_memory(password, salt, out, &mut blocks[..count])
    })
}

/// A new argon2id PHC string for `password` (the crate's default parameters: 19 MiB, two
/// passes). Runs on a hashing thread.
fn hash_blocking(password: &str) -> argon2::password_hash::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    let mut raw = [0u8; 64];
    let raw = salt.as_salt().decode_b64(&mut raw)?;
    let params = Params::default();
    let output = Output::init_with(Params::DEFAULT_OUTPUT_LEN, |out| {
        Ok(argon2_into(
            Algorithm::Argon2id,
            Version::V0x13,
            params.clone(),
            password.as_bytes(),
            raw,
            out,
        )?)
    })?;
    Ok(PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params)?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    }
    .to_string())
}

/// A throwaway hash that unknown users are checked against, so both paths take as long.
fn dummy_hash() -> String {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY
        .get_or_init(|| hash_blocking("not a password").unwrap_or_default())
        .clone()
}

/// Whether `password` matches a stored PHC string (compared in constant time by
/// `Output`). A hash asking for more memory than ours is refused, not computed.
fn verify(stored: &str, password: &str) -> bool {
    let check = || -> argon2::password_hash::Result<bool> {
        let hash = PasswordHash::new(stored)?;
        let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
            return Ok(false);
        };
        let params = Params::try_from(&hash)?;
        if params.m_cost() > Params::DEFAULT_M_COST {
            return Ok(false);
        }
        let algorithm = Algorithm::try_from(hash.algorithm)?;
        let version = hash
            .version
            .map(Version::try_from)
            .transpose()?
            .unwrap_or_default();
        let mut raw = [0u8; 64];
        let raw = salt.decode_b64(&mut raw)?;
        let computed = Output::init_with(expected.len(), |out| {
            Ok(argon2_into(
                algorithm,
                version,
                params,
                password.as_bytes(),
                raw,
                out,
            )?)
        })?;
        Ok(computed == expected)
    };
    check().unwrap_or(false)
}

/// Every live session and token, as the database holds them.
async fn read_cache(pool: &crate::db::Pool) -> Result<Cache> {
    count();
    let has_users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(pool)
        .await?;
    count();
    let sessions: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT s.hash, u.username, s.expires_ms FROM sessions s JOIN users u ON u.id = s.user_id",
    )
    .fetch_all(pool)
    .await?;
    count();
    let tokens: Vec<(String, i64)> = sqlx::query_as("SELECT hash, id FROM api_tokens")
        .fetch_all(pool)
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
    Ok(cache)
}

impl Auth {
    /// Loads every live session and token into memory. In a cluster (`node`), every
    /// change is announced to the other nodes, which reload theirs ([`Auth::reload`]).
    pub(crate) async fn load(
        pool: crate::db::Pool,
        admin_token: Option<&str>,
        node: Option<crate::cluster::Node>,
    ) -> Result<Auth> {
        count();
        sqlx::query("DELETE FROM sessions WHERE expires_ms <= $1")
            .bind(now_ms())
            .execute(&pool)
            .await?;
        let cache = read_cache(&pool).await?;
        let setup = (!cache.has_users).then(|| SetupCode {
            code: random_hex()[..32].to_owned(),
            file: None,
        });
        Ok(Auth {
            pool,
            admin_token: admin_token.map(digest),
            cache: RwLock::new(cache),
            throttle: Throttle::default(),
            setup: Mutex::new(setup),
            node,
        })
    }

    /// Reads sessions and tokens again: another node changed them.
    pub(crate) async fn reload(&self) -> Result<()> {
        let cache = read_cache(&self.pool).await?;
        if cache.has_users {
            self.setup_lock().take();
        }
        *self.write() = cache;
        Ok(())
    }

    /// Tells the other nodes that sessions, tokens or accounts changed.
    async fn changed(&self) {
        if let Some(node) = &self.node {
            node.announce(&self.pool, crate::cluster::Signal::Auth)
                .await;
        }
    }

    fn setup_lock(&self) -> std::sync::MutexGuard<'_, Option<SetupCode>> {
        self.setup.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The code that creating the admin account needs, while no account exists.
    pub fn setup_code(&self) -> Option<String> {
        self.setup_lock().as_ref().map(|s| s.code.clone())
    }

    /// Writes the setup code to `path`, readable and writable by its owner only, so the
    /// operator (and the end-to-end tests) can read it; it is removed once used.
    pub fn write_setup_file(&self, path: &Path) -> std::io::Result<()> {
        let mut setup = self.setup_lock();
        let Some(setup) = setup.as_mut() else {
            return match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        };
        crate::files::write_private(path, format!("{}\n", setup.code).as_bytes())?;
        setup.file = Some(path.to_owned());
        Ok(())
    }

    /// Whether `code` is the setup code (compared as SHA-256 digests, so the time taken
    /// tells nothing about the code).
    pub fn setup_code_matches(&self, code: &str) -> bool {
        self.setup_lock()
            .as_ref()
            .is_some_and(|s| digest(&s.code) == digest(code.trim()))
    }

    /// Argon2 on the blocking pool, a few at a time (see [`Throttle::hash`]).
    async fn hashing<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        self.throttle
            .hash(f)
            .await?
            .map_err(|e| EngineError::Internal(format!("password hashing failed: {e}")))
    }

    async fn hash_password(&self, password: &str) -> Result<String> {
        let password = password.to_owned();
        self.hashing(move || hash_blocking(&password))
            .await?
            .map_err(|e| EngineError::Internal(format!("hashing the password failed: {e}")))
    }

    /// Checks `password` for `username` under the throttle: refused while the address or
    /// the user must wait; a failure counts against both, a success clears both.
    async fn check_password(&self, username: &str, password: &str, from: IpAddr) -> Result<bool> {
        self.throttle.check(from, username)?;
        count();
        let stored: Option<String> =
            sqlx::query_scalar("SELECT password_hash FROM users WHERE username = $1")
                .bind(username)
                .fetch_optional(&self.pool)
                .await?;
        let known = stored.is_some();
        let password = password.to_owned();
        let matches = self
            .hashing(move || verify(&stored.unwrap_or_else(dummy_hash), &password))
            .await?;
        if known && matches {
            self.throttle.succeeded(from, username);
            Ok(true)
        } else {
            self.throttle.failed(from, username);
            Ok(false)
        }
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

    /// Creates the admin account: only with the setup code, and only while no account
    /// exists (409 afterwards).
    pub async fn create_admin(&self, code: &str, username: &str, password: &str) -> Result<String> {
        if !self.has_users() && !self.setup_code_matches(code) {
            return Err(EngineError::Forbidden(
                "code: the setup code is missing or wrong: open the setup link that Slipway printed when it started",
            ));
        }
        validate_username(username)?;
        validate_password(password)?;
        let hash = self.hash_password(password).await?;
        count();
        let created = sqlx::query(
            "INSERT INTO users (username, password_hash, is_admin, created_at)
             SELECT $1, $2, 1, $3 WHERE NOT EXISTS (SELECT 1 FROM users)",
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
        let used = self.setup_lock().take();
        if let Some(file) = used.and_then(|s| s.file)
            && let Err(e) = std::fs::remove_file(&file)
        {
            tracing::warn!(file = %file.display(), error = %e, "could not remove the used setup code");
        }
        self.start_session(username).await
    }

    /// Checks a username and password; returns a new session's secret for the cookie.
    /// Unknown users and wrong passwords get the same answer, after the same work.
    /// Refused with `TooManyRequests` while `from` or `username` must wait.
    pub async fn login(&self, username: &str, password: &str, from: IpAddr) -> Result<String> {
        if !self.check_password(username, password, from).await? {
            return Err(EngineError::Unauthorized("wrong username or password"));
        }
        self.start_session(username).await
    }

    /// Changes `username`'s password after checking the current one (under the same
    /// throttle as signing in), ends every session of that user, and answers a new one.
    pub async fn change_password(
        &self,
        username: &str,
        current: &str,
        new: &str,
        from: IpAddr,
    ) -> Result<String> {
        validate_password(new).map_err(|mut e| {
            e.field = "new_password".into();
            e
        })?;
        if !self.check_password(username, current, from).await? {
            return Err(FieldError::new("current_password", "is not your current password").into());
        }
        let hash = self.hash_password(new).await?;
        count();
        sqlx::query("UPDATE users SET password_hash = $1 WHERE username = $2")
            .bind(hash)
            .bind(username)
            .execute(&self.pool)
            .await?;
        self.sign_out_everywhere(Some(username)).await?;
        tracing::info!(
            user = username,
            "password changed; every session of the user ended"
        );
        self.start_session(username).await
    }

    /// Ends every session of `username`, or of everyone; answers how many ended.
    pub async fn sign_out_everywhere(&self, username: Option<&str>) -> Result<u64> {
        count();
        let ended = match username {
            Some(name) => sqlx::query(
                "DELETE FROM sessions WHERE user_id IN (SELECT id FROM users WHERE username = $1)",
            )
            .bind(name)
            .execute(&self.pool)
            .await?,
            None => {
                sqlx::query("DELETE FROM sessions")
                    .execute(&self.pool)
                    .await?
            }
        };
        self.write()
            .sessions
            .retain(|_, entry| username.is_some_and(|name| entry.username != name));
        self.changed().await;
        Ok(ended.rows_affected())
    }

    async fn start_session(&self, username: &str) -> Result<String> {
        let secret = random_hex();
        let key = digest(&secret);
        let expires_ms = now_ms() + SESSION_LIFETIME.as_millis() as i64;
        count();
        sqlx::query(
            "INSERT INTO sessions (hash, user_id, created_at, expires_ms)
             SELECT $1, id, $2, $3 FROM users WHERE username = $4",
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
        self.changed().await;
        Ok(secret)
    }

    /// Ends a session; unknown secrets are ignored.
    pub async fn logout(&self, secret: &str) -> Result<()> {
        let key = digest(secret);
        self.write().sessions.remove(&key);
        count();
        sqlx::query("DELETE FROM sessions WHERE hash = $1")
            .bind(hex::encode(key))
            .execute(&self.pool)
            .await?;
        self.changed().await;
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

    /// In a cluster: a session another node started a moment ago, before this node read
    /// the sessions again, is looked up now (by its hash), so that a load balancer may
    /// send the very next request anywhere. Nothing to do on one node or for a session
    /// already known.
    pub async fn learn_session(&self, secret: &str) {
        let key = digest(secret);
        if self.node.is_none() || self.read().sessions.contains_key(&key) {
            return;
        }
        count();
        let found: Option<(String, i64)> = sqlx::query_as(
            "SELECT u.username, s.expires_ms FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.hash = $1",
        )
        .bind(hex::encode(key))
        .fetch_optional(&self.pool)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "could not look up a session");
            None
        });
        if let Some((username, expires_ms)) = found {
            self.write().sessions.insert(
                key,
                SessionEntry {
                    username,
                    expires_ms,
                },
            );
        }
    }

    /// In a cluster: a token another node created a moment ago, looked up now (see
    /// [`Auth::learn_session`]).
    pub async fn learn_token(&self, token: &str) {
        let key = digest(token);
        if self.node.is_none()
            || self.admin_token == Some(key)
            || self.read().tokens.contains_key(&key)
        {
            return;
        }
        count();
        let found: Option<i64> = sqlx::query_scalar("SELECT id FROM api_tokens WHERE hash = $1")
            .bind(hex::encode(key))
            .fetch_optional(&self.pool)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "could not look up a token");
                None
            });
        if let Some(id) = found {
            self.write().tokens.insert(key, id);
        }
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
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(name)
        .bind(hex::encode(key))
        .bind(&prefix)
        .bind(&by.name)
        .bind(&created_at)
        .fetch_one(&self.pool)
        .await?;
        self.write().tokens.insert(key, id);
        self.changed().await;
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
            sqlx::query_scalar("DELETE FROM api_tokens WHERE id = $1 RETURNING hash")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        let hash = hash.ok_or(Missing::Token(id))?;
        if let Some(key) = from_hex(&hash) {
            self.write().tokens.remove(&key);
        }
        self.changed().await;
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
        Auth::load(pool, admin, None).await.expect("auth")
    }

    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    async fn admin(auth: &Auth, username: &str) -> String {
        let code = auth
            .setup_code()
            .expect("a setup code while no account exists");
        auth.create_admin(&code, username, "correct horse battery")
            .await
            .expect("admin")
    }

    #[tokio::test]
    async fn first_account_is_created_once_and_signs_in() {
        let auth = auth(None).await;
        assert!(!auth.can_authenticate());
        let code = auth.setup_code().expect("code");
        assert_eq!(code.len(), 32);
        for wrong in ["", "0000", &code[1..]] {
            let refused = auth
                .create_admin(wrong, "root", "correct horse battery")
                .await;
            assert!(
                matches!(refused, Err(EngineError::Forbidden(_))),
                "{refused:?}"
            );
        }
        assert!(!auth.has_users());
        let secret = admin(&auth, "root").await;
        assert_eq!(auth.setup_code(), None, "the code is used up");
        assert!(auth.has_users());
        assert_eq!(
            auth.session(&secret).map(|p| p.name),
            Some("root".to_owned())
        );
        let again = auth
            .create_admin(&code, "other", "correct horse battery")
            .await;
        assert!(matches!(again, Err(EngineError::Conflict(_))), "{again:?}");

        let wrong = auth.login("root", "wrong password!", HOME).await;
        assert!(matches!(wrong, Err(EngineError::Unauthorized(_))));
        let nobody = auth.login("nobody", "correct horse battery", HOME).await;
        assert!(matches!(nobody, Err(EngineError::Unauthorized(_))));
        let second = auth
            .login("root", "correct horse battery", HOME)
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
        let code = auth.setup_code().expect("code");
        let short = auth.create_admin(&code, "root", "short").await;
        assert!(
            matches!(&short, Err(EngineError::Invalid(e)) if e.field == "password"),
            "{short:?}"
        );
        let bad = auth
            .create_admin(&code, "-rm -rf", "long enough pass")
            .await;
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
        let auth = Auth::load(pool.clone(), None, None).await.expect("auth");
        let session = admin(&auth, "root").await;
        let by = auth.session(&session).expect("principal");
        let token = auth.create_token("cli", &by).await.expect("token").token;
        pool.close().await;

        let pool = crate::db::connect(&url).await.expect("db");
        let auth = Auth::load(pool.clone(), None, None).await.expect("auth");
        assert!(auth.has_users());
        assert_eq!(
            auth.setup_code(),
            None,
            "no setup code once an account exists"
        );
        assert_eq!(auth.session(&session).map(|p| p.name), Some("root".into()));
        assert!(auth.bearer(&token).is_some());
        pool.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn hashes_made_by_argon2_defaults_still_verify() {
        use argon2::password_hash::PasswordHasher;
        let salt = SaltString::generate(&mut OsRng);
        let old = Argon2::default()
            .hash_password(b"correct horse battery", &salt)
            .expect("hash")
            .to_string();
        assert!(verify(&old, "correct horse battery"));
        assert!(!verify(&old, "correct horse batterY"));
        let new = hash_blocking("correct horse battery").expect("hash");
        assert!(new.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{new}");
        assert!(verify(&new, "correct horse battery"));
        assert!(!verify(&new, "wrong"));
        let greedy = new.replace("m=19456", "m=4000000");
        assert!(!verify(&greedy, "correct horse battery"));
    }

    #[tokio::test]
    async fn repeated_failures_are_refused_before_any_hash() {
        let auth = auth(None).await;
        admin(&auth, "root").await;
        for _ in 0..crate::throttle::FREE_FAILURES + 1 {
            let wrong = auth.login("root", "wrong password!", HOME).await;
            assert!(
                matches!(wrong, Err(EngineError::Unauthorized(_))),
                "{wrong:?}"
            );
        }
        // Even the right password waits now: the attacker cannot tell.
        let refused = auth.login("root", "correct horse battery", HOME).await;
        assert!(
            matches!(refused, Err(EngineError::TooManyRequests { .. })),
            "{refused:?}"
        );
        let elsewhere = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 9));
        let refused = auth.login("root", "correct horse battery", elsewhere).await;
        assert!(
            matches!(refused, Err(EngineError::TooManyRequests { .. })),
            "the user waits from every address: {refused:?}"
        );
    }

    #[tokio::test]
    async fn a_new_password_ends_every_session() {
        let auth = auth(None).await;
        let first = admin(&auth, "root").await;
        let second = auth
            .login("root", "correct horse battery", HOME)
            .await
            .expect("login");
        let wrong = auth
            .change_password("root", "not it at all", "a brand new password", HOME)
            .await;
        assert!(
            matches!(&wrong, Err(EngineError::Invalid(e)) if e.field == "current_password"),
            "{wrong:?}"
        );
        let weak = auth
            .change_password("root", "correct horse battery", "short", HOME)
            .await;
        assert!(
            matches!(&weak, Err(EngineError::Invalid(e)) if e.field == "new_password"),
            "{weak:?}"
        );
        assert!(auth.session(&first).is_some(), "nothing changed yet");
        let third = auth
            .change_password(
                "root",
                "correct horse battery",
                "a brand new password",
                HOME,
            )
            .await
            .expect("changed");
        assert_eq!(auth.session(&first), None);
        assert_eq!(auth.session(&second), None);
        assert!(auth.session(&third).is_some());
        let old = auth.login("root", "correct horse battery", HOME).await;
        assert!(matches!(old, Err(EngineError::Unauthorized(_))));
        let fourth = auth
            .login("root", "a brand new password", HOME)
            .await
            .expect("the new password signs in");
        assert_eq!(auth.sign_out_everywhere(None).await.expect("ended"), 2);
        assert_eq!(auth.session(&third), None);
        assert_eq!(auth.session(&fourth), None);
    }
}
