//! The edge section of `make bench`: a fresh child server with the real Docker engine and
//! the edge (Caddy) on a free port, one busybox httpd app. Requests per second and
//! latency straight to the container's loopback port and through the edge; requests
//! failed during 20 redeploys under load; how long the app is unreachable after Caddy is
//! killed and after Slipway is killed and started again.

use super::{Child, Report, git_repo, percentile};
use anyhow::{Context, Result, bail};
use serde_json::json;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const CONNECTIONS: usize = 16;
const MEASURE: Duration = Duration::from_secs(5);
const REDEPLOYS: usize = 20;

const APP: &str = "FROM scratch
COPY busybox /bin/busybox
RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]
RUN mkdir -p /www && echo bench > /www/index.html
EXPOSE 8080
CMD [\"/bin/httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]
";

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// GETs `url` from `CONNECTIONS` kept-alive connections for `MEASURE`: requests per
/// second and the latencies (ms).
async fn measure(client: &reqwest::Client, url: &str) -> (f64, Vec<f64>) {
    let began = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CONNECTIONS {
        let (client, url) = (client.clone(), url.to_owned());
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            while began.elapsed() < MEASURE {
                let start = Instant::now();
                if let Ok(response) = client.get(&url).send().await
                    && response.status() == 200
                    && response.bytes().await.is_ok()
                {
                    latencies.push(start.elapsed().as_secs_f64() * 1000.0);
                }
            }
            latencies
        });
    }
    let mut all = Vec::new();
    while let Some(Ok(latencies)) = tasks.join_next().await {
        all.extend(latencies);
    }
    (all.len() as f64 / began.elapsed().as_secs_f64(), all)
}

/// A client like `client`'s that never reuses a connection: for a retry.
pub(crate) fn fresh_client(host: &str, edge: SocketAddr) -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .resolve(host, edge)
        .pool_max_idle_per_host(0)
        .build()?)
}

/// Continuous GETs during `work`; answers (answered, retried once on a closed kept-alive
/// connection, failed). A retry goes out on a new connection (`fresh`), as a browser's
/// does: another pooled one may be closing too.
pub(crate) async fn under_load<F: std::future::Future<Output = Result<()>>>(
    client: &reqwest::Client,
    fresh: &reqwest::Client,
    url: &str,
    work: F,
) -> Result<(u64, u64, u64)> {
    let (ok, retried, failed) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (client, fresh, url, ok, retried, failed, stop) = (
            client.clone(),
            fresh.clone(),
            url.to_owned(),
            ok.clone(),
            retried.clone(),
            failed.clone(),
            stop.clone(),
        );
        tasks.spawn(async move {
            while !stop.is_cancelled() {
                let mut answer = client.get(&url).send().await;
                if answer.is_err() {
                    // As browsers do for an idempotent request on a closed connection.
                    retried.fetch_add(1, Ordering::Relaxed);
                    answer = fresh.get(&url).send().await;
                }
                match answer {
                    Ok(response) if response.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        });
    }
    let result = work.await;
    stop.cancel();
    while tasks.join_next().await.is_some() {}
    result?;
    Ok((
        ok.load(Ordering::Relaxed),
        retried.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    ))
}

/// Redeploys `deployment`'s image `times` times, one after the other, each to success.
pub(crate) async fn redeploy(child: &Child, deployment: i64, times: usize) -> Result<()> {
    for _ in 0..times {
        let again = child
            .json(
                "POST",
                &format!("/api/deployments/{deployment}/redeploy"),
                None,
            )
            .await?;
        let id = again["id"].as_i64().context("redeploy id")?;
        if child.wait_terminal(id).await? != protocol::Status::Success {
            bail!("redeploy {id} of deployment {deployment} did not succeed");
        }
    }
    Ok(())
}

/// How long until `url` answers 200 again, asking every 10 ms.
pub(crate) async fn until_up(client: &reqwest::Client, url: &str) -> Result<Duration> {
    let began = Instant::now();
    loop {
        if let Ok(response) = client.get(url).send().await
            && response.status() == 200
        {
            return Ok(began.elapsed());
        }
        if began.elapsed() > Duration::from_secs(60) {
            bail!("{url} did not come back within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub async fn run(dir: &Path, report: &mut Report) -> Result<()> {
    let edge_port = free_port()?;
    let vars = [
        ("SLIPWAY_EDGE_HTTP_ADDR", format!("127.0.0.1:{edge_port}")),
        ("SLIPWAY_DRAIN_SECS", "2".to_owned()),
    ];
    let mut child = Child::start_with(dir, true, &vars).await?;
    let repo = git_repo(&dir.join("web"), APP)?;
    let app = child
        .json(
            "POST",
            "/api/apps",
            Some(json!({"name": "bench", "repo_url": repo.display().to_string(), "port": 8080})),
        )
        .await?;
    let deployment = child
        .json(
            "POST",
            "/api/deployments",
            Some(json!({"appId": app["id"]})),
        )
        .await?;
    let first = deployment["id"].as_i64().context("deployment id")?;
    if child.wait_terminal(first).await? != protocol::Status::Success {
        bail!("the edge benchmark's app did not deploy");
    }
    let edge_addr = SocketAddr::from(([127, 0, 0, 1], edge_port));
    let client = reqwest::Client::builder()
        .no_proxy()
        .resolve("bench.localhost", edge_addr)
        .pool_max_idle_per_host(64)
        .build()?;
    let through_edge = format!("http://bench.localhost:{edge_port}/");
    let direct = {
        let (_, log) = super::http(
            child.addr,
            "GET",
            &format!("/api/deployments/{first}/logs"),
            None,
        )
        .await?;
        let url = log
            .lines()
            .find_map(|l| l.split("published at ").nth(1))
            .context("the container's loopback address is in the log")?
            .trim()
            .to_owned();
        format!("{url}/")
    };

    let (direct_rate, mut direct_ms) = measure(&client, &direct).await;
    let (edge_rate, mut edge_ms) = measure(&client, &through_edge).await;
    report.add(
        "requests/s, 16 connections: straight to the container / through the edge",
        format!("{direct_rate:.0} / {edge_rate:.0}"),
        "-",
    );
    report.add(
        "latency p50 / p99: straight to the container / through the edge",
        format!(
            "{:.2} / {:.2} ms, {:.2} / {:.2} ms",
            percentile(&mut direct_ms, 50.0),
            percentile(&mut direct_ms, 99.0),
            percentile(&mut edge_ms, 50.0),
            percentile(&mut edge_ms, 99.0)
        ),
        "-",
    );

    let redeploys = redeploy(&child, first, REDEPLOYS);
    let began = Instant::now();
    let fresh = fresh_client("bench.localhost", edge_addr)?;
    let (answered, retried, failed) = under_load(&client, &fresh, &through_edge, redeploys).await?;
    report.add(
        "requests failed through the edge during 20 redeploys (8 connections)",
        format!(
            "{failed} of {} in {:.0} s ({retried} retried once on a closed kept-alive connection)",
            answered + failed,
            began.elapsed().as_secs_f64()
        ),
        "0",
    );

    // Faults: Caddy killed; Slipway killed and started again.
    let data = dir.join("data");
    let pid = std::fs::read_to_string(data.join("caddy/caddy.pid"))?;
    std::process::Command::new("kill")
        .args(["-9", pid.trim()])
        .status()?;
    let after_caddy = until_up(&client, &through_edge).await?;
    child.kill().await;
    let restarted = Instant::now();
    child = Child::start_with(dir, true, &vars).await?;
    let server_up = restarted.elapsed();
    let after_restart = until_up(&client, &through_edge).await?;
    report.add(
        "edge back after a fault: Caddy killed / Slipway killed and started again",
        format!(
            "{:.0} ms / {:.0} ms after the new server answered ({:.0} ms to start it)",
            after_caddy.as_secs_f64() * 1000.0,
            after_restart.as_secs_f64() * 1000.0,
            server_up.as_secs_f64() * 1000.0
        ),
        "seconds",
    );
    child.remove_apps().await?;
    child.stop().await;
    Ok(())
}
