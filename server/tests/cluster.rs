//! A cluster (PROTOCOL.md, "A cluster"): three real `slipway` processes on one
//! throwaway PostgreSQL 15 (scripts/postgres.sh), with the synthetic runtime so that a
//! few hundred deployments take seconds, not Docker builds.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Binary, Postgres, Viewer, free_port, git_repo, http, http_with, temp_dir};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

struct Cluster {
    nodes: Vec<Binary>,
    dir: PathBuf,
    // Dropped last: the nodes stop first.
    _postgres: Postgres,
}

impl Cluster {
    async fn start(name: &str, n: usize, lease_secs: u64) -> Cluster {
        let dir = temp_dir(name);
        let postgres = Postgres::start(dir.join("pg"));
        let mut nodes = Vec::new();
        for i in 0..n {
            let addr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let vars = [
                ("DATABASE_URL", postgres.url.clone()),
                ("SLIPWAY_RUNTIME", "synthetic".to_owned()),
                ("SLIPWAY_NODE_NAME", format!("node-{i}")),
                ("SLIPWAY_NODE_LEASE_SECS", lease_secs.to_string()),
            ];
            nodes.push(Binary::start(&dir.join(format!("node-{i}")), addr, &vars).await);
        }
        Cluster {
            nodes,
            dir,
            _postgres: postgres,
        }
    }

    /// The node named `name`.
    fn node(&self, name: &str) -> &Binary {
        let i: usize = name.trim_start_matches("node-").parse().unwrap();
        &self.nodes[i]
    }

    async fn app(&self, via: usize, name: &str, script: &str) -> i64 {
        let repo = git_repo(&self.dir.join(name), &[("Dockerfile", script)]);
        let (status, app) = self.nodes[via]
            .json(
                "POST",
                "/api/apps",
                Some(json!({"name": name, "repo_url": repo.display().to_string()})),
            )
            .await;
        assert_eq!(status, 201, "{app}");
        app["id"].as_i64().unwrap()
    }

    async fn queue(&self, via: usize, app: i64) -> i64 {
        let (status, deployment) = self.nodes[via]
            .json("POST", "/api/deployments", Some(json!({"appId": app})))
            .await;
        assert_eq!(status, 201, "{deployment}");
        deployment["id"].as_i64().unwrap()
    }

    async fn deployment(&self, via: usize, id: i64) -> Value {
        let (status, deployment) = self.nodes[via]
            .json("GET", &format!("/api/deployments/{id}"), None)
            .await;
        assert_eq!(status, 200, "{deployment}");
        deployment
    }

    /// Waits until deployment `id` has status `want` (read through node `via`).
    async fn wait_for(
        &self,
        via: usize,
        id: i64,
        limit: Duration,
        want: &dyn Fn(&str) -> bool,
    ) -> Value {
        let start = Instant::now();
        loop {
            let deployment = self.deployment(via, id).await;
            if want(deployment["status"].as_str().unwrap_or("")) {
                return deployment;
            }
            assert!(
                start.elapsed() < limit,
                "deployment {id} is still {deployment}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Queues a deployment of a new app `name` with `script` and waits until a node
    /// builds it: the deployment, and the index of the node that runs it.
    async fn building(&self, name: &str, script: &str) -> (i64, Value, usize) {
        let app = self.app(0, name, script).await;
        let id = self.queue(0, app).await;
        let running = self
            .wait_for(0, id, Duration::from_secs(30), &|s| s == "building")
            .await;
        let runner = running["node"]
            .as_str()
            .and_then(|n| n.strip_prefix("node-")?.parse().ok())
            .unwrap();
        (id, running, runner)
    }

    /// The log of deployment `id` as each node serves it (one entry if all agree).
    async fn logs(&self, id: i64) -> BTreeSet<String> {
        let mut logs = BTreeSet::new();
        for node in &self.nodes {
            let path = format!("/api/deployments/{id}/logs");
            let (status, log) = http(node.addr, "GET", &path, None).await;
            assert_eq!(status, 200, "{log}");
            logs.insert(log);
        }
        logs
    }

    /// Node `name` as `GET /api/nodes` on node `via` shows it.
    async fn node_info(&self, via: usize, name: &str) -> Value {
        let (status, nodes) = self.nodes[via].json("GET", "/api/nodes", None).await;
        assert_eq!(status, 200, "{nodes}");
        let found = nodes.as_array().unwrap().iter().find(|n| n["name"] == name);
        found
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {nodes}"))
    }

    async fn stop(mut self) {
        for node in std::mem::take(&mut self.nodes) {
            node.stop().await;
        }
    }
}

impl Drop for Cluster {
    /// A failed test leaves no node running.
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.child.kill();
            let _ = node.child.wait();
        }
    }
}

fn terminal(status: &str) -> bool {
    matches!(status, "success" | "failed" | "cancelled")
}

/// Hundreds of deployments queued through all three nodes: each runs once, on one node,
/// and one app never has two in flight, whichever nodes they were queued on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_deployment_runs_once_and_one_app_never_runs_two() {
    let cluster = Cluster::start("cluster-claims", 3, 10).await;
    let script = "lines 20\ninterval_us 1000\n";
    let mut apps = Vec::new();
    for a in 0..8 {
        apps.push(cluster.app(a % 3, &format!("app-{a}"), script).await);
    }
    let mut queued = Vec::new();
    for k in 0..240 {
        let app = apps[k % apps.len()];
        queued.push((app, cluster.queue(k % 3, app).await));
    }
    let mut by_node: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_app: BTreeMap<i64, Vec<(String, String)>> = BTreeMap::new();
    for (k, (app, id)) in queued.iter().enumerate() {
        let deployment = cluster
            .wait_for(k % 3, *id, Duration::from_secs(180), &terminal)
            .await;
        assert_eq!(deployment["status"], "success", "{deployment}");
        let node = deployment["node"].as_str().unwrap().to_owned();
        *by_node.entry(node.clone()).or_default() += 1;
        by_app.entry(*app).or_default().push((
            deployment["started_at"].as_str().unwrap().to_owned(),
            deployment["finished_at"].as_str().unwrap().to_owned(),
        ));
        // Run once: its log, on the node that ran it, holds the script's lines once.
        let (status, log) = http(
            cluster.node(&node).addr,
            "GET",
            &format!("/api/deployments/{id}/logs"),
            None,
        )
        .await;
        assert_eq!(status, 200);
        let lines = log
            .lines()
            .filter(|l| l.starts_with("synthetic line "))
            .count();
        assert_eq!(lines, 20, "deployment {id} on {node}:\n{log}");
    }
    assert_eq!(by_node.values().sum::<usize>(), 240);
    assert_eq!(
        by_node.keys().cloned().collect::<BTreeSet<_>>(),
        ["node-0", "node-1", "node-2"].map(String::from).into(),
        "every node should have run some: {by_node:?}"
    );
    // Never two per app at once: sorted by start, each starts after the last ended.
    for (app, mut runs) in by_app {
        runs.sort();
        for pair in runs.windows(2) {
            assert!(
                pair[1].0 >= pair[0].1,
                "app {app}: {:?} overlaps {:?}",
                pair[0],
                pair[1]
            );
        }
    }
    let (status, nodes) = cluster.nodes[1].json("GET", "/api/nodes", None).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["node-0", "node-1", "node-2"]);
    assert!(
        nodes.as_array().unwrap().iter().all(|n| n["alive"] == true),
        "{nodes}"
    );
    cluster.stop().await;
}

/// A viewer on each node of the same deployment gets the same stream: every line once,
/// in order, then the same terminal status; a viewer resumes on another node with
/// `since=` exactly where it left off; the log reads the same through every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_on_every_node_get_identical_streams() {
    let cluster = Cluster::start("cluster-viewers", 3, 10).await;
    let app = cluster
        .app(
            0,
            "chatty",
            "lines 3000\ninterval_us 300\nsize 60\nsteps 10\n",
        )
        .await;
    let id = cluster.queue(1, app).await;
    let mut viewers = Vec::new();
    for node in &cluster.nodes {
        viewers.push(node.ws(&format!("id={id}&batch=1")).await);
    }
    let mut received = Vec::new();
    for viewer in viewers {
        received.push(viewer.read_to_close(Duration::from_secs(60)).await);
    }
    let ended = cluster.deployment(2, id).await;
    assert_eq!(ended["status"], "success", "{ended}");
    let runner = ended["node"].as_str().unwrap().to_owned();
    let first = &received[0];
    let seqs = first.seqs();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "gaps or duplicates"
    );
    assert!(first.text().matches("synthetic line ").count() == 3000);
    for (n, other) in received.iter().enumerate() {
        assert_eq!(other.seqs(), seqs, "node-{n} (the build ran on {runner})");
        assert_eq!(other.text(), first.text(), "node-{n}");
        let statuses = other.statuses();
        let last = statuses.last().cloned().unwrap();
        assert_eq!(last.status, protocol::Status::Success, "node-{n}");
        // Progress inside the build (its Step lines) reached every node's viewer.
        let inside = statuses
            .iter()
            .filter(|s| s.status == protocol::Status::Building && s.progress > 50)
            .count();
        assert!(
            inside > 0,
            "node-{n} saw no progress inside the build: {statuses:?}"
        );
    }
    // Resume on another node after line 1000: the rest, exactly.
    let resumed = cluster.nodes[(cluster.nodes.len() + 2) % 3]
        .ws(&format!("id={id}&since=1000"))
        .await
        .read_to_close(Duration::from_secs(30))
        .await;
    assert_eq!(
        resumed.seqs(),
        (1001..=seqs.len() as u64).collect::<Vec<_>>()
    );
    // The download is byte for byte the same through every node.
    let logs = cluster.logs(id).await;
    assert_eq!(logs.len(), 1, "the nodes' logs differ");
    assert_eq!(logs.first().unwrap().lines().count(), seqs.len());
    cluster.stop().await;
}

/// The node running a deployment dies (`kill -9`): within the lease plus 5 s another
/// node ends it `failed`, naming the node and the stage; a viewer on a third node gets
/// that terminal status; `GET /api/nodes` shows the node dead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_node_s_deployment_fails_on_the_others() {
    let mut cluster = Cluster::start("cluster-death", 3, 2).await;
    let (id, running, victim_index) = cluster.building("held", "lines 5\nhold\n").await;
    let victim = running["node"].as_str().unwrap().to_owned();
    let survivors: Vec<usize> = (0..3).filter(|i| *i != victim_index).collect();
    let mut viewer = cluster.nodes[survivors[1]].ws(&format!("id={id}")).await;
    let mut dead = cluster.nodes.remove(victim_index);
    let killed = Instant::now();
    dead.child.kill().unwrap();
    dead.child.wait().unwrap();
    // The survivors' indexes moved by one past the victim.
    let via = if survivors[0] > victim_index {
        survivors[0] - 1
    } else {
        survivors[0]
    };
    let ended = cluster
        .wait_for(via, id, Duration::from_secs(2 + 5 + 5), &terminal)
        .await;
    assert!(
        killed.elapsed() < Duration::from_secs(2 + 5 + 2),
        "{:?}",
        killed.elapsed()
    );
    assert_eq!(ended["status"], "failed", "{ended}");
    let message = ended["error_message"].as_str().unwrap();
    assert!(
        message.contains(&victim) && message.contains("building"),
        "{message}"
    );
    // The viewer on the other survivor gets the terminal status.
    let received = loop {
        let event = tokio::time::timeout(Duration::from_secs(10), viewer.next_event())
            .await
            .expect("the viewer got no terminal status")
            .expect("the viewer's socket closed first");
        if let protocol::Event::Status { data, .. } = &event
            && data.status.is_terminal()
        {
            break data.clone();
        }
    };
    assert_eq!(received.status, protocol::Status::Failed);
    let lost = cluster.node_info(0, &victim).await;
    assert_eq!(lost["alive"], false, "{lost}");
    cluster.stop().await;
}

/// The node running a deployment freezes (`SIGSTOP`): another node ends it `failed`;
/// when the frozen node comes back it changes nothing: the status stays, its late
/// lines are refused, and every node's copy of the log is the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_node_that_comes_back_changes_nothing() {
    let cluster = Cluster::start("cluster-frozen", 3, 2).await;
    let (id, running, runner) = cluster
        .building("steady", "lines 100000\ninterval_us 20000\n")
        .await;
    let frozen = running["node"].as_str().unwrap().to_owned();
    let pid = cluster.nodes[runner].child.id().to_string();
    let other = (runner + 1) % 3;
    signal("-STOP", &pid);
    let ended = cluster
        .wait_for(other, id, Duration::from_secs(2 + 5 + 5), &terminal)
        .await;
    signal("-CONT", &pid);
    assert_eq!(ended["status"], "failed", "{ended}");
    // Back: its worker writes again and is refused; nothing it does shows anywhere.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for via in 0..3 {
        let now = cluster.deployment(via, id).await;
        assert_eq!(now["status"], "failed", "{now}");
        assert_eq!(now["error_message"], ended["error_message"], "{now}");
    }
    let logs = cluster.logs(id).await;
    assert_eq!(logs.len(), 1, "the nodes' logs differ: {logs:#?}");
    let log = logs.first().unwrap();
    let last = log.lines().last().unwrap();
    assert!(last.contains(&frozen) && last.contains("lost"), "{last}");
    let back = cluster.node_info(other, &frozen).await;
    assert_eq!(back["alive"], true, "{back}");
    cluster.stop().await;
}

/// A node that restarts (even after `kill -9`) ends only its own interrupted
/// deployments: another node's build goes on untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_a_node_leaves_the_others_deployments_alone() {
    let mut cluster = Cluster::start("cluster-restart", 3, 10).await;
    let (id, running, runner) = cluster.building("held", "lines 5\nhold\n").await;
    let other = (runner + 1) % 3;
    let addr = cluster.nodes[other].addr;
    cluster.nodes[other].child.kill().unwrap();
    cluster.nodes[other].child.wait().unwrap();
    let vars = [
        ("DATABASE_URL", cluster._postgres.url.clone()),
        ("SLIPWAY_RUNTIME", "synthetic".to_owned()),
        ("SLIPWAY_NODE_NAME", format!("node-{other}")),
        ("SLIPWAY_NODE_LEASE_SECS", "10".to_owned()),
    ];
    let data = cluster.dir.join(format!("node-{other}"));
    cluster.nodes[other] = Binary::start(&data, addr, &vars).await;
    // Started and reconciled: it answers. The other node's build is still running.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = cluster.deployment(other, id).await;
    assert_eq!(after["status"], "building", "{after}");
    assert_eq!(after["node"], running["node"], "{after}");
    cluster.stop().await;
}

/// Cancel on one node reaches the node that runs the deployment; a token revoked on one
/// node is refused by the others within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_revocation_reach_every_node() {
    let cluster = Cluster::start("cluster-signals", 3, 10).await;
    let (id, _, runner) = cluster.building("held", "lines 5\nhold\n").await;
    let other = (runner + 1) % 3;
    let (status, cancelled) = cluster.nodes[other]
        .json("POST", &format!("/api/deployments/{id}/cancel"), None)
        .await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");

    let (status, created) = cluster.nodes[0]
        .json("POST", "/api/tokens", Some(json!({"name": "ci"})))
        .await;
    assert_eq!(status, 201, "{created}");
    let token = created["token"].as_str().unwrap().to_owned();
    let bearer = format!("Bearer {token}");
    // Every node accepts it at once (a node that has not read it yet looks it up), then
    // refuses it within a second once revoked.
    for node in &cluster.nodes {
        let headers = [("authorization", bearer.as_str())];
        let (status, _, body) = http_with(node.addr, "GET", "/api/apps", None, &headers).await;
        assert_eq!(
            status, 200,
            "node {} refused a new token: {body}",
            node.addr
        );
    }
    let (status, _) = cluster.nodes[0]
        .json("DELETE", &format!("/api/tokens/{}", created["id"]), None)
        .await;
    assert_eq!(status, 204);
    for node in &cluster.nodes {
        let refused = eventually(|| async {
            http_with(
                node.addr,
                "GET",
                "/api/apps",
                None,
                &[("authorization", &bearer)],
            )
            .await
            .0 == 401
        })
        .await;
        assert!(refused, "node {} still accepts a revoked token", node.addr);
    }
    cluster.stop().await;
}

/// The event feed is one ordered stream for the whole cluster: apps created through
/// all three nodes at once reach a feed viewer on every node, each event once, with ids
/// increasing by one, the same on every node; `since=` resumes on another node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_is_one_ordered_stream_on_every_node() {
    let cluster = Cluster::start("cluster-feed", 3, 10).await;
    let mut viewers = Vec::new();
    for node in &cluster.nodes {
        viewers.push(Viewer::connect(&format!("ws://{}/api/events", node.addr)).await);
    }
    let per_node = 10;
    let mut writers = tokio::task::JoinSet::new();
    for (n, node) in cluster.nodes.iter().enumerate() {
        let addr = node.addr;
        writers.spawn(async move {
            for k in 0..per_node {
                let body =
                    json!({"name": format!("feed-{n}-{k}"), "repo_url": "/nowhere"}).to_string();
                let (status, answer) = http(addr, "POST", "/api/apps", Some(&body)).await;
                assert_eq!(status, 201, "{answer}");
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }
    let total = per_node * cluster.nodes.len();
    let mut streams = Vec::new();
    for viewer in &mut viewers {
        let mut ids = Vec::new();
        while ids.len() < total {
            let text = tokio::time::timeout(Duration::from_secs(10), viewer.next_text())
                .await
                .expect("a feed viewer waited 10 s for an event")
                .expect("the feed closed");
            let event: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(event["type"], "app", "{event}");
            ids.push((event["id"].as_u64().unwrap(), event["data"]["name"].clone()));
        }
        streams.push(ids);
    }
    let first = streams[0][0].0;
    let expected: Vec<u64> = (first..first + total as u64).collect();
    for (n, stream) in streams.iter().enumerate() {
        let ids: Vec<u64> = stream.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, expected, "node-{n}");
        assert_eq!(stream, &streams[0], "node-{n}");
    }
    // Resume on another node from the middle.
    let middle = first + 14;
    let mut resumed = Viewer::connect(&format!(
        "ws://{}/api/events?since={middle}",
        cluster.nodes[2].addr
    ))
    .await;
    let text = tokio::time::timeout(Duration::from_secs(10), resumed.next_text())
        .await
        .unwrap()
        .unwrap();
    let event: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(event["id"].as_u64(), Some(middle + 1), "{event}");
    cluster.stop().await;
}

/// Sends `sig` (`-STOP`, `-CONT`) to process `pid`.
fn signal(sig: &str, pid: &str) {
    let sent = Command::new("kill").args([sig, pid]).status().unwrap();
    assert!(sent.success(), "kill {sig} {pid}");
}

/// Whether `check` holds within a second.
async fn eventually<F, Fut>(check: F) -> bool
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}
