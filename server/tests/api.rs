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

    // Bad input: each is refused with a message naming the field, and no command an
    // attacker slipped in ever runs (the canary file never appears).
    let canary = server.dir.join("canary");
    let c = canary.display().to_string();
    let ok_url = "https://git.example.com/a.git";
    let with = |field: &str, value: Value| {
        let mut body = json!({"name": "app-x", "repo_url": ok_url});
        body[field] = value;
        body
    };
    let mut bad: Vec<(Value, &str)> = vec![
        (json!({"repo_url": ok_url}), "name"),
        (json!({"name": "a"}), "repo_url"),
        (json!({"name": 5, "repo_url": ok_url}), "name"),
    ];
    for name in [
        "",
        "Bad_Name",
        "-lead",
        "trail-",
        "a.b",
        "a b",
        "UPPER",
        "$(touch x)",
        "ünï",
        &"a".repeat(64),
    ] {
        bad.push((with("name", json!(name)), "name"));
    }
    for url in [
        "".to_owned(),
        "ftp://x.org/a.git".to_owned(),
        format!("ssh://-oProxyCommand=touch {c}/x"),
        format!("--upload-pack=touch {c}"),
        format!("-u touch {c}"),
        format!("ext::sh -c touch% {c}"),
        "ext::id".to_owned(),
        "file://relative/path".to_owned(),
        format!("https://x.org/a b/touch {c}"),
        format!("https://x.org/a.git; touch {c}"),
        format!("https://x.org/a.git\ntouch {c}"),
        format!("https://x.org/$(touch {c})"),
        "https://-x.org/a.git".to_owned(),
        "git@-oProxyCommand=id:x".to_owned(),
        "relative/path".to_owned(),
        "https://".to_owned(),
    ] {
        bad.push((with("repo_url", json!(url)), "repo_url"));
    }
    for branch in [
        "--upload-pack=touch",
        "-b",
        "a..b",
        "a b",
        "a~1",
        "a^",
        "a:b",
        "refs/$(id)?",
        "@",
        "a.lock",
        "a/",
        ".hidden",
        "a\\b",
    ] {
        bad.push((with("branch", json!(branch)), "branch"));
    }
    for dockerfile in ["../../etc/passwd", "/etc/passwd", "a/../../b", "-f", ""] {
        bad.push((with("dockerfile", json!(dockerfile)), "dockerfile"));
    }
    for port in [json!(0), json!(-1), json!(70000), json!("80"), json!(8.5)] {
        bad.push((with("port", port), "port"));
    }
    for env in [
        json!({"1X": "y"}),
        json!({"A-B": "y"}),
        json!({"X": 1}),
        json!({"X Y": "z"}),
        json!(["X=1"]),
        json!({"": "v"}),
    ] {
        bad.push((with("env", env), "env"));
    }
    assert!(bad.len() >= 40, "{} bad inputs", bad.len());
    for (body, field) in &bad {
        let (status, answer) = server.json("POST", "/api/apps", Some(body.clone())).await;
        assert!(
            status == 400 || status == 422,
            "{body} -> {status} {answer}"
        );
        assert_error(
            status,
            &answer,
            status,
            if status == 400 {
                "bad_request"
            } else {
                "unprocessable"
            },
            field,
        );
    }
    let (_, apps) = server.json("GET", "/api/apps", None).await;
    assert_eq!(
        apps.as_array().map(Vec::len),
        Some(1),
        "nothing bad was stored: {apps}"
    );
    assert!(!canary.exists(), "an injected command ran");
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
    // Only a successful deployment can be redeployed.
    let (status, body) = server
        .json("POST", &format!("/api/deployments/{did}/redeploy"), None)
        .await;
    assert_error(status, &body, 409, "conflict", "did not succeed");
    let (status, body) = server
        .json("POST", "/api/deployments/999999/redeploy", None)
        .await;
    assert_error(status, &body, 404, "not_found", "999999");

    // Settings change field by field; env values are write-only.
    let (status, changed) = server
        .json(
            "PATCH",
            &format!("/api/apps/{id}"),
            Some(
                json!({"branch": "release", "port": null, "env": {"SECRET": null, "NEW": "v4lue"}}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["branch"], "release");
    assert!(changed["port"].is_null());
    assert_eq!(changed["env_keys"], json!(["NEW"]));
    assert!(!changed.to_string().contains("v4lue"));
    for (body, field) in [
        (json!({"branch": "-evil"}), "branch"),
        (json!({"name": "renamed"}), "name"),
        (json!({"port": 70000}), "port"),
        (json!({"port": "80"}), "port"),
        (json!({"dockerfile": "../etc/passwd"}), "dockerfile"),
        (json!({"env": {"1BAD": "x"}}), "env"),
        (json!({"env": {"A": 1}}), "env"),
        (
            json!({"repo_url": "ext::sh -c touch% /tmp/pwned"}),
            "repo_url",
        ),
    ] {
        let (status, answer) = server
            .json("PATCH", &format!("/api/apps/{id}"), Some(body.clone()))
            .await;
        assert_error(status, &answer, 422, "unprocessable", field);
    }
    let (_, unchanged) = server.json("GET", &format!("/api/apps/{id}"), None).await;
    assert_eq!(
        unchanged["branch"], "release",
        "refused changes change nothing"
    );
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
