//! The event feed's section of `make bench`: a fresh child server, 1,000 viewers of
//! `GET /api/events`, then app changes from 4 parallel clients (each one event of the
//! feed, committed in its own transaction). Events per second delivered to all viewers,
//! and the time from the commit (the event's `timestamp`, written in the transaction) to
//! each viewer reading it.

use super::{Child, Report, percentile};
use anyhow::{Context, Result};
use futures_util::StreamExt;
use protocol::FeedEvent;
use serde_json::json;
use std::path::Path;
use std::time::Instant;
use tokio_tungstenite::tungstenite::Message;

const VIEWERS: usize = 1_000;
const CHANGES: usize = 2_000;
const WRITERS: usize = 4;

pub async fn run(dir: &Path, report: &mut Report, quick: bool) -> Result<()> {
    let (viewers, changes) = if quick {
        (VIEWERS / 10, CHANGES / 10)
    } else {
        (VIEWERS, CHANGES)
    };
    let child = Child::start(dir, false).await?;
    let app = child
        .json(
            "POST",
            "/api/apps",
            Some(json!({"name": "feed", "repo_url": dir.display().to_string()})),
        )
        .await?;
    let app_id = app["id"].as_i64().context("app id")?;

    // Every viewer counts the events and the latency of each.
    let url = format!("ws://{}/api/events", child.addr);
    let mut tasks = tokio::task::JoinSet::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(viewers);
    for _ in 0..viewers {
        let request = super::authorized(&url)?;
        let ready = ready_tx.clone();
        tasks.spawn(async move {
            let (mut socket, _) = tokio_tungstenite::connect_async(request).await.ok()?;
            let _ = ready.send(()).await;
            let mut latencies = Vec::with_capacity(changes);
            while latencies.len() < changes {
                let Some(Ok(message)) = socket.next().await else {
                    break;
                };
                if let Message::Text(text) = message
                    && let Ok(FeedEvent::App { timestamp, .. }) = serde_json::from_str(&text)
                {
                    latencies.push(-(engine::time::millis_until(&timestamp) as f64));
                }
            }
            Some((latencies, Instant::now()))
        });
    }
    drop(ready_tx);
    for _ in 0..viewers {
        ready_rx
            .recv()
            .await
            .context("a feed viewer did not connect")?;
    }

    let began = Instant::now();
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..WRITERS {
        let addr = child.addr;
        writers.spawn(async move {
            for i in (w..changes).step_by(WRITERS) {
                let body = json!({"env": {"N": i.to_string()}}).to_string();
                let _ =
                    super::http(addr, "PATCH", &format!("/api/apps/{app_id}"), Some(&body)).await;
            }
        });
    }
    while writers.join_next().await.is_some() {}
    let mut latencies = Vec::new();
    let mut last = began;
    let mut complete = 0;
    while let Some(done) = tasks.join_next().await {
        if let Ok(Some((mut seen, at))) = done {
            if seen.len() == changes {
                complete += 1;
            }
            last = last.max(at);
            latencies.append(&mut seen);
        }
    }
    let seconds = last.duration_since(began).as_secs_f64();
    let delivered = latencies.len();
    report.add(
        &format!("feed: {changes} app changes (4 writers) to {viewers} viewers"),
        format!(
            "{:.0} events/s committed, {:.0} deliveries/s; {complete}/{viewers} viewers got every event",
            changes as f64 / seconds,
            delivered as f64 / seconds
        ),
        "-",
    );
    report.add(
        "feed: commit (event timestamp) to viewer, p50 / p99 / max",
        format!(
            "{:.0} ms / {:.0} ms / {:.0} ms over {delivered} deliveries (ms resolution)",
            percentile(&mut latencies, 50.0),
            percentile(&mut latencies, 99.0),
            percentile(&mut latencies, 100.0)
        ),
        "p99 <= 10 ms",
    );
    child.stop().await;
    Ok(())
}
