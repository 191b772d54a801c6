//! Fetching source code: a shallow clone of one branch with the git CLI, run without a
//! shell, every positional argument after `--`, dangerous transports off.

use futures_util::future::BoxFuture;
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
}

pub struct Checkout {
    pub dir: PathBuf,
    pub commit: String,
}

pub trait Source: Send + Sync + 'static {
    /// Clones `branch` of `url` into `dir`, sending git's progress lines to `output`.
    fn fetch<'a>(
        &'a self,
        url: &'a str,
        branch: &'a str,
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
}

/// How often a running clone's size is measured.
const SIZE_CHECK_EVERY: Duration = Duration::from_millis(500);

/// Bytes of regular files under `dir` (symlinks not followed).
fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(entry.path()),
                Ok(t) if t.is_file() => total += entry.metadata().map(|m| m.len()).unwrap_or(0),
                _ => {}
            }
        }
    }
    total
}

async fn measure(dir: &Path) -> u64 {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || dir_size(&dir))
        .await
        .unwrap_or(0)
}

impl GitCli {
    pub fn from_config(config: &crate::Config) -> GitCli {
        GitCli {
            allow_local: config.allow_local_repos,
            timeout: config.clone_timeout,
            max_bytes: config.clone_max_bytes,
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("git");
        cmd.env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ASKPASS", "/bin/false")
            .env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
            .env("GIT_CONFIG_NOSYSTEM", "1")
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
        url: &'a str,
        branch: &'a str,
        dir: &'a Path,
        output: mpsc::Sender<String>,
    ) -> BoxFuture<'a, Result<Checkout, SourceError>> {
        Box::pin(async move {
            // A plain path makes git ignore --depth; a file:// URL keeps the clone shallow.
            let url = if url.starts_with('/') {
                format!("file://{url}")
            } else {
                url.to_owned()
            };
            let mut cmd = self.command();
            cmd.args([
                "clone",
                "--depth",
                "1",
                "--single-branch",
                "--no-tags",
                "--no-recurse-submodules",
            ])
            .arg("--branch")
            .arg(branch)
            .arg("--")
            .arg(&url)
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
            let mut child = cmd.spawn().map_err(|e| SourceError::Spawn(e.to_string()))?;
            let mut stderr = child.stderr.take();
            let run = async {
                let mut captured = Vec::new();
                if let Some(stderr) = stderr.as_mut() {
                    let mut buf = [0u8; 4096];
                    loop {
                        let n = stderr.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        captured.extend_from_slice(&buf[..n]);
                        let _ = output
                            .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                            .await;
                    }
                }
                (child.wait().await, captured)
            };
            // The clone is stopped (killed on drop) when it outgrows the limit.
            let too_large = async {
                loop {
                    tokio::time::sleep(SIZE_CHECK_EVERY).await;
                    if measure(dir).await > self.max_bytes {
                        break;
                    }
                }
            };
            let limit_mb = self.max_bytes / (1024 * 1024);
            let (status, captured) = tokio::select! {
                finished = tokio::time::timeout(self.timeout, run) => {
                    finished.map_err(|_| SourceError::Timeout(self.timeout.as_secs()))?
                }
                () = too_large => return Err(SourceError::TooLarge(limit_mb)),
            };
            let status = status.map_err(|e| SourceError::Spawn(e.to_string()))?;
            if !status.success() {
                let text = String::from_utf8_lossy(&captured);
                let reason = text
                    .lines()
                    .rev()
                    .find(|l| l.starts_with("fatal:") || l.starts_with("error:"))
                    .unwrap_or("git exited with an error")
                    .trim()
                    .to_owned();
                return Err(SourceError::CloneFailed(reason));
            }
            if measure(dir).await > self.max_bytes {
                return Err(SourceError::TooLarge(limit_mb));
            }
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
