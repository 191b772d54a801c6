//! The HTTP API and the monitor's error handling, against a real server.

mod common;

use common::TestServer;
use protocol::{ErrorCode, Event};
use serde_json::{Value, json};
use std::time::Duration;

fn assert_error(status: u16, body: &Value, expected_status: u16, code: &str, mentions: &str) {
    assert_eq!(status, expected_status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(mentions),
        "message {message:?} should mention {mentions:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_answers_and_errors_follow_the_protocol() {
    let server = TestServer::start("api").await;

    let (status, health) = server.json("GET", "/api/health", None).await;
    assert_eq!((status, health), (200, json!({"status": "ok"})));

    let (status, apps) = server.json("GET", "/api/apps", None).await;
    assert_eq!((status, apps), (200, json!([])));

    let (status, app) = server
        .json(
            "POST",
            "/api/apps",
            Some(json!({"name": "hello", "repo_url": "https://git.example.com/hello.git", "port": 8080, "env": {"SECRET": "s3cret"}})),
        )
        .await;
    assert_eq!(status, 201, "{app}");
    assert_eq!(app["branch"], "main");
    assert_eq!(app["dockerfile"], "Dockerfile");
    assert_eq!(app["env_keys"], json!(["SECRET"]));
    assert!(app["url"].is_null() && app["last_deployment"].is_null());
    assert!(
        !app.to_string().contains("s3cret"),
        "env values are never echoed"
    );
    let id = app["id"].as_i64().expect("id");

    let (status, body) = server
        .json(
            "POST",
            "/api/apps",
            Some(json!({"name": "hello", "repo_url": "https://git.example.com/x.git"})),
        )
        .await;
    assert_error(status, &body, 409, "conflict", "hello");

    // Bad input: each names the field.
    let bad: Vec<(Value, &str)> = vec![
        (json!({"repo_url": "https://x.org/a.git"}), "name"),
        (
            json!({"name": "Bad_Name", "repo_url": "https://x.org/a.git"}),
            "name",
        ),
        (
            json!({"name": "a", "repo_url": "ftp://x.org/a.git"}),
            "repo_url",
        ),
        (
            json!({"name": "a", "repo_url": "ssh://-oProxyCommand=touch /tmp/pwned/x"}),
            "repo_url",
        ),
        (
            json!({"name": "a", "repo_url": "https://x.org/a.git", "branch": "--upload-pack=touch"}),
            "branch",
        ),
        (
            json!({"name": "a", "repo_url": "https://x.org/a.git", "dockerfile": "../../etc/passwd"}),
            "dockerfile",
        ),
        (
            json!({"name": "a", "repo_url": "https://x.org/a.git", "port": 70000}),
            "port",
        ),
        (
            json!({"name": "a", "repo_url": "https://x.org/a.git", "port": "80"}),
            "port",
        ),
        (
            json!({"name": "a", "repo_url": "https://x.org/a.git", "env": {"1X": "y"}}),
            "env",
        ),
        (
            json!({"name": "a", "repo_url": "https://x.org/a.git", "env": {"X": 1}}),
            "env",
        ),
    ];
    for (body, field) in bad {
        let (status, answer) = server.json("POST", "/api/apps", Some(body.clone())).await;
        assert_error(status, &answer, 422, "unprocessable", field);
    }
    let (status, body) = server.request("POST", "/api/apps", Some("{not json")).await;
    assert_error(
        status,
        &serde_json::from_str(&body).expect("json"),
        400,
        "bad_request",
        "JSON",
    );
    let big = format!("{{\"name\": \"{}\"}}", "a".repeat(300 * 1024));
    let (status, body) = server.request("POST", "/api/apps", Some(&big)).await;
    assert_error(
        status,
        &serde_json::from_str(&body).expect("json"),
        413,
        "payload_too_large",
        "256 KiB",
    );

    // Deployments: bad appId is 400, unknown app 404.
    for body in [
        json!({}),
        json!({"appId": "1"}),
        json!({"appId": -1}),
        json!({"appId": 1.5}),
    ] {
        let (status, answer) = server.json("POST", "/api/deployments", Some(body)).await;
        assert_error(status, &answer, 400, "bad_request", "appId");
    }
    let (status, body) = server
        .request("POST", "/api/deployments", Some("nope"))
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = server
        .json("POST", "/api/deployments", Some(json!({"appId": 999})))
        .await;
    assert_error(status, &body, 404, "not_found", "999");
    let (status, body) = server.json("GET", "/api/deployments/999", None).await;
    assert_error(
        status,
        &body,
        404,
        "not_found",
        "deployment 999 does not exist",
    );
    let (status, body) = server.json("GET", "/api/deployments/abc", None).await;
    assert_error(status, &body, 400, "bad_request", "abc");
    let (status, body) = server.json("GET", "/api/apps/999/deployments", None).await;
    assert_error(status, &body, 404, "not_found", "999");
    let (status, body) = server.json("GET", "/api/nothing-here", None).await;
    assert_error(status, &body, 404, "not_found", "route");

    // A deployment of an app whose repository is unreachable fails while cloning;
    // cancelling it afterwards is a conflict.
    let (status, deployment) = server
        .json("POST", "/api/deployments", Some(json!({"appId": id})))
        .await;
    assert_eq!(status, 201);
    assert_eq!(deployment["status"], "pending");
    let did = deployment["id"].as_i64().expect("id");
    let got = server
        .ws(&format!("id={did}"))
        .await
        .read_to_close(Duration::from_secs(120))
        .await;
    assert_eq!(
        got.statuses().last().map(|s| s.status),
        Some(protocol::Status::Failed)
    );
    let (status, body) = server
        .json("POST", &format!("/api/deployments/{did}/cancel"), None)
        .await;
    assert_error(status, &body, 409, "conflict", "already ended");
    let (status, list) = server
        .json("GET", &format!("/api/apps/{id}/deployments"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(list[0]["id"].as_i64(), Some(did));

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_rejects_bad_requests_with_error_events_and_close_codes() {
    let server = TestServer::start("monitor-errors").await;
    for (query, code, close) in [
        ("", ErrorCode::BadRequest, 4400),
        ("id=abc", ErrorCode::BadRequest, 4400),
        ("id=1&since=-2", ErrorCode::BadRequest, 4400),
        ("id=999", ErrorCode::NotFound, 4404),
    ] {
        let got = server
            .ws(query)
            .await
            .read_to_close(Duration::from_secs(10))
            .await;
        assert_eq!(got.close_code, Some(close), "{query}");
        match got.events.as_slice() {
            [Event::Error { data, .. }] => assert_eq!(data.code, code, "{query}"),
            other => panic!("{query}: expected one error event, got {other:?}"),
        }
    }
    // Without the upgrade: the same error as JSON with the HTTP status.
    let (status, body) = server
        .json("GET", "/api/deployments/logs?id=999", None)
        .await;
    assert_error(status, &body, 404, "not_found", "999");
    let (status, body) = server.json("GET", "/api/deployments/logs?id=x", None).await;
    assert_error(status, &body, 400, "bad_request", "id");
    server.stop().await;
}
