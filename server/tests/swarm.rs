//! `SLIPWAY_RUNTIME=swarm` on the real engine, made a one-node swarm with a local registry
//! by `scripts/swarm.sh up` and left as it was found by `scripts/swarm.sh down`: an app
//! runs as a service behind the edge (itself a service on the overlay network), is
//! updated start-first under continuous traffic without one failed request, a bad image
//! is rolled back by Swarm with the old version serving, a rollback is a service update,
//! and the service's output reaches the runtime log.

mod common;

use common::edge::{Api, Edge, LIMIT, Load, docker};
use common::{Binary, Postgres, TestServer, commit, free_port, git_repo};
use protocol::Status;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// busybox httpd serving `version <n>`, with a health check on port 8080; it listens on
/// `port` (another port: never healthy). It says hello on stdout when it starts.
fn swarm_app(version: u32, port: u16) -> String {
    format!(
        "FROM scratch
COPY busybox /bin/busybox
RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]
RUN mkdir -p /www && echo \"version {version}\" > /www/index.html
HEALTHCHECK --interval=1s --timeout=1s --retries=2 CMD wget -q -O /dev/null http://127.0.0.1:8080/ || exit 1
CMD [\"/bin/sh\", \"-c\", \"echo hello from version {version}; exec httpd -f -p {port} -h /www\"]
"
    )
}

/// Version `version` whose server starts only after 30 s: its task stays `starting`
/// (failed checks in the start period do not count) for that long.
fn slow_app(version: u32) -> String {
    swarm_app(version, 8080)
        .replace(
            "HEALTHCHECK --interval",
            "HEALTHCHECK --start-period=60s --interval",
        )
        .replace("exec httpd", "sleep 30; exec httpd")
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/swarm.sh")
}

/// What the test must leave as it found it: the engine's swarm state, its services and
/// networks, and whether a registry answers.
#[derive(Debug, PartialEq)]
struct EngineState {
    swarm: String,
    services: String,
    networks: String,
    registry: bool,
}

fn engine_state() -> EngineState {
    let mut services = String::new();
    if docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]).trim() == "active" {
        services = docker(&["service", "ls", "--format", "{{.Name}}"]);
    }
    EngineState {
        swarm: docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"])
            .trim()
            .to_owned(),
        services,
        networks: docker(&["network", "ls", "--format", "{{.Name}}"]),
        registry: std::net::TcpStream::connect("127.0.0.1:5000").is_ok(),
    }
}

/// `scripts/swarm.sh up` now, and on the way out (even a failed assertion's) the
/// services and network this test made removed and `scripts/swarm.sh down`.
struct Swarm {
    state: PathBuf,
    registry: String,
    /// The edge services of the Slipway nodes of the test.
    edges: Vec<String>,
    had_network: bool,
}

/// One test at a time owns the swarm: `scripts/swarm.sh down` ends it.
static SWARM: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl Swarm {
    fn up(dir: &std::path::Path, nodes: &[&str]) -> Swarm {
        let state = dir.join("swarm-state");
        let had_network = docker(&["network", "ls", "--format", "{{.Name}}"])
            .lines()
            .any(|n| n == "slipway");
        let out = Command::new("bash")
            .arg(script())
            .arg("up")
            .env("SLIPWAY_SWARM_STATE", &state)
            .output()
            .expect("scripts/swarm.sh");
        assert!(
            out.status.success(),
            "swarm.sh up: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Swarm {
            state,
            registry: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            edges: nodes
                .iter()
                .map(|n| engine::swarm::edge_service(n))
                .collect(),
            had_network,
        }
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        for edge in &self.edges {
            let _ = Command::new("docker")
                .args(["service", "rm", edge])
                .output();
        }
        if !self.had_network {
            // The network goes once the edge's task is gone.
            for _ in 0..50 {
                let removed = Command::new("docker")
                    .args(["network", "rm", "slipway"])
                    .output()
                    .map(|o| o.status.success())
                    .unwrap_or(true);
                let gone = !docker(&["network", "ls", "--format", "{{.Name}}"])
                    .lines()
                    .any(|n| n == "slipway");
                if removed || gone {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        let _ = Command::new("bash")
            .arg(script())
            .arg("down")
            .env("SLIPWAY_SWARM_STATE", &self.state)
            .output();
    }
}

/// A Slipway node on the swarm: its edge on `edge_port`, named `node`.
fn swarm_vars(registry: &str, edge_port: u16, node: &str) -> Vec<(&'static str, String)> {
    vec![
        ("SLIPWAY_RUNTIME", "swarm".to_owned()),
        ("SLIPWAY_REGISTRY", registry.to_owned()),
        ("SLIPWAY_EDGE_HTTP_ADDR", format!("127.0.0.1:{edge_port}")),
        ("SLIPWAY_NODE_NAME", node.to_owned()),
        ("SLIPWAY_HEALTH_TIMEOUT_SECS", "60".to_owned()),
    ]
}

/// Registers the app `name` (port 8080, and `extra`) from `repo`; answers its id.
async fn create_app(server: &impl Api, name: &str, repo: &std::path::Path, extra: Value) -> i64 {
    let mut body = json!({"name": name, "repo_url": repo.display().to_string(), "port": 8080});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let (status, app) = server.call("POST", "/api/apps", Some(body)).await;
    assert_eq!(status, 201, "{app}");
    app["id"].as_i64().expect("id")
}

/// Queues a deployment of `app` and reads its monitor until its new task is starting;
/// answers the deployment and the monitor, still open.
async fn until_task_starts(server: &impl Api, app: i64) -> (i64, common::Viewer) {
    let (status, d) = server
        .call("POST", "/api/deployments", Some(json!({"appId": app})))
        .await;
    assert_eq!(status, 201, "{d}");
    let id = d["id"].as_i64().expect("id");
    let mut viewer = server.viewer(&format!("id={id}")).await;
    while let Some(event) = viewer.next_event().await {
        if let protocol::Event::Log { data, .. } = event
            && data.line.contains(": starting")
        {
            break;
        }
    }
    (id, viewer)
}

async fn log_of(server: &TestServer, id: i64) -> String {
    server
        .request("GET", &format!("/api/deployments/{id}/logs"), None)
        .await
        .1
}

/// The service's spec as the engine holds it.
fn service_spec(name: &str) -> Value {
    let text = docker(&["service", "inspect", "--format", "{{json .Spec}}", name]);
    serde_json::from_str(&text).expect("spec")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_run_as_services_updated_start_first_and_rolled_back_by_swarm() {
    let _one = SWARM.lock().await;
    let before = engine_state();
    let dir = common::temp_dir("swarm");
    let node = format!("swarm-test-{}", std::process::id());
    let swarm = Swarm::up(&dir, &[&node]);
    let port = free_port();
    let server =
        TestServer::start_with_vars("swarm", &swarm_vars(&swarm.registry, port, &node)).await;
    let name = format!("swarm-{}", std::process::id() % 100_000);
    let host = format!("{name}.localhost");
    let service = format!("slipway-{name}");
    let edge = Edge::new(port, &[&host]);
    let repo = git_repo(&dir.join("repo"), &[("Dockerfile", &swarm_app(1, 8080))]);
    let id = create_app(
        &server,
        &name,
        &repo,
        json!({"memory_mb": 128, "cpus": 0.5}),
    )
    .await;

    // The first deployment creates the service; the edge reaches it by name.
    let (first, end) = server.deploy(id).await;
    let log = log_of(&server, first).await;
    assert_eq!(end.status, Status::Success, "{log}");
    let pinned = format!("{}/slipway/{name}", swarm.registry);
    for expected in [
        format!("Pushed; the service runs {pinned}@sha256:"),
        format!("Created service {service}"),
        format!("The edge sends {host} to service {service}"),
        format!("Health check passed: HTTP 200 from {host} through the edge"),
    ] {
        assert!(log.contains(&expected), "{expected:?} missing from:\n{log}");
    }
    assert_eq!(
        edge.get(&host, "/").await,
        Ok((200, "version 1\n".to_owned()))
    );
    let spec = service_spec(&service);
    let task = &spec["TaskTemplate"];
    let image = task["ContainerSpec"]["Image"].as_str().unwrap_or_default();
    assert!(image.starts_with(&format!("{pinned}@sha256:")), "{image}");
    assert_eq!(spec["UpdateConfig"]["Order"], "start-first", "{spec}");
    assert_eq!(spec["UpdateConfig"]["FailureAction"], "rollback", "{spec}");
    assert_eq!(
        task["Resources"]["Limits"]["MemoryBytes"],
        128 << 20,
        "{spec}"
    );
    assert_eq!(
        task["Resources"]["Limits"]["NanoCPUs"], 500_000_000,
        "{spec}"
    );
    assert_eq!(task["Resources"]["Limits"]["Pids"], 512, "{spec}");
    assert_eq!(spec["EndpointSpec"]["Mode"], "dnsrr", "{spec}");

    // Continuous traffic through the edge from here to the end.
    let load = Load::start(&edge, &host, 4);

    // A new version: the monitor shows the service update as it happens.
    commit(&repo, "Dockerfile", &swarm_app(2, 8080));
    let (status, d) = server
        .json("POST", "/api/deployments", Some(json!({"appId": id})))
        .await;
    assert_eq!(status, 201, "{d}");
    let second = d["id"].as_i64().expect("id");
    let got = server
        .ws(&format!("id={second}"))
        .await
        .read_to_close(LIMIT)
        .await;
    let statuses = got.statuses();
    let last = statuses.last().expect("a status");
    assert_eq!(last.status, Status::Success, "{}", got.text());
    let progress: Vec<u8> = statuses
        .iter()
        .filter(|s| s.status == Status::Deploying)
        .map(|s| s.progress)
        .collect();
    assert!(
        progress.contains(&85) && progress.contains(&95),
        "{progress:?}"
    );
    let text = got.text();
    // Each task's changes, on the node it runs on, by its host name.
    let node_name = docker(&["info", "--format", "{{.Name}}"]);
    for expected in [
        format!("Updating service {service}"),
        "Swarm: updating: update in progress".to_owned(),
        format!("on node {}: running", node_name.trim()),
        "Swarm: completed: update completed".to_owned(),
    ] {
        assert!(
            text.contains(&expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    assert_eq!(
        edge.get(&host, "/").await,
        Ok((200, "version 2\n".to_owned()))
    );

    // An image that never gets healthy: Swarm rolls back; version 2 keeps serving.
    commit(&repo, "Dockerfile", &swarm_app(3, 8081));
    let (bad, end) = server.deploy(id).await;
    let log = log_of(&server, bad).await;
    assert_eq!(end.status, Status::Failed, "{log}");
    assert_eq!(end.failed_stage, Some(Status::Deploying), "{log}");
    assert!(
        end.error_message
            .contains("Swarm rolled the update back and the previous version still serves"),
        "{}",
        end.error_message
    );
    assert!(log.contains("Swarm: rollback_completed"), "{log}");
    assert_eq!(
        edge.get(&host, "/").await,
        Ok((200, "version 2\n".to_owned()))
    );

    // A deployment cancelled while its new task is still starting: Slipway asks Swarm to
    // roll back, and version 2 keeps serving.
    commit(&repo, "Dockerfile", &slow_app(4));
    let (slow, viewer) = until_task_starts(&server, id).await;
    let (status, body) = server
        .request("POST", &format!("/api/deployments/{slow}/cancel"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let end = viewer.read_to_close(LIMIT).await;
    let last = end.statuses().last().cloned().expect("a status");
    assert_eq!(last.status, Status::Cancelled, "{}", end.text());
    until_update(&service, "rollback_completed").await;
    assert_eq!(
        edge.get(&host, "/").await,
        Ok((200, "version 2\n".to_owned()))
    );

    // A rollback to the first deployment's image: no build, a service update.
    let (back, end) = server
        .deploy_and_wait(
            &format!("/api/apps/{id}/rollback"),
            Some(json!({"deployment_id": first})),
        )
        .await;
    let log = log_of(&server, back).await;
    assert_eq!(end.status, Status::Success, "{log}");
    assert!(
        log.contains(&format!("Redeploying image {pinned}@sha256:")),
        "{log}"
    );
    assert!(!log.contains("Building image"), "{log}");
    assert_eq!(
        edge.get(&host, "/").await,
        Ok((200, "version 1\n".to_owned()))
    );

    let (answered, retried, failures, rate) = load.finish().await;
    println!(
        "through the edge service during 2 updates, 1 rolled back by Swarm, 1 cancelled and 1 \
         rollback: \
         {answered} requests answered ({rate:.0}/s over 4 connections), {retried} retried on \
         a closed keep-alive connection, {} failed",
        failures.len()
    );
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert!(answered > 100, "the load ran: {answered} requests");

    // One task runs, and its output (and every version's before it) is the app's
    // runtime log, with Slipway's line at each switch.
    let running = docker(&[
        "service",
        "ps",
        "-q",
        "--filter",
        "desired-state=running",
        &service,
    ]);
    assert_eq!(running.lines().count(), 1, "{running}");
    let began = Instant::now();
    let runtime_log = loop {
        let (_, text) = server
            .request("GET", &format!("/api/apps/{id}/logs"), None)
            .await;
        if text.contains("hello from version 2") && text.contains("hello from version 1") {
            break text;
        }
        assert!(
            began.elapsed() < Duration::from_secs(30),
            "the service's output never reached the runtime log:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        runtime_log.contains(&format!(
            "[slipway] now serving service {service} with the image of deployment #{back}"
        )),
        "{runtime_log}"
    );

    // Deleting the app removes its service.
    server.stop().await;
    let left = docker(&[
        "service",
        "ls",
        "-q",
        "--filter",
        &format!("name={service}"),
    ]);
    assert!(left.trim().is_empty(), "{left}");
    drop(swarm);
    assert_eq!(engine_state(), before, "the engine is left as it was");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_of_a_cluster_share_the_services_and_each_edge_serves_them() {
    let _one = SWARM.lock().await;
    let before = engine_state();
    let dir = common::temp_dir("swarm-cluster");
    let names: Vec<String> = (0..2)
        .map(|i| format!("swarm-node-{i}-{}", std::process::id()))
        .collect();
    let swarm = Swarm::up(&dir, &[&names[0], &names[1]]);
    let postgres = Postgres::start(dir.join("pg"));
    let mut nodes = Vec::new();
    let mut edges = Vec::new();
    let name = format!("shared-{}", std::process::id() % 100_000);
    let host = format!("{name}.localhost");
    for node in &names {
        let port = free_port();
        let mut vars = swarm_vars(&swarm.registry, port, node);
        vars.push(("DATABASE_URL", postgres.url.clone()));
        let addr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        nodes.push(Binary::start(&dir.join(node), addr, &vars).await);
        edges.push(Edge::new(port, &[&host]));
    }
    let repo = git_repo(&dir.join("repo"), &[("Dockerfile", &swarm_app(1, 8080))]);
    let id = create_app(&nodes[0], &name, &repo, json!({})).await;

    // Whichever node runs it, one service; both nodes' edges reach it by name.
    let (_, end) = nodes[1].deploy(id).await;
    assert_eq!(end.status, Status::Success, "{}", end.error_message);
    for edge in &edges {
        edge.until_ok(&host, "version 1", Duration::from_secs(10))
            .await;
    }
    commit(&repo, "Dockerfile", &swarm_app(2, 8080));
    let (_, end) = nodes[0].deploy(id).await;
    assert_eq!(end.status, Status::Success, "{}", end.error_message);
    for edge in &edges {
        assert_eq!(
            edge.get(&host, "/").await,
            Ok((200, "version 2\n".to_owned()))
        );
    }
    let services = docker(&["service", "ls", "-q", "--filter", "name=slipway-shared"]);
    assert_eq!(services.lines().count(), 1, "{services}");

    for node in nodes.into_iter().rev() {
        node.stop().await;
    }
    drop(postgres);
    drop(swarm);
    assert_eq!(engine_state(), before, "the engine is left as it was");
}

/// Waits until the service's update has ended in `state`, at most a minute.
async fn until_update(service: &str, state: &str) {
    let began = Instant::now();
    loop {
        let now = docker(&[
            "service",
            "inspect",
            "--format",
            "{{.UpdateStatus.State}}",
            service,
        ]);
        if now.trim() == state {
            return;
        }
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "{service}'s update is {now:?}, not {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_during_an_update_rolls_the_service_back() {
    let _one = SWARM.lock().await;
    let before = engine_state();
    let dir = common::temp_dir("swarm-restart");
    let node = format!("swarm-restart-{}", std::process::id());
    let swarm = Swarm::up(&dir, &[&node]);
    let port = free_port();
    let vars = swarm_vars(&swarm.registry, port, &node);
    let data = dir.join("data");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let mut server = Binary::start(&data, addr, &vars).await;
    let name = format!("restart-{}", std::process::id() % 100_000);
    let host = format!("{name}.localhost");
    let service = format!("slipway-{name}");
    let edge = Edge::new(port, &[&host]);
    let repo = git_repo(&dir.join("repo"), &[("Dockerfile", &swarm_app(1, 8080))]);
    let id = create_app(&server, &name, &repo, json!({})).await;
    let (_, end) = server.deploy(id).await;
    assert_eq!(end.status, Status::Success, "{}", end.error_message);

    // `kill -9` while the new task is starting; Swarm would finish the update alone.
    commit(&repo, "Dockerfile", &slow_app(2));
    let (slow, viewer) = until_task_starts(&server, id).await;
    drop(viewer);
    server.child.kill().expect("kill -9");
    server.child.wait().expect("reaped");
    // The edge is a service: it serves on while Slipway is down.
    assert_eq!(
        edge.get(&host, "/").await,
        Ok((200, "version 1\n".to_owned()))
    );

    server = Binary::start(&data, addr, &vars).await;
    let (_, after) = server
        .call("GET", &format!("/api/deployments/{slow}"), None)
        .await;
    assert_eq!(after["status"], "failed", "{after}");
    assert_eq!(
        after["error_message"],
        "interrupted: the server restarted during deploying"
    );
    until_update(&service, "rollback_completed").await;
    assert_eq!(
        edge.get(&host, "/").await,
        Ok((200, "version 1\n".to_owned()))
    );
    let running = docker(&[
        "service",
        "ps",
        "-q",
        "--filter",
        "desired-state=running",
        &service,
    ]);
    assert_eq!(running.lines().count(), 1, "{running}");

    server.stop().await;
    drop(swarm);
    assert_eq!(engine_state(), before, "the engine is left as it was");
}
