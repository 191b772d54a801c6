//! The edge against the real Caddy (the pinned 2.11 binary) and the real Docker engine:
//! apps at their names and nothing else, switches under load that drop no request, long
//! streams across other apps' redeploys and route changes, containers fenced in, and
//! the edge back with every route after Caddy or Slipway is killed.
//!
//! The load generator retries a GET once when a kept-alive connection turns out closed
//! before any answer (as browsers and curl do): Caddy closes idle keep-alive connections
//! when its configuration changes. Retries are counted and printed; failures are
//! requests that got no good answer even so.

mod common;

use common::edge::{Api, Edge, LIMIT, Load, docker};
use common::{Binary, TestServer, commit, free_port, git_repo};
use protocol::Status;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A web app: busybox httpd serving `version <n>` at `/`, and `/cgi-bin/stream`, a
/// response of 40 lines, one every 250 ms (a long download).
fn web_app(version: u32) -> String {
    format!(
        "FROM scratch
COPY busybox /bin/busybox
RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]
RUN mkdir -p /www/cgi-bin && echo \"version {version}\" > /www/index.html
COPY stream /www/cgi-bin/stream
RUN chmod 755 /www/cgi-bin/stream
EXPOSE 8080
CMD [\"/bin/httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]
"
    )
}

const STREAM: &str = "#!/bin/sh
printf 'Content-Type: text/plain\\r\\n\\r\\n'
i=0
while [ $i -lt 40 ]; do echo \"tick $i\"; i=$((i+1)); usleep 250000; done
";

/// A build that succeeds but whose container exits at once: never healthy.
const NEVER_HEALTHY: &str = "FROM scratch
COPY busybox /bin/busybox
RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]
EXPOSE 8080
CMD [\"/bin/false\"]
";

/// A server with the edge on a free port; answers it and the edge's port.
async fn with_edge(name: &str, extra: &[(&str, String)]) -> (TestServer, u16) {
    let port = free_port();
    let mut vars = vec![
        ("SLIPWAY_EDGE_HTTP_ADDR", format!("127.0.0.1:{port}")),
        ("SLIPWAY_DRAIN_SECS", "3".to_owned()),
    ];
    vars.extend(extra.iter().cloned());
    (TestServer::start_with_vars(name, &vars).await, port)
}

/// An app whose repository is a `web_app`; answers its id and its repository.
async fn web(server: &impl Api, dir: &Path, name: &str, extra: Value) -> (i64, PathBuf) {
    let repo = git_repo(
        &dir.join(name),
        &[("Dockerfile", &web_app(1)), ("stream", STREAM)],
    );
    let mut body = json!({"name": name, "repo_url": repo.display().to_string(), "port": 8080});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let (status, app) = server.call("POST", "/api/apps", Some(body)).await;
    assert_eq!(status, 201, "{app}");
    (app["id"].as_i64().expect("id"), repo)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_answer_at_their_names_and_no_other_host_reaches_them() {
    let (server, port) = with_edge("edge-names", &[]).await;
    let edge = Edge::new(
        port,
        &[
            "hello.localhost",
            "www.example.test",
            "new.example.test",
            "nobody.localhost",
            "second.localhost",
        ],
    );
    let (id, _) = web(
        &server,
        &server.dir,
        "hello",
        json!({"domains": ["WWW.Example.test"]}),
    )
    .await;
    // Before any deployment the edge knows the app but has nothing to send it to.
    assert_eq!(edge.get("hello.localhost", "/").await.map(|a| a.0), Ok(503));
    let (_, end) = server.deploy(id).await;
    assert_eq!(end.status, Status::Success, "{}", end.error_message);

    assert_eq!(
        edge.get("hello.localhost", "/").await,
        Ok((200, "version 1\n".to_owned()))
    );
    assert_eq!(
        edge.get("www.example.test", "/").await,
        Ok((200, "version 1\n".to_owned()))
    );
    let (status, body) = edge.get("nobody.localhost", "/").await.expect("answer");
    assert_eq!(status, 404, "any other host gets 404: {body}");
    let (_, app) = server.json("GET", &format!("/api/apps/{id}"), None).await;
    assert_eq!(app["url"], format!("http://hello.localhost:{port}"));
    assert_eq!(app["domains"], json!(["www.example.test"]));
    assert_eq!(
        app["last_deployment"]["url"],
        format!("http://hello.localhost:{port}")
    );

    // Host names are unique across apps: 409, naming the name.
    let repo = git_repo(
        &server.dir.join("second"),
        &[("Dockerfile", &web_app(2)), ("stream", STREAM)],
    );
    for (name, domains, taken) in [
        ("second", json!(["www.example.test"]), "www.example.test"),
        ("second", json!(["hello.localhost"]), "hello.localhost"),
    ] {
        let (status, answer) = server
            .json(
                "POST",
                "/api/apps",
                Some(json!({"name": name, "repo_url": repo.display().to_string(), "domains": domains})),
            )
            .await;
        assert_eq!(status, 409, "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains(taken),
            "{answer}"
        );
    }
    for bad in [
        json!(["not a host"]),
        json!(["-x.example"]),
        json!(["10.0.0.1"]),
        json!("x.example"),
    ] {
        let (status, answer) = server
            .json(
                "PATCH",
                &format!("/api/apps/{id}"),
                Some(json!({"domains": bad})),
            )
            .await;
        assert_eq!(status, 422, "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("domains"),
            "{answer}"
        );
    }
    // Editing the domains moves the route at once.
    let (status, changed) = server
        .json(
            "PATCH",
            &format!("/api/apps/{id}"),
            Some(json!({"domains": ["new.example.test"], "memory_mb": 256, "cpus": 0.5})),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(
        (changed["memory_mb"].as_u64(), changed["cpus"].as_f64()),
        (Some(256), Some(0.5))
    );
    assert_eq!(
        edge.get("new.example.test", "/").await.map(|a| a.0),
        Ok(200)
    );
    assert_eq!(
        edge.get("www.example.test", "/").await.map(|a| a.0),
        Ok(404)
    );
    // A second app's address is its own.
    let (second, _) = web(&server, &server.dir, "second", json!({})).await;
    assert_eq!(
        edge.get("second.localhost", "/").await.map(|a| a.0),
        Ok(503)
    );
    let (status, _) = server
        .json("DELETE", &format!("/api/apps/{second}"), None)
        .await;
    assert_eq!(status, 204);
    assert_eq!(
        edge.get("second.localhost", "/").await.map(|a| a.0),
        Ok(404)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeploys_and_a_failed_deploy_under_load_drop_no_request() {
    let (server, port) = with_edge("edge-switch", &[]).await;
    let edge = Edge::new(port, &["busy.localhost"]);
    let (id, repo) = web(&server, &server.dir, "busy", json!({})).await;
    let (first, end) = server.deploy(id).await;
    assert_eq!(end.status, Status::Success, "{}", end.error_message);

    let load = Load::start(&edge, "busy.localhost", 8);
    // Redeploys of the running image, and a new version built from the repository.
    for _ in 0..3 {
        let (_, end) = server
            .deploy_and_wait(&format!("/api/deployments/{first}/redeploy"), None)
            .await;
        assert_eq!(end.status, Status::Success, "{}", end.error_message);
    }
    commit(&repo, "Dockerfile", &web_app(2));
    let (_, end) = server.deploy(id).await;
    assert_eq!(end.status, Status::Success, "{}", end.error_message);
    // A deployment that never gets healthy: the route stays on version 2.
    commit(&repo, "Dockerfile.broken", NEVER_HEALTHY);
    let (status, _) = server
        .json(
            "PATCH",
            &format!("/api/apps/{id}"),
            Some(json!({"dockerfile": "Dockerfile.broken"})),
        )
        .await;
    assert_eq!(status, 200);
    let (broken, end) = server.deploy(id).await;
    let log = server
        .request("GET", &format!("/api/deployments/{broken}/logs"), None)
        .await
        .1;
    assert_eq!(end.status, Status::Failed, "{log}");
    assert_eq!(
        end.failed_stage,
        Some(Status::Deploying),
        "{}",
        end.error_message
    );
    let version_2 = edge.get("busy.localhost", "/").await;
    // A rollback to the version before, through the same switch.
    let (_, end) = server
        .deploy_and_wait(&format!("/api/apps/{id}/rollback"), None)
        .await;
    assert_eq!(end.status, Status::Success, "{}", end.error_message);
    let (answered, retried, failures, rate) = load.finish().await;
    println!(
        "through the edge during 5 switches (one a rollback) and 1 failed deployment: \
         {answered} requests answered ({rate:.0}/s over 8 connections), {retried} retried on a \
         closed keep-alive connection, {} failed",
        failures.len()
    );
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert!(answered > 100, "the load ran: {answered} requests");
    assert_eq!(
        version_2,
        Ok((200, "version 2\n".to_owned())),
        "after the failed deployment the previous version still answers"
    );
    assert_eq!(
        edge.get("busy.localhost", "/").await,
        Ok((200, "version 1\n".to_owned())),
        "rolled back"
    );
    // Exactly one container serves the app.
    let containers = docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=slipway.app={id}"),
        "--filter",
        &format!("label=slipway.instance={}", instance(&server.dir)),
    ]);
    assert_eq!(containers.lines().count(), 1, "{containers}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_streams_outlive_route_changes_and_end_only_after_their_own_drain() {
    let (server, port) = with_edge("edge-streams", &[]).await;
    let edge = Edge::new(port, &["calm.localhost", "moving.localhost"]);
    let (calm, _) = web(&server, &server.dir, "calm", json!({})).await;
    let (moving, _) = web(&server, &server.dir, "moving", json!({})).await;
    for app in [calm, moving] {
        let (_, end) = server.deploy(app).await;
        assert_eq!(end.status, Status::Success, "{}", end.error_message);
    }
    let stream = |host: &'static str| {
        let edge = edge.clone();
        tokio::spawn(async move {
            let mut response = edge
                .client
                .get(edge.url(host, "/cgi-bin/stream"))
                .send()
                .await
                .expect("stream starts");
            let mut text = String::new();
            let mut ended = engine::time::now();
            while let Ok(Some(chunk)) = response.chunk().await {
                text.push_str(&String::from_utf8_lossy(&chunk));
                ended = engine::time::now();
            }
            (text, ended)
        })
    };
    let calm_stream = stream("calm.localhost");
    let moving_stream = stream("moving.localhost");
    tokio::time::sleep(Duration::from_millis(600)).await;
    // Routes change under the streams: a new app, and the other app's redeploy.
    let (_, _) = web(&server, &server.dir, "newcomer", json!({})).await;
    let (id, end) = server.deploy(moving).await;
    assert_eq!(end.status, Status::Success, "{}", end.error_message);
    let (_, page) = server
        .json(
            "GET",
            &format!("/api/deployments/{id}/lines?from=1&to=5000"),
            None,
        )
        .await;
    let switched_at = page["lines"]
        .as_array()
        .and_then(|lines| {
            lines.iter().find(|l| {
                l["line"]
                    .as_str()
                    .unwrap_or("")
                    .contains("The edge now sends moving.localhost")
            })
        })
        .and_then(|l| l["timestamp"].as_str())
        .map(str::to_owned)
        .expect("the switch is in the log");

    let (calm_text, _) = calm_stream.await.expect("calm stream");
    assert_eq!(
        calm_text.lines().count(),
        40,
        "a stream to another app is never cut: {calm_text}"
    );
    let (moving_text, moving_ended) = moving_stream.await.expect("moving stream");
    let after_switch = engine::time::seconds_between(&switched_at, &moving_ended).expect("times");
    println!(
        "the redeployed app's stream: {} of 40 lines, ended {after_switch:.2} s after the edge switched \
         (drain: 3 s)",
        moving_text.lines().count()
    );
    // To the redeployed app the stream goes on through the switch and ends when the old
    // container stops, after the drain (or it completes first).
    assert!(
        moving_text.lines().count() == 40 || after_switch >= 2.5,
        "the redeployed app's stream was cut {after_switch} s after the switch, before its 3 s drain"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_are_fenced_in_and_cannot_reach_each_other_or_slipway() {
    let (server, port) = with_edge("edge-fence", &[]).await;
    let (a, _) = web(
        &server,
        &server.dir,
        "fence-a",
        json!({"memory_mb": 256, "cpus": 0.5}),
    )
    .await;
    let (b, _) = web(&server, &server.dir, "fence-b", json!({})).await;
    for app in [a, b] {
        let (_, end) = server.deploy(app).await;
        assert_eq!(end.status, Status::Success, "{}", end.error_message);
    }
    let instance = instance(&server.dir);
    let container = |app: i64| {
        let id = docker(&[
            "ps",
            "-q",
            "--filter",
            &format!("label=slipway.app={app}"),
            "--filter",
            &format!("label=slipway.instance={instance}"),
        ]);
        id.trim().to_owned()
    };
    let (ca, cb) = (container(a), container(b));
    let inspect = |id: &str, format: &str| {
        docker(&["inspect", "--format", format, id])
            .trim()
            .to_owned()
    };
    assert_eq!(
        inspect(&ca, "{{.HostConfig.Memory}}"),
        (256 * 1024 * 1024).to_string()
    );
    assert_eq!(inspect(&ca, "{{.HostConfig.NanoCpus}}"), "500000000");
    assert_eq!(inspect(&ca, "{{.HostConfig.PidsLimit}}"), "512");
    assert_eq!(inspect(&ca, "{{.HostConfig.CapDrop}}"), "[ALL]");
    assert_eq!(inspect(&ca, "{{.HostConfig.CapAdd}}"), "[NET_BIND_SERVICE]");
    assert_eq!(
        inspect(&ca, "{{.HostConfig.SecurityOpt}}"),
        "[no-new-privileges]"
    );
    assert_eq!(
        inspect(&cb, "{{.HostConfig.Memory}}"),
        (512 * 1024 * 1024).to_string()
    );
    let networks = inspect(
        &ca,
        "{{range $name, $_ := .NetworkSettings.Networks}}{{$name}} {{end}}",
    );
    assert_eq!(networks, format!("slipway-fence-a-{instance}"));
    let ip_b = inspect(
        &cb,
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
    );
    let gateway_a = inspect(
        &ca,
        "{{range .NetworkSettings.Networks}}{{.Gateway}}{{end}}",
    );
    // B answers where it lives: from the host, its address works.
    let direct = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let answer = direct
        .get(format!("http://{ip_b}:8080/"))
        .send()
        .await
        .expect("B answers the host");
    assert_eq!(answer.text().await.ok().as_deref(), Some("version 1\n"));
    // From inside A: neither B, nor Slipway's API, nor the edge.
    let slipway_port = server.addr.port();
    for target in [
        format!("http://{ip_b}:8080/"),
        format!("http://{gateway_a}:{slipway_port}/api/health"),
        format!("http://{gateway_a}:{port}/"),
    ] {
        let reached = std::process::Command::new("docker")
            .args(["exec", &ca, "wget", "-q", "-T", "2", "-O", "-", &target])
            .output()
            .expect("docker exec");
        assert!(
            !reached.status.success(),
            "app A reached {target}: {}",
            String::from_utf8_lossy(&reached.stdout)
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_comes_back_with_every_route_after_caddy_or_slipway_is_killed() {
    let dir = common::temp_dir("edge-faults");
    let data = dir.join("data");
    let (addr, port) = (
        std::net::SocketAddr::from(([127, 0, 0, 1], free_port())),
        free_port(),
    );
    let vars = [("SLIPWAY_EDGE_HTTP_ADDR", format!("127.0.0.1:{port}"))];
    let mut server = Binary::start(&data, addr, &vars).await;
    let edge = Edge::new(port, &["sturdy.localhost"]);
    let (id, _) = web(&server, &dir, "sturdy", json!({})).await;
    let (_, end) = server.deploy(id).await;
    assert_eq!(end.status, Status::Success, "{}", end.error_message);
    edge.until_ok("sturdy.localhost", "version 1", LIMIT).await;

    // Caddy killed: the supervisor starts it again from the whole table.
    let caddy_pid = std::fs::read_to_string(data.join("caddy/caddy.pid")).expect("caddy's pid");
    let killed = Instant::now();
    assert!(
        std::process::Command::new("kill")
            .args(["-9", caddy_pid.trim()])
            .status()
            .expect("kill")
            .success()
    );
    edge.until_ok("sturdy.localhost", "version 1", Duration::from_secs(30))
        .await;
    let after_caddy = killed.elapsed();

    // Slipway killed: its Caddy goes on serving meanwhile; the next start takes over.
    server.child.kill().expect("kill -9 slipway");
    server.child.wait().expect("reaped");
    edge.until_ok("sturdy.localhost", "version 1", Duration::from_secs(5))
        .await;
    let restarted = Instant::now();
    server = Binary::start(&data, addr, &vars).await;
    edge.until_ok("sturdy.localhost", "version 1", Duration::from_secs(30))
        .await;
    let after_restart = restarted.elapsed();
    let new_pid = std::fs::read_to_string(data.join("caddy/caddy.pid")).expect("caddy's pid");
    assert_ne!(new_pid.trim(), caddy_pid.trim(), "a new Caddy serves");
    println!(
        "routes restored: {:.2} s after Caddy was killed, {:.2} s after Slipway was started again",
        after_caddy.as_secs_f64(),
        after_restart.as_secs_f64()
    );
    server.stop().await;
}

/// The installation id of a server's data directory.
fn instance(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("data").join("instance"))
        .expect("instance id")
        .trim()
        .to_owned()
}
