//! The swarm section of `make bench`: the same busybox app (with a health check) on the
//! single-engine runtime and on `SLIPWAY_RUNTIME=swarm` (a one-node swarm and a local
//! registry from `scripts/swarm.sh up`, undone by `down`), each on a fresh child server
//! with the edge: the time from a push (a new commit, then its deployment queued) until
//! the new version answers through the edge, and requests failed through the edge
//! during 20 redeploys under load.

use super::edge::{fresh_client, redeploy, under_load, until_up};
use super::{Child, Report, git, git_repo, percentile};
use anyhow::{Context, Result, bail};
use serde_json::json;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

const VERSIONS: u32 = 5;
const REDEPLOYS: usize = 20;

fn app(version: u32) -> String {
    format!(
        "FROM scratch
COPY busybox /bin/busybox
RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]
RUN mkdir -p /www && echo version {version} > /www/index.html
HEALTHCHECK --interval=1s --timeout=1s --retries=2 CMD wget -q -O /dev/null http://127.0.0.1:8080/ || exit 1
EXPOSE 8080
CMD [\"/bin/httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]
"
    )
}

async fn queue(child: &Child, app: &serde_json::Value) -> Result<i64> {
    let d = child
        .json("POST", "/api/deployments", Some(json!({"appId": app})))
        .await?;
    d["id"].as_i64().context("deployment id")
}

fn swarm_sh(state: &Path, command: &str) -> Result<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/swarm.sh");
    let out = std::process::Command::new("bash")
        .arg(script)
        .arg(command)
        .env("SLIPWAY_SWARM_STATE", state)
        .output()?;
    if !out.status.success() {
        bail!(
            "scripts/swarm.sh {command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// One runtime: push-to-serving times (ms) and (answered, retried, failed) under load.
async fn measure(
    dir: &Path,
    vars: &[(&str, String)],
    edge_port: u16,
) -> Result<(Vec<f64>, (u64, u64, u64), f64)> {
    let child = Child::start_with(dir, true, vars).await?;
    let measured = versions_and_redeploys(&child, dir, edge_port).await;
    // The app's containers or service go, whatever happened.
    child.remove_apps().await?;
    child.stop().await;
    measured
}

async fn versions_and_redeploys(
    child: &Child,
    dir: &Path,
    edge_port: u16,
) -> Result<(Vec<f64>, (u64, u64, u64), f64)> {
    let repo = git_repo(&dir.join("web"), &app(0))?;
    let created = child
        .json(
            "POST",
            "/api/apps",
            Some(
                json!({"name": "swarmbench", "repo_url": repo.display().to_string(), "port": 8080}),
            ),
        )
        .await?;
    let app_id = created["id"].clone();
    let first = queue(child, &app_id).await?;
    if child.wait_terminal(first).await? != protocol::Status::Success {
        bail!("the swarm benchmark's app did not deploy");
    }
    let edge = SocketAddr::from(([127, 0, 0, 1], edge_port));
    let client = reqwest::Client::builder()
        .no_proxy()
        .resolve("swarmbench.localhost", edge)
        .pool_max_idle_per_host(64)
        .build()?;
    let url = format!("http://swarmbench.localhost:{edge_port}/");
    until_up(&client, &url).await?;

    let mut serving_ms = Vec::new();
    // Redeployed below: the first image is pruned once five newer ones succeeded.
    let mut latest = first;
    for version in 1..=VERSIONS {
        std::fs::write(repo.join("Dockerfile"), app(version))?;
        git(
            &repo,
            &["commit", "-q", "-am", &format!("version {version}")],
        )?;
        let pushed = Instant::now();
        let id = queue(child, &app_id).await?;
        let wanted = format!("version {version}");
        loop {
            if let Ok(response) = client.get(&url).send().await
                && let Ok(body) = response.text().await
                && body.trim() == wanted
            {
                break;
            }
            if pushed.elapsed() > Duration::from_secs(120) {
                bail!("{wanted} never answered through the edge");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        serving_ms.push(pushed.elapsed().as_secs_f64() * 1000.0);
        if child.wait_terminal(id).await? != protocol::Status::Success {
            bail!("{wanted} did not deploy");
        }
        latest = id;
    }

    let began = Instant::now();
    let fresh = fresh_client("swarmbench.localhost", edge)?;
    let redeploys = redeploy(child, latest, REDEPLOYS);
    let counts = under_load(&client, &fresh, &url, redeploys).await?;
    let seconds = began.elapsed().as_secs_f64();
    Ok((serving_ms, counts, seconds))
}

pub async fn run(dir: &Path, report: &mut Report) -> Result<()> {
    let state = dir.join("swarm-state");
    let registry = swarm_sh(&state, "up")?;
    let mut results = Vec::new();
    let mut outcome = Ok(());
    for runtime in ["docker", "swarm"] {
        let edge_port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let node = format!("bench-{runtime}-{}", std::process::id());
        let vars = [
            ("SLIPWAY_RUNTIME", runtime.to_owned()),
            ("SLIPWAY_REGISTRY", registry.clone()),
            ("SLIPWAY_EDGE_HTTP_ADDR", format!("127.0.0.1:{edge_port}")),
            ("SLIPWAY_NODE_NAME", node.clone()),
            ("SLIPWAY_DRAIN_SECS", "2".to_owned()),
        ];
        match measure(&dir.join(runtime), &vars, edge_port).await {
            Ok(result) => results.push((runtime, result)),
            Err(e) => {
                outcome = Err(e);
                break;
            }
        }
        if runtime == "swarm" {
            let edge = format!("slipway-edge-{node}");
            let _ = std::process::Command::new("docker")
                .args(["service", "rm", &edge])
                .output();
        }
    }
    // The edge's task must be gone before its network can go.
    for _ in 0..50 {
        let gone = std::process::Command::new("docker")
            .args(["network", "rm", engine::swarm::NETWORK])
            .output()
            .map(|o| o.status.success() || String::from_utf8_lossy(&o.stderr).contains("not found"))
            .unwrap_or(true);
        if gone {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    swarm_sh(&state, "down")?;
    outcome?;
    for (runtime, (mut serving, (answered, retried, failed), seconds)) in results {
        report.add(
            &format!("push to serving through the edge, {runtime} runtime: p50 / max of {VERSIONS} versions"),
            format!(
                "{:.0} / {:.0} ms",
                percentile(&mut serving, 50.0),
                serving.iter().cloned().fold(0.0, f64::max)
            ),
            "-",
        );
        report.add(
            &format!("requests failed through the edge during {REDEPLOYS} redeploys, {runtime} runtime (8 connections)"),
            format!(
                "{failed} of {} in {seconds:.0} s ({retried} retried once on a closed kept-alive connection)",
                answered + failed
            ),
            "0",
        );
    }
    Ok(())
}
