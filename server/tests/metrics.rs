//! `GET /metrics` in the Prometheus text format: parsed after a deployment, every series
//! of PROTOCOL.md is there and the counters moved.

mod common;

use common::{TestServer, http_with};
use std::collections::HashMap;
use std::time::Duration;

/// Samples by name with labels (`name{label="value"}`), as Prometheus reads them; fails on
/// any line that is not a comment or a sample.
fn parse(text: &str) -> HashMap<String, f64> {
    let mut samples = HashMap::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line.rsplit_once(' ').expect("a sample: series and value");
        let value: f64 = value.parse().expect("a number");
        assert!(
            series
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_'),
            "{line}"
        );
        samples.insert(series.to_owned(), value);
    }
    samples
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_series_move_after_a_deployment() {
    let server = TestServer::start_synthetic("metrics").await;
    let (status, head, before) = http_with(
        server.addr,
        "GET",
        "/metrics",
        None,
        &[("Authorization", &format!("Bearer {}", common::ADMIN_TOKEN))],
    )
    .await;
    assert_eq!(status, 200, "{before}");
    assert!(head.contains("openmetrics-text"), "{head}");
    let before = parse(&before);
    assert_eq!(before.get("slipway_queue_depth"), Some(&0.0));
    assert!(!before.contains_key("slipway_deployments_total{status=\"success\"}"));

    let id = server
        .deploy_script("counted", "lines 250\nsteps 3\ndelay_ms 1\n")
        .await;
    let viewer = server.ws(&format!("id={id}")).await;
    let got = viewer.read_to_close(Duration::from_secs(60)).await;
    assert_eq!(
        got.statuses().last().map(|s| s.status),
        Some(protocol::Status::Success)
    );
    // A slow deployment watched while the metrics are read, and one more of the same app
    // waiting behind it in the queue.
    let slow = server
        .deploy_script("watched", "lines 100\nsteps 2\ndelay_ms 300\n")
        .await;
    let (_, deployment) = server
        .json("GET", &format!("/api/deployments/{slow}"), None)
        .await;
    let app = deployment["app_id"].clone();
    let mut watching = server.ws(&format!("id={slow}")).await;
    let _first = watching.next_event().await.expect("a status");
    let (status, _) = server
        .json(
            "POST",
            "/api/deployments",
            Some(serde_json::json!({"appId": app})),
        )
        .await;
    assert_eq!(status, 201);

    let (status, text) = server.request("GET", "/metrics", None).await;
    assert_eq!(status, 200);
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
    let after = parse(&text);
    assert_eq!(
        after.get("slipway_deployments_total{status=\"success\"}"),
        Some(&1.0)
    );
    assert!(after["slipway_log_lines_total"] >= 250.0, "{text}");
    for stage in ["pending", "cloning", "building", "deploying"] {
        let count = format!("slipway_deployment_duration_seconds_count{{stage=\"{stage}\"}}");
        assert!(
            after.get(&count).is_some_and(|n| *n >= 1.0),
            "{count} in {text}"
        );
    }
    assert!(after["slipway_monitor_viewers"] >= 1.0, "{text}");
    assert_eq!(after.get("slipway_queue_depth"), Some(&1.0), "{text}");
    for series in [
        "# TYPE slipway_deployments counter",
        "# TYPE slipway_deployment_duration_seconds histogram",
        "# TYPE slipway_queue_depth gauge",
        "# TYPE slipway_monitor_viewers gauge",
        "# TYPE slipway_log_lines counter",
    ] {
        assert!(text.contains(series), "{series}");
    }
    // Any valid token: none is refused.
    let (status, _, _) = http_with(server.addr, "GET", "/metrics", None, &[]).await;
    assert_eq!(status, 401);
    server.stop().await;
}
