//! Hostile repositories against a real server (port 0, synthetic runtime, real git): a
//! build that writes without end, a repository of countless small files, one larger
//! than allowed, a clone that hangs. Each ends `failed` or `cancelled` with the reason,
//! and leaves no checkout behind.
#![allow(clippy::unwrap_used)]

mod common;

use common::{TestServer, git_repo};
use protocol::Status;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

fn checkout(server: &TestServer, id: i64) -> PathBuf {
    server.dir.join("data").join("work").join(id.to_string())
}

/// Follows deployment `id` to its end; answers its last status.
async fn end_of(server: &TestServer, id: i64) -> (common::Received, protocol::StatusData) {
    let got = server.follow(id, LIMIT).await;
    let last = got.statuses().pop().expect("a status");
    assert!(last.status.is_terminal(), "{last:?}");
    (got, last)
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// `RUN yes` writes until the build timeout: the log stops at SLIPWAY_LOG_MAX_MB and the
/// deployment fails saying so. Viewers still get every stored line once, then the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_past_its_limit_fails_the_deployment() {
    let server =
        TestServer::start_synthetic_with_vars("log-cap", &[("SLIPWAY_LOG_MAX_MB", "1".into())])
            .await;
    // About 20 MB of output.
    let id = server
        .deploy_script("flood", "lines 200000\ninterval_us 0\nsize 100\n")
        .await;
    let (got, last) = end_of(&server, id).await;
    assert_eq!(last.status, Status::Failed, "{last:?}");
    assert_eq!(last.failed_stage, Some(Status::Building));
    assert!(
        last.error_message.contains("log limit reached")
            && last.error_message.contains("SLIPWAY_LOG_MAX_MB"),
        "{}",
        last.error_message
    );
    let seqs = got.seqs();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    let (status, log) = server
        .request("GET", &format!("/api/deployments/{id}/logs"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(log, got.text(), "the viewer saw the stored log");
    let last_line = log.lines().last().unwrap_or_default();
    assert!(last_line.contains("log limit reached"), "{last_line}");
    // Lines and index together stay within the limit; only the closing line is past it.
    let logs = server.dir.join("data").join("logs");
    let on_disk =
        file_len(&logs.join(format!("{id}.log"))) + file_len(&logs.join(format!("{id}.idx")));
    assert!(
        on_disk <= 1024 * 1024 + last_line.len() as u64 + 64,
        "{on_disk} bytes on disk"
    );
    assert!(
        on_disk > 512 * 1024,
        "the log filled up to its limit: {on_disk}"
    );
    assert!(!checkout(&server, id).exists());
    server.stop().await;
}

/// Millions of empty files pass any size limit: the number of files is limited too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_of_countless_files_is_refused() {
    let server = TestServer::start_synthetic_with_vars(
        "file-count",
        &[("SLIPWAY_CLONE_MAX_FILES", "300".into())],
    )
    .await;
    let repo = git_repo(&server.dir.join("many"), &[("Dockerfile", "lines 1\n")]);
    for d in 0..20 {
        let dir = repo.join(format!("d{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..50 {
            std::fs::write(dir.join(format!("f{f}")), format!("{d}/{f}")).unwrap();
        }
    }
    common::commit_all(&repo, "a thousand files");
    let app = server
        .create_app("many", &repo.display().to_string(), json!({}))
        .await;
    let id = server.queue_deployment(app).await;
    let (_, last) = end_of(&server, id).await;
    assert_eq!(last.status, Status::Failed, "{last:?}");
    assert_eq!(last.failed_stage, Some(Status::Cloning));
    assert!(
        last.error_message.contains("more than 300 files")
            && last.error_message.contains("SLIPWAY_CLONE_MAX_FILES"),
        "{}",
        last.error_message
    );
    assert!(
        !checkout(&server, id).exists(),
        "the checkout was left behind"
    );
    server.stop().await;
}

/// However a deployment ends (too large, no Dockerfile, cancelled while cloning or while
/// building, or a success), its checkout is gone afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkouts_are_removed_on_every_way_out() {
    // The repositories carry a static busybox (about 2 MB): past a 1 MB limit.
    let server =
        TestServer::start_synthetic_with_vars("checkouts", &[("SLIPWAY_CLONE_MAX_MB", "1".into())])
            .await;
    let repo = git_repo(&server.dir.join("big"), &[("Dockerfile", "lines 1\n")]);
    let big = server
        .create_app("big", &repo.display().to_string(), json!({}))
        .await;
    let id = server.queue_deployment(big).await;
    let (_, last) = end_of(&server, id).await;
    assert_eq!(last.status, Status::Failed);
    assert!(
        last.error_message.contains("SLIPWAY_CLONE_MAX_MB"),
        "{}",
        last.error_message
    );
    assert!(
        !checkout(&server, id).exists(),
        "too large: the checkout was left behind"
    );
    server.stop().await;

    let server = TestServer::start_synthetic("checkouts-2").await;
    let repo = git_repo(
        &server.dir.join("small"),
        &[("Dockerfile", "lines 3\nhold\n")],
    );
    let url = repo.display().to_string();

    // A hanging git server: the clone starts, then waits.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hang_url = format!("http://{}/team/slow.git", listener.local_addr().unwrap());
    let (connected, mut accepted) = tokio::sync::mpsc::channel(4);
    let hang = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
            let _ = connected.send(()).await;
        }
    });
    let slow = server.create_app("slow", &hang_url, json!({})).await;
    let id = server.queue_deployment(slow).await;
    tokio::time::timeout(LIMIT, accepted.recv())
        .await
        .expect("git connects to the hanging server");
    assert!(
        checkout(&server, id).exists(),
        "git made its checkout first"
    );
    let (status, cancelled) = server
        .json("POST", &format!("/api/deployments/{id}/cancel"), None)
        .await;
    assert_eq!(
        (status, cancelled["status"].as_str()),
        (200, Some("cancelled")),
        "{cancelled}"
    );
    assert!(
        !checkout(&server, id).exists(),
        "cancelled while cloning: left behind"
    );
    hang.abort();

    // Cancelled while building (the script holds until cancelled).
    let held = server.create_app("held", &url, json!({})).await;
    let id = server.queue_deployment(held).await;
    let mut viewer = server.ws(&format!("id={id}")).await;
    tokio::time::timeout(LIMIT, async {
        while let Some(event) = viewer.next_event().await {
            if matches!(&event, protocol::Event::Log { data, .. } if data.line.contains("synthetic line 3")) {
                break;
            }
        }
    })
    .await
    .expect("the build prints its lines");
    let (status, _) = server
        .json("POST", &format!("/api/deployments/{id}/cancel"), None)
        .await;
    assert_eq!(status, 200);
    assert!(
        !checkout(&server, id).exists(),
        "cancelled while building: left behind"
    );

    // No Dockerfile where the app says.
    let lost = server
        .create_app("lost", &url, json!({"dockerfile": "deploy/Dockerfile"}))
        .await;
    let id = server.queue_deployment(lost).await;
    let (_, last) = end_of(&server, id).await;
    assert_eq!(last.status, Status::Failed);
    assert!(
        !checkout(&server, id).exists(),
        "no Dockerfile: left behind"
    );

    // A success.
    let repo = git_repo(&server.dir.join("fine"), &[("Dockerfile", "lines 3\n")]);
    let fine = server
        .create_app("fine", &repo.display().to_string(), json!({}))
        .await;
    let id = server.queue_deployment(fine).await;
    let (_, last) = end_of(&server, id).await;
    assert_eq!(last.status, Status::Success, "{}", last.error_message);
    assert!(!checkout(&server, id).exists(), "success: left behind");
    server.stop().await;
}
