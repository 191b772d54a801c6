//! `slipway-bench`: measures the monitor of a real Slipway server on loopback.
//!
//! The benchmark starts itself again as a child process (`slipway-bench serve`) that runs
//! the engine and the HTTP server with the synthetic runtime (`engine::runtime::synthetic`):
//! no Docker, so the figures measure Slipway alone. The parent drives it through the
//! public API and real WebSocket clients, reads the child's RSS from /proc and its query
//! counter from `/api/metrics`, and prints one table. A last section deploys a real
//! Dockerfile on the real Docker engine (`serve --docker`) and compares the wall clock a
//! RUN step prints with the time the client receives the line.
//!
//! `make bench` runs it (release build, open-file limit raised to the hard limit for the 10,000 viewers). It is
//! not part of `make test`: these machines are shared, and figures are not pass/fail.

mod edge;
mod feed;

use anyhow::{Context, Result, bail};
use engine::runtime::synthetic::{now_us, produced_at};
use futures_util::StreamExt;
use protocol::{Event, Status};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    if args.get(1).map(String::as_str) == Some("serve") {
        return runtime.block_on(serve(args.iter().any(|a| a == "--docker")));
    }
    if args.get(1).map(String::as_str) == Some("feed") {
        // Only the event feed's section, on a fresh server.
        return runtime.block_on(async {
            let dir =
                std::env::temp_dir().join(format!("slipway-bench-feed-{}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            let mut report = Report(Vec::new());
            feed::run(&dir, &mut report, args.iter().any(|a| a == "--quick")).await?;
            let _ = std::fs::remove_dir_all(&dir);
            Ok(())
        });
    }
    runtime.block_on(bench(args.iter().any(|a| a == "--quick")))
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
        let mut command = tokio::process::Command::new(std::env::current_exe()?);
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

    async fn ws(&self, id: i64, since: u64) -> Result<Socket> {
        let url = format!(
            "ws://{}/api/deployments/logs?id={id}&since={since}",
            self.addr
        );
        Ok(tokio_tungstenite::connect_async(authorized(&url)?).await?.0)
    }

    /// Waits for the deployment to end, through a viewer that skips every line.
    async fn wait_terminal(&self, id: i64) -> Result<Status> {
        let mut socket = self.ws(id, u64::MAX).await?;
        let mut last = Status::Pending;
        while let Some(event) = next_event(&mut socket).await {
            if let Event::Status { data, .. } = event {
                last = data.status;
                if last.is_terminal() {
                    break;
                }
            }
        }
        Ok(last)
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

async fn next_event(socket: &mut Socket) -> Option<Event> {
    loop {
        match socket.next().await? {
            Ok(Message::Text(text)) => return serde_json::from_str(&text).ok(),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
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
    }
    Ok(dir.to_owned())
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

async fn bench(quick: bool) -> Result<()> {
    let scale = |n: u64| if quick { n / 10 } else { n };
    let dir = std::env::temp_dir().join(format!("slipway-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let child = Child::start(&dir, false).await?;
    let mut report = Report(Vec::new());
    println!(
        "slipway-bench: server pid {:?} on {}",
        child.process.id(),
        child.addr
    );

    // 1. Latency of log lines (produced -> received) and of status events.
    {
        println!("latency: 5,000 lines at 1 per ms with 100 steps, one viewer");
        let id = child
            .deploy(
                &dir,
                "latency",
                "lines 5000\ninterval_us 1000\nsteps 100\ndelay_ms 1500\n",
            )
            .await?;
        let mut socket = child.ws(id, 0).await?;
        let (mut lines, mut statuses) = (Vec::new(), Vec::new());
        let mut last_step = None;
        while let Some(event) = next_event(&mut socket).await {
            let now = now_us();
            match event {
                Event::Log { data, .. } => {
                    if let Some(t) = produced_at(&data.line) {
                        lines.push((now.saturating_sub(t)) as f64 / 1000.0);
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
        report.add(
            "log line latency p50",
            format!("{:.2} ms", percentile(&mut lines, 50.0)),
            "<= 2 ms",
        );
        report.add(
            "log line latency p99",
            format!("{:.2} ms", percentile(&mut lines, 99.0)),
            "<= 15 ms",
        );
        report.add(
            "status event latency p99 (from the Step line's output to receipt, which includes the commit)",
            format!("{:.2} ms over {} events", percentile(&mut statuses, 99.0), statuses.len()),
            "<= 10 ms",
        );
    }

    // 2. Throughput to one viewer on a 1,000,000-line log.
    {
        let total = scale(1_000_000);
        println!("throughput: {total} lines, then one viewer from since=0");
        let started = Instant::now();
        let id = child
            .deploy(&dir, "throughput", &format!("lines {total}\nsize 80\n"))
            .await?;
        child.wait_terminal(id).await?;
        let written = started.elapsed();
        let mut socket = child.ws(id, 0).await?;
        let started = Instant::now();
        let (mut received, mut expected_next, mut out_of_order) = (0u64, 1u64, 0u64);
        while let Some(event) = next_event(&mut socket).await {
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
        let in_log = child.log_lines(id).await?;
        report.add(
            "throughput to one viewer",
            format!(
                "{:.0} lines/s ({received} lines in {elapsed:.2} s)",
                received as f64 / elapsed
            ),
            ">= 100,000 lines/s",
        );
        report.add(
            "lines lost / out of order",
            format!("{} / {out_of_order}", in_log.saturating_sub(received)),
            "0",
        );
        report.add(
            "(for reference) whole synthetic deployment, clone and 3 s settle included",
            format!("{:.0} lines/s", in_log as f64 / written.as_secs_f64()),
            "-",
        );
    }

    // 3. 1,000 viewers of one deployment: when has the last viewer got each line?
    {
        let viewers = scale(1000) as usize;
        println!("fan-out: {viewers} viewers, 2,000 lines at 1 per 2 ms");
        let id = child
            .deploy(
                &dir,
                "fanout",
                "lines 2000\ninterval_us 2000\ndelay_ms 4000\n",
            )
            .await?;
        let mut tasks = Vec::new();
        for _ in 0..viewers {
            let mut socket = child.ws(id, 0).await?;
            tasks.push(tokio::spawn(async move {
                let mut latency = vec![0u64; 2001];
                while let Some(event) = next_event(&mut socket).await {
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
        report.add(
            &format!("{viewers} viewers: time until the last viewer has a line, p50"),
            format!("{:.1} ms", percentile(&mut worst, 50.0)),
            "-",
        );
        report.add(
            &format!("{viewers} viewers: time until the last viewer has a line, p99"),
            format!("{:.1} ms", percentile(&mut worst, 99.0)),
            "<= 250 ms",
        );
    }

    // 4 and 5. 10,000 idle viewers: RSS per viewer, and database queries in steady state.
    {
        let viewers = scale(10_000) as usize;
        println!("idle: {viewers} viewers of a deployment printing one line a second");
        let id = child
            .deploy(&dir, "idle", "lines 100000\ninterval_us 1000000\nhold\n")
            .await?;
        let mut socket = child.ws(id, u64::MAX).await?;
        while let Some(event) = next_event(&mut socket).await {
            if matches!(&event, Event::Status { data, .. } if data.status == Status::Building) {
                break;
            }
        }
        drop(socket);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before = child.rss_kib()?;
        let mut sockets = Vec::with_capacity(viewers);
        for _ in 0..viewers {
            let mut socket = child.ws(id, u64::MAX).await?;
            next_event(&mut socket).await.context("first status")?;
            sockets.push(socket);
        }
        // Each client keeps reading in its own task so the server never blocks on it.
        let readers: Vec<_> = sockets
            .into_iter()
            .map(|mut socket| {
                tokio::spawn(async move { while next_event(&mut socket).await.is_some() {} })
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let after = child.rss_kib()?;
        report.add(
            &format!("server RSS per idle viewer ({viewers} viewers)"),
            format!(
                "{:.2} KiB ({} KiB -> {} KiB)",
                (after.saturating_sub(before)) as f64 / viewers as f64,
                before,
                after
            ),
            "<= 8 KiB",
        );
        let q0 = child.queries().await?;
        let window = Duration::from_secs(10);
        tokio::time::sleep(window).await;
        let q1 = child.queries().await?;
        // The two metrics requests themselves are not viewers' queries; they run none.
        report.add(
            "database queries per viewer per second (steady state, 10 s)",
            format!(
                "{:.6} ({} queries in {} s)",
                (q1 - q0) as f64 / viewers as f64 / window.as_secs_f64(),
                q1 - q0,
                window.as_secs()
            ),
            "0",
        );
        child
            .json("POST", &format!("/api/deployments/{id}/cancel"), None)
            .await?;
        for reader in readers {
            let _ = tokio::time::timeout(Duration::from_secs(30), reader).await;
        }
    }

    // 6. 100 viewers dropping and resuming at random during a 100,000-line log.
    {
        let total = scale(100_000);
        println!("resume: 100 viewers reconnecting at random during {total} lines");
        let id = child
            .deploy(
                &dir,
                "resume",
                &format!("lines {total}\ninterval_us 50\ndelay_ms 2000\n"),
            )
            .await?;
        let addr = child.addr;
        let mut tasks = Vec::new();
        for v in 0..100u64 {
            tasks.push(tokio::spawn(async move {
                let mut random = XorShift(0x9E37_79B9_7F4A_7C15 ^ (v + 1));
                let (mut last, mut duplicates, mut reconnects) = (0u64, 0u64, 0u64);
                let mut seen = std::collections::HashSet::new();
                'outer: loop {
                    let url = format!("ws://{addr}/api/deployments/logs?id={id}&since={last}");
                    let Ok(request) = authorized(&url) else {
                        continue;
                    };
                    let Ok((mut socket, _)) = tokio_tungstenite::connect_async(request).await
                    else {
                        continue;
                    };
                    let budget = Duration::from_millis(50 + random.next() % 450);
                    let until = tokio::time::Instant::now() + budget;
                    loop {
                        match tokio::time::timeout_at(until, next_event(&mut socket)).await {
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
                    // Drop without a close handshake, as a lost network would.
                    let _ = socket.close(None).await;
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
        report.add(
            "resume storm: lines missing / duplicated (100 viewers)",
            format!("{missing} / {duplicates} over {reconnects} reconnects, {in_log} lines each"),
            "0 / 0",
        );
    }
    child.stop().await;

    // 7. One real Docker build: a RUN step prints the wall clock; when does the client see it?
    if std::process::Command::new("docker")
        .arg("info")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
    {
        println!("docker: a RUN step printing the wall clock 20 times");
        let docker = Child::start(&dir.join("docker"), true).await?;
        let dockerfile = format!(
            "FROM scratch\nCOPY busybox /bin/busybox\nENV NONCE={}\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
             RUN for i in $(seq 1 20); do adjtimex | awk '/tv_sec/{{s=$2}} /tv_usec/{{u=$2}} END{{printf \"wallclock t=%d%06d\\n\", s, u}}'; usleep 50000; done\n\
             CMD [\"/bin/sleep\", \"3600\"]\n",
            now_us()
        );
        let id = docker
            .deploy(&dir.join("docker"), "wallclock", &dockerfile)
            .await?;
        let mut socket = docker.ws(id, 0).await?;
        let mut latency = Vec::new();
        while let Some(event) = next_event(&mut socket).await {
            match event {
                Event::Log { data, .. } if data.line.starts_with("wallclock") => {
                    if let Some(t) = produced_at(&data.line) {
                        latency.push((now_us().saturating_sub(t)) as f64 / 1000.0);
                    }
                }
                Event::Status { data, .. } if data.status.is_terminal() => break,
                _ => {}
            }
        }
        report.add(
            "real Docker build: RUN output (container clock) to client, p50 / p99",
            format!(
                "{:.1} ms / {:.1} ms over {} lines",
                percentile(&mut latency, 50.0),
                percentile(&mut latency, 99.0),
                latency.len()
            ),
            "-",
        );
        let apps = docker.json("GET", "/api/apps", None).await?;
        for app in apps.as_array().cloned().unwrap_or_default() {
            let _ = http(
                docker.addr,
                "DELETE",
                &format!("/api/apps/{}", app["id"]),
                None,
            )
            .await;
        }
        docker.stop().await;

        // 8. The edge: throughput and latency through Caddy vs straight to the container,
        // switches under load, faults.
        println!("edge: requests through Caddy, 20 redeploys under load, faults");
        edge::run(&dir.join("edge"), &mut report).await?;
    } else {
        println!("docker: engine not reachable; skipping the real build and the edge");
    }

    // 9. The event feed: 1,000 viewers, app changes committed one by one.
    println!("feed: 1,000 viewers of /api/events, app changes from 4 clients");
    feed::run(&dir.join("feed"), &mut report, quick).await?;

    println!("\n| measure | result | target |\n| --- | --- | --- |");
    for (what, value, target) in &report.0 {
        println!("| {what} | {value} | {target} |");
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// `n` of "synthetic line n t=...".
fn synthetic_index(line: &str) -> Option<usize> {
    line.strip_prefix("synthetic line ")?
        .split(' ')
        .next()?
        .parse()
        .ok()
}
