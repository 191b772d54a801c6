//! One typed configuration, read from the environment and validated at start.
//!
//! Each variable is declared once, below, with its default, its parser and its help:
//! clap reads them (`slipway serve --help` lists them), and an invalid value is refused
//! with an error naming the variable.

use clap::error::{ContextKind, ContextValue};
use clap::{Args, FromArgMatches};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A variable that holds a value Slipway cannot use.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {message}")]
pub struct ConfigError {
    pub var: String,
    pub message: String,
}

/// A secret: shown as `<redacted>` by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A database URL: its password is hidden by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(pub String);

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match url::Url::parse(&self.0) {
            Ok(mut url) if url.password().is_some() => {
                let _ = url.set_password(Some("<redacted>"));
                write!(f, "{url}")
            }
            _ => f.write_str(&self.0),
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Where the dashboard and API listen.
    #[arg(
        long,
        env = "SLIPWAY_ADDR",
        value_name = "SLIPWAY_ADDR",
        default_value = "127.0.0.1:3000"
    )]
    pub addr: SocketAddr,
    /// The SQLite file, logs and checkouts.
    #[arg(
        long,
        env = "SLIPWAY_DATA_DIR",
        value_name = "SLIPWAY_DATA_DIR",
        default_value = "./data"
    )]
    pub data_dir: PathBuf,
    /// The database; default `sqlite://<SLIPWAY_DATA_DIR>/slipway.db`.
    #[arg(long, env = "DATABASE_URL", value_name = "DATABASE_URL", value_parser = database_url)]
    database_url: Option<DatabaseUrl>,
    /// Accept `file://` URLs and local paths as repositories.
    #[arg(long, env = "SLIPWAY_ALLOW_LOCAL_REPOS", value_name = "SLIPWAY_ALLOW_LOCAL_REPOS",
          default_value = "0", value_parser = clap::builder::BoolishValueParser::new(),
          action = clap::ArgAction::Set)]
    pub allow_local_repos: bool,
    /// An admin API token, 16 characters or more.
    #[arg(long, env = "SLIPWAY_ADMIN_TOKEN", value_name = "SLIPWAY_ADMIN_TOKEN", value_parser = admin_token)]
    pub admin_token: Option<Secret>,
    /// The Docker engine (`unix://`, `tcp://` or `http://`); default the local socket.
    #[arg(long, env = "DOCKER_HOST", value_name = "DOCKER_HOST", value_parser = docker_host)]
    pub docker_host: Option<String>,
    /// Deployments built at once (one per app at a time).
    #[arg(long, env = "SLIPWAY_WORKERS", value_name = "SLIPWAY_WORKERS", default_value = "2",
          value_parser = whole(1, 64))]
    pub workers: usize,
    /// How long a new container has to answer, in seconds.
    #[arg(long = "health-timeout-secs", env = "SLIPWAY_HEALTH_TIMEOUT_SECS",
          value_name = "SLIPWAY_HEALTH_TIMEOUT_SECS", default_value = "60", value_parser = secs(3600))]
    pub health_timeout: Duration,
    /// The limit on `git clone`, in seconds.
    #[arg(long = "clone-timeout-secs", env = "SLIPWAY_CLONE_TIMEOUT_SECS",
          value_name = "SLIPWAY_CLONE_TIMEOUT_SECS", default_value = "300", value_parser = secs(3600))]
    pub clone_timeout: Duration,
    /// A deployment running longer than this many seconds ends `failed`.
    #[arg(long = "build-timeout-secs", env = "SLIPWAY_BUILD_TIMEOUT_SECS",
          value_name = "SLIPWAY_BUILD_TIMEOUT_SECS", default_value = "1800", value_parser = secs(86_400))]
    pub build_timeout: Duration,
    /// A deployment with no output and no status change this many seconds ends `failed`.
    #[arg(long = "progress-deadline-secs", env = "SLIPWAY_PROGRESS_DEADLINE_SECS",
          value_name = "SLIPWAY_PROGRESS_DEADLINE_SECS", default_value = "600", value_parser = secs(86_400))]
    pub progress_deadline: Duration,
    /// A checkout growing past this many MB ends `failed`.
    #[arg(long = "clone-max-mb", env = "SLIPWAY_CLONE_MAX_MB", value_name = "SLIPWAY_CLONE_MAX_MB",
          default_value = "1024", value_parser = megabytes(1_048_576))]
    pub clone_max_bytes: u64,
    /// A checkout holding more files and directories than this ends `failed` (millions of
    /// empty files pass any size limit).
    #[arg(long = "clone-max-files", env = "SLIPWAY_CLONE_MAX_FILES", value_name = "SLIPWAY_CLONE_MAX_FILES",
          default_value = "200000", value_parser = whole(1, 100_000_000))]
    pub clone_max_files: usize,
    /// A deployment whose log grows past this many MB ends `failed`.
    #[arg(long = "log-max-mb", env = "SLIPWAY_LOG_MAX_MB", value_name = "SLIPWAY_LOG_MAX_MB",
          default_value = "100", value_parser = megabytes(1_048_576))]
    pub log_max_bytes: u64,
    /// The dashboard's address as browsers see it, e.g. `https://deploy.example.com`:
    /// cookie-authenticated mutations and WebSocket upgrades must come from this origin
    /// (kept as `scheme://host[:port]`).
    #[arg(long, env = "SLIPWAY_PUBLIC_URL", value_name = "SLIPWAY_PUBLIC_URL", value_parser = public_url)]
    pub public_url: Option<String>,
    /// More `Host` names the dashboard and API answer to, comma-separated (besides the
    /// listen address, localhost, 127.0.0.1, [::1] and the host of SLIPWAY_PUBLIC_URL).
    #[arg(long, env = "SLIPWAY_ALLOWED_HOSTS", value_name = "SLIPWAY_ALLOWED_HOSTS", value_parser = allowed_hosts)]
    pub allowed_hosts: Option<AllowedHosts>,
    /// App `hello` is served at `hello.<domain>` by the edge.
    #[arg(long, env = "SLIPWAY_APPS_DOMAIN", value_name = "SLIPWAY_APPS_DOMAIN",
          default_value = "localhost", value_parser = apps_domain)]
    pub apps_domain: String,
    /// Where the edge listens for HTTP; `off` disables the edge (apps then answer only on
    /// their loopback ports).
    #[arg(long, env = "SLIPWAY_EDGE_HTTP_ADDR", value_name = "SLIPWAY_EDGE_HTTP_ADDR",
          default_value = "127.0.0.1:8080", value_parser = listen)]
    pub edge_http_addr: Listen,
    /// Where the edge listens for HTTPS, e.g. `0.0.0.0:443`; unset: no HTTPS.
    #[arg(
        long,
        env = "SLIPWAY_EDGE_HTTPS_ADDR",
        value_name = "SLIPWAY_EDGE_HTTPS_ADDR"
    )]
    pub edge_https_addr: Option<SocketAddr>,
    /// Where certificates come from: `acme` (`SLIPWAY_ACME_CA`) or `internal` (Caddy's CA).
    #[arg(long, env = "SLIPWAY_TLS", value_name = "SLIPWAY_TLS", default_value = "acme",
          value_parser = tls)]
    pub tls: Tls,
    /// The ACME directory certificates are ordered from.
    #[arg(long, env = "SLIPWAY_ACME_CA", value_name = "SLIPWAY_ACME_CA",
          default_value = "https://acme-v02.api.letsencrypt.org/directory", value_parser = https_url)]
    pub acme_ca: String,
    /// The ACME account's contact.
    #[arg(long, env = "SLIPWAY_ACME_EMAIL", value_name = "SLIPWAY_ACME_EMAIL", value_parser = email)]
    pub acme_email: Option<String>,
    /// A PEM file of roots to trust for the ACME directory's own HTTPS (a private ACME
    /// server such as pebble); unset: the system's roots.
    #[arg(
        long,
        env = "SLIPWAY_ACME_CA_ROOT",
        value_name = "SLIPWAY_ACME_CA_ROOT"
    )]
    pub acme_ca_root: Option<PathBuf>,
    /// How long the edge lets an old container finish its requests after a switch.
    #[arg(long = "drain-secs", env = "SLIPWAY_DRAIN_SECS", value_name = "SLIPWAY_DRAIN_SECS",
          default_value = "10", value_parser = secs_or_zero(3600))]
    pub drain: Duration,
    /// Each app keeps its newest this many MB of runtime log lines.
    #[arg(long = "runtime-log-mb", env = "SLIPWAY_RUNTIME_LOG_MB", value_name = "SLIPWAY_RUNTIME_LOG_MB",
          default_value = "50", value_parser = megabytes(1_048_576))]
    pub runtime_log_bytes: u64,
    /// This node's name in a cluster (`GET /api/nodes`, each deployment's `node`);
    /// default the host name and the port of `SLIPWAY_ADDR`.
    #[arg(long = "node-name", env = "SLIPWAY_NODE_NAME", value_name = "SLIPWAY_NODE_NAME",
          value_parser = node_name)]
    node_name: Option<String>,
    /// How long a node may go unheard before another ends its deployments `failed`.
    #[arg(long = "node-lease-secs", env = "SLIPWAY_NODE_LEASE_SECS",
          value_name = "SLIPWAY_NODE_LEASE_SECS", default_value = "10", value_parser = secs(3600))]
    pub node_lease: Duration,
    /// Where apps run: `docker` (one engine, the default), `swarm` (services of the Docker
    /// Swarm this engine manages) or `synthetic` (builds and runs nothing, for the tests
    /// and benchmarks of everything around the runtime).
    #[arg(long = "runtime", env = "SLIPWAY_RUNTIME", value_name = "SLIPWAY_RUNTIME",
          default_value = "docker", value_parser = runtime_kind)]
    pub runtime: RuntimeKind,
    /// With `SLIPWAY_RUNTIME=swarm`: the registry images are pushed to, which every node
    /// of the swarm pulls from (`scripts/swarm.sh up` serves one on 127.0.0.1:5000).
    #[arg(long, env = "SLIPWAY_REGISTRY", value_name = "SLIPWAY_REGISTRY",
          default_value = "127.0.0.1:5000", value_parser = registry)]
    pub registry: String,
    /// The Caddy binary of the edge (2.7 or later).
    #[arg(
        long,
        env = "SLIPWAY_CADDY",
        value_name = "SLIPWAY_CADDY",
        default_value = "/usr/local/lib/slipway/caddy-2.11.7/caddy"
    )]
    pub caddy: PathBuf,
}

/// An address to listen on, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    Off,
    At(SocketAddr),
}

/// Where the edge's certificates come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    Acme,
    Internal,
}

/// `SLIPWAY_RUNTIME`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeKind {
    Docker,
    Swarm,
    Synthetic,
}

/// `SLIPWAY_ALLOWED_HOSTS`: host names (or IP addresses) in lower case, without ports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AllowedHosts(pub Vec<String>);

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup`, so tests need not touch the environment. A
    /// variable that is empty counts as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        // Each argument's default becomes the looked-up value, when there is one: clap
        // then parses and validates it like any other, and never reads the environment.
        let command = Config::augment_args(clap::Command::new("slipway")).mut_args(|arg| {
            let value = arg
                .get_env()
                .and_then(|name| name.to_str())
                .and_then(&lookup)
                .filter(|value| !value.trim().is_empty());
            let arg = arg.env(None::<&str>);
            match value {
                Some(value) => arg.default_value(value.trim().to_owned()),
                None => arg,
            }
        });
        let matches = command
            .try_get_matches_from(["slipway"])
            .map_err(config_error)?;
        Config::from_arg_matches(&matches).map_err(config_error)
    }

    /// `DATABASE_URL`, or the SQLite file in the data directory.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.0.clone(),
            None => format!("sqlite://{}/slipway.db", self.data_dir.display()),
        }
    }

    /// Whether the database is PostgreSQL: this node is part of a cluster.
    pub fn clustered(&self) -> bool {
        let url = self.database_url();
        url.starts_with("postgres:") || url.starts_with("postgresql:")
    }

    /// `SLIPWAY_NODE_NAME`, or the host name and the port this node listens on.
    pub fn node_name(&self) -> String {
        self.node_name.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "localhost".to_owned());
            format!("{host}:{}", self.addr.port())
        })
    }

    /// `slipway serve --help`: every variable with its default.
    pub fn command() -> clap::Command {
        Config::augment_args(clap::Command::new("serve"))
    }
}

/// clap's error, as the variable it concerns and what is wrong with its value.
fn config_error(e: clap::Error) -> ConfigError {
    let argument = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(text)) => text.clone(),
        _ => String::new(),
    };
    // Arguments read `--addr <SLIPWAY_ADDR>`: the value name is the variable.
    let var = argument
        .split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(name, _)| name.to_owned())
        .unwrap_or(argument);
    let value = match e.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(value)) => format!("{value:?} "),
        _ => String::new(),
    };
    let why = std::error::Error::source(&e)
        .map(ToString::to_string)
        .unwrap_or_else(|| e.kind().to_string());
    ConfigError {
        var,
        message: format!("{value}{why}"),
    }
}

/// A whole number from `min` to `max`.
fn whole(min: usize, max: usize) -> impl Fn(&str) -> Result<usize, String> + Clone {
    move |text| {
        text.parse::<usize>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| format!("is not a whole number from {min} to {max}"))
    }
}

fn secs(max: usize) -> impl Fn(&str) -> Result<Duration, String> + Clone {
    let whole = whole(1, max);
    move |text| whole(text).map(|n| Duration::from_secs(n as u64))
}

fn megabytes(max: usize) -> impl Fn(&str) -> Result<u64, String> + Clone {
    let whole = whole(1, max);
    move |text| whole(text).map(|n| n as u64 * 1024 * 1024)
}

fn secs_or_zero(max: usize) -> impl Fn(&str) -> Result<Duration, String> + Clone {
    let whole = whole(0, max);
    move |text| whole(text).map(|n| Duration::from_secs(n as u64))
}

fn listen(text: &str) -> Result<Listen, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(Listen::Off);
    }
    text.parse()
        .map(Listen::At)
        .map_err(|_| "is not an address like 127.0.0.1:8080, or off".into())
}

fn tls(text: &str) -> Result<Tls, String> {
    match text {
        "acme" => Ok(Tls::Acme),
        "internal" => Ok(Tls::Internal),
        _ => Err("is not one of acme, internal".into()),
    }
}

fn apps_domain(text: &str) -> Result<String, String> {
    let domain = text.trim_end_matches('.').to_ascii_lowercase();
    protocol::validate::domain(&domain, "SLIPWAY_APPS_DOMAIN")
        .map(|()| domain)
        .map_err(|e| e.message)
}

fn https_url(text: &str) -> Result<String, String> {
    match url::Url::parse(text) {
        Ok(url) if url.scheme() == "https" && url.host().is_some() => Ok(text.to_owned()),
        _ => Err("is not an https:// URL".into()),
    }
}

fn email(text: &str) -> Result<String, String> {
    match text.split_once('@') {
        Some((user, host))
            if !user.is_empty() && host.contains('.') && !text.contains(char::is_whitespace) =>
        {
            Ok(text.to_owned())
        }
        _ => Err("is not an email address".into()),
    }
}

fn admin_token(text: &str) -> Result<Secret, String> {
    if text.len() < 16 {
        return Err("must be at least 16 characters long".into());
    }
    Ok(Secret(text.to_owned()))
}

fn docker_host(text: &str) -> Result<String, String> {
    if ["unix://", "tcp://", "http://"]
        .iter()
        .any(|scheme| text.starts_with(scheme))
    {
        Ok(text.to_owned())
    } else {
        Err("must start with unix://, tcp:// or http://".into())
    }
}

fn database_url(text: &str) -> Result<DatabaseUrl, String> {
    if ["sqlite:", "postgres:", "postgresql:"]
        .iter()
        .any(|scheme| text.starts_with(scheme))
    {
        Ok(DatabaseUrl(text.to_owned()))
    } else {
        Err("must be a sqlite: URL (one node), a postgres:// URL (a cluster), or unset".into())
    }
}

fn node_name(text: &str) -> Result<String, String> {
    let valid = text.len() <= 100
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
    if valid {
        Ok(text.to_owned())
    } else {
        Err("must be at most 100 letters, digits, '-', '_', '.' or ':'".into())
    }
}

fn runtime_kind(text: &str) -> Result<RuntimeKind, String> {
    match text.to_ascii_lowercase().as_str() {
        "docker" => Ok(RuntimeKind::Docker),
        "swarm" => Ok(RuntimeKind::Swarm),
        "synthetic" => Ok(RuntimeKind::Synthetic),
        _ => Err("must be docker, swarm or synthetic".into()),
    }
}

/// `SLIPWAY_REGISTRY`: `host[:port]`, as image references name a registry.
fn registry(text: &str) -> Result<String, String> {
    let text = text.trim().trim_end_matches('/');
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (text, None),
    };
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'));
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    if host_ok && port_ok {
        Ok(text.to_owned())
    } else {
        Err("must be a registry's host[:port], e.g. 127.0.0.1:5000".into())
    }
}

/// `a.example.com, 192.168.1.5,[fd00::1]` → the names in lower case. Each must be a DNS
/// name or an IP address, without a scheme, port or path.
fn allowed_hosts(text: &str) -> Result<AllowedHosts, String> {
    let mut hosts = Vec::new();
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let name = name.to_ascii_lowercase();
        let valid = match url::Host::parse(&name) {
            Ok(url::Host::Domain(domain)) => domain == name,
            Ok(url::Host::Ipv4(_)) => true,
            Ok(url::Host::Ipv6(_)) => name.starts_with('['),
            Err(_) => false,
        };
        if !valid {
            return Err(format!(
                "{name:?} is not a host name: list names like deploy.example.com or 192.168.1.5, without scheme or port"
            ));
        }
        hosts.push(name);
    }
    Ok(AllowedHosts(hosts))
}

/// `https://host[:port][/]` → `https://host[:port]`: the origin browsers send.
fn public_url(text: &str) -> Result<String, String> {
    let error = || "is not a URL like https://deploy.example.com".to_owned();
    let url = url::Url::parse(text).map_err(|_| error())?;
    let bare = url.path() == "/" && url.query().is_none() && url.fragment().is_none();
    if !matches!(url.scheme(), "http" | "https") || !bare || url.host().is_none() {
        return Err(error());
    }
    Ok(url.origin().ascii_serialization())
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
        assert_eq!(c.database_url(), "sqlite://./data/slipway.db");
        assert!(!c.allow_local_repos);
        assert_eq!(c.workers, 2);
        assert_eq!(c.health_timeout, Duration::from_secs(60));
        assert_eq!(c.clone_max_bytes, 1024 * 1024 * 1024);
        assert_eq!(c.public_url, None);
        assert_eq!(c.log_max_bytes, 100 * 1024 * 1024);
        assert_eq!(c.clone_max_files, 200_000);
        assert_eq!(c.allowed_hosts, None);
        assert!(!c.clustered());
        assert!(c.node_name().ends_with(":3000"), "{}", c.node_name());
        assert_eq!(c.node_lease, Duration::from_secs(10));
        assert_eq!(c.runtime, RuntimeKind::Docker);
        let c = config(&[
            ("DATABASE_URL", "postgres:///slipway?host=/tmp/pg"),
            ("SLIPWAY_NODE_NAME", "node-b"),
            ("SLIPWAY_RUNTIME", "synthetic"),
        ])?;
        assert!(c.clustered());
        assert_eq!(c.node_name(), "node-b");
        assert_eq!(c.runtime, RuntimeKind::Synthetic);
        assert_eq!(c.registry, "127.0.0.1:5000");
        let c = config(&[
            ("SLIPWAY_RUNTIME", "Swarm"),
            ("SLIPWAY_REGISTRY", "registry.internal:5000/"),
        ])?;
        assert_eq!(c.runtime, RuntimeKind::Swarm);
        assert_eq!(c.registry, "registry.internal:5000");
        for bad in ["http://r:5000", "r:0", "r:x", "a b"] {
            let Err(e) = config(&[("SLIPWAY_REGISTRY", bad)]) else {
                panic!("{bad:?} accepted");
            };
            assert!(e.to_string().contains("SLIPWAY_REGISTRY"), "{e}");
        }
        let c = config(&[
            ("SLIPWAY_PUBLIC_URL", "HTTPS://Deploy.Example.com:8443/"),
            ("SLIPWAY_ALLOW_LOCAL_REPOS", "1"),
            ("SLIPWAY_WORKERS", " "),
            (
                "SLIPWAY_ALLOWED_HOSTS",
                "Deploy.Example.com, 10.0.0.7,,[::2]",
            ),
        ])?;
        assert_eq!(
            c.allowed_hosts,
            Some(AllowedHosts(vec![
                "deploy.example.com".into(),
                "10.0.0.7".into(),
                "[::2]".into()
            ]))
        );
        assert_eq!(
            c.public_url.as_deref(),
            Some("https://deploy.example.com:8443")
        );
        assert!(c.allow_local_repos);
        assert_eq!(c.workers, 2, "an empty variable counts as unset");
        let c = config(&[])?;
        assert_eq!(c.edge_http_addr, Listen::At(([127, 0, 0, 1], 8080).into()));
        assert_eq!(
            (c.apps_domain.as_str(), c.tls, c.drain),
            ("localhost", Tls::Acme, Duration::from_secs(10))
        );
        let c = config(&[
            ("SLIPWAY_EDGE_HTTP_ADDR", "off"),
            ("SLIPWAY_TLS", "internal"),
            ("SLIPWAY_DRAIN_SECS", "0"),
        ])?;
        assert_eq!(
            (c.edge_http_addr, c.tls, c.drain),
            (Listen::Off, Tls::Internal, Duration::ZERO)
        );
        Ok(())
    }

    #[test]
    fn errors_name_the_variable() {
        for (var, value) in [
            ("SLIPWAY_ADDR", "nowhere"),
            ("SLIPWAY_ALLOW_LOCAL_REPOS", "maybe"),
            ("SLIPWAY_WORKERS", "0"),
            ("SLIPWAY_HEALTH_TIMEOUT_SECS", "-5"),
            ("DOCKER_HOST", "ftp://x"),
            ("DATABASE_URL", "mysql://x"),
            ("SLIPWAY_PUBLIC_URL", "https://x.example/app"),
            ("SLIPWAY_PUBLIC_URL", "ftp://x.example"),
            ("SLIPWAY_ADMIN_TOKEN", "short"),
            ("SLIPWAY_LOG_MAX_MB", "0"),
            ("SLIPWAY_CLONE_MAX_FILES", "many"),
            ("SLIPWAY_ALLOWED_HOSTS", "https://deploy.example.com"),
            ("SLIPWAY_ALLOWED_HOSTS", "deploy.example.com:443"),
            ("SLIPWAY_EDGE_HTTP_ADDR", "everywhere"),
            ("SLIPWAY_EDGE_HTTPS_ADDR", "443"),
            ("SLIPWAY_TLS", "letsencrypt"),
            ("SLIPWAY_ACME_CA", "http://acme.example/dir"),
            ("SLIPWAY_ACME_EMAIL", "nobody"),
            ("SLIPWAY_APPS_DOMAIN", "-bad-.example"),
            ("SLIPWAY_DRAIN_SECS", "soon"),
            ("SLIPWAY_NODE_NAME", "node one"),
            ("SLIPWAY_NODE_LEASE_SECS", "0"),
            ("SLIPWAY_RUNTIME", "kubernetes"),
        ] {
            let error = config(&[(var, value)]).err();
            assert_eq!(
                error.as_ref().map(|e| e.var.as_str()),
                Some(var),
                "{error:?}"
            );
            let message = error.map(|e| e.to_string()).unwrap_or_default();
            assert!(message.contains(value), "{message}");
        }
    }

    #[test]
    fn secrets_are_redacted_in_debug() -> Result<(), ConfigError> {
        let c = config(&[
            ("SLIPWAY_ADMIN_TOKEN", "a-very-secret-token-value"),
            ("DATABASE_URL", "sqlite://user:pw@localhost/tmp/x.db"),
        ])?;
        let text = format!("{c:?}");
        assert!(!text.contains("a-very-secret-token-value"), "{text}");
        assert!(!text.contains(":pw@"), "{text}");
        Ok(())
    }
}
