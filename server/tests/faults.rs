//! The Docker engine vanishing in the middle of a build. Slipway reaches the real engine
//! through a TCP proxy of its socket that the test can cut (every connection dropped, new
//! ones refused at once) and restore: to Slipway the engine is gone, while the machine's
//! Docker keeps running for the other tests.
#![allow(clippy::unwrap_used)]

mod common;

use common::TestServer;
use protocol::Status;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::AbortHandle;

struct DockerProxy {
    addr: std::net::SocketAddr,
    cut: Arc<AtomicBool>,
    /// New connections are accepted and never answered (a hung engine).
    frozen: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
}

impl DockerProxy {
    async fn start() -> DockerProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let frozen = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(Mutex::new(Vec::new()));
        tokio::spawn({
            let (cut, frozen, connections) = (cut.clone(), frozen.clone(), connections.clone());
            async move {
                let mut held = Vec::new();
                while let Ok((mut client, _)) = listener.accept().await {
                    if cut.load(Ordering::SeqCst) {
                        continue; // Dropped: the client sees the connection close.
                    }
                    if frozen.load(Ordering::SeqCst) {
                        held.push(client);
                        continue;
                    }
                    let task = tokio::spawn(async move {
                        if let Ok(mut docker) =
                            tokio::net::UnixStream::connect("/var/run/docker.sock").await
                        {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut docker).await;
                        }
                    });
                    connections.lock().unwrap().push(task.abort_handle());
                }
            }
        });
        DockerProxy {
            addr,
            cut,
            frozen,
            connections,
        }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

const SLOW_DOCKERFILE: &str = "FROM scratch
COPY busybox /bin/busybox
RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]
RUN for i in $(seq 1 120); do echo \"slow line $i\"; sleep 0.5; done
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_gone_mid_build_fails_with_the_reason_and_the_queue_resumes() {
    let proxy = DockerProxy::start().await;
    let endpoint = format!("tcp://{}", proxy.addr);
    let server = TestServer::start_with_vars(
        "docker-gone",
        &[
            ("DOCKER_HOST", endpoint.clone()),
            ("SLIPWAY_WORKERS", "1".into()),
        ],
    )
    .await;

    let id = server.deploy_script("vanishing", SLOW_DOCKERFILE).await;
    let mut viewer = server.ws(&format!("id={id}")).await;
    loop {
        match viewer.next_event().await.expect("the build runs") {
            protocol::Event::Log { data, .. } if data.line.contains("slow line 3") => break,
            _ => {}
        }
    }
    proxy.cut();
    let cut_at = Instant::now();
    let received = viewer.read_to_close(Duration::from_secs(30)).await;
    let noticed = cut_at.elapsed();
    let last = received.statuses().pop().expect("a terminal status");
    assert_eq!(last.status, Status::Failed, "{last:?}");
    assert_eq!(last.failed_stage, Some(Status::Building));
    assert!(
        last.error_message
            .starts_with(&format!("Docker engine unavailable at {endpoint}")),
        "{}",
        last.error_message
    );
    assert!(
        received
            .text()
            .contains("Deployment failed during building: Docker engine unavailable")
    );
    println!("Docker gone: the deployment failed {noticed:?} after the cut");

    // While the engine is away, new work waits instead of failing.
    let (_, apps) = server.json("GET", "/api/apps", None).await;
    let app_id = apps[0]["id"].as_i64().unwrap();
    let (status, queued) = server
        .json(
            "POST",
            "/api/deployments",
            Some(serde_json::json!({"appId": app_id})),
        )
        .await;
    assert_eq!(status, 201, "{queued}");
    let queued = queued["id"].as_i64().unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (_, waiting) = server
        .json("GET", &format!("/api/deployments/{queued}"), None)
        .await;
    assert_eq!(waiting["status"], "pending", "{waiting}");

    // Back: the queue goes on and the deployment runs to its end (it is the slow build:
    // cancel it once it is building, which also needs the engine).
    proxy.restore();
    let mut viewer = server.ws(&format!("id={queued}")).await;
    loop {
        match viewer.next_event().await.expect("the build runs") {
            protocol::Event::Log { data, .. } if data.line.contains("slow line 1") => break,
            _ => {}
        }
    }
    let (status, body) = server
        .json("POST", &format!("/api/deployments/{queued}/cancel"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let received = viewer.read_to_close(Duration::from_secs(60)).await;
    assert_eq!(received.statuses().pop().unwrap().status, Status::Cancelled);
    server.stop().await;
}

/// The engine stops answering new requests while the build's own stream keeps flowing:
/// the liveness check notices (two unanswered pings) and fails the deployment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_docker_engine_fails_the_deployment_with_the_reason() {
    let proxy = DockerProxy::start().await;
    let endpoint = format!("tcp://{}", proxy.addr);
    let server = TestServer::start_with_vars(
        "docker-hung",
        &[
            ("DOCKER_HOST", endpoint.clone()),
            ("SLIPWAY_WORKERS", "1".into()),
        ],
    )
    .await;
    let id = server.deploy_script("hanging", SLOW_DOCKERFILE).await;
    let mut viewer = server.ws(&format!("id={id}")).await;
    loop {
        match viewer.next_event().await.expect("the build runs") {
            protocol::Event::Log { data, .. } if data.line.contains("slow line 2") => break,
            _ => {}
        }
    }
    proxy.frozen.store(true, Ordering::SeqCst);
    let frozen_at = Instant::now();
    let received = viewer.read_to_close(Duration::from_secs(30)).await;
    println!(
        "Docker hung: the deployment failed {:?} after the freeze",
        frozen_at.elapsed()
    );
    let last = received.statuses().pop().expect("a terminal status");
    assert_eq!(last.status, Status::Failed, "{last:?}");
    assert_eq!(
        last.error_message,
        format!("Docker engine unavailable at {endpoint}: no answer within 5 s")
    );
    proxy.frozen.store(false, Ordering::SeqCst);
    proxy.cut();
    proxy.restore();
    server.stop().await;
}
