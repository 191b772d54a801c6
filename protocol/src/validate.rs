//! The rules for a new app (PROTOCOL.md, "Apps"). Every error names its field, so the
//! API can answer `422` with a message a person can act on and the dashboard can show it
//! next to the input.

use crate::{NewApp, Status};
use std::collections::BTreeMap;

/// One rejected field and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        FieldError {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for FieldError {}

/// A new app that passed every rule, with defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidApp {
    pub name: String,
    pub repo_url: String,
    pub branch: String,
    pub dockerfile: String,
    pub port: Option<u16>,
    pub env: BTreeMap<String, String>,
    /// Extra host names, lower case, each once.
    pub domains: Vec<String>,
    pub memory_mb: u32,
    pub cpus: f64,
}

/// An app's memory limit when none is given, in MB.
pub const DEFAULT_MEMORY_MB: u32 = 512;
/// An app's CPU limit when none is given.
pub const DEFAULT_CPUS: f64 = 1.0;
const MAX_DOMAINS: usize = 50;

const MAX_URL: usize = 2048;
const MAX_REF: usize = 255;
const MAX_PATH: usize = 255;
const MAX_ENV_VARS: usize = 200;
const MAX_ENV_NAME: usize = 255;
const MAX_ENV_VALUE: usize = 32 * 1024;

/// Checks every field of `new`. `allow_local` admits `file://` URLs and absolute local
/// paths (`SLIPWAY_ALLOW_LOCAL_REPOS=1`).
pub fn new_app(new: &NewApp, allow_local: bool) -> Result<ValidApp, FieldError> {
    app_name(&new.name)?;
    repo_url(&new.repo_url, allow_local)?;
    let branch = new.branch.clone().unwrap_or_else(|| "main".to_owned());
    branch_name(&branch)?;
    let dockerfile = new
        .dockerfile
        .clone()
        .unwrap_or_else(|| "Dockerfile".to_owned());
    dockerfile_path(&dockerfile)?;
    let port = new.port.map(port).transpose()?;
    env(&new.env)?;
    Ok(ValidApp {
        name: new.name.clone(),
        repo_url: new.repo_url.clone(),
        branch,
        dockerfile,
        port,
        env: new.env.clone(),
        domains: domains(&new.domains)?,
        memory_mb: new
            .memory_mb
            .map(memory_mb)
            .transpose()?
            .unwrap_or(DEFAULT_MEMORY_MB),
        cpus: new.cpus.map(cpus).transpose()?.unwrap_or(DEFAULT_CPUS),
    })
}

/// A DNS name: labels of `a-z`, `0-9` and `-` (not at either end), 1 to 63 characters
/// each, 253 in all; not an IP address. Errors name `field`.
pub fn domain(name: &str, field: &str) -> Result<(), FieldError> {
    let bad = |why: String| Err(FieldError::new(field, why));
    if name.is_empty() || name.len() > 253 {
        return bad(format!("{name:?} must be 1 to 253 characters long"));
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return bad(format!(
                "{name:?} is not a host name: labels of a-z, 0-9 and '-' (not first or last), 1 to 63 characters"
            ));
        }
    }
    if name
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return bad(format!("{name:?} is an IP address, not a host name"));
    }
    Ok(())
}

/// An app's extra host names: each a valid DNS name (case is ignored), at most 50.
pub fn domains(names: &[String]) -> Result<Vec<String>, FieldError> {
    if names.len() > MAX_DOMAINS {
        return Err(FieldError::new("domains", "at most 50 host names"));
    }
    let mut valid: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
        domain(&name, "domains")?;
        if !valid.contains(&name) {
            valid.push(name);
        }
    }
    Ok(valid)
}

/// A commit to build: its full SHA (40 hex digits, or 64 in a SHA-256 repository), so
/// that exactly that commit is fetched.
pub fn commit(sha: &str) -> Result<String, FieldError> {
    let sha = sha.trim().to_ascii_lowercase();
    if matches!(sha.len(), 40 | 64) && sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(sha)
    } else {
        Err(FieldError::new(
            "commit",
            "must be a commit's full SHA (40 hexadecimal digits)",
        ))
    }
}

/// Where a notification is sent: an absolute `http` or `https` URL (loopback allowed:
/// the admin chooses it).
pub fn notification_url(url: &str) -> Result<String, FieldError> {
    let url = url.trim();
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| FieldError::new("url", "must start with http:// or https://"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty()
        || host.contains('@')
        || url.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(FieldError::new(
            "url",
            "must be an http(s) URL with a host, without credentials or spaces",
        ));
    }
    if url.len() > 2048 {
        return Err(FieldError::new("url", "must be at most 2048 characters"));
    }
    Ok(url.to_owned())
}

/// The statuses a notification is sent for: one or more of success, failed, cancelled.
pub fn notification_events(events: &[Status]) -> Result<Vec<Status>, FieldError> {
    if events.is_empty() {
        return Err(FieldError::new(
            "events",
            "must list at least one of success, failed, cancelled",
        ));
    }
    let mut kept: Vec<Status> = Vec::new();
    for status in events {
        if !status.is_terminal() {
            return Err(FieldError::new(
                "events",
                format!("{status} is not how a deployment ends: use success, failed or cancelled"),
            ));
        }
        if !kept.contains(status) {
            kept.push(*status);
        }
    }
    Ok(kept)
}

pub fn memory_mb(mb: i64) -> Result<u32, FieldError> {
    u32::try_from(mb)
        .ok()
        .filter(|mb| (16..=262_144).contains(mb))
        .ok_or_else(|| {
            FieldError::new(
                "memory_mb",
                "must be a whole number of MB from 16 to 262144",
            )
        })
}

pub fn cpus(cpus: f64) -> Result<f64, FieldError> {
    if cpus.is_finite() && (0.01..=256.0).contains(&cpus) {
        Ok(cpus)
    } else {
        Err(FieldError::new("cpus", "must be a number from 0.01 to 256"))
    }
}

/// Host names typed into a form: separated by spaces, commas or lines.
pub fn domain_text(text: &str) -> Vec<String> {
    text.split([' ', ',', '\n', '\r', '\t'])
        .filter(|d| !d.is_empty())
        .map(str::to_owned)
        .collect()
}

pub fn app_name(name: &str) -> Result<(), FieldError> {
    let field = "name";
    if name.is_empty() || name.len() > 63 {
        return Err(FieldError::new(field, "must be 1 to 63 characters long"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(FieldError::new(
            field,
            "may contain only lowercase letters a-z, digits 0-9 and '-'",
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(FieldError::new(field, "must not start or end with '-'"));
    }
    Ok(())
}

fn has_control_or_space(text: &str) -> bool {
    text.chars().any(|c| c.is_control() || c.is_whitespace())
}

pub fn repo_url(url: &str, allow_local: bool) -> Result<(), FieldError> {
    let field = "repo_url";
    if url.is_empty() {
        return Err(FieldError::new(field, "is required"));
    }
    if url.len() > MAX_URL {
        return Err(FieldError::new(field, "is longer than 2048 characters"));
    }
    if has_control_or_space(url) {
        return Err(FieldError::new(
            field,
            "must not contain spaces or control characters",
        ));
    }
    if url.starts_with('-') {
        return Err(FieldError::new(field, "must not start with '-'"));
    }
    let local_hint = "local repositories are accepted only when the server runs with SLIPWAY_ALLOW_LOCAL_REPOS=1";
    for scheme in ["https://", "http://", "ssh://"] {
        if let Some(rest) = url.strip_prefix(scheme) {
            return remote_rest(field, rest);
        }
    }
    if let Some(path) = url.strip_prefix("file://") {
        if !allow_local {
            return Err(FieldError::new(
                field,
                format!("file:// URLs: {local_hint}"),
            ));
        }
        return local_path(field, path);
    }
    if url.starts_with('/') {
        if !allow_local {
            return Err(FieldError::new(field, format!("local paths: {local_hint}")));
        }
        return local_path(field, url);
    }
    // scp-like syntax: user@host:path. `ext::` and other transports contain "::" or no '@'.
    if let Some((user_host, path)) = url.split_once(':')
        && let Some((user, host)) = user_host.split_once('@')
        && !user.is_empty()
        && valid_host(host)
        && !path.is_empty()
        && !path.starts_with('-')
        && !path.starts_with(':')
    {
        return Ok(());
    }
    Err(FieldError::new(
        field,
        "must start with https://, http://, ssh:// or be of the form git@host:path",
    ))
}

fn remote_rest(field: &str, rest: &str) -> Result<(), FieldError> {
    let authority = rest.split('/').next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host_port.split(':').next().unwrap_or_default(),
    };
    if authority.starts_with('-') || !valid_host(host) {
        return Err(FieldError::new(
            field,
            "has no valid host name (it must not start with '-')",
        ));
    }
    Ok(())
}

fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && !host.starts_with('-')
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'))
}

fn local_path(field: &str, path: &str) -> Result<(), FieldError> {
    if !path.starts_with('/') {
        return Err(FieldError::new(
            field,
            "a local repository needs an absolute path",
        ));
    }
    Ok(())
}

/// `git check-ref-format --branch` rules, plus: never starting with '-'.
pub fn branch_name(branch: &str) -> Result<(), FieldError> {
    let field = "branch";
    let bad = |why: &str| Err(FieldError::new(field, why.to_owned()));
    if branch.is_empty() {
        return bad("must not be empty");
    }
    if branch.len() > MAX_REF {
        return bad("is longer than 255 characters");
    }
    if branch.starts_with('-') {
        return bad("must not start with '-'");
    }
    if branch == "@" {
        return bad("must not be '@'");
    }
    if branch
        .chars()
        .any(|c| c.is_control() || matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\'))
    {
        return bad("must not contain spaces, control characters or any of ~ ^ : ? * [ \\");
    }
    if branch.contains("..") || branch.contains("@{") || branch.contains("//") {
        return bad("must not contain '..', '@{' or '//'");
    }
    if branch.starts_with('/') || branch.ends_with('/') || branch.ends_with('.') {
        return bad("must not start or end with '/' or end with '.'");
    }
    if branch
        .split('/')
        .any(|part| part.starts_with('.') || part.ends_with(".lock"))
    {
        return bad("no part may start with '.' or end with '.lock'");
    }
    Ok(())
}

pub fn dockerfile_path(path: &str) -> Result<(), FieldError> {
    let field = "dockerfile";
    let bad = |why: &str| Err(FieldError::new(field, why.to_owned()));
    if path.is_empty() || path.len() > MAX_PATH {
        return bad("must be 1 to 255 characters long");
    }
    if path.starts_with('/') || path.starts_with('\\') {
        return bad("must be a path inside the repository, not an absolute path");
    }
    if path.starts_with('-') {
        return bad("must not start with '-'");
    }
    if path.chars().any(|c| c.is_control()) {
        return bad("must not contain control characters");
    }
    if path.split(['/', '\\']).any(|part| part == "..") {
        return bad("must stay inside the repository (no '..')");
    }
    Ok(())
}

const PORT_RULE: &str = "must be a number from 1 to 65535";

pub fn port(port: i64) -> Result<u16, FieldError> {
    u16::try_from(port)
        .ok()
        .filter(|p| *p >= 1)
        .ok_or_else(|| FieldError::new("port", PORT_RULE))
}

/// A port typed into a form: blank is none, otherwise a whole number from 1 to 65535
/// (checked by [`port`]); errors name `field`.
pub fn port_text(text: &str, field: &str) -> Result<Option<i64>, FieldError> {
    match text.trim() {
        "" => Ok(None),
        digits => digits
            .parse::<i64>()
            .map(Some)
            .map_err(|_| FieldError::new(field, PORT_RULE)),
    }
}

/// `NAME=value` lines typed into a form; blank lines and `#` comments are skipped. Names
/// are checked by [`env`]; errors name `field`.
pub fn env_lines(text: &str, field: &str) -> Result<BTreeMap<String, String>, FieldError> {
    let mut env = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line.split_once('=').ok_or_else(|| {
            FieldError::new(field, format!("line {} must look like NAME=value", n + 1))
        })?;
        env.insert(key.trim().to_owned(), value.to_owned());
    }
    Ok(env)
}

/// A form text with surrounding spaces removed; `None` when nothing is left.
pub fn blank_to_none(text: &str) -> Option<String> {
    Some(text.trim().to_owned()).filter(|t| !t.is_empty())
}

pub fn env(env: &BTreeMap<String, String>) -> Result<(), FieldError> {
    if env.len() > MAX_ENV_VARS {
        return Err(FieldError::new("env", "at most 200 variables"));
    }
    for (name, value) in env {
        let first_ok = name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
        if !first_ok
            || name.len() > MAX_ENV_NAME
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(FieldError::new(
                "env",
                format!(
                    "variable name {name:?} must start with a letter or '_' and contain only letters, digits and '_'"
                ),
            ));
        }
        if value.contains('\0') || value.len() > MAX_ENV_VALUE {
            return Err(FieldError::new(
                "env",
                format!("the value of {name} must have no NUL byte and at most 32 KiB"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(url: &str) -> NewApp {
        NewApp {
            name: "hello".into(),
            repo_url: url.into(),
            ..NewApp::default()
        }
    }

    #[test]
    fn defaults_are_filled_in() {
        let valid = new_app(&app("https://git.example.com/hello.git"), false).expect("valid");
        assert_eq!(valid.branch, "main");
        assert_eq!(valid.dockerfile, "Dockerfile");
        assert_eq!(valid.port, None);
    }

    #[test]
    fn accepted_urls() {
        for url in [
            "https://git.example.com/hello.git",
            "http://127.0.0.1:8080/x.git",
            "ssh://git@example.com:22/x.git",
            "git@github.com:owner/repo.git",
        ] {
            assert_eq!(repo_url(url, false), Ok(()), "{url}");
        }
        assert_eq!(repo_url("file:///tmp/repo", true), Ok(()));
        assert_eq!(repo_url("/tmp/repo", true), Ok(()));
    }

    #[test]
    fn rejected_urls_name_the_field() {
        for url in [
            "",
            "file:///tmp/repo",
            "/tmp/repo",
            "ssh://-oProxyCommand=touch /tmp/x/x",
            "ssh://-oProxyCommand=id/x",
            "--upload-pack=touch /tmp/x",
            "ext::sh -c touch% /tmp/x",
            "ext::id",
            "https://",
            "https://-x/repo",
            "git@-oProxyCommand=id:x",
            "relative/path",
            "ftp://example.com/x",
            "https://example.com/a b",
            "https://example.com/a\nb",
        ] {
            let err = repo_url(url, false).expect_err(url);
            assert_eq!(err.field, "repo_url", "{url}");
        }
        assert!(repo_url("file://relative", true).is_err());
    }

    #[test]
    fn branches_follow_check_ref_format() {
        for ok in ["main", "feature/x", "v1.2", "release-2026"] {
            assert_eq!(branch_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "-x",
            "--upload-pack=x",
            "a..b",
            "a b",
            "a~1",
            "a^",
            "a:b",
            "a?",
            "a*",
            "a[",
            "a\\b",
            "@",
            "a@{1}",
            "/a",
            "a/",
            "a.",
            "a//b",
            ".a",
            "a/.b",
            "a.lock",
            "a\u{7}",
        ] {
            assert_eq!(branch_name(bad).expect_err(bad).field, "branch", "{bad:?}");
        }
    }

    #[test]
    fn names_ports_dockerfiles_and_env() {
        assert!(app_name("a").is_ok());
        assert!(app_name("my-app-2").is_ok());
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", &"a".repeat(64)] {
            assert_eq!(app_name(bad).expect_err(bad).field, "name");
        }
        assert_eq!(port(8080), Ok(8080));
        for bad in [0, -1, 65536] {
            assert_eq!(port(bad).expect_err("bad port").field, "port");
        }
        assert!(dockerfile_path("docker/Dockerfile.prod").is_ok());
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "-f"] {
            assert_eq!(dockerfile_path(bad).expect_err(bad).field, "dockerfile");
        }
        let mut vars = BTreeMap::new();
        vars.insert("GREETING".to_owned(), "hi".to_owned());
        assert!(env(&vars).is_ok());
        vars.insert("1BAD".to_owned(), "x".to_owned());
        assert_eq!(env(&vars).expect_err("bad name").field, "env");
    }

    #[test]
    fn domains_and_limits() {
        assert_eq!(
            domains(&[
                "WWW.Example.com.".into(),
                "www.example.com".into(),
                "hello.localhost".into()
            ]),
            Ok(vec![
                "www.example.com".to_owned(),
                "hello.localhost".to_owned()
            ])
        );
        for bad in [
            "",
            "-a.example",
            "a-.example",
            "a..b",
            "a_b.example",
            "1.2.3.4",
            "exa mple.com",
            &"a".repeat(64),
        ] {
            assert_eq!(
                domains(&[bad.to_owned()]).expect_err(bad).field,
                "domains",
                "{bad:?}"
            );
        }
        assert_eq!(memory_mb(512), Ok(512));
        assert_eq!(memory_mb(8).expect_err("too small").field, "memory_mb");
        assert_eq!(cpus(0.5), Ok(0.5));
        assert_eq!(cpus(f64::NAN).expect_err("nan").field, "cpus");
        assert_eq!(
            domain_text("a.example, b.example\nc.example"),
            ["a.example", "b.example", "c.example"]
        );
    }

    #[test]
    fn form_texts_parse_with_the_same_rules() {
        assert_eq!(port_text(" ", "port"), Ok(None));
        assert_eq!(port_text("8080", "port"), Ok(Some(8080)));
        assert_eq!(
            port_text("80a", "port")
                .expect_err("not a number")
                .to_string(),
            "port: must be a number from 1 to 65535"
        );
        let vars = env_lines("# comment\nA=1\n\n B = x=y\n", "env").expect("parses");
        assert_eq!(vars.get("A").map(String::as_str), Some("1"));
        assert_eq!(vars.get("B").map(String::as_str), Some(" x=y"));
        assert_eq!(
            env_lines("A=1\nnope", "env_set").expect_err("no =").field,
            "env_set"
        );
        let app = NewApp::from_form("hello", " /r ", "", " ", "", "").expect("valid form");
        assert_eq!(
            (app.repo_url.as_str(), app.branch, app.port),
            ("/r", None, None)
        );
    }
}
