//! The monitor WebSocket under load, with the synthetic runtime (no Docker): resume by
//! `since`, a slow reader, many concurrent viewers, causal order and close semantics.

mod common;

use common::TestServer;
use protocol::{Event, Status};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

fn seqs(events: &[Event]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Log { data, .. } => Some(data.seq),
            _ => None,
        })
        .collect()
}

fn lines(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Log { data, .. } => Some(data.line.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_concurrent_and_resuming_viewers_get_identical_complete_streams() {
    let server = TestServer::start_synthetic("monitor-load").await;
    // 30,000 lines: far more than a live channel holds, so the slow viewer must lag.
    let id = server
        .deploy_script("load", "lines 30000\nsteps 10\ndelay_ms 500\n")
        .await;

    let slow = tokio::spawn(
        server
            .ws(&format!("id={id}"))
            .await
            .read_slowly(1_000, LIMIT),
    );
    let mut fast = Vec::new();
    for _ in 0..20 {
        let viewer = server.ws(&format!("id={id}")).await;
        fast.push(tokio::spawn(
            async move { viewer.read_to_close(LIMIT).await },
        ));
    }
    // A viewer that drops after 5,000 events and resumes from the last seq it got.
    let first = server.ws(&format!("id={id}")).await.read_some(5_000).await;
    let last = *seqs(&first).last().expect("some lines");
    let rest = server
        .ws(&format!("id={id}&since={last}"))
        .await
        .read_to_close(LIMIT)
        .await;
    assert_eq!(rest.close_code, Some(1000));
    assert_eq!(
        seqs(&rest.events).first(),
        Some(&(last + 1)),
        "resumes right after `since`"
    );

    let slow = slow.await.expect("slow viewer");
    let reference = lines(&slow);
    let slow_seqs = seqs(&slow);
    assert!(slow_seqs.len() > 30_000);
    assert_eq!(
        slow_seqs,
        (1..=slow_seqs.len() as u64).collect::<Vec<_>>(),
        "no gaps, no repeats"
    );
    assert!(
        slow.last().is_some_and(Event::is_terminal),
        "the terminal status is last"
    );

    for viewer in fast {
        let got = viewer.await.expect("viewer");
        assert_eq!(got.close_code, Some(1000));
        assert_eq!(
            lines(&got.events),
            reference,
            "every viewer gets the identical log"
        );
        assert!(got.events.last().is_some_and(Event::is_terminal));
        // Causal order: each Step line comes before the progress it causes.
        let mut last_step = 0;
        for event in &got.events {
            match event {
                Event::Log { data, .. } if data.line.starts_with("Step ") => last_step += 1,
                Event::Status { data, .. }
                    if data.status == Status::Building && data.progress > 50 =>
                {
                    assert!(
                        last_step >= 2,
                        "progress above 50 only after a later Step line"
                    );
                }
                _ => {}
            }
        }
    }
    let mut resumed = lines(&first);
    resumed.extend(lines(&rest.events));
    assert_eq!(
        resumed, reference,
        "drop + resume delivers every line exactly once"
    );

    // The log endpoint is the concatenation of the lines.
    let (status, log) = server
        .request("GET", &format!("/api/deployments/{id}/logs"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(log, reference.concat());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_deployment_closes_every_viewer_with_the_terminal_status() {
    let server = TestServer::start_synthetic("monitor-cancel").await;
    let id = server.deploy_script("held", "lines 10\nhold\n").await;
    let mut viewers = Vec::new();
    for _ in 0..5 {
        let viewer = server.ws(&format!("id={id}")).await;
        viewers.push(tokio::spawn(
            async move { viewer.read_to_close(LIMIT).await },
        ));
    }
    // Wait until the build has printed its lines, through a viewer of its own.
    let mut watcher = server.ws(&format!("id={id}")).await;
    while let Some(event) = watcher.next_event().await {
        if matches!(&event, Event::Log { data, .. } if data.line.starts_with("synthetic line 10 "))
        {
            break;
        }
    }
    let (status, body) = server
        .json("POST", &format!("/api/deployments/{id}/cancel"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "cancelled");
    for viewer in viewers {
        let got = viewer.await.expect("viewer");
        assert_eq!(got.close_code, Some(1000));
        let last = got.statuses().pop().expect("status");
        assert_eq!(last.status, Status::Cancelled);
        assert!(got.events.last().is_some_and(Event::is_terminal));
        assert!(got.text().contains("Deployment cancelled during building"));
    }
    server.stop().await;
}
