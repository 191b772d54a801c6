//! Test harness: a real Slipway server on 127.0.0.1 port 0 with a fresh data directory,
//! an HTTP client (reqwest), a real WebSocket client, and git repositories made on the spot.
#![allow(dead_code, clippy::unwrap_used)]

pub mod edge;

use engine::{Config, Engine};
use futures_util::StreamExt;
use protocol::Event;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// `SLIPWAY_ADMIN_TOKEN` of every test server; [`http`] and [`TestServer::ws`] send it.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";

pub struct TestServer {
    pub addr: std::net::SocketAddr,
    pub engine: Engine,
    pub dir: PathBuf,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "slipway-test-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl TestServer {
    /// A server on the real Docker engine.
    pub async fn start(name: &str) -> TestServer {
        TestServer::start_with(name, None, &[]).await
    }

    /// A server on the real Docker engine whose configuration also holds `vars`.
    pub async fn start_with_vars(name: &str, vars: &[(&str, String)]) -> TestServer {
        TestServer::start_with(name, None, vars).await
    }

    /// A server whose runtime is the synthetic one: its "Dockerfile" is a script of output.
    pub async fn start_synthetic(name: &str) -> TestServer {
        TestServer::start_synthetic_with_vars(name, &[]).await
    }

    /// A synthetic server whose configuration also holds `vars`.
    pub async fn start_synthetic_with_vars(name: &str, vars: &[(&str, String)]) -> TestServer {
        let runtime: std::sync::Arc<dyn engine::runtime::Runtime> =
            std::sync::Arc::new(engine::runtime::synthetic::SyntheticRuntime::default());
        TestServer::start_with(name, Some(runtime), vars).await
    }

    async fn start_with(
        name: &str,
        runtime: Option<std::sync::Arc<dyn engine::runtime::Runtime>>,
        vars: &[(&str, String)],
    ) -> TestServer {
        let dir = temp_dir(name);
        let config = Config::from_lookup(|var| {
            if let Some((_, value)) = vars.iter().find(|(name, _)| *name == var) {
                return Some(value.clone());
            }
            match var {
                "SLIPWAY_DATA_DIR" => Some(dir.join("data").display().to_string()),
                "SLIPWAY_ALLOW_LOCAL_REPOS" => Some("1".into()),
                "SLIPWAY_HEALTH_TIMEOUT_SECS" => Some("20".into()),
                // Tests that need the edge give it free ports (tests/edge.rs).
                "SLIPWAY_EDGE_HTTP_ADDR" => Some("off".into()),
                "SLIPWAY_ADMIN_TOKEN" => Some(ADMIN_TOKEN.into()),
                _ => None,
            }
        })
        .unwrap();
        let engine = match runtime {
            Some(runtime) => {
                let source = engine::git::GitCli::from_config(&config);
                Engine::start(config, runtime, std::sync::Arc::new(source))
                    .await
                    .unwrap()
            }
            None => Engine::start_with_docker(config)
                .await
                .expect("the Docker engine must be running (scripts/docker.sh)"),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn({
            let engine = engine.clone();
            async move {
                server::run(engine, listener, async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
            }
        });
        TestServer {
            addr,
            engine,
            dir,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Deletes every app (and so its containers), then stops the server and engine.
    pub async fn stop(mut self) {
        let (_, apps) = self.json("GET", "/api/apps", None).await;
        for app in apps.as_array().cloned().unwrap_or_default() {
            let (status, body) = self
                .request("DELETE", &format!("/api/apps/{}", app["id"]), None)
                .await;
            assert_eq!(status, 204, "{body}");
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.engine.shutdown().await;
    }

    pub async fn request(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        http(self.addr, method, path, body).await
    }

    pub async fn json(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let text = body.map(|b| b.to_string());
        let (status, body) = self.request(method, path, text.as_deref()).await;
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    pub async fn ws(&self, query: &str) -> Viewer {
        Viewer::connect(&format!("ws://{}/api/deployments/logs?{query}", self.addr)).await
    }
}

/// A request with the admin token: enough for JSON and text bodies.
pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, String) {
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let (status, _, body) = http_with(
        addr,
        method,
        path,
        body,
        &[("Authorization", bearer.as_str())],
    )
    .await;
    (status, body)
}

/// One client for every test request: redirects are answers to check, not to follow.
fn client() -> &'static reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .unwrap()
    })
}

/// A request with exactly the given extra headers (no credentials unless among them);
/// answers the status, the response head (`HTTP/1.1 <status>` and one `name: value` line
/// per header) and the body.
pub async fn http_with(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = client().request(method, format!("http://{addr}{path}"));
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
    {
        request = request.header("Content-Type", "application/json");
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request
        .body(body.unwrap_or("").to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let mut head = format!("HTTP/1.1 {status}\r\n");
    for (name, value) in response.headers() {
        head.push_str(&format!(
            "{name}: {}\r\n",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    let body = response.text().await.unwrap();
    (status, head, body)
}

impl TestServer {
    /// An app whose repository holds `dockerfile`, and a queued deployment of it.
    pub async fn deploy_script(&self, name: &str, dockerfile: &str) -> i64 {
        let repo = git_repo(&self.dir.join(name), &[("Dockerfile", dockerfile)]);
        let (status, app) = self
            .json(
                "POST",
                "/api/apps",
                Some(serde_json::json!({"name": name, "repo_url": repo.display().to_string()})),
            )
            .await;
        assert_eq!(status, 201, "{app}");
        let (status, deployment) = self
            .json(
                "POST",
                "/api/deployments",
                Some(serde_json::json!({"appId": app["id"]})),
            )
            .await;
        assert_eq!(status, 201, "{deployment}");
        deployment["id"].as_i64().unwrap()
    }
}

pub struct Viewer {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    /// Connected with `batch=1`: every frame must be an array of events; otherwise every
    /// frame must be one event.
    batch: bool,
    /// Events of a batched frame not handed out yet.
    pending: std::collections::VecDeque<Event>,
    /// Frames received.
    pub frames: usize,
}

impl Viewer {
    /// The events of one text frame, held to the wire format the viewer asked for.
    fn frame(&mut self, text: &str) -> Vec<Event> {
        self.frames += 1;
        if self.batch {
            let events: Vec<Event> =
                serde_json::from_str(text).expect("with batch=1 every frame is an array of events");
            assert!(
                !events.is_empty(),
                "a batched frame holds at least one event"
            );
            events
        } else {
            vec![serde_json::from_str(text).expect("every frame is an event")]
        }
    }
}

/// Everything a viewer received, in order, and how the socket closed.
#[derive(Debug)]
pub struct Received {
    pub events: Vec<Event>,
    pub close_code: Option<u16>,
    /// Text frames they came in.
    pub frames: usize,
}

impl Received {
    pub fn seqs(&self) -> Vec<u64> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Log { data, .. } => Some(data.seq),
                _ => None,
            })
            .collect()
    }

    pub fn text(&self) -> String {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Log { data, .. } => Some(data.line.as_str()),
                _ => None,
            })
            .collect()
    }

    pub fn statuses(&self) -> Vec<protocol::StatusData> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Status { data, .. } => Some(data.clone()),
                _ => None,
            })
            .collect()
    }
}

impl Viewer {
    /// Connects with the admin token.
    pub async fn connect(url: &str) -> Viewer {
        let bearer = format!("Bearer {ADMIN_TOKEN}");
        Viewer::connect_with(url, &[("Authorization", bearer.as_str())]).await
    }

    /// Connects with exactly the given extra headers.
    pub async fn connect_with(url: &str, headers: &[(&str, &str)]) -> Viewer {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
        let batch = url.contains("batch=1");
        let mut request = url.into_client_request().unwrap();
        for (name, value) in headers {
            request.headers_mut().append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        let (socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("websocket connects");
        Viewer {
            socket,
            batch,
            pending: Default::default(),
            frames: 0,
        }
    }

    /// The next text frame as it came (any of our wire types).
    pub async fn next_text(&mut self) -> Option<String> {
        loop {
            match self.socket.next().await? {
                Ok(Message::Text(text)) => return Some(text.to_string()),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    pub async fn next_event(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            match self.socket.next().await? {
                Ok(Message::Text(text)) => {
                    let events = self.frame(&text);
                    self.pending.extend(events);
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// Reads `n` events, pausing every `pause_every` to fall behind; then drops the
    /// connection without a close handshake.
    pub async fn read_some(mut self, n: usize) -> Vec<Event> {
        let mut events = Vec::new();
        while events.len() < n {
            match self.next_event().await {
                Some(event) => events.push(event),
                None => break,
            }
        }
        events
    }

    /// Reads to the end, sleeping 20 ms after every `pause_every` events.
    pub async fn read_slowly(mut self, pause_every: usize, limit: Duration) -> Vec<Event> {
        let mut events = Vec::new();
        tokio::time::timeout(limit, async {
            while let Some(event) = self.next_event().await {
                let terminal = event.is_terminal();
                events.push(event);
                if events.len() % pause_every == 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                if terminal {
                    break;
                }
            }
        })
        .await
        .expect("the stream ends");
        events
    }

    /// Reads until the server closes (or `limit` passes, which fails the test).
    pub async fn read_to_close(mut self, limit: Duration) -> Received {
        let mut events: Vec<Event> = self.pending.drain(..).collect();
        let close_code = tokio::time::timeout(limit, async {
            loop {
                match self.socket.next().await {
                    Some(Ok(Message::Text(text))) => {
                        let frame = self.frame(&text);
                        events.extend(frame)
                    }
                    Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => panic!("websocket error: {e}"),
                    None => return None,
                }
            }
        })
        .await
        .expect("the server ends the stream");
        Received {
            events,
            close_code,
            frames: self.frames,
        }
    }
}

/// A git repository with one commit on `main` holding `files` and a static busybox.
/// Dockerfiles get a unique `ENV` after their first lines so Docker's layer cache never
/// hides the output of the `RUN` steps the tests look for.
pub fn git_repo(dir: &Path, files: &[(&str, &str)]) -> PathBuf {
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::copy("/bin/busybox", repo.join("busybox")).expect("busybox-static is installed");
    for (name, content) in files {
        let path = repo.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        let nonce = format!("ENV SLIPWAY_TEST_NONCE={}\n", dir.display());
        let content = content.replacen(
            "COPY busybox /bin/busybox\n",
            &format!("COPY busybox /bin/busybox\n{nonce}"),
            1,
        );
        std::fs::write(path, content).unwrap();
    }
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["add", "."],
        &["commit", "-q", "-m", "test app"],
    ] {
        git(&repo, args);
    }
    repo
}

/// A web app: busybox httpd serving one page on port 8080. Each RUN prints a marker.
pub const HTTPD_DOCKERFILE: &str = "FROM scratch
COPY busybox /bin/busybox
RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]
RUN mkdir -p /www && echo \"hello from slipway\" > /www/index.html && echo built-page-marker
RUN for i in 1 2 3; do echo \"build line $i\"; done
EXPOSE 8080
CMD [\"/bin/httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]
";

pub const BROKEN_DOCKERFILE: &str = "FROM scratch
COPY busybox /bin/busybox
RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]
RUN echo about-to-fail && exit 3
";

/// Runs one git command in `repo`, which must succeed.
fn git(repo: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=Slipway Test",
            "-c",
            "user.email=test@slipway.invalid",
        ])
        .args(args)
        .current_dir(repo)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Commits everything in `repo` (made by [`git_repo`]).
pub fn commit_all(repo: &Path, message: &str) {
    git(repo, &["add", "."]);
    git(repo, &["commit", "-q", "-m", message]);
}

/// The value of the header `name` in a response head from [`http_with`].
pub fn header(head: &str, name: &str) -> Option<String> {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.trim().to_owned())
}

/// `text` as one value of a form body (`application/x-www-form-urlencoded`).
pub fn form_value(text: &str) -> String {
    serde_urlencoded::to_string([("v", text)])
        .unwrap()
        .trim_start_matches("v=")
        .to_owned()
}

/// `(VmRSS, VmHWM)` of a process (`"self"` or a pid), in KiB, from `/proc`.
pub fn memory_kib(pid: &str) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

impl TestServer {
    /// Registers an app (`extra` adds fields to the body); answers its id.
    pub async fn create_app(&self, name: &str, repo: &str, extra: Value) -> i64 {
        let mut body = serde_json::json!({"name": name, "repo_url": repo});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        let (status, app) = self.json("POST", "/api/apps", Some(body)).await;
        assert_eq!(status, 201, "{app}");
        app["id"].as_i64().unwrap()
    }

    /// Queues a deployment of `app`; answers its id.
    pub async fn queue_deployment(&self, app: i64) -> i64 {
        let (status, d) = self
            .json(
                "POST",
                "/api/deployments",
                Some(serde_json::json!({"appId": app})),
            )
            .await;
        assert_eq!(status, 201, "{d}");
        d["id"].as_i64().unwrap()
    }

    /// Follows deployment `id` to its end (the server closes the monitor).
    pub async fn follow(&self, id: i64, limit: Duration) -> Received {
        self.ws(&format!("id={id}"))
            .await
            .read_to_close(limit)
            .await
    }

    /// A finished deployment of a new app `name` with the synthetic `script`: answers
    /// the app's id and the deployment's.
    pub async fn finished_deployment(&self, name: &str, script: &str) -> (i64, i64) {
        let id = self.deploy_script(name, script).await;
        self.follow(id, Duration::from_secs(30)).await;
        let (_, deployment) = self
            .json("GET", &format!("/api/deployments/{id}"), None)
            .await;
        (deployment["app_id"].as_i64().unwrap(), id)
    }
}

/// Commits `content` as `name` in `repo`.
pub fn commit(repo: &Path, name: &str, content: &str) {
    std::fs::write(repo.join(name), content).expect("write");
    for args in [&["add", "."][..], &["commit", "-q", "-m", "change"]] {
        let ok = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@slipway.invalid"])
            .args(args)
            .current_dir(repo)
            .status()
            .expect("git")
            .success();
        assert!(ok, "git {args:?}");
    }
}

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The real server binary, as a child process (so tests can `kill -9` it).
pub struct Binary {
    pub child: std::process::Child,
    pub addr: std::net::SocketAddr,
}

impl Binary {
    /// Starts `slipway` on `addr` with data in `data`, the admin token, the edge off
    /// unless `vars` say otherwise, and `vars`.
    pub async fn start(data: &Path, addr: std::net::SocketAddr, vars: &[(&str, String)]) -> Binary {
        let mut command = Command::new(env!("CARGO_BIN_EXE_slipway"));
        command
            .env("SLIPWAY_ADDR", addr.to_string())
            .env("SLIPWAY_DATA_DIR", data)
            .env("SLIPWAY_ALLOW_LOCAL_REPOS", "1")
            .env("SLIPWAY_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("SLIPWAY_EDGE_HTTP_ADDR", "off")
            .env("RUST_LOG", "warn");
        for (name, value) in vars {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("start slipway");
        for _ in 0..400 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Binary { child, addr };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        child.kill().ok();
        child.wait().ok();
        panic!("slipway did not start on {addr}");
    }

    pub async fn json(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let text = body.map(|b| b.to_string());
        let (status, body) = http(self.addr, method, path, text.as_deref()).await;
        (status, serde_json::from_str(&body).unwrap_or_default())
    }

    pub async fn ws(&self, query: &str) -> Viewer {
        Viewer::connect(&format!("ws://{}/api/deployments/logs?{query}", self.addr)).await
    }

    /// Deletes every app (and so its containers), then stops the server gracefully.
    pub async fn stop(mut self) {
        let (_, apps) = self.json("GET", "/api/apps", None).await;
        for app in apps.as_array().cloned().unwrap_or_default() {
            let (status, body) = self
                .json("DELETE", &format!("/api/apps/{}", app["id"]), None)
                .await;
            assert_eq!(status, 204, "{body}");
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

const POSTGRES_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/postgres.sh");

/// A throwaway PostgreSQL, stopped and removed when dropped.
/// A throwaway PostgreSQL 15 (scripts/postgres.sh), stopped and removed when dropped.
pub struct Postgres {
    dir: PathBuf,
    pub url: String,
}

impl Postgres {
    pub fn start(dir: PathBuf) -> Postgres {
        let out = Command::new(POSTGRES_SCRIPT)
            .args(["start", &dir.display().to_string()])
            .output()
            .expect("scripts/postgres.sh");
        assert!(
            out.status.success(),
            "PostgreSQL did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        Postgres { dir, url }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new(POSTGRES_SCRIPT)
            .args(["stop", &self.dir.display().to_string()])
            .status();
    }
}
