//! What the edge's tests and the Swarm runtime's tests share: the servers' API, requests
//! through the edge by host name, continuous load, and the docker CLI.

use super::{Binary, TestServer, Viewer};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a deployment may take in these tests.
pub const LIMIT: Duration = Duration::from_secs(180);

/// The test servers: in process, or the real binary.
pub trait Api {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value);
    async fn viewer(&self, query: &str) -> Viewer;

    /// Queues a deployment (or posts to `path`) and waits for its end; answers its id and
    /// final state.
    async fn deploy_and_wait(
        &self,
        path: &str,
        body: Option<Value>,
    ) -> (i64, protocol::StatusData) {
        let (status, d) = self.call("POST", path, body).await;
        assert_eq!(status, 201, "{d}");
        let id = d["id"].as_i64().expect("id");
        let got = self
            .viewer(&format!("id={id}"))
            .await
            .read_to_close(LIMIT)
            .await;
        let last = got.statuses().last().cloned().expect("a status");
        (id, last)
    }

    async fn deploy(&self, app: i64) -> (i64, protocol::StatusData) {
        self.deploy_and_wait("/api/deployments", Some(json!({"appId": app})))
            .await
    }
}

impl Api for TestServer {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.json(method, path, body).await
    }
    async fn viewer(&self, query: &str) -> Viewer {
        self.ws(query).await
    }
}

impl Api for Binary {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.json(method, path, body).await
    }
    async fn viewer(&self, query: &str) -> Viewer {
        self.ws(query).await
    }
}

/// Requests through the edge: host names resolve to the edge on loopback.
#[derive(Clone)]
pub struct Edge {
    pub client: reqwest::Client,
    /// Never reuses a connection: for a retry after a kept-alive one was closed.
    fresh: reqwest::Client,
    port: u16,
}

impl Edge {
    pub fn new(port: u16, hosts: &[&str]) -> Edge {
        let builder = |idle: usize| {
            let mut builder = reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(idle);
            for host in hosts {
                builder = builder.resolve(host, std::net::SocketAddr::from(([127, 0, 0, 1], port)));
            }
            builder.build().expect("client")
        };
        Edge {
            client: builder(64),
            fresh: builder(0),
            port,
        }
    }

    pub fn url(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.port)
    }

    /// The status and body of a GET, or why there was none.
    pub async fn get(&self, host: &str, path: &str) -> Result<(u16, String), String> {
        Edge::get_with(&self.client, self.url(host, path)).await
    }

    /// As `get`, on a new connection.
    pub async fn get_fresh(&self, host: &str, path: &str) -> Result<(u16, String), String> {
        Edge::get_with(&self.fresh, self.url(host, path)).await
    }

    async fn get_with(client: &reqwest::Client, url: String) -> Result<(u16, String), String> {
        let response = client.get(url).send().await.map_err(|e| format!("{e:?}"))?;
        let status = response.status().as_u16();
        Ok((status, response.text().await.map_err(|e| e.to_string())?))
    }

    /// Asks until the host answers `200` with `body` (after a fault), at most `limit`;
    /// answers how long it took.
    pub async fn until_ok(&self, host: &str, body: &str, limit: Duration) -> Duration {
        let began = Instant::now();
        loop {
            let answer = self.get(host, "/").await;
            if matches!(&answer, Ok((200, text)) if text.trim() == body) {
                return began.elapsed();
            }
            assert!(
                began.elapsed() < limit,
                "{host} did not answer {body:?} within {limit:?}: {answer:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Continuous GETs through the edge from several connections at once.
pub struct Load {
    ok: Arc<AtomicU64>,
    retried: Arc<AtomicU64>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
    stop: tokio_util::sync::CancellationToken,
    tasks: tokio::task::JoinSet<()>,
    began: Instant,
}

impl Load {
    pub fn start(edge: &Edge, host: &str, connections: usize) -> Load {
        let load = Load {
            ok: Arc::default(),
            retried: Arc::default(),
            failures: Arc::default(),
            stop: tokio_util::sync::CancellationToken::new(),
            tasks: tokio::task::JoinSet::new(),
            began: Instant::now(),
        };
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..connections {
            let (edge, host) = (edge.clone(), host.to_owned());
            let (ok, retried, failures, stop) = (
                load.ok.clone(),
                load.retried.clone(),
                load.failures.clone(),
                load.stop.clone(),
            );
            tasks.spawn(async move {
                while !stop.is_cancelled() {
                    let mut answer = edge.get(&host, "/").await;
                    if answer.is_err() {
                        // A kept-alive connection closed by a reload: once more on a new
                        // connection, as browsers do for an idempotent request (another
                        // pooled connection may be closing too).
                        retried.fetch_add(1, Ordering::Relaxed);
                        answer = edge.get_fresh(&host, "/").await;
                    }
                    match answer {
                        Ok((200, body)) if body.starts_with("version") => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        other => failures
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(format!("{other:?}")),
                    }
                }
            });
        }
        Load { tasks, ..load }
    }

    /// Stops; answers (answered, retried, failures, requests per second).
    pub async fn finish(mut self) -> (u64, u64, Vec<String>, f64) {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
        let ok = self.ok.load(Ordering::Relaxed);
        let rate = ok as f64 / self.began.elapsed().as_secs_f64();
        let failures = self
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        (ok, self.retried.load(Ordering::Relaxed), failures, rate)
    }
}

/// Runs the docker CLI; answers its output.
pub fn docker(args: &[&str]) -> String {
    let out = std::process::Command::new("docker")
        .args(args)
        .output()
        .expect("docker");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
