//! Where the client finds the server and its token.
//!
//! `SLIPWAY_URL` and `SLIPWAY_TOKEN` win over what `slipway login` saved in
//! `$XDG_CONFIG_HOME/slipway/credentials` (or `~/.config/slipway/credentials`), a file
//! only its owner can read. A saved token is sent only to the URL it was saved for, so
//! pointing `SLIPWAY_URL` at another server never leaks it there.

use super::CliError;
use engine::config::Secret;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where the server is when nothing says otherwise (PROTOCOL.md).
pub const DEFAULT_URL: &str = "http://127.0.0.1:3000";

/// The server a command talks to, and the token it presents.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http(s)://host[:port][/prefix]`, without a trailing `/`.
    pub url: String,
    pub token: Option<Secret>,
    pub token_from: TokenFrom,
}

/// Where the token came from, so a refusal can say which one to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenFrom {
    Env,
    File(PathBuf),
    /// `slipway login` checking the token it was given.
    Login,
    None,
}

/// What `slipway login` saves.
#[derive(Serialize, Deserialize)]
pub struct Saved {
    pub url: String,
    pub token: String,
}

impl std::fmt::Debug for Saved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Saved")
            .field("url", &self.url)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// The credentials file: `$XDG_CONFIG_HOME/slipway/credentials`, else
/// `$HOME/.config/slipway/credentials`.
pub fn path(lookup: &impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let set = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
    // The XDG spec ignores a relative XDG_CONFIG_HOME.
    let config = set("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute())
        .or_else(|| set("HOME").map(|home| Path::new(&home).join(".config")))?;
    Some(config.join("slipway").join("credentials"))
}

/// `http(s)://host[:port][/prefix]` without a trailing `/`, or what is wrong with `text`.
pub fn normalize_url(text: &str) -> Result<String, String> {
    let wrong =
        || format!("{text:?} is not a URL like {DEFAULT_URL} or https://deploy.example.com");
    let url = url::Url::parse(text.trim()).map_err(|_| wrong())?;
    if !matches!(url.scheme(), "http" | "https")
        || url.host().is_none()
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(wrong());
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// The target from the environment (`lookup`) and the saved credentials, if any.
pub fn resolve(
    lookup: &impl Fn(&str) -> Option<String>,
    saved: Option<(PathBuf, Saved)>,
) -> Result<Target, CliError> {
    let set = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
    let saved = match saved {
        Some((path, saved)) => {
            let url = normalize_url(&saved.url).map_err(|e| {
                CliError::Usage(format!(
                    "{}: the saved URL {e}; run `slipway login --url URL --token TOKEN` again",
                    path.display()
                ))
            })?;
            Some((path, url, saved.token))
        }
        None => None,
    };
    let url = match set("SLIPWAY_URL") {
        Some(text) => {
            normalize_url(&text).map_err(|e| CliError::Usage(format!("SLIPWAY_URL: {e}")))?
        }
        None => match &saved {
            Some((_, url, _)) => url.clone(),
            None => DEFAULT_URL.to_owned(),
        },
    };
    let (token, token_from) = match set("SLIPWAY_TOKEN") {
        Some(token) => (Some(Secret(token.trim().to_owned())), TokenFrom::Env),
        None => match saved {
            Some((path, saved_url, token)) if saved_url == url => {
                (Some(Secret(token)), TokenFrom::File(path))
            }
            _ => (None, TokenFrom::None),
        },
    };
    Ok(Target {
        url,
        token,
        token_from,
    })
}

/// Reads the saved credentials: `None` when there are none.
pub fn load(path: &Path) -> Result<Option<Saved>, CliError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(CliError::Usage(format!(
                "cannot read {}: {e}; fix its permissions or remove it and run `slipway login` again",
                path.display()
            )));
        }
    };
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        eprintln!(
            "warning: {} can be read by other users: run `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
    serde_json::from_str(&text).map(Some).map_err(|e| {
        CliError::Usage(format!(
            "{} is not what `slipway login` writes ({e}); remove it and run `slipway login` again",
            path.display()
        ))
    })
}

/// Writes the credentials so that only their owner can read them: the directory is
/// created `0700`, the file written `0600` beside it and renamed over the old one, so no
/// reader ever sees a half-written file or one with wider permissions.
pub fn save(path: &Path, saved: &Saved) -> Result<(), CliError> {
    let failed = |what: &str, e: std::io::Error| {
        CliError::Usage(format!(
            "cannot save the credentials: {what} {}: {e}",
            path.display()
        ))
    };
    let dir = path
        .parent()
        .ok_or_else(|| CliError::Usage(format!("{} has no directory", path.display())))?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| failed("creating the directory of", e))?;
    let temporary = dir.join(format!(".credentials.{}", std::process::id()));
    let mut json = serde_json::to_vec_pretty(saved)
        .map_err(|e| failed("encoding", std::io::Error::other(e)))?;
    json.push(b'\n');
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)
        .and_then(|mut file| {
            file.write_all(&json)?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&temporary, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(failed("writing", e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn saved(url: &str, token: &str) -> Option<(PathBuf, Saved)> {
        Some((
            PathBuf::from("/home/u/.config/slipway/credentials"),
            Saved {
                url: url.into(),
                token: token.into(),
            },
        ))
    }

    fn token(target: &Target) -> Option<&str> {
        target.token.as_ref().map(|t| t.0.as_str())
    }

    #[test]
    fn defaults_to_the_local_server_without_a_token() -> Result<(), CliError> {
        let target = resolve(&env(&[]), None)?;
        assert_eq!(target.url, DEFAULT_URL);
        assert_eq!(
            (token(&target), &target.token_from),
            (None, &TokenFrom::None)
        );
        Ok(())
    }

    #[test]
    fn the_environment_wins_over_the_saved_file() -> Result<(), CliError> {
        let both = resolve(
            &env(&[
                ("SLIPWAY_URL", "https://a.example/"),
                ("SLIPWAY_TOKEN", "env"),
            ]),
            saved("https://a.example", "file"),
        )?;
        assert_eq!(both.url, "https://a.example");
        assert_eq!(
            (token(&both), &both.token_from),
            (Some("env"), &TokenFrom::Env)
        );
        let file = resolve(
            &env(&[("SLIPWAY_TOKEN", " ")]),
            saved("https://a.example/", "file"),
        )?;
        assert_eq!(
            file.url, "https://a.example",
            "an empty variable counts as unset"
        );
        assert_eq!(token(&file), Some("file"));
        Ok(())
    }

    #[test]
    fn a_saved_token_goes_only_to_its_own_server() -> Result<(), CliError> {
        let target = resolve(
            &env(&[("SLIPWAY_URL", "https://elsewhere.example")]),
            saved("https://a.example", "secret"),
        )?;
        assert_eq!(target.url, "https://elsewhere.example");
        assert_eq!(token(&target), None);
        Ok(())
    }

    #[test]
    fn urls_are_checked_and_keep_their_prefix() {
        assert_eq!(
            normalize_url("https://x.example/slipway/").as_deref(),
            Ok("https://x.example/slipway")
        );
        assert_eq!(
            normalize_url("http://127.0.0.1:3000").as_deref(),
            Ok(DEFAULT_URL)
        );
        for bad in [
            "127.0.0.1:3000",
            "ftp://x",
            "http://x/?a=1",
            "https://u:p@x",
            "",
            "x",
        ] {
            assert!(normalize_url(bad).is_err(), "{bad}");
        }
        let error = resolve(&env(&[("SLIPWAY_URL", "localhost:3000")]), None).err();
        assert!(
            error
                .map(|e| e.to_string())
                .unwrap_or_default()
                .starts_with("SLIPWAY_URL: "),
            "the error names the variable"
        );
    }

    #[test]
    fn the_file_lives_in_the_xdg_config_directory() {
        assert_eq!(
            path(&env(&[("XDG_CONFIG_HOME", "/cfg"), ("HOME", "/home/u")])),
            Some(PathBuf::from("/cfg/slipway/credentials"))
        );
        assert_eq!(
            path(&env(&[
                ("XDG_CONFIG_HOME", "relative"),
                ("HOME", "/home/u")
            ])),
            Some(PathBuf::from("/home/u/.config/slipway/credentials"))
        );
        assert_eq!(path(&env(&[])), None);
    }

    #[test]
    fn saved_credentials_are_readable_only_by_their_owner() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = std::env::temp_dir().join(format!("slipway-credentials-{}", std::process::id()));
        let file = dir.join("slipway").join("credentials");
        for token in ["first", "second"] {
            save(
                &file,
                &Saved {
                    url: DEFAULT_URL.into(),
                    token: token.into(),
                },
            )?;
        }
        assert_eq!(
            std::fs::metadata(&file)?.permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(file.parent().ok_or("no parent")?)?
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        let loaded = load(&file)?.ok_or("saved")?;
        assert_eq!(loaded.token, "second");
        assert!(
            !format!("{loaded:?}").contains("second"),
            "Debug hides the token"
        );
        assert_eq!(
            std::fs::read_dir(file.parent().ok_or("no parent")?)?.count(),
            1
        );
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
