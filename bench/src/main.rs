//! `slipway-bench`: measures the monitor of a real Slipway server on loopback.
//!
//! The benchmark starts itself again as a child process (`slipway-bench serve`) that runs
//! the engine and the HTTP server with the synthetic runtime (`engine::runtime::synthetic`):
//! no Docker, so the figures measure Slipway alone. The parent drives it through the
//! public API and real WebSocket clients, reads the child's RSS from /proc and its query
//! counter from `/api/metrics`, and prints one table.
//!
//! Sections (all by default; name some to run only those):
//! - `idle`: 50,000 viewers of a live build on a freshly started server (no warm-up),
//!   connected from several loopback source addresses (127.0.0.2, 127.0.0.3, ...: one
//!   address has only ~28,000 ephemeral ports), each catching up on 100 lines as it joins
//!   (`SLIPWAY_BENCH_CATCH_UP` changes it); RSS per viewer, after they leave, and
//!   database queries in steady state. Fewer when the open-file limit is lower.
//! - `latency`: produced → received for lines 1 ms apart and 50 ms apart (idle gaps, as
//!   a real build has), and for status events.
//! - `throughput`: a 1,000,000-line log to one viewer, one event per frame and batched.
//! - `fanout`: 1,000 viewers of one live build.
//! - `resume`: 100 viewers dropping and resuming at random.
//! - `hops`: the cost of each thread hop a line takes, measured in this process.
//! - `docker`: a real Docker build whose RUN step prints the wall clock: the time until
//!   Docker's own API stream delivers the line (the floor, through Slipway's Docker
//!   runtime in this process), then the time until a Slipway viewer has it, in one run.
//!
//! - `edge`: requests through Caddy against straight to the container, redeploys under
//!   load, faults (needs Docker).
//! - `feed`: 1,000 viewers of `/api/events` while app changes are committed.
//!
//! `make bench` runs it (release build, open-file limit raised). It is not part of `make
//! test`: these machines are shared, and figures are not pass/fail.

mod cluster;
mod edge;
mod feed;
mod swarm;

use anyhow::{Context, Result, bail};
use engine::runtime::synthetic::{now_us, produced_at};
use futures_util::StreamExt;
use protocol::{Event, Status};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

const SECTIONS: [&str; 11] = [
    "idle",
    "latency",
    "throughput",
    "fanout",
    "resume",
    "hops",
    "docker",
    "edge",
    "feed",
    "cluster",
    "swarm",
];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    if args.get(1).map(String::as_str) == Some("serve") {
        return runtime.block_on(serve(args.iter().any(|a| a == "--docker")));
    }
    let quick = args.iter().any(|a| a == "--quick");
    let mut only: Vec<&str> = args[1..]
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if let Some(unknown) = only.iter().find(|s| !SECTIONS.contains(s)) {
        bail!("unknown section {unknown:?}: choose from {SECTIONS:?}");
    }
    if only.is_empty() {
        only = SECTIONS.to_vec();
    }
    runtime.block_on(bench(quick, &only))
}

/// The child: a real server with the synthetic (or Docker) runtime, until stdin closes.
async fn serve(docker: bool) -> Result<()> {
    let config = engine::Config::from_env()?;
    let listener = tokio::net::TcpListener::bind(config.addr).await?;
    let engine = if docker {
        engine::Engine::start_with_docker(config).await?
    } else {
        let source = engine::git::GitCli::from_config(&config);
        engine::Engine::start(
            config,
            Arc::new(engine::runtime::synthetic::SyntheticRuntime::default()),
            Arc::new(source),
        )
        .await?
    };
    let stop = async {
        let mut sink = Vec::new();
        let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    };
    server::run(engine.clone(), listener, stop).await?;
    engine.shutdown().await;
    Ok(())
}

struct Child {
    process: tokio::process::Child,
    addr: SocketAddr,
}

impl Child {
    async fn start(dir: &Path, docker: bool) -> Result<Child> {
        Child::start_with(dir, docker, &[]).await
    }

    /// A child server whose environment also holds `vars` (they win over the defaults).
    async fn start_with(dir: &Path, docker: bool, vars: &[(&str, String)]) -> Result<Child> {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
            probe.local_addr()?.port()
        };
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        // A profiler can run the server: SLIPWAY_BENCH_CHILD_WRAPPER="heaptrack -o /tmp/h".
        let wrapper = std::env::var("SLIPWAY_BENCH_CHILD_WRAPPER").unwrap_or_default();
        let mut words = wrapper.split_whitespace();
        let mut command = match words.next() {
            Some(program) => {
                let mut command = tokio::process::Command::new(program);
                command.args(words).arg(std::env::current_exe()?);
                command
            }
            None => tokio::process::Command::new(std::env::current_exe()?),
        };
        command
            .arg("serve")
            .env("SLIPWAY_ADDR", addr.to_string())
            .env("SLIPWAY_DATA_DIR", dir.join("data"))
            .env("SLIPWAY_ALLOW_LOCAL_REPOS", "1")
            .env("SLIPWAY_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("SLIPWAY_WORKERS", "4")
            .env("SLIPWAY_EDGE_HTTP_ADDR", "off")
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::piped())
            .kill_on_drop(true);
        for (name, value) in vars {
            command.env(name, value);
        }
        if docker {
            command.arg("--docker");
        }
        let process = command.spawn()?;
        let child = Child { process, addr };
        for _ in 0..200 {
            if let Ok((200, _)) = http(addr, "GET", "/api/health", None).await {
                return Ok(child);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("the benchmark server did not start")
    }

    fn rss_kib(&self) -> Result<u64> {
        let pid = self.process.id().context("child pid")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .context("VmRSS")
    }

    async fn stop(mut self) {
        drop(self.process.stdin.take());
        let _ = tokio::time::timeout(Duration::from_secs(10), self.process.wait()).await;
    }

    /// Deletes every app (and so its containers and images).
    async fn remove_apps(&self) -> Result<()> {
        let apps = self.json("GET", "/api/apps", None).await?;
        for app in apps.as_array().cloned().unwrap_or_default() {
            let _ = http(
                self.addr,
                "DELETE",
                &format!("/api/apps/{}", app["id"]),
                None,
            )
            .await;
        }
        Ok(())
    }

    /// `kill -9`: nothing of the server runs its shutdown.
    async fn kill(mut self) {
        let _ = self.process.kill().await;
    }

    async fn json(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let (status, text) = http(
            self.addr,
            method,
            path,
            body.map(|b| b.to_string()).as_deref(),
        )
        .await?;
        if status >= 400 {
            bail!("{method} {path}: {status} {text}");
        }
        Ok(serde_json::from_str(&text)?)
    }

    /// Creates an app whose repository holds `dockerfile` (plus a static busybox) and
    /// queues a deployment of it.
    async fn deploy(&self, dir: &Path, name: &str, dockerfile: &str) -> Result<i64> {
        let repo = git_repo(&dir.join(name), dockerfile)?;
        let app = self
            .json(
                "POST",
                "/api/apps",
                Some(json!({"name": name, "repo_url": repo.display().to_string()})),
            )
            .await?;
        let deployment = self
            .json(
                "POST",
                "/api/deployments",
                Some(json!({"appId": app["id"]})),
            )
            .await?;
        deployment["id"].as_i64().context("deployment id")
    }

    /// A viewer with the query `id=..&since=..` plus `extra` (e.g. `&batch=1`).
    async fn ws(&self, id: i64, since: u64, extra: &str) -> Result<Viewer<Plain>> {
        let url = format!(
            "ws://{}/api/deployments/logs?id={id}&since={since}{extra}",
            self.addr
        );
        Ok(Viewer::new(
            tokio_tungstenite::connect_async(authorized(&url)?).await?.0,
        ))
    }

    /// Waits for the deployment to end, through a viewer that skips every line.
    async fn wait_terminal(&self, id: i64) -> Result<Status> {
        let mut viewer = self.ws(id, u64::MAX, "").await?;
        let mut last = Status::Pending;
        while let Some(event) = viewer.next().await {
            if let Event::Status { data, .. } = event {
                last = data.status;
                if last.is_terminal() {
                    break;
                }
            }
        }
        Ok(last)
    }

    /// How many lines the deployment's log holds now.
    async fn total_lines(&self, id: i64) -> Result<u64> {
        let page = self
            .json(
                "GET",
                &format!("/api/deployments/{id}/lines?from=1&to=1"),
                None,
            )
            .await?;
        page["total"].as_u64().context("total")
    }

    /// Lines in the deployment's whole log (`GET /api/deployments/{id}/logs`).
    async fn log_lines(&self, id: i64) -> Result<u64> {
        let (_, log) = http(
            self.addr,
            "GET",
            &format!("/api/deployments/{id}/logs"),
            None,
        )
        .await?;
        Ok(log.matches('\n').count() as u64)
    }

    async fn queries(&self) -> Result<u64> {
        Ok(self.json("GET", "/api/metrics", None).await?["db_queries"]
            .as_u64()
            .unwrap_or(0))
    }
}

type Plain = tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>;

/// A monitor client. It reads both forms of frame: one event (the default) or an array
/// of events (`batch=1`).
struct Viewer<S> {
    socket: WebSocketStream<S>,
    pending: VecDeque<Event>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Viewer<S> {
    fn new(socket: WebSocketStream<S>) -> Viewer<S> {
        Viewer {
            socket,
            pending: VecDeque::new(),
        }
    }

    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            match self.socket.next().await? {
                Ok(Message::Text(text)) => {
                    if text.starts_with('[') {
                        self.pending
                            .extend(serde_json::from_str::<Vec<Event>>(&text).ok()?);
                    } else {
                        return serde_json::from_str(&text).ok();
                    }
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}

/// The benchmark's server accepts this `SLIPWAY_ADMIN_TOKEN`.
const ADMIN_TOKEN: &str = "bench-admin-token-0123456789abcdef";

/// A WebSocket request carrying the admin token.
fn authorized(url: &str) -> Result<tokio_tungstenite::tungstenite::handshake::client::Request> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request()?;
    request
        .headers_mut()
        .insert("Authorization", format!("Bearer {ADMIN_TOKEN}").parse()?);
    Ok(request)
}

/// A viewer connected from `source` (a loopback address of its own), with small client
/// buffers so that tens of thousands fit in this process.
async fn connect_from(
    source: IpAddr,
    server: SocketAddr,
    query: &str,
) -> Result<Viewer<tokio::net::TcpStream>> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    let stream = socket.connect(server).await?;
    let url = format!("ws://{server}/api/deployments/logs?{query}");
    let config = WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(0)
        .max_write_buffer_size(64 * 1024);
    let (socket, _) =
        tokio_tungstenite::client_async_with_config(authorized(&url)?, stream, Some(config))
            .await?;
    Ok(Viewer::new(socket))
}

/// One request with the admin token; answers the status and the body.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, String)> {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let client = CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap_or_default()
    });
    let response = client
        .request(
            reqwest::Method::from_bytes(method.as_bytes())?,
            format!("http://{addr}{path}"),
        )
        .bearer_auth(ADMIN_TOKEN)
        .header("Content-Type", "application/json")
        .body(body.unwrap_or("").to_owned())
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.text().await?))
}

fn git_repo(dir: &Path, dockerfile: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("Dockerfile"), dockerfile)?;
    if dockerfile.contains("busybox") {
        std::fs::copy("/bin/busybox", dir.join("busybox")).context("busybox-static")?;
    }
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["add", "."],
        &["commit", "-q", "-m", "bench"],
    ] {
        git(dir, args)?;
    }
    Ok(dir.to_owned())
}

/// Runs git in `dir` as the benchmark's own author.
fn git(dir: &Path, args: &[&str]) -> Result<()> {
    let ok = std::process::Command::new("git")
        .args([
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@slipway.invalid",
        ])
        .args(args)
        .current_dir(dir)
        .status()?
        .success();
    if !ok {
        bail!("git {args:?} failed");
    }
    Ok(())
}

/// p-th percentile (0..=100) of `values`, in their unit.
fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * (values.len() - 1) as f64).round() as usize;
    values[rank.min(values.len() - 1)]
}

/// A small deterministic generator for the resume storm (no rand dependency).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

struct Report(Vec<(String, String, String)>);

impl Report {
    fn add(&mut self, what: &str, value: String, target: &str) {
        println!("  {what}: {value}   (target {target})");
        self.0.push((what.to_owned(), value, target.to_owned()));
    }
}

struct Bench {
    dir: PathBuf,
    quick: bool,
    report: Report,
}

impl Bench {
    fn scale(&self, n: u64) -> u64 {
        if self.quick { n / 10 } else { n }
    }
}

async fn bench(quick: bool, sections: &[&str]) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("slipway-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut bench = Bench {
        dir,
        quick,
        report: Report(Vec::new()),
    };
    let started = Instant::now();
    // First, on a server of its own that nothing has warmed up.
    if sections.contains(&"idle") {
        idle(&mut bench).await?;
    }
    let synthetic = ["latency", "throughput", "fanout", "resume"];
    if synthetic.iter().any(|s| sections.contains(s)) {
        let child = Child::start(&bench.dir.join("synthetic"), false).await?;
        println!(
            "slipway-bench: server pid {:?} on {}",
            child.process.id(),
            child.addr
        );
        if sections.contains(&"latency") {
            latency(&mut bench, &child).await?;
        }
        if sections.contains(&"throughput") {
            throughput(&mut bench, &child).await?;
        }
        if sections.contains(&"fanout") {
            fanout(&mut bench, &child).await?;
        }
        if sections.contains(&"resume") {
            resume(&mut bench, &child).await?;
        }
        child.stop().await;
    }
    if sections.contains(&"hops") {
        hops(&mut bench).await?;
    }
    if sections.contains(&"docker") {
        docker(&mut bench).await?;
    }
    if sections.contains(&"edge") {
        if docker_reachable() {
            println!("edge: requests through Caddy, 20 redeploys under load, faults");
            edge::run(&bench.dir.join("edge"), &mut bench.report).await?;
        } else {
            println!("edge: engine not reachable; skipping the edge");
        }
    }
    if sections.contains(&"feed") {
        println!("feed: 1,000 viewers of /api/events, app changes from 4 clients");
        feed::run(&bench.dir.join("feed"), &mut bench.report, quick).await?;
    }
    if sections.contains(&"cluster") {
        println!("cluster: three nodes on one PostgreSQL 15, the synthetic runtime");
        cluster::run(&bench.dir.join("cluster"), &mut bench.report, quick).await?;
    }
    if sections.contains(&"swarm") {
        if docker_reachable() {
            println!("swarm: push to serving and 20 redeploys under load, single engine vs swarm");
            swarm::run(&bench.dir.join("swarm"), &mut bench.report).await?;
        } else {
            println!("swarm: engine not reachable; skipping the swarm");
        }
    }
    println!(
        "\n{} s in all\n| measure | result | target |\n| --- | --- | --- |",
        started.elapsed().as_secs()
    );
    for (what, value, target) in &bench.report.0 {
        println!("| {what} | {value} | {target} |");
    }
    let _ = std::fs::remove_dir_all(&bench.dir);
    Ok(())
}

/// The soft limit on open files of this process (the server inherits it).
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Viewers per loopback source address: well inside the ~28,000 ephemeral ports of one.
const VIEWERS_PER_SOURCE: u64 = 12_000;

/// Many viewers of a live build on a fresh server: RSS per viewer while they watch and
/// after they leave, and database queries in steady state.
async fn idle(bench: &mut Bench) -> Result<()> {
    let mut viewers = bench.scale(50_000);
    // Each viewer is an open file here and in the server; some machines cap that below
    // 50,000 for root too (no CAP_SYS_RESOURCE): then as many as fit.
    if let Some(limit) = open_file_limit()
        && limit < viewers + 1000
    {
        println!(
            "idle: the open-file limit is {limit} (`ulimit -Hn` cannot be raised here): \
             {} viewers instead of {viewers}",
            limit - 1000
        );
        viewers = limit - 1000;
    }
    // Lines each viewer catches up on when it joins: a dashboard opens the socket just
    // after its page was rendered, while the build goes on.
    let catch_up: u64 = std::env::var("SLIPWAY_BENCH_CATCH_UP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let child = Child::start(&bench.dir.join("idle"), false).await?;
    let sources = viewers.div_ceil(VIEWERS_PER_SOURCE).max(1);
    println!(
        "idle: {viewers} viewers from {sources} source addresses on a fresh server (pid {:?}), \
         a build printing one line a second; each catches up on {catch_up} lines",
        child.process.id()
    );
    // 300 lines at once, then one a second.
    let id = child
        .deploy(
            &bench.dir,
            "idle",
            "lines 100000\nburst 300\ninterval_us 1000000\ndelay_ms 500\nhold\n",
        )
        .await?;
    let mut watcher = child.ws(id, u64::MAX, "").await?;
    while let Some(event) = watcher.next().await {
        if matches!(&event, Event::Status { data, .. } if data.status == Status::Building) {
            break;
        }
    }
    watcher.close().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let since = child.total_lines(id).await?.saturating_sub(catch_up);
    let before = child.rss_kib()?;
    let addr = child.addr;
    let query = Arc::new(format!("id={id}&since={since}&batch=1"));
    let connecting = Instant::now();
    let connected: Vec<Result<tokio::task::JoinHandle<u64>>> =
        futures_util::stream::iter(0..viewers)
            .map(|n| {
                let query = query.clone();
                async move {
                    let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (n % sources) as u8));
                    let mut viewer = connect_from(source, addr, &query).await?;
                    viewer.next().await.context("first status")?;
                    // Each client keeps reading so the server never waits for it.
                    Ok::<_, anyhow::Error>(tokio::spawn(async move {
                        let mut lines = 0;
                        while let Some(event) = viewer.next().await {
                            if matches!(event, Event::Log { .. }) {
                                lines += 1;
                            }
                        }
                        lines
                    }))
                }
            })
            .buffer_unordered(256)
            .collect()
            .await;
    let mut readers = Vec::with_capacity(connected.len());
    for reader in connected {
        readers.push(reader.context("a viewer could not connect")?);
    }
    let connect_s = connecting.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = child.rss_kib()?;
    let gone = readers.iter().filter(|r| r.is_finished()).count();
    if gone > 0 {
        bail!("{gone} of {viewers} viewers were disconnected while idle");
    }
    bench.report.add(
        &format!(
            "server RSS per viewer, fresh server ({viewers} viewers of a live build, {catch_up} lines of catch-up each)"
        ),
        format!(
            "{:.2} KiB ({before} KiB -> {after} KiB; all connected in {connect_s:.1} s)",
            after.saturating_sub(before) as f64 / viewers as f64,
        ),
        "<= 4 KiB",
    );
    let q0 = child.queries().await?;
    let window = Duration::from_secs(10);
    tokio::time::sleep(window).await;
    let q1 = child.queries().await?;
    // The two metrics requests themselves are not viewers' queries; they run none.
    bench.report.add(
        "database queries per viewer per second (steady state, 10 s)",
        format!(
            "{:.6} ({} queries in {} s)",
            (q1 - q0) as f64 / viewers as f64 / window.as_secs_f64(),
            q1 - q0,
            window.as_secs()
        ),
        "0",
    );
    let watching = child.rss_kib()?;
    // The clients go away without a word, as closed laptops do.
    for reader in &readers {
        reader.abort();
    }
    for reader in readers {
        let _ = reader.await;
    }
    let metrics = child.json("GET", "/api/metrics", None).await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let left = child.rss_kib()?;
    bench.report.add(
        "server RSS after every viewer left",
        format!(
            "{left} KiB ({:.2} KiB per viewer above the start; {watching} KiB while watching; {} viewers counted just after)",
            left.saturating_sub(before) as f64 / viewers as f64,
            metrics["viewers"]
        ),
        "-",
    );
    child
        .json("POST", &format!("/api/deployments/{id}/cancel"), None)
        .await?;
    child.stop().await;
    Ok(())
}

/// Latency of log lines (produced -> received) and of status events.
async fn latency(bench: &mut Bench, child: &Child) -> Result<()> {
    for (lines, interval_us, steps, label) in [
        (5000, 1000, 100, "1 ms apart"),
        (200, 50_000, 0, "50 ms apart"),
    ] {
        println!("latency: {lines} lines {label}, one viewer");
        let id = child
            .deploy(
                &bench.dir,
                &format!("latency-{interval_us}"),
                &format!(
                    "lines {lines}\ninterval_us {interval_us}\nsteps {steps}\ndelay_ms 1500\n"
                ),
            )
            .await?;
        let mut viewer = child.ws(id, 0, "").await?;
        let (mut received, mut statuses) = (Vec::new(), Vec::new());
        let mut last_step = None;
        while let Some(event) = viewer.next().await {
            let now = now_us();
            match event {
                Event::Log { data, .. } => {
                    if let Some(t) = produced_at(&data.line) {
                        received.push((now.saturating_sub(t)) as f64 / 1000.0);
                        if data.line.starts_with("Step ") {
                            last_step = Some(t);
                        }
                    }
                }
                Event::Status { data, .. } => {
                    if data.status == Status::Building
                        && data.progress > 50
                        && let Some(t) = last_step
                    {
                        statuses.push((now.saturating_sub(t)) as f64 / 1000.0);
                    }
                    if data.status.is_terminal() {
                        break;
                    }
                }
                Event::Error { .. } => break,
            }
        }
        bench.report.add(
            &format!("log line latency, lines {label}, p50 / p99"),
            format!(
                "{:.3} ms / {:.3} ms",
                percentile(&mut received, 50.0),
                percentile(&mut received, 99.0)
            ),
            "p50 <= 2 ms, p99 <= 15 ms",
        );
        if steps > 0 {
            bench.report.add(
                "status event latency p99 (from the Step line's output to receipt, which includes the commit)",
                format!("{:.2} ms over {} events", percentile(&mut statuses, 99.0), statuses.len()),
                "<= 10 ms",
            );
        }
    }
    Ok(())
}

/// Throughput to one viewer on a 1,000,000-line log, one event per frame and batched.
async fn throughput(bench: &mut Bench, child: &Child) -> Result<()> {
    let total = bench.scale(1_000_000);
    println!("throughput: {total} lines, then one viewer from since=0");
    let started = Instant::now();
    let id = child
        .deploy(
            &bench.dir,
            "throughput",
            &format!("lines {total}\nsize 80\n"),
        )
        .await?;
    child.wait_terminal(id).await?;
    let written = started.elapsed();
    let in_log = child.log_lines(id).await?;
    for (extra, label) in [("", "one event per frame"), ("&batch=1", "batch=1")] {
        let mut viewer = child.ws(id, 0, extra).await?;
        let started = Instant::now();
        let (mut received, mut expected_next, mut out_of_order) = (0u64, 1u64, 0u64);
        while let Some(event) = viewer.next().await {
            match event {
                Event::Log { data, .. } => {
                    received += 1;
                    if data.seq != expected_next {
                        out_of_order += 1;
                    }
                    expected_next = data.seq + 1;
                }
                Event::Status { data, .. } if data.status.is_terminal() && received > 0 => break,
                _ => {}
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        bench.report.add(
            &format!("throughput to one viewer ({label})"),
            format!(
                "{:.0} lines/s ({received} lines in {elapsed:.2} s)",
                received as f64 / elapsed
            ),
            ">= 100,000 lines/s",
        );
        bench.report.add(
            &format!("lines lost / out of order ({label})"),
            format!("{} / {out_of_order}", in_log.saturating_sub(received)),
            "0",
        );
    }
    bench.report.add(
        "(for reference) whole synthetic deployment, clone and 3 s settle included",
        format!("{:.0} lines/s", in_log as f64 / written.as_secs_f64()),
        "-",
    );
    Ok(())
}

/// 1,000 viewers of one deployment: when has the last viewer got each line?
async fn fanout(bench: &mut Bench, child: &Child) -> Result<()> {
    let viewers = bench.scale(1000) as usize;
    println!("fan-out: {viewers} viewers, 2,000 lines at 1 per 2 ms");
    let id = child
        .deploy(
            &bench.dir,
            "fanout",
            "lines 2000\ninterval_us 2000\ndelay_ms 4000\n",
        )
        .await?;
    let mut tasks = Vec::new();
    for _ in 0..viewers {
        let mut viewer = child.ws(id, 0, "").await?;
        tasks.push(tokio::spawn(async move {
            let mut latency = vec![0u64; 2001];
            while let Some(event) = viewer.next().await {
                match event {
                    Event::Log { data, .. } => {
                        if let (Some(t), Some(n)) =
                            (produced_at(&data.line), synthetic_index(&data.line))
                            && n < latency.len()
                        {
                            latency[n] = (now_us().saturating_sub(t)) as u64;
                        }
                    }
                    Event::Status { data, .. } if data.status.is_terminal() => break,
                    _ => {}
                }
            }
            latency
        }));
    }
    let mut worst = vec![0u64; 2001];
    for task in tasks {
        for (n, l) in task.await?.into_iter().enumerate() {
            worst[n] = worst[n].max(l);
        }
    }
    let mut worst: Vec<f64> = worst[1..].iter().map(|us| *us as f64 / 1000.0).collect();
    bench.report.add(
        &format!("{viewers} viewers: time until the last viewer has a line, p50 / p99"),
        format!(
            "{:.1} ms / {:.1} ms",
            percentile(&mut worst, 50.0),
            percentile(&mut worst, 99.0)
        ),
        "p99 <= 250 ms",
    );
    Ok(())
}

/// 100 viewers dropping and resuming at random during a 100,000-line log.
async fn resume(bench: &mut Bench, child: &Child) -> Result<()> {
    let total = bench.scale(100_000);
    println!("resume: 100 viewers reconnecting at random during {total} lines");
    let id = child
        .deploy(
            &bench.dir,
            "resume",
            &format!("lines {total}\ninterval_us 50\ndelay_ms 2000\n"),
        )
        .await?;
    let addr = child.addr;
    let mut tasks = Vec::new();
    for v in 0..100u64 {
        // Half the viewers take batched frames, half one event per frame.
        let extra = if v % 2 == 0 { "&batch=1" } else { "" };
        tasks.push(tokio::spawn(async move {
            let mut random = XorShift(0x9E37_79B9_7F4A_7C15 ^ (v + 1));
            let (mut last, mut duplicates, mut reconnects) = (0u64, 0u64, 0u64);
            let mut seen = std::collections::HashSet::new();
            'outer: loop {
                let url = format!("ws://{addr}/api/deployments/logs?id={id}&since={last}{extra}");
                let Ok(request) = authorized(&url) else {
                    continue;
                };
                let Ok((socket, _)) = tokio_tungstenite::connect_async(request).await else {
                    continue;
                };
                let mut viewer = Viewer::new(socket);
                let budget = Duration::from_millis(50 + random.next() % 450);
                let until = tokio::time::Instant::now() + budget;
                loop {
                    match tokio::time::timeout_at(until, viewer.next()).await {
                        Ok(Some(Event::Log { data, .. })) => {
                            if !seen.insert(data.seq) {
                                duplicates += 1;
                            }
                            last = last.max(data.seq);
                        }
                        Ok(Some(Event::Status { data, .. })) if data.status.is_terminal() => {
                            // The terminal status is last: everything arrived.
                            break 'outer;
                        }
                        Ok(Some(_)) => {}
                        Ok(None) | Err(_) => break,
                    }
                }
                // Events of a batch not yet taken are dropped with the connection, as a
                // lost network would drop them; the resume starts after `last`.
                viewer.close().await;
                reconnects += 1;
            }
            (seen.len() as u64, last, duplicates, reconnects)
        }));
    }
    let (mut missing, mut duplicates, mut reconnects) = (0u64, 0u64, 0u64);
    for task in tasks {
        let (unique, last, dup, rc) = task.await?;
        missing += last - unique;
        duplicates += dup;
        reconnects += rc;
    }
    let in_log = child.log_lines(id).await?;
    bench.report.add(
        "resume storm: lines missing / duplicated (100 viewers)",
        format!("{missing} / {duplicates} over {reconnects} reconnects, {in_log} lines each"),
        "0 / 0",
    );
    Ok(())
}

/// The thread hops a line can take between Docker's stream and a viewer, each timed here
/// after an idle gap like a real build's (50 ms): onto the blocking pool and back, and a
/// wake-up of a task parked on a broadcast channel from another thread.
async fn hops(bench: &mut Bench) -> Result<()> {
    println!("hops: 200 samples each, 50 ms apart");
    let (mut onto, mut back, mut wake) = (Vec::new(), Vec::new(), Vec::new());
    let (tx, mut rx) = tokio::sync::broadcast::channel::<Instant>(16);
    let woken = tokio::spawn(async move {
        let mut delays = Vec::new();
        while let Ok(sent) = rx.recv().await {
            delays.push(sent.elapsed().as_secs_f64() * 1e6);
        }
        delays
    });
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let called = Instant::now();
        let tx = tx.clone();
        let (started, finished) = tokio::task::spawn_blocking(move || {
            let started = called.elapsed();
            let _ = tx.send(Instant::now());
            (started, Instant::now())
        })
        .await?;
        onto.push(started.as_secs_f64() * 1e6);
        back.push(finished.elapsed().as_secs_f64() * 1e6);
    }
    drop(tx);
    wake.extend(woken.await?);
    for (what, values) in [
        (
            "onto the blocking pool (spawn_blocking until the closure runs)",
            &mut onto,
        ),
        (
            "back from the blocking pool (closure end until the await resumes)",
            &mut back,
        ),
        (
            "a task parked on a broadcast channel, woken from another thread",
            &mut wake,
        ),
    ] {
        bench.report.add(
            &format!("hop: {what}, p50 / p99"),
            format!(
                "{:.0} µs / {:.0} µs",
                percentile(values, 50.0),
                percentile(values, 99.0)
            ),
            "-",
        );
    }
    Ok(())
}

/// One real Docker build whose RUN step prints the wall clock: when does Docker's own API
/// stream deliver each line (the floor), and when does a Slipway viewer have it?
fn docker_reachable() -> bool {
    std::process::Command::new("docker")
        .arg("info")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

async fn docker(bench: &mut Bench) -> Result<()> {
    const ROUNDS: usize = 5;
    if !docker_reachable() {
        println!("docker: engine not reachable; skipping the real build");
        return Ok(());
    }
    println!(
        "docker: a RUN step printing the wall clock 100 times, 20 ms apart; floor then Slipway, {ROUNDS} times"
    );
    let dockerfile = |nonce: u128| {
        format!(
            "FROM scratch\nCOPY busybox /bin/busybox\nENV NONCE={nonce}\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
             RUN for i in $(seq 1 100); do adjtimex | awk '/tv_sec/{{s=$2}} /tv_usec/{{u=$2}} END{{printf \"wallclock t=%d%06d\\n\", s, u}}'; usleep 20000; done\n\
             CMD [\"/bin/sleep\", \"3600\"]\n"
        )
    };
    let dir = bench.dir.join("docker");
    let child = Child::start(&dir, true).await?;
    let (mut floor, mut slipway, mut shares) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let mut round_floor =
            docker_floor(&dir.join(format!("floor-{round}")), &dockerfile(now_us())).await?;
        let mut round_slipway = Vec::new();
        let id = child
            .deploy(&dir, &format!("wallclock{round}"), &dockerfile(now_us()))
            .await?;
        let mut viewer = child.ws(id, 0, "").await?;
        while let Some(event) = viewer.next().await {
            match event {
                Event::Log { data, .. } if data.line.starts_with("wallclock") => {
                    if let Some(t) = produced_at(&data.line) {
                        round_slipway.push((now_us().saturating_sub(t)) as f64 / 1000.0);
                    }
                }
                Event::Status { data, .. } if data.status.is_terminal() => break,
                _ => {}
            }
        }
        // Docker's floor moves from one build to the next by as much as the share itself:
        // each round's share is its own viewer's p50 minus its own floor's p50.
        shares.push(percentile(&mut round_slipway, 50.0) - percentile(&mut round_floor, 50.0));
        floor.append(&mut round_floor);
        slipway.append(&mut round_slipway);
    }
    let (f50, f99) = (percentile(&mut floor, 50.0), percentile(&mut floor, 99.0));
    let (s50, s99) = (
        percentile(&mut slipway, 50.0),
        percentile(&mut slipway, 99.0),
    );
    bench.report.add(
        "real Docker build: RUN output (container clock) to Docker's API stream (the floor), p50 / p99",
        format!("{f50:.3} ms / {f99:.3} ms over {} lines", floor.len()),
        "-",
    );
    bench.report.add(
        "real Docker build: RUN output to a Slipway viewer, p50 / p99",
        format!("{s50:.3} ms / {s99:.3} ms over {} lines", slipway.len()),
        "-",
    );
    let each: Vec<String> = shares.iter().map(|s| format!("{s:.3}")).collect();
    bench.report.add(
        "Slipway's share: viewer minus floor, p50 (all lines); each round's, and their median",
        format!(
            "{:.3} ms; {} ms, median {:.3} ms",
            s50 - f50,
            each.join(" / "),
            percentile(&mut shares, 50.0)
        ),
        "-",
    );
    child.remove_apps().await?;
    child.stop().await;
    Ok(())
}

/// Builds `dockerfile` through Slipway's own Docker runtime in this process and times
/// each wall-clock line as the runtime hands it over: Docker's floor.
async fn docker_floor(dir: &Path, dockerfile: &str) -> Result<Vec<f64>> {
    use engine::runtime::{BuildRequest, Runtime, docker::DockerRuntime};
    std::fs::create_dir_all(dir)?;
    let mut context = tar::Builder::new(Vec::new());
    std::fs::write(dir.join("Dockerfile"), dockerfile)?;
    context.append_path_with_name(dir.join("Dockerfile"), "Dockerfile")?;
    context.append_path_with_name("/bin/busybox", "busybox")?;
    let runtime = DockerRuntime::connect(None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let tag = format!("slipway-bench-floor:{}", now_us());
    let (tx, mut rx) = tokio::sync::mpsc::channel(256);
    // The context as one piece through the runtime's channel, as the worker streams it.
    let (context_tx, context_rx) = tokio::sync::mpsc::channel(1);
    context_tx
        .send(Ok(context.into_inner()?.into()))
        .await
        .map_err(|_| anyhow::anyhow!("build context channel closed"))?;
    drop(context_tx);
    let request = BuildRequest {
        context: engine::runtime::BuildContext::new(context_rx),
        dockerfile: "Dockerfile".into(),
        tag: tag.clone(),
        labels: Default::default(),
    };
    let build = runtime.build(request, tx);
    let receive = async {
        let mut latency = Vec::new();
        while let Some(chunk) = rx.recv().await {
            let now = now_us();
            for line in chunk.lines().filter(|l| l.starts_with("wallclock")) {
                if let Some(t) = produced_at(line) {
                    latency.push((now.saturating_sub(t)) as f64 / 1000.0);
                }
            }
        }
        latency
    };
    let (built, latency) = tokio::join!(build, receive);
    built.map_err(|e| anyhow::anyhow!("the floor build failed: {e}"))?;
    let _ = runtime.remove_image(&tag).await;
    Ok(latency)
}

/// `n` of "synthetic line n t=...".
fn synthetic_index(line: &str) -> Option<usize> {
    line.strip_prefix("synthetic line ")?
        .split(' ')
        .next()?
        .parse()
        .ok()
}
