//! The Docker engine restarts under a running app: its container comes back (restart
//! policy), usually on a new loopback port, and Slipway, hearing the engine come back on
//! its event stream, points the edge at it. Alone in its test binary: it stops the engine
//! every other test uses.

mod common;

use common::{TestServer, free_port, git_repo};
use protocol::Status;
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};

const APP: &str = "FROM scratch
COPY busybox /bin/busybox
RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]
RUN mkdir -p /www && echo \"still here\" > /www/index.html
EXPOSE 8080
CMD [\"/bin/httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]
";

/// The host port the app's container is published on.
fn published_port(app: i64, instance: &str) -> String {
    let out = Command::new("docker")
        .args(["ps", "-q", "--filter", &format!("label=slipway.app={app}")])
        .args(["--filter", &format!("label=slipway.instance={instance}")])
        .output()
        .expect("docker ps");
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let out = Command::new("docker")
        .args(["port", &id, "8080/tcp"])
        .output()
        .expect("docker port");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn docker_answers() -> bool {
    Command::new("docker")
        .arg("info")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_docker_restart_the_app_is_back_through_the_edge() {
    let port = free_port();
    let server = TestServer::start_with_vars(
        "docker-restart",
        &[("SLIPWAY_EDGE_HTTP_ADDR", format!("127.0.0.1:{port}"))],
    )
    .await;
    let repo = git_repo(&server.dir.join("repo"), &[("Dockerfile", APP)]);
    let (status, app) = server
        .json(
            "POST",
            "/api/apps",
            Some(json!({"name": "survivor", "repo_url": repo.display().to_string(), "port": 8080})),
        )
        .await;
    assert_eq!(status, 201, "{app}");
    let id = app["id"].as_i64().expect("id");
    let (_, d) = server
        .json("POST", "/api/deployments", Some(json!({"appId": id})))
        .await;
    let got = server
        .ws(&format!("id={}", d["id"]))
        .await
        .read_to_close(Duration::from_secs(180))
        .await;
    let end = got.statuses().last().cloned().expect("a status");
    assert_eq!(end.status, Status::Success, "{}", end.error_message);
    let instance = std::fs::read_to_string(server.dir.join("data/instance")).expect("instance");
    let before = published_port(id, instance.trim());
    let client = reqwest::Client::builder()
        .no_proxy()
        .resolve(
            "survivor.localhost",
            std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        )
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let url = format!("http://survivor.localhost:{port}/");
    let answers = || async {
        match client.get(&url).send().await {
            Ok(response) if response.status() == 200 => {
                response.text().await.ok().as_deref() == Some("still here\n")
            }
            _ => false,
        }
    };
    assert!(answers().await, "the app answers before the restart");

    // Stop the engine (its containers stop with it), then start it again.
    let pid = std::fs::read_to_string("/var/run/docker.pid").expect("dockerd's pid file");
    assert!(
        Command::new("kill")
            .args(["-TERM", pid.trim()])
            .status()
            .expect("kill")
            .success()
    );
    let began = Instant::now();
    while std::path::Path::new(&format!("/proc/{}", pid.trim())).exists() {
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "dockerd did not stop"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/docker.sh");
    assert!(
        Command::new(script).status().expect("docker.sh").success(),
        "the Docker engine starts again"
    );
    assert!(docker_answers());
    let restarted = Instant::now();
    while !answers().await {
        assert!(
            restarted.elapsed() < Duration::from_secs(120),
            "the app never came back through the edge"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = published_port(id, instance.trim());
    println!(
        "after the Docker engine restarted, the app answered through the edge again {:.2} s later \
         (its port: {before} before, {after} after)",
        restarted.elapsed().as_secs_f64()
    );
    server.stop().await;
}
