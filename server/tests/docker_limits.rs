//! Hostile repositories against the real Docker engine. Alone in its test binary (one
//! test, its steps in order), so the process's memory high-water mark (`VmHWM`) measures
//! the server these steps run.
//!
//! 1. A checkout of 256 MiB goes to Docker as a tar written while Docker reads it: the
//!    server's memory does not grow by the checkout's size.
//! 2. `RUN yes` would write until the build timeout: the log stops at
//!    `SLIPWAY_LOG_MAX_MB`, the deployment fails saying so, and the build is stopped.
#![allow(clippy::unwrap_used)]

mod common;

use common::{TestServer, git_repo};
use protocol::Status;
use serde_json::json;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(300);
const BIG: u64 = 256 * 1024 * 1024;

fn high_water_kib() -> u64 {
    common::memory_kib("self").1
}

async fn deploy(
    server: &TestServer,
    name: &str,
    repo: &std::path::Path,
) -> (i64, common::Received) {
    let app = server
        .create_app(name, &repo.display().to_string(), json!({}))
        .await;
    let id = server.queue_deployment(app).await;
    (id, server.follow(id, LIMIT).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_builds_stay_within_memory_and_log_limits() {
    let server =
        TestServer::start_with_vars("docker-limits", &[("SLIPWAY_LOG_MAX_MB", "1".into())]).await;

    // 1. A big build context. The file is sparse here (git reads it, not this process)
    //    and checked out as 256 MiB of zeros.
    let repo = git_repo(
        &server.dir.join("big"),
        &[(
            "Dockerfile",
            "FROM scratch\nCOPY busybox /bin/busybox\nCMD [\"/bin/busybox\", \"sleep\", \"3600\"]\n",
        )],
    );
    std::fs::File::create(repo.join("zeros.bin"))
        .unwrap()
        .set_len(BIG)
        .unwrap();
    common::commit_all(&repo, "256 MiB of zeros");
    let before = high_water_kib();
    let (_, got) = deploy(&server, "big-context", &repo).await;
    let grew_mib = (high_water_kib() - before) / 1024;
    let last = got.statuses().pop().unwrap();
    assert_eq!(last.status, Status::Success, "{}", last.error_message);
    println!(
        "build context of {} MiB sent to Docker; memory high-water mark grew by {grew_mib} MiB",
        BIG / (1024 * 1024)
    );
    assert!(
        grew_mib < 64,
        "the build context was held in memory: +{grew_mib} MiB"
    );

    // 2. A build that writes without end.
    let marker = format!("slipway-log-flood-{}", std::process::id());
    let repo = git_repo(
        &server.dir.join("yes"),
        &[(
            "Dockerfile",
            &format!(
                "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
                 RUN yes {marker}\n"
            ),
        )],
    );
    let (id, got) = deploy(&server, "yes", &repo).await;
    let last = got.statuses().pop().unwrap();
    assert_eq!(last.status, Status::Failed, "{last:?}");
    assert_eq!(last.failed_stage, Some(Status::Building));
    assert!(
        last.error_message.contains("log limit reached")
            && last.error_message.contains("1 MB (SLIPWAY_LOG_MAX_MB)"),
        "{}",
        last.error_message
    );
    let (_, log) = server
        .request("GET", &format!("/api/deployments/{id}/logs"), None)
        .await;
    assert!(log.len() < 1024 * 1024, "{} bytes", log.len());
    assert!(log.contains(&marker));
    // The build container stops: Docker cancels a build whose client went away.
    let running = || {
        let out = std::process::Command::new("docker")
            .args(["ps", "--no-trunc", "--format", "{{.Command}}"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains(&marker)
    };
    let until = std::time::Instant::now() + Duration::from_secs(60);
    while running() {
        assert!(
            std::time::Instant::now() < until,
            "the `yes` build container still runs a minute after the deployment failed"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    server.stop().await;
}
