//! End to end against the real Docker engine: deploy a git repository, watch it through
//! a real WebSocket client, fetch the running app; a broken build; a late viewer.

mod common;

use common::{BROKEN_DOCKERFILE, HTTPD_DOCKERFILE, TestServer, git_repo};
use protocol::{Event, Status};
use serde_json::json;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(180);

async fn create_app(
    server: &TestServer,
    name: &str,
    repo: &std::path::Path,
    port: Option<u16>,
) -> i64 {
    let (status, app) = server
        .json(
            "POST",
            "/api/apps",
            Some(json!({"name": name, "repo_url": repo.display().to_string(), "port": port, "env": {"GREETING": "hi"}})),
        )
        .await;
    assert_eq!(status, 201, "{app}");
    assert_eq!(app["env_keys"], json!(["GREETING"]));
    app["id"].as_i64().expect("app id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_watch_and_fetch_the_running_app() {
    let server = TestServer::start("deploy").await;
    let repo = git_repo(&server.dir, &[("Dockerfile", HTTPD_DOCKERFILE)]);
    let app_id = create_app(&server, "hello-e2e", &repo, Some(8080)).await;

    let (status, created) = server
        .json("POST", "/api/deployments", Some(json!({"appId": app_id})))
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["status"], "pending");
    assert_eq!(created["progress"], 0);
    let id = created["id"].as_i64().expect("deployment id");

    let viewer = server.ws(&format!("id={id}")).await;
    let got = viewer.read_to_close(LIMIT).await;
    assert_eq!(got.close_code, Some(1000));

    // Rule 1: the first message is a status; rule 4: the terminal status is the last.
    assert!(
        matches!(got.events.first(), Some(Event::Status { .. })),
        "{:?}",
        got.events.first()
    );
    let statuses = got.statuses();
    let last = statuses.last().expect("a status");
    assert_eq!(last.status, Status::Success, "{got:#?}");
    assert!(got.events.last().is_some_and(Event::is_terminal));
    assert!(last.duration.is_some_and(|d| d > 0.0));

    // Stages in order, progress never falling, and a status event only on a change.
    let order: Vec<Status> = statuses.iter().map(|s| s.status).collect();
    let mut stages = order.clone();
    stages.dedup();
    let expected: Vec<Status> = [
        Status::Pending,
        Status::Cloning,
        Status::Building,
        Status::Deploying,
        Status::Success,
    ]
    .into_iter()
    .filter(|s| stages.contains(s) || *s != Status::Pending)
    .collect();
    assert_eq!(stages, expected);
    for pair in statuses.windows(2) {
        assert!(
            pair[1].progress >= pair[0].progress,
            "progress fell: {pair:?}"
        );
        assert!(
            pair[1].differs_from(&pair[0]),
            "a status event without a change: {pair:?}"
        );
    }
    assert!(
        statuses
            .iter()
            .any(|s| s.status == Status::Building && s.progress > 50 && s.progress < 80),
        "progress rises with the Dockerfile steps: {statuses:?}"
    );

    // Rule 2: contiguous seq from 1; the build's and Slipway's own lines in one log.
    let seqs = got.seqs();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    let text = got.text();
    for needle in [
        "[slipway] Cloning",
        "Checked out commit",
        "Step 1/",
        "built-page-marker",
        "build line 3",
        "Health check passed",
        "Deployment successful",
    ] {
        assert!(text.contains(needle), "log lacks {needle:?}:\n{text}");
    }
    // Rule 3: a line written after a stage began comes after that stage's status event.
    let position =
        |pred: &dyn Fn(&Event) -> bool| got.events.iter().position(pred).expect("present");
    let building =
        position(&|e| matches!(e, Event::Status { data, .. } if data.status == Status::Building));
    let step1 =
        position(&|e| matches!(e, Event::Log { data, .. } if data.line.starts_with("Step 1/")));
    let deploying =
        position(&|e| matches!(e, Event::Status { data, .. } if data.status == Status::Deploying));
    let started = position(
        &|e| matches!(e, Event::Log { data, .. } if data.line.contains("Starting container")),
    );
    assert!(building < step1 && step1 < deploying && deploying < started);

    // The REST view agrees, and the log endpoint is the concatenation of the lines.
    let (_, deployment) = server
        .json("GET", &format!("/api/deployments/{id}"), None)
        .await;
    assert_eq!(deployment["status"], "success");
    assert_eq!(deployment["progress"], 100);
    assert_eq!(deployment["commit"].as_str().map(str::len), Some(40));
    let url = deployment["url"].as_str().expect("url").to_owned();
    let (status, log) = server
        .request("GET", &format!("/api/deployments/{id}/logs"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(log, text);

    // The app answers on its published port.
    let addr: std::net::SocketAddr = url
        .trim_start_matches("http://")
        .parse()
        .expect("host:port");
    let (status, page) = common::http(addr, "GET", "/", None).await;
    assert_eq!(status, 200);
    assert!(page.contains("hello from slipway"));
    let (_, app) = server
        .json("GET", &format!("/api/apps/{app_id}"), None)
        .await;
    assert_eq!(app["url"].as_str(), Some(url.as_str()));
    assert_eq!(app["last_deployment"]["id"].as_i64(), Some(id));

    // A late viewer gets the same log, then the terminal status, then 1000.
    let late = server
        .ws(&format!("id={id}"))
        .await
        .read_to_close(LIMIT)
        .await;
    assert_eq!(late.text(), text);
    assert_eq!(late.close_code, Some(1000));
    assert_eq!(
        late.statuses().len(),
        2,
        "status first, and the terminal status again last"
    );
    assert!(late.events.last().is_some_and(Event::is_terminal));

    // `since` resumes exactly after the given line.
    let resumed = server
        .ws(&format!("id={id}&since=5"))
        .await
        .read_to_close(LIMIT)
        .await;
    assert_eq!(resumed.seqs().first(), Some(&6));
    assert_eq!(resumed.seqs().len(), seqs.len() - 5);

    // A second deployment replaces the first container only once it is healthy.
    let (_, second) = server
        .json("POST", "/api/deployments", Some(json!({"app_id": app_id})))
        .await;
    let second_id = second["id"].as_i64().expect("id");
    let got = server
        .ws(&format!("id={second_id}"))
        .await
        .read_to_close(LIMIT)
        .await;
    assert_eq!(
        got.statuses().last().map(|s| s.status),
        Some(Status::Success)
    );
    assert!(got.text().contains("Stopped the previous container"));
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the old container no longer serves on {addr}"
    );

    // Deleting the app removes its container.
    let (status, _) = server
        .request("DELETE", &format!("/api/apps/{app_id}"), None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = server
        .json("GET", &format!("/api/apps/{app_id}"), None)
        .await;
    assert_eq!(status, 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_dockerfile_fails_with_the_exit_code() {
    let server = TestServer::start("broken").await;
    let repo = git_repo(&server.dir, &[("Dockerfile", BROKEN_DOCKERFILE)]);
    let app_id = create_app(&server, "broken-e2e", &repo, None).await;
    let (_, created) = server
        .json("POST", "/api/deployments", Some(json!({"appId": app_id})))
        .await;
    let id = created["id"].as_i64().expect("id");

    let got = server
        .ws(&format!("id={id}"))
        .await
        .read_to_close(LIMIT)
        .await;
    assert_eq!(got.close_code, Some(1000));
    let last = got.statuses().pop().expect("status");
    assert_eq!(last.status, Status::Failed);
    assert_eq!(last.failed_stage, Some(Status::Building));
    assert!(
        last.error_message.contains("exit code 3"),
        "{}",
        last.error_message
    );
    assert!(got.text().contains("about-to-fail"));
    assert!(got.text().contains("Deployment failed during building"));

    let (_, deployment) = server
        .json("GET", &format!("/api/deployments/{id}"), None)
        .await;
    assert_eq!(deployment["status"], "failed");
    assert_eq!(deployment["failed_stage"], "building");
    assert!(deployment["finished_at"].is_string());
    assert!(deployment["duration"].is_number());

    // A late viewer of a finished deployment: status, every line, status again.
    let late = server
        .ws(&format!("id={id}"))
        .await
        .read_to_close(LIMIT)
        .await;
    assert_eq!(late.text(), got.text());
    assert_eq!(late.seqs(), got.seqs());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_branch_fails_while_cloning() {
    let server = TestServer::start("branch").await;
    let repo = git_repo(&server.dir, &[("Dockerfile", HTTPD_DOCKERFILE)]);
    let (status, app) = server
        .json(
            "POST",
            "/api/apps",
            Some(json!({"name": "nobranch", "repo_url": format!("file://{}", repo.display()), "branch": "does-not-exist"})),
        )
        .await;
    assert_eq!(status, 201, "{app}");
    let (_, created) = server
        .json(
            "POST",
            "/api/deployments",
            Some(json!({"appId": app["id"]})),
        )
        .await;
    let got = server
        .ws(&format!("id={}", created["id"]))
        .await
        .read_to_close(LIMIT)
        .await;
    let last = got.statuses().pop().expect("status");
    assert_eq!(last.status, Status::Failed);
    assert_eq!(last.failed_stage, Some(Status::Cloning));
    assert!(
        last.error_message.contains("does-not-exist"),
        "{}",
        last.error_message
    );
    server.stop().await;
}
