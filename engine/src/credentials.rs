//! Credentials written into a repository URL (`https://user:token@host/repo.git`).
//!
//! They are taken out of the URL as soon as an app is saved: the URL that is stored,
//! shown, logged and given to git has none, and the credentials live in a column that no
//! API answer, page or log line reads. git gets them as an `Authorization` header scoped
//! to the repository's origin, through `GIT_CONFIG_*` environment variables: never on a
//! command line (`/proc/<pid>/cmdline` is readable by every user), never in a file.

use serde::{Deserialize, Serialize};

/// A username and password (or token) for an `http(s)` repository.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoCredentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for RepoCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RepoCredentials(<redacted>)")
    }
}

/// Bytes `%XX` decoded (as git decodes a URL's user information); anything else kept.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).and_then(|b| hex(*b)),
                bytes.get(i + 2).and_then(|b| hex(*b)),
            )
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `url` without credentials, and the credentials it held. For `http(s)://` the whole
/// user information is a credential (`https://<token>@host` is how some forges take a
/// token); for `ssh://` only a password is (the user name is the SSH login). Other forms
/// (`git@host:path`, local paths) carry none.
pub fn split(url: &str) -> (String, Option<RepoCredentials>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_owned(), None);
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return (url.to_owned(), None);
    };
    let (user, password) = match userinfo.split_once(':') {
        Some((user, password)) => (user, Some(password)),
        None => (userinfo, None),
    };
    match scheme.to_ascii_lowercase().as_str() {
        "http" | "https" => {
            let credentials = RepoCredentials {
                username: percent_decode(user),
                password: password.map(percent_decode).unwrap_or_default(),
            };
            let keep = !credentials.username.is_empty() || !credentials.password.is_empty();
            (
                format!("{scheme}://{host}{path}"),
                keep.then_some(credentials),
            )
        }
        "ssh" => match password {
            Some(password) => (
                format!("{scheme}://{user}@{host}{path}"),
                Some(RepoCredentials {
                    username: percent_decode(user),
                    password: percent_decode(password),
                }),
            ),
            None => (url.to_owned(), None),
        },
        _ => (url.to_owned(), None),
    }
}

/// `scheme://host[:port]` of a URL without credentials, lower case: credentials kept for
/// one origin are never sent to another.
pub fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    Some(format!("{scheme}://{host}").to_ascii_lowercase())
}

/// The text to hide wherever git output could echo the credentials: each non-trivial
/// part, plain and as it would appear percent-encoded in a URL.
pub fn secrets(credentials: &RepoCredentials) -> Vec<String> {
    let mut found = Vec::new();
    for part in [&credentials.username, &credentials.password] {
        // A one- or two-letter user name ("x", "git") is no secret, and hiding it
        // everywhere would garble the log.
        if part.chars().count() < 4 {
            continue;
        }
        found.push(part.clone());
        let encoded: String = part
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        if encoded != *part {
            found.push(encoded);
        }
    }
    found.sort_by_key(|s| std::cmp::Reverse(s.len()));
    found
}

/// `text` with every one of `secrets` replaced by `***`.
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut text = text.to_owned();
    for secret in secrets {
        if text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), "***");
        }
    }
    text
}

/// The environment that gives git an `Authorization: Basic` header for `url`'s origin
/// only (`http.<origin>/.extraHeader`), as `GIT_CONFIG_*` variables.
pub fn git_env(url: &str, credentials: &RepoCredentials) -> Vec<(String, String)> {
    let Some(origin) = origin(url) else {
        return Vec::new();
    };
    if !origin.starts_with("http://") && !origin.starts_with("https://") {
        return Vec::new();
    }
    let pair = format!("{}:{}", credentials.username, credentials.password);
    vec![
        ("GIT_CONFIG_COUNT".into(), "1".into()),
        (
            "GIT_CONFIG_KEY_0".into(),
            format!("http.{origin}/.extraHeader"),
        ),
        (
            "GIT_CONFIG_VALUE_0".into(),
            format!("Authorization: Basic {}", base64(pair.as_bytes())),
        ),
    ]
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(username: &str, password: &str) -> Option<RepoCredentials> {
        Some(RepoCredentials {
            username: username.into(),
            password: password.into(),
        })
    }

    #[test]
    fn credentials_leave_the_url() {
        assert_eq!(
            split("https://user:s3cr%40t@git.example.com:8443/team/repo.git"),
            (
                "https://git.example.com:8443/team/repo.git".into(),
                creds("user", "s3cr@t")
            )
        );
        assert_eq!(
            split("https://ghp_token1234@github.com/o/r"),
            ("https://github.com/o/r".into(), creds("ghp_token1234", ""))
        );
        assert_eq!(
            split("http://u:p@127.0.0.1:9/x?y=z@w"),
            ("http://127.0.0.1:9/x?y=z@w".into(), creds("u", "p"))
        );
        assert_eq!(
            split("ssh://git:pw@example.com/x.git"),
            ("ssh://git@example.com/x.git".into(), creds("git", "pw"))
        );
        for unchanged in [
            "https://git.example.com/repo.git",
            "ssh://git@example.com:22/x.git",
            "git@github.com:owner/repo.git",
            "/srv/git/hello",
            "file:///srv/git/hello",
        ] {
            assert_eq!(
                split(unchanged),
                (unchanged.to_owned(), None),
                "{unchanged}"
            );
        }
    }

    #[test]
    fn origins_compare_without_credentials() {
        assert_eq!(
            origin("https://u:p@Git.Example.com:8443/x").as_deref(),
            Some("https://git.example.com:8443")
        );
        assert_eq!(
            origin("https://git.example.com:8443/y"),
            origin("https://u:p@git.example.com:8443/x")
        );
        assert_ne!(
            origin("https://evil.example/x"),
            origin("https://git.example.com/x")
        );
    }

    #[test]
    fn git_gets_a_scoped_header_and_output_is_redacted() {
        let c = RepoCredentials {
            username: "user".into(),
            password: "pa ss@word".into(),
        };
        let env = git_env("https://git.example.com/r.git", &c);
        assert_eq!(env[1].1, "http.https://git.example.com/.extraHeader");
        assert_eq!(env[2].1, "Authorization: Basic dXNlcjpwYSBzc0B3b3Jk");
        assert!(git_env("ssh://git@example.com/x", &c).is_empty());
        let hidden = secrets(&c);
        assert_eq!(
            redact(
                "fatal: https://user:pa%20ss%40word@x/ and pa ss@word",
                &hidden
            ),
            "fatal: https://***:***@x/ and ***"
        );
        assert!(
            secrets(&RepoCredentials {
                username: "x".into(),
                password: "".into()
            })
            .is_empty()
        );
        assert!(!format!("{c:?}").contains("pa ss"));
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b"abc"), "YWJj");
    }
}
