//! Fetching source code: a shallow clone of one branch with the git CLI, run without a
//! shell, every positional argument after `--`, dangerous transports off.
//!
//! git runs with a cleared environment (the server's holds `SLIPWAY_ADMIN_TOKEN`): only
//! `PATH`, `HOME` (its configuration and SSH keys), and what Slipway sets. Credentials
//! reach it through [`crate::credentials::git_env`], never on its command line, and any
//! that its output echoes are hidden. Its output is read line by line; only a bounded tail
//! is kept for the error message. A checkout may hold at most `max_bytes` and
//! `max_files`.

use crate::credentials::{self, RepoCredentials};
use futures_util::future::BoxFuture;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio::sync::mpsc;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("git clone failed: {0}")]
    CloneFailed(String),
    #[error("git clone took longer than {0} seconds")]
    Timeout(u64),
    #[error("git could not be run: {0}")]
    Spawn(String),
    #[error("the repository is larger than {0} MB (SLIPWAY_CLONE_MAX_MB)")]
    TooLarge(u64),
    #[error("the repository holds more than {0} files and directories (SLIPWAY_CLONE_MAX_FILES)")]
    TooManyFiles(usize),
}

pub struct Checkout {
    pub dir: PathBuf,
    pub commit: String,
}

/// The repository to fetch: a URL without credentials, and those kept apart.
#[derive(Clone, Copy)]
pub struct Repo<'a> {
    pub url: &'a str,
    pub branch: &'a str,
    pub credentials: Option<&'a RepoCredentials>,
}

pub trait Source: Send + Sync + 'static {
    /// Clones `repo` into `dir`, sending git's progress lines to `output`.
    fn fetch<'a>(
        &'a self,
        repo: Repo<'a>,
        dir: &'a Path,
        output: mpsc::Sender<String>,
    ) -> BoxFuture<'a, Result<Checkout, SourceError>>;

    /// Moves the checkout in `dir` to `commit` (a full SHA), fetching it by its SHA: a
    /// deployment of one pushed commit, even when the branch has moved on since.
    fn checkout<'a>(
        &'a self,
        dir: &'a Path,
        commit: &'a str,
    ) -> BoxFuture<'a, Result<String, SourceError>>;
}

pub struct GitCli {
    pub allow_local: bool,
    pub timeout: Duration,
    /// A checkout growing past this many bytes is stopped.
    pub max_bytes: u64,
    /// A checkout holding more files and directories than this is stopped.
    pub max_files: usize,
    /// `PATH` and `HOME` for git: the only variables of the server's environment it sees.
    pub path: Option<OsString>,
    pub home: Option<OsString>,
}

/// How often a running clone's size is measured.
const SIZE_CHECK_EVERY: Duration = Duration::from_millis(500);
/// The end of git's error output kept for the error message; the rest goes to the log.
const STDERR_TAIL: usize = 8 * 1024;
/// A line of git's output is forwarded at this length even without its end.
const MAX_LINE: usize = protocol::MAX_LINE_BYTES;

/// What a checkout holds so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Usage {
    bytes: u64,
    /// Files, directories and links.
    entries: usize,
}

/// Bytes of regular files and the number of entries under `dir` (symlinks not
/// followed); the walk stops as soon as there are more than `max_entries`.
fn usage(dir: &Path, max_entries: usize) -> Usage {
    let mut usage = Usage {
        bytes: 0,
        entries: 0,
    };
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            usage.entries += 1;
            if usage.entries > max_entries {
                return usage;
            }
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(entry.path()),
                Ok(t) if t.is_file() => {
                    usage.bytes += entry.metadata().map(|m| m.len()).unwrap_or(0)
                }
                _ => {}
            }
        }
    }
    usage
}

/// The last `STDERR_TAIL` bytes of a stream, in at most twice that much memory.
#[derive(Default)]
struct Tail(Vec<u8>);

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
        if self.0.len() > 2 * STDERR_TAIL {
            self.0.drain(..self.0.len() - STDERR_TAIL);
        }
    }

    /// git's last `fatal:` or `error:` message (from where it starts: after output that
    /// did not end its line, it shares one).
    fn reason(&self) -> String {
        String::from_utf8_lossy(&self.0)
            .lines()
            .rev()
            .find_map(|l| {
                l.find("fatal:")
                    .or_else(|| l.find("error:"))
                    .map(|at| &l[at..])
            })
            .unwrap_or("git exited with an error")
            .trim()
            .to_owned()
    }
}

impl GitCli {
    pub fn from_config(config: &crate::Config) -> GitCli {
        GitCli {
            allow_local: config.allow_local_repos,
            timeout: config.clone_timeout,
            max_bytes: config.clone_max_bytes,
            max_files: config.clone_max_files,
            path: std::env::var_os("PATH"),
            home: std::env::var_os("HOME"),
        }
    }

    async fn measure(&self, dir: &Path) -> Result<(), SourceError> {
        let (dir, max_files) = (dir.to_owned(), self.max_files);
        let used = tokio::task::spawn_blocking(move || usage(&dir, max_files))
            .await
            .unwrap_or(Usage {
                bytes: 0,
                entries: 0,
            });
        if used.entries > self.max_files {
            Err(SourceError::TooManyFiles(self.max_files))
        } else if used.bytes > self.max_bytes {
            Err(SourceError::TooLarge(self.max_bytes / (1024 * 1024)))
        } else {
            Ok(())
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("git");
        cmd.env_clear();
        if let Some(path) = &self.path {
            cmd.env("PATH", path);
        }
        if let Some(home) = &self.home {
            cmd.env("HOME", home);
        }
        cmd.env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ASKPASS", "/bin/false")
            .env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            // Messages in English, so the error line can be found.
            .env("LC_ALL", "C")
            .arg("-c")
            .arg("protocol.ext.allow=never")
            .arg("-c")
            .arg(if self.allow_local {
                "protocol.file.allow=always"
            } else {
                "protocol.file.allow=never"
            })
            .arg("-c")
            .arg("core.hooksPath=/dev/null")
            // No credential helper from the user's configuration may store what it sees.
            .arg("-c")
            .arg("credential.helper=")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }
}

impl GitCli {
    /// Runs `git -C dir ARGS`; answers its stdout, or git's last error line.
    async fn git_in(&self, dir: &Path, args: &[&str]) -> Result<String, SourceError> {
        let run = self.command().arg("-C").arg(dir).args(args).output();
        let out = tokio::time::timeout(self.timeout, run)
            .await
            .map_err(|_| SourceError::Timeout(self.timeout.as_secs()))?
            .map_err(|e| SourceError::Spawn(e.to_string()))?;
        if !out.status.success() {
            let text = String::from_utf8_lossy(&out.stderr);
            let reason = text
                .lines()
                .rev()
                .find(|l| l.starts_with("fatal:") || l.starts_with("error:"))
                .unwrap_or("git exited with an error")
                .trim()
                .to_owned();
            return Err(SourceError::CloneFailed(reason));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

impl Source for GitCli {
    fn checkout<'a>(
        &'a self,
        dir: &'a Path,
        commit: &'a str,
    ) -> BoxFuture<'a, Result<String, SourceError>> {
        Box::pin(async move {
            self.git_in(
                dir,
                &["fetch", "--depth", "1", "--no-tags", "origin", commit],
            )
            .await?;
            self.git_in(dir, &["checkout", "-q", "--detach", "FETCH_HEAD"])
                .await?;
            let head = self.git_in(dir, &["rev-parse", "HEAD"]).await?;
            if head != commit {
                return Err(SourceError::CloneFailed(format!(
                    "fetching commit {commit} gave {head}"
                )));
            }
            Ok(head)
        })
    }

    fn fetch<'a>(
        &'a self,
        repo: Repo<'a>,
        dir: &'a Path,
        output: mpsc::Sender<String>,
    ) -> BoxFuture<'a, Result<Checkout, SourceError>> {
        Box::pin(async move {
            // A plain path makes git ignore --depth; a file:// URL keeps the clone shallow.
            let url = if repo.url.starts_with('/') {
                format!("file://{}", repo.url)
            } else {
                repo.url.to_owned()
            };
            let secrets = repo
                .credentials
                .map(credentials::secrets)
                .unwrap_or_default();
            let mut cmd = self.command();
            if let Some(creds) = repo.credentials {
                cmd.envs(credentials::git_env(&url, creds));
            }
            cmd.args([
                "clone",
                "--depth",
                "1",
                "--single-branch",
                "--no-tags",
                "--no-recurse-submodules",
            ])
            .arg("--branch")
            .arg(repo.branch)
            .arg("--")
            .arg(&url)
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
            let mut child = cmd.spawn().map_err(|e| SourceError::Spawn(e.to_string()))?;
            let mut stderr = child.stderr.take();
            let run = async {
                let mut tail = Tail::default();
                if let Some(stderr) = stderr.as_mut() {
                    // Whole lines only are forwarded (git ends progress lines with \r), so
                    // a secret is never split between two pieces and missed by the
                    // redaction; a line is cut at `MAX_LINE`.
                    let mut partial = Vec::new();
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = stderr.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        let read = &buf[..n];
                        tail.push(read);
                        let whole = read
                            .iter()
                            .rposition(|b| *b == b'\n' || *b == b'\r')
                            .map_or(0, |at| at + 1);
                        for (piece, ends_lines) in
                            [(&read[..whole], whole > 0), (&read[whole..], false)]
                        {
                            partial.extend_from_slice(piece);
                            if ends_lines || partial.len() >= MAX_LINE {
                                let text = String::from_utf8_lossy(&partial);
                                let _ = output.send(credentials::redact(&text, &secrets)).await;
                                partial.clear();
                            }
                        }
                    }
                    if !partial.is_empty() {
                        let text = String::from_utf8_lossy(&partial);
                        let _ = output.send(credentials::redact(&text, &secrets)).await;
                    }
                }
                (child.wait().await, tail)
            };
            // The clone is stopped (killed on drop) when it outgrows a limit.
            let too_large = async {
                loop {
                    tokio::time::sleep(SIZE_CHECK_EVERY).await;
                    if let Err(e) = self.measure(dir).await {
                        return e;
                    }
                }
            };
            let (status, tail) = tokio::select! {
                finished = tokio::time::timeout(self.timeout, run) => {
                    finished.map_err(|_| SourceError::Timeout(self.timeout.as_secs()))?
                }
                e = too_large => return Err(e),
            };
            let status = status.map_err(|e| SourceError::Spawn(e.to_string()))?;
            if !status.success() {
                return Err(SourceError::CloneFailed(credentials::redact(
                    &tail.reason(),
                    &secrets,
                )));
            }
            self.measure(dir).await?;
            let out = self
                .command()
                .arg("-C")
                .arg(dir)
                .args(["rev-parse", "HEAD"])
                .output()
                .await
                .map_err(|e| SourceError::Spawn(e.to_string()))?;
            let commit = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if !out.status.success() || commit.len() < 40 {
                return Err(SourceError::CloneFailed(
                    "could not read the cloned commit".into(),
                ));
            }
            Ok(Checkout {
                dir: dir.to_owned(),
                commit,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_tail_of_the_error_output_is_kept() {
        let mut tail = Tail::default();
        for n in 0..100_000 {
            tail.push(format!("remote: noise {n}\n").as_bytes());
            assert!(tail.0.len() <= 2 * STDERR_TAIL);
        }
        tail.push(b"fatal: the real reason\nremote: after\n");
        assert_eq!(tail.reason(), "fatal: the real reason");
        tail.push(b"remote: no end of linefatal: joined\n");
        assert_eq!(tail.reason(), "fatal: joined");
    }

    #[test]
    fn counting_stops_past_the_file_limit() {
        let dir = std::env::temp_dir().join(format!("slipway-usage-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).expect("dir");
        for n in 0..50 {
            std::fs::write(dir.join("sub").join(n.to_string()), b"ab").expect("file");
        }
        assert_eq!(
            usage(&dir, 1000),
            Usage {
                bytes: 100,
                entries: 51
            }
        );
        assert_eq!(usage(&dir, 10).entries, 11);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
