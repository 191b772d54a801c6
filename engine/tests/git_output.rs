//! A hostile git server can make git talk without end (`remote: ...` lines): the output
//! goes to the deployment's log as it comes, and only a bounded tail of it is kept for
//! the error message. Alone in its test binary, so the process's memory high-water mark
//! (`VmHWM` in `/proc/self/status`) measures this one clone.
#![allow(clippy::unwrap_used)]

use engine::git::{GitCli, Repo, Source, SourceError};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;
use tokio::sync::mpsc;

/// Bytes of output the fake git writes before it fails.
const NOISE: u64 = 128 * 1024 * 1024;

fn high_water_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_git_output_keeps_only_a_tail() {
    let dir = std::env::temp_dir().join(format!("slipway-git-output-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    // Stands in for git talking to a server that streams progress messages forever.
    let fake = bin.join("git");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\nyes 'remote: Counting objects: 100% (1/1), still counting, still counting' | head -c {NOISE} >&2\n\
             echo 'fatal: the remote end hung up unexpectedly' >&2\nexit 128\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut path = std::ffi::OsString::from(&bin);
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    let cli = GitCli {
        allow_local: false,
        timeout: Duration::from_secs(300),
        max_bytes: 1024 * 1024 * 1024,
        max_files: 100_000,
        path: Some(path),
        home: None,
    };

    let (tx, mut rx) = mpsc::channel::<String>(256);
    let drained = tokio::spawn(async move {
        let mut bytes = 0u64;
        while let Some(chunk) = rx.recv().await {
            bytes += chunk.len() as u64;
        }
        bytes
    });
    let before = high_water_kib();
    let repo = Repo {
        url: "https://git.example.invalid/team/repo.git",
        branch: "main",
        credentials: None,
    };
    let result = cli.fetch(repo, &dir.join("checkout"), tx).await;
    let grew_mib = (high_water_kib() - before) / 1024;
    let forwarded = drained.await.unwrap();
    println!(
        "git wrote {} MiB of output; {} MiB forwarded to the log; memory high-water mark grew by {grew_mib} MiB",
        NOISE / (1024 * 1024),
        forwarded / (1024 * 1024)
    );
    match result {
        Err(SourceError::CloneFailed(reason)) => {
            assert_eq!(reason, "fatal: the remote end hung up unexpectedly")
        }
        other => panic!("{:?}", other.err()),
    }
    assert!(
        forwarded >= NOISE,
        "the output reached the log: {forwarded}"
    );
    assert!(grew_mib < 32, "the clone's output was kept: {grew_mib} MiB");
    let _ = std::fs::remove_dir_all(&dir);
}
