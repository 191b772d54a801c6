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
}

pub struct GitCli {
    pub allow_local: bool,
    pub timeout: Duration,
}

impl GitCli {
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

impl Source for GitCli {
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
            let (status, captured) = tokio::time::timeout(self.timeout, run)
                .await
                .map_err(|_| SourceError::Timeout(self.timeout.as_secs()))?;
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
