//! One typed configuration, read from the environment and validated at start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A variable that holds a value Slipway cannot use.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {message}")]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

#[derive(Clone)]
pub struct Config {
    /// `SLIPWAY_ADDR`, default `127.0.0.1:3000`.
    pub addr: SocketAddr,
    /// `SLIPWAY_DATA_DIR`, default `./data`: the SQLite file, logs and checkouts.
    pub data_dir: PathBuf,
    /// `DATABASE_URL`, default `sqlite://<data_dir>/slipway.db`.
    pub database_url: String,
    /// `SLIPWAY_ALLOW_LOCAL_REPOS=1` admits `file://` URLs and local paths.
    pub allow_local_repos: bool,
    /// `SLIPWAY_ADMIN_TOKEN`: a valid admin API token when set.
    pub admin_token: Option<String>,
    /// `DOCKER_HOST`; unset means the local socket.
    pub docker_host: Option<String>,
    /// `SLIPWAY_WORKERS`, default 2: deployments built at once (one per app at most).
    pub workers: usize,
    /// `SLIPWAY_HEALTH_TIMEOUT_SECS`, default 60: how long a new container has to answer.
    pub health_timeout: Duration,
    /// `SLIPWAY_CLONE_TIMEOUT_SECS`, default 300.
    pub clone_timeout: Duration,
    /// `SLIPWAY_BUILD_TIMEOUT_SECS`, default 1800: a deployment still running after this
    /// long ends `failed` with the reason.
    pub build_timeout: Duration,
    /// `SLIPWAY_PROGRESS_DEADLINE_SECS`, default 600: a deployment that writes no output
    /// and changes no status for this long ends `failed` with the reason.
    pub progress_deadline: Duration,
    /// `SLIPWAY_CLONE_MAX_MB`, default 1024: a checkout larger than this fails the clone.
    pub clone_max_bytes: u64,
    /// `SLIPWAY_PUBLIC_URL`: the dashboard's address as browsers see it, e.g.
    /// `https://deploy.example.com`. Cookie-authenticated mutations and WebSocket upgrades
    /// must come from this origin (kept as `scheme://host[:port]`).
    pub public_url: Option<String>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("addr", &self.addr)
            .field("data_dir", &self.data_dir)
            .field("database_url", &redact_url(&self.database_url))
            .field("allow_local_repos", &self.allow_local_repos)
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .field("docker_host", &self.docker_host)
            .field("workers", &self.workers)
            .field("health_timeout", &self.health_timeout)
            .field("clone_timeout", &self.clone_timeout)
            .field("build_timeout", &self.build_timeout)
            .field("progress_deadline", &self.progress_deadline)
            .field("clone_max_bytes", &self.clone_max_bytes)
            .field("public_url", &self.public_url)
            .finish()
    }
}

/// Hides a password in `scheme://user:password@host/...`.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://<redacted>@{}", &url[..scheme_end], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup`, so tests need not touch the environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |var: &'static str| lookup(var).filter(|v| !v.trim().is_empty());
        let addr = match get("SLIPWAY_ADDR") {
            Some(text) => text.trim().parse().map_err(|_| ConfigError {
                var: "SLIPWAY_ADDR",
                message: format!("{text:?} is not an address like 127.0.0.1:3000"),
            })?,
            None => SocketAddr::from(([127, 0, 0, 1], 3000)),
        };
        let data_dir = PathBuf::from(get("SLIPWAY_DATA_DIR").unwrap_or_else(|| "./data".into()));
        let database_url = match get("DATABASE_URL") {
            Some(url) if url.starts_with("sqlite:") => url,
            Some(url) => {
                return Err(ConfigError {
                    var: "DATABASE_URL",
                    message: format!(
                        "{} is not supported yet: use a sqlite: URL or leave it unset",
                        redact_url(&url)
                    ),
                });
            }
            None => format!("sqlite://{}/slipway.db", data_dir.display()),
        };
        let allow_local_repos = flag(
            get("SLIPWAY_ALLOW_LOCAL_REPOS"),
            "SLIPWAY_ALLOW_LOCAL_REPOS",
        )?;
        let admin_token = get("SLIPWAY_ADMIN_TOKEN");
        if let Some(token) = &admin_token
            && token.len() < 16
        {
            return Err(ConfigError {
                var: "SLIPWAY_ADMIN_TOKEN",
                message: "must be at least 16 characters long".into(),
            });
        }
        let docker_host = get("DOCKER_HOST");
        if let Some(host) = &docker_host
            && !(host.starts_with("unix://")
                || host.starts_with("tcp://")
                || host.starts_with("http://"))
        {
            return Err(ConfigError {
                var: "DOCKER_HOST",
                message: format!("{host:?} must start with unix://, tcp:// or http://"),
            });
        }
        let workers = number(get("SLIPWAY_WORKERS"), "SLIPWAY_WORKERS", 2, 1..=64)?;
        let health_timeout = number(
            get("SLIPWAY_HEALTH_TIMEOUT_SECS"),
            "SLIPWAY_HEALTH_TIMEOUT_SECS",
            60,
            1..=3600,
        )?;
        let clone_timeout = number(
            get("SLIPWAY_CLONE_TIMEOUT_SECS"),
            "SLIPWAY_CLONE_TIMEOUT_SECS",
            300,
            1..=3600,
        )?;
        let build_timeout = number(
            get("SLIPWAY_BUILD_TIMEOUT_SECS"),
            "SLIPWAY_BUILD_TIMEOUT_SECS",
            1800,
            1..=86_400,
        )?;
        let progress_deadline = number(
            get("SLIPWAY_PROGRESS_DEADLINE_SECS"),
            "SLIPWAY_PROGRESS_DEADLINE_SECS",
            600,
            1..=86_400,
        )?;
        let clone_max_mb = number(
            get("SLIPWAY_CLONE_MAX_MB"),
            "SLIPWAY_CLONE_MAX_MB",
            1024,
            1..=1_048_576,
        )?;
        let public_url = get("SLIPWAY_PUBLIC_URL")
            .map(|url| origin_of(url.trim()))
            .transpose()?;
        Ok(Config {
            addr,
            data_dir,
            database_url,
            allow_local_repos,
            admin_token,
            docker_host,
            workers,
            health_timeout: Duration::from_secs(health_timeout as u64),
            clone_timeout: Duration::from_secs(clone_timeout as u64),
            build_timeout: Duration::from_secs(build_timeout as u64),
            progress_deadline: Duration::from_secs(progress_deadline as u64),
            clone_max_bytes: clone_max_mb as u64 * 1024 * 1024,
            public_url,
        })
    }
}

/// `https://host[:port][/]` → `https://host[:port]`: the origin browsers send.
fn origin_of(url: &str) -> Result<String, ConfigError> {
    let error = || ConfigError {
        var: "SLIPWAY_PUBLIC_URL",
        message: format!("{url:?} is not a URL like https://deploy.example.com"),
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(error)?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(error());
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    let valid = !authority.is_empty()
        && authority
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if !valid {
        return Err(error());
    }
    Ok(format!("{scheme}://{}", authority.to_ascii_lowercase()))
}

fn flag(value: Option<String>, var: &'static str) -> Result<bool, ConfigError> {
    match value.as_deref().map(str::trim) {
        None | Some("0" | "false" | "no") => Ok(false),
        Some("1" | "true" | "yes") => Ok(true),
        Some(other) => Err(ConfigError {
            var,
            message: format!("{other:?} is not one of 1, 0, true, false"),
        }),
    }
}

fn number(
    value: Option<String>,
    var: &'static str,
    default: usize,
    range: std::ops::RangeInclusive<usize>,
) -> Result<usize, ConfigError> {
    let Some(text) = value else {
        return Ok(default);
    };
    text.trim()
        .parse::<usize>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| ConfigError {
            var,
            message: format!(
                "{text:?} is not a whole number from {} to {}",
                range.start(),
                range.end()
            ),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults() -> Result<(), ConfigError> {
        let c = config(&[])?;
        assert_eq!(c.addr.to_string(), "127.0.0.1:3000");
        assert_eq!(c.database_url, "sqlite://./data/slipway.db");
        assert!(!c.allow_local_repos);
        assert_eq!(c.workers, 2);
        assert_eq!(c.public_url, None);
        let c = config(&[("SLIPWAY_PUBLIC_URL", "HTTPS://Deploy.Example.com:8443/")])?;
        assert_eq!(
            c.public_url.as_deref(),
            Some("https://deploy.example.com:8443")
        );
        Ok(())
    }

    #[test]
    fn errors_name_the_variable() {
        assert_eq!(
            config(&[("SLIPWAY_ADDR", "nowhere")]).err().map(|e| e.var),
            Some("SLIPWAY_ADDR")
        );
        assert_eq!(
            config(&[("SLIPWAY_ALLOW_LOCAL_REPOS", "maybe")])
                .err()
                .map(|e| e.var),
            Some("SLIPWAY_ALLOW_LOCAL_REPOS")
        );
        assert_eq!(
            config(&[("SLIPWAY_WORKERS", "0")]).err().map(|e| e.var),
            Some("SLIPWAY_WORKERS")
        );
        assert_eq!(
            config(&[("DOCKER_HOST", "ftp://x")]).err().map(|e| e.var),
            Some("DOCKER_HOST")
        );
        assert_eq!(
            config(&[("SLIPWAY_PUBLIC_URL", "https://x.example/app")])
                .err()
                .map(|e| e.var),
            Some("SLIPWAY_PUBLIC_URL")
        );
        assert_eq!(
            config(&[("SLIPWAY_PUBLIC_URL", "ftp://x.example")])
                .err()
                .map(|e| e.var),
            Some("SLIPWAY_PUBLIC_URL")
        );
        assert_eq!(
            config(&[("SLIPWAY_ADMIN_TOKEN", "short")])
                .err()
                .map(|e| e.var),
            Some("SLIPWAY_ADMIN_TOKEN")
        );
    }

    #[test]
    fn secrets_are_redacted_in_debug() -> Result<(), ConfigError> {
        let c = config(&[
            ("SLIPWAY_ADMIN_TOKEN", "a-very-secret-token-value"),
            ("DATABASE_URL", "sqlite://user:pw@/tmp/x.db"),
        ])?;
        let text = format!("{c:?}");
        assert!(!text.contains("a-very-secret-token-value"));
        assert!(!text.contains("pw@"));
        Ok(())
    }
}
