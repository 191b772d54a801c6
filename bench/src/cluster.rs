//! The cluster's section of `make bench`: a throwaway PostgreSQL 15 (scripts/postgres.sh)
//! and three fresh child servers on it with the synthetic runtime, clients on the same
//! 2-core machine. Measures:
//! - job pickup: from a deployment's `created_at` (committed by the node that queued it)
//!   to its `started_at` (committed by the node that claimed it), with every worker idle;
//! - log-line latency for viewers on every node of a build on one: from the moment the
//!   runtime produced the line (`t=` in it) to the viewer reading it;
//! - deployments per second through the three nodes.

use super::{Child, Report, percentile};
use anyhow::{Context, Result, bail};
use engine::runtime::synthetic::{now_us, produced_at};
use protocol::Event;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/postgres.sh");
const NODES: usize = 3;

/// A throwaway PostgreSQL, stopped when dropped.
struct Postgres {
    dir: PathBuf,
    url: String,
}

impl Postgres {
    fn start(dir: PathBuf) -> Result<Postgres> {
        let out = std::process::Command::new(SCRIPT)
            .args(["start", &dir.display().to_string()])
            .output()?;
        if !out.status.success() {
            bail!(
                "PostgreSQL did not start: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let url = String::from_utf8(out.stdout)?.trim().to_owned();
        Ok(Postgres { dir, url })
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = std::process::Command::new(SCRIPT)
            .args(["stop", &self.dir.display().to_string()])
            .status();
    }
}

pub async fn run(dir: &Path, report: &mut Report, quick: bool) -> Result<()> {
    let postgres = Postgres::start(dir.join("pg"))?;
    let mut nodes = Vec::new();
    for i in 0..NODES {
        let vars = [
            ("DATABASE_URL", postgres.url.clone()),
            ("SLIPWAY_RUNTIME", "synthetic".to_owned()),
            ("SLIPWAY_NODE_NAME", format!("node-{i}")),
            ("SLIPWAY_WORKERS", "2".to_owned()),
        ];
        // `--docker` makes the child start as `slipway` does: SLIPWAY_RUNTIME decides.
        nodes.push(Child::start_with(&dir.join(format!("node-{i}")), true, &vars).await?);
    }
    let result = measure(dir, &nodes, report, quick).await;
    for node in nodes {
        node.stop().await;
    }
    drop(postgres);
    result
}

async fn measure(dir: &Path, nodes: &[Child], report: &mut Report, quick: bool) -> Result<()> {
    // Job pickup, one deployment at a time, every worker idle (each waits on NOTIFY).
    let rounds = if quick { 20 } else { 100 };
    let mut pickup = Vec::new();
    let mut elsewhere = Vec::new();
    for round in 0..rounds {
        let via = round % NODES;
        let id = nodes[via]
            .deploy(dir, &format!("pickup-{round}"), "lines 1\n")
            .await?;
        nodes[via].wait_terminal(id).await?;
        let deployment = nodes[via]
            .json("GET", &format!("/api/deployments/{id}"), None)
            .await?;
        let field = |name: &str| deployment[name].as_str().unwrap_or_default().to_owned();
        let waited = engine::time::seconds_between(&field("created_at"), &field("started_at"))
            .context("created_at and started_at")?
            * 1000.0;
        if field("node") != format!("node-{via}") {
            elsewhere.push(waited);
        }
        pickup.push(waited);
    }
    report.add(
        &format!("cluster: job pickup, queued to claimed, {rounds} deployments, p50 / p99"),
        format!(
            "{:.0} ms / {:.0} ms (ms timestamps); claimed by another node than the one queued on: {} of {rounds}, p50 {:.0} ms",
            percentile(&mut pickup, 50.0),
            percentile(&mut pickup, 99.0),
            elsewhere.len(),
            percentile(&mut elsewhere, 50.0)
        ),
        "within milliseconds",
    );

    // Log lines: viewers on every node of one build; latency split by where it runs.
    let lines = if quick { 2_000 } else { 20_000 };
    println!("cluster: {lines} lines 500 us apart, a viewer on each of {NODES} nodes");
    let id = nodes[0]
        .deploy(
            dir,
            "chatty",
            &format!("lines {lines}\ninterval_us 500\ndelay_ms 1500\n"),
        )
        .await?;
    let mut viewers = Vec::new();
    for node in nodes {
        viewers.push(node.ws(id, 0, "").await?);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (n, mut viewer) in viewers.into_iter().enumerate() {
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            while let Some(event) = viewer.next().await {
                let now = now_us();
                match event {
                    Event::Log { data, .. } => {
                        if let Some(t) = produced_at(&data.line) {
                            latencies.push(now.saturating_sub(t) as f64 / 1000.0);
                        }
                    }
                    Event::Status { data, .. } if data.status.is_terminal() => break,
                    Event::Error { .. } => break,
                    _ => {}
                }
            }
            (n, latencies)
        });
    }
    let mut by_node = vec![Vec::new(); NODES];
    while let Some(done) = tasks.join_next().await {
        let (n, latencies) = done?;
        by_node[n] = latencies;
    }
    let deployment = nodes[0]
        .json("GET", &format!("/api/deployments/{id}"), None)
        .await?;
    let builder: usize = deployment["node"]
        .as_str()
        .and_then(|n| n.strip_prefix("node-")?.parse().ok())
        .context("the builder's name")?;
    let mut local = std::mem::take(&mut by_node[builder]);
    let mut remote: Vec<f64> = by_node.concat();
    report.add(
        "cluster: log line latency, viewer on the building node, p50 / p99",
        format!(
            "{:.2} ms / {:.2} ms over {} lines",
            percentile(&mut local, 50.0),
            percentile(&mut local, 99.0),
            local.len()
        ),
        "-",
    );
    report.add(
        "cluster: log line latency, viewers on the other nodes, p50 / p99",
        format!(
            "{:.2} ms / {:.2} ms over {} lines ({} expected)",
            percentile(&mut remote, 50.0),
            percentile(&mut remote, 99.0),
            remote.len(),
            lines * (NODES - 1)
        ),
        "p50 <= 5 ms, p99 <= 25 ms",
    );

    // Throughput: deployments queued round-robin on every node, as fast as they run.
    let apps = 30;
    let total = if quick { 60 } else { 300 };
    let mut app_ids = Vec::new();
    for a in 0..apps {
        let repo = super::git_repo(&dir.join(format!("many-{a}")), "lines 10\n")?;
        let app = nodes[a % NODES]
            .json(
                "POST",
                "/api/apps",
                Some(json!({"name": format!("many-{a}"), "repo_url": repo.display().to_string()})),
            )
            .await?;
        app_ids.push(app["id"].as_i64().context("app id")?);
    }
    let began = Instant::now();
    let mut ids = Vec::new();
    for k in 0..total {
        let deployment = nodes[k % NODES]
            .json(
                "POST",
                "/api/deployments",
                Some(json!({"appId": app_ids[k % apps]})),
            )
            .await?;
        ids.push((k % NODES, deployment["id"].as_i64().context("id")?));
    }
    for (via, id) in &ids {
        loop {
            let deployment = nodes[*via]
                .json("GET", &format!("/api/deployments/{id}"), None)
                .await?;
            let status = deployment["status"].as_str().unwrap_or_default();
            if matches!(status, "success" | "failed" | "cancelled") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let seconds = began.elapsed().as_secs_f64();
    report.add(
        &format!("cluster: {total} deployments queued through {NODES} nodes (2 workers each, 10 lines each)"),
        format!("{:.1} deployments/s ({seconds:.1} s)", total as f64 / seconds),
        "-",
    );
    Ok(())
}
