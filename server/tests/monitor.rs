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
    let slow_batched = tokio::spawn(
        server
            .ws(&format!("id={id}&batch=1"))
            .await
            .read_slowly(1_000, LIMIT),
    );
    let mut fast = Vec::new();
    for n in 0..20 {
        // A quarter ask for frames of many events (the dashboard does).
        let batch = if n % 4 == 0 { "&batch=1" } else { "" };
        let viewer = server.ws(&format!("id={id}{batch}")).await;
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
    let slow_batched = slow_batched.await.expect("slow batched viewer");
    assert_eq!(
        lines(&slow_batched),
        lines(&slow),
        "batched or not, the same log"
    );
    assert!(slow_batched.last().is_some_and(Event::is_terminal));
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
        assert!(got.frames <= got.events.len());
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

    // A late joiner's catch-up from the store: one event per frame without `batch`,
    // hundreds per frame with it, the same events either way.
    let one = server
        .ws(&format!("id={id}"))
        .await
        .read_to_close(LIMIT)
        .await;
    let many = server
        .ws(&format!("id={id}&batch=1"))
        .await
        .read_to_close(LIMIT)
        .await;
    assert_eq!(one.frames, one.events.len());

    // On the wire the whole log and a range of it are compressed for clients that accept
    // it, and decompress to exactly the same text.
    let url = |path: &str| format!("http://{}{path}", server.addr);
    let get = |path: String, encoding: &'static str| async move {
        let response = reqwest::Client::new()
            .get(url(&path))
            .bearer_auth(common::ADMIN_TOKEN)
            .header("Accept-Encoding", encoding)
            .send()
            .await
            .expect("test request");
        let encoded = response
            .headers()
            .get("content-encoding")
            .map(|v| v.to_str().expect("test request").to_owned());
        (encoded, response.bytes().await.expect("test request"))
    };
    let (encoded, gzipped) = get(format!("/api/deployments/{id}/logs"), "gzip").await;
    assert_eq!(encoded.as_deref(), Some("gzip"));
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gzipped[..]), &mut text)
        .expect("test request");
    assert_eq!(text, reference.concat());
    assert!(
        gzipped.len() * 4 < text.len(),
        "{} bytes gzip for {} of text",
        gzipped.len(),
        text.len()
    );
    let (encoded, plain) = get(format!("/api/deployments/{id}/logs"), "identity").await;
    assert_eq!((encoded, plain.len()), (None, text.len()));
    let (encoded, range) = get(format!("/api/deployments/{id}/lines?from=1&to=5000"), "br").await;
    assert_eq!(encoded.as_deref(), Some("br"));
    assert!(range.len() < 100_000, "{} bytes of brotli", range.len());
    assert_eq!(lines(&many.events), reference);
    assert_eq!(many.close_code, Some(1000));
    assert!(
        many.frames * 50 < many.events.len(),
        "{} events came in {} frames",
        many.events.len(),
        many.frames
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_gets_a_bounded_tail_of_long_lines_and_the_rest_page_by_page() {
    let server = TestServer::start_synthetic("monitor-tail").await;
    // 300 lines of about 16 KiB: 4.8 MB of log.
    let id = server
        .deploy_script("tail", "lines 300\nsize 16000\ndelay_ms 100\n")
        .await;
    let all = server.follow(id, LIMIT).await;
    assert_eq!(all.close_code, Some(1000));
    let last = *all.seqs().last().expect("lines");

    // The monitor page carries the newest lines only, within its byte budget (they travel
    // twice: rendered and as the island's data), instead of 200 lines of 16 KiB.
    let (status, page) = server
        .request("GET", &format!("/deployments/{id}"), None)
        .await;
    assert_eq!(status, 200);
    assert!(page.len() < 400_000, "the page is {} bytes", page.len());
    assert!(
        page.contains(&format!("data-seq=\"{last}\"")),
        "the newest line is on it"
    );

    // A range of long lines ends early, after 256 KiB of text, and says how many exist.
    let (status, range) = server
        .json(
            "GET",
            &format!("/api/deployments/{id}/lines?from=1&to=300"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let lines = range["lines"].as_array().expect("lines");
    assert_eq!(range["total"], last);
    let bytes: usize = lines
        .iter()
        .map(|l| l["line"].as_str().expect("test request").len())
        .sum();
    assert!(
        lines.len() < 30 && bytes <= 256 * 1024 && bytes > 200 * 1024,
        "{} lines, {bytes} bytes",
        lines.len()
    );
    let seqs: Vec<u64> = lines
        .iter()
        .map(|l| l["seq"].as_u64().expect("test request"))
        .collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    // Asking on from after the last line answered walks the whole log exactly once.
    let mut from = 1;
    let mut text = String::new();
    while from <= last {
        let (_, range) = server
            .json(
                "GET",
                &format!("/api/deployments/{id}/lines?from={from}&to={last}"),
                None,
            )
            .await;
        for line in range["lines"].as_array().expect("lines") {
            assert_eq!(line["seq"], from);
            text.push_str(line["line"].as_str().expect("test request"));
            from += 1;
        }
    }
    assert_eq!(text, all.text());
    server.stop().await;
}
