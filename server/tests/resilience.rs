//! Reliability against the real Docker engine and the real binary: an unhealthy new
//! container leaves the old one serving; `kill -9` in the middle of a build, then a
//! restart, ends the deployment with a reason and the queue goes on.

mod common;

use common::{Binary as Slipway, HTTPD_DOCKERFILE, TestServer, commit, git_repo};
use protocol::{Event, Status};
use serde_json::json;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_new_container_fails_and_the_old_one_keeps_serving() {
    let server = TestServer::start("health-gate").await;
    let repo = git_repo(&server.dir, &[("Dockerfile", HTTPD_DOCKERFILE)]);
    let (_, app) = server
        .json(
            "POST",
            "/api/apps",
            Some(json!({"name": "gate", "repo_url": repo.display().to_string(), "port": 8080})),
        )
        .await;
    let deploy = || async {
        let (status, d) = server
            .json(
                "POST",
                "/api/deployments",
                Some(json!({"appId": app["id"]})),
            )
            .await;
        assert_eq!(status, 201, "{d}");
        let id = d["id"].as_i64().expect("id");
        let got = server
            .ws(&format!("id={id}"))
            .await
            .read_to_close(LIMIT)
            .await;
        (id, got)
    };
    let (_, first) = deploy().await;
    assert_eq!(
        first.statuses().last().map(|s| s.status),
        Some(Status::Success)
    );
    let (_, shown) = server
        .json("GET", &format!("/api/apps/{}", app["id"]), None)
        .await;
    let url = shown["url"].as_str().expect("url").to_owned();
    let addr: std::net::SocketAddr = url.trim_start_matches("http://").parse().expect("addr");

    // The next version's container prints why it cannot start, then exits.
    let broken = HTTPD_DOCKERFILE.replace(
        "CMD [\"/bin/httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]",
        "CMD [\"/bin/sh\", \"-c\", \"echo booting; echo fatal: missing DATABASE_URL >&2; exit 7\"]",
    );
    commit(&repo, "Dockerfile", &broken);
    let (id, second) = deploy().await;
    let last = second.statuses().pop().expect("status");
    assert_eq!(last.status, Status::Failed);
    assert_eq!(last.failed_stage, Some(Status::Deploying));
    assert!(
        last.error_message.contains("exited with code 7"),
        "{}",
        last.error_message
    );
    assert!(
        last.error_message.contains("fatal: missing DATABASE_URL"),
        "its own output: {}",
        last.error_message
    );

    // The old container still answers, and the app still points at it.
    let (status, page) = common::http(addr, "GET", "/", None).await;
    assert_eq!(status, 200);
    assert!(page.contains("hello from slipway"));
    let (_, shown) = server
        .json("GET", &format!("/api/apps/{}", app["id"]), None)
        .await;
    assert_eq!(shown["url"].as_str(), Some(url.as_str()));
    assert_eq!(shown["last_deployment"]["id"].as_i64(), Some(id));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_the_middle_of_a_build_then_restart() {
    let dir = common::temp_dir("kill9");
    let data = dir.join("data");
    let addr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        probe.local_addr().expect("addr")
    };
    let slow = HTTPD_DOCKERFILE.replace(
        "EXPOSE 8080",
        "RUN for i in $(seq 1 300); do echo \"slow line $i\"; usleep 100000; done\nEXPOSE 8080",
    );
    let slow_repo = git_repo(&dir.join("slow"), &[("Dockerfile", &slow)]);
    let fast_repo = git_repo(&dir.join("fast"), &[("Dockerfile", HTTPD_DOCKERFILE)]);

    let mut server = Slipway::start(&data, addr, &[]).await;
    let (_, slow_app) = server
        .json(
            "POST",
            "/api/apps",
            Some(json!({"name": "slow", "repo_url": slow_repo.display().to_string()})),
        )
        .await;
    let (_, fast_app) = server
        .json(
            "POST",
            "/api/apps",
            Some(
                json!({"name": "fast", "repo_url": fast_repo.display().to_string(), "port": 8080}),
            ),
        )
        .await;
    let (_, d) = server
        .json(
            "POST",
            "/api/deployments",
            Some(json!({"appId": slow_app["id"]})),
        )
        .await;
    let id = d["id"].as_i64().expect("id");
    let mut viewer = server.ws(&format!("id={id}")).await;
    let mut last_seq = 0;
    while let Some(event) = viewer.next_event().await {
        if let Event::Log { data, .. } = event {
            last_seq = data.seq;
            if data.line.starts_with("slow line 5") {
                break;
            }
        }
    }
    server.child.kill().expect("kill -9");
    server.child.wait().expect("reaped");

    server = Slipway::start(&data, addr, &[]).await;
    let (status, after) = server
        .json("GET", &format!("/api/deployments/{id}"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(after["status"], "failed");
    assert_eq!(after["failed_stage"], "building");
    assert_eq!(
        after["error_message"],
        "interrupted: the server restarted during building"
    );

    // A viewer resuming across the restart gets the rest, ending with the reason.
    let resumed = server
        .ws(&format!("id={id}&since={last_seq}"))
        .await
        .read_to_close(LIMIT)
        .await;
    assert_eq!(resumed.close_code, Some(1000));
    assert_eq!(resumed.seqs().first(), Some(&(last_seq + 1)));
    assert!(
        resumed
            .text()
            .ends_with("[slipway] interrupted: the server restarted during building\n")
    );
    assert_eq!(
        resumed.statuses().last().map(|s| s.status),
        Some(Status::Failed)
    );

    // The queue goes on: a new deployment works.
    let (_, d) = server
        .json(
            "POST",
            "/api/deployments",
            Some(json!({"appId": fast_app["id"]})),
        )
        .await;
    let got = server
        .ws(&format!("id={}", d["id"]))
        .await
        .read_to_close(LIMIT)
        .await;
    assert_eq!(
        got.statuses().last().map(|s| s.status),
        Some(Status::Success),
        "{:?}",
        got.statuses()
    );

    for app in [slow_app, fast_app] {
        let (status, _) = server
            .json("DELETE", &format!("/api/apps/{}", app["id"]), None)
            .await;
        assert_eq!(status, 204);
    }
    server.child.kill().ok();
    server.child.wait().ok();
}
