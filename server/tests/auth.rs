//! The authorisation matrix: every API route, server function, page and the monitor
//! WebSocket, asked anonymously, with a wrong token, and with a valid session cookie from a
//! foreign origin (or none). Every refusal is checked, and afterwards nothing has changed.
#![allow(clippy::unwrap_used)]

mod common;

use common::{ADMIN_TOKEN, TestServer, http_with};
use leptos::server_fn::ServerFn;
use serde_json::{Value, json};
use std::time::Duration;

/// Who asks, with which headers, and the status expected.
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16);

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");
const PASSWORD: &str = "correct horse battery staple";

fn set_cookie(head: &str) -> Option<String> {
    common::header(head, "set-cookie")
}

fn location(head: &str) -> Option<String> {
    common::header(head, "location")
}

fn error_code(body: &str) -> String {
    serde_json::from_str::<Value>(body).unwrap_or(Value::Null)["error"]["code"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_refuses_without_valid_credentials() {
    let server = TestServer::start_synthetic("auth").await;
    let addr = server.addr;
    let origin = format!("http://{addr}");
    let foreign = "http://evil.example";

    // No account yet: pages lead to /setup, the API says how to get in.
    let (status, head, _) = http_with(addr, "GET", "/", None, &[]).await;
    assert_eq!((status, location(&head).as_deref()), (303, Some("/setup")));
    let (status, _, body) = http_with(addr, "GET", "/api/apps", None, &[]).await;
    assert_eq!(status, 401);
    assert!(body.contains("/setup"), "{body}");
    let (status, _, body) = http_with(addr, "GET", "/api/health", None, &[]).await;
    assert_eq!(status, 200, "{body}");
    // The setup form needs the code printed at start.
    let code = server.engine.auth().setup_code().expect("a setup code");
    let (status, _, refused_page) = http_with(addr, "GET", "/setup", None, &[]).await;
    assert_eq!(status, 403);
    assert!(refused_page.contains("setup link"), "{refused_page}");
    assert!(!refused_page.contains("Create account"), "{refused_page}");
    let (status, _, setup_page) =
        http_with(addr, "GET", &format!("/setup?code={code}"), None, &[]).await;
    assert_eq!(status, 200);
    assert!(
        setup_page.contains("Create the admin account") && setup_page.contains("Create account"),
        "{setup_page}"
    );

    // Creating the admin from a foreign page is refused; from our own origin it signs in.
    let form = format!(
        "code={code}&username=root&password={0}&confirm={0}",
        PASSWORD.replace(' ', "+")
    );
    let (status, _, _) = http_with(
        addr,
        "POST",
        "/auth/setup",
        Some(&form),
        &[FORM, ("Origin", foreign)],
    )
    .await;
    assert_eq!(status, 403);
    assert!(!server.engine.auth().has_users());
    let mismatch = format!(
        "code={code}&username=root&password={}&confirm=other+password",
        PASSWORD.replace(' ', "+")
    );
    let (status, head, _) = http_with(
        addr,
        "POST",
        "/auth/setup",
        Some(&mismatch),
        &[FORM, ("Origin", &origin)],
    )
    .await;
    assert_eq!(status, 303);
    assert!(
        location(&head).unwrap().starts_with("/setup?error="),
        "{head}"
    );
    let (status, head, _) = http_with(
        addr,
        "POST",
        "/auth/setup",
        Some(&form),
        &[FORM, ("Origin", &origin)],
    )
    .await;
    assert_eq!(
        (status, location(&head).as_deref()),
        (303, Some("/")),
        "{head}"
    );
    let cookie_line = set_cookie(&head).expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie_line.contains(attribute), "{cookie_line}");
    }
    let session = cookie_line.split(';').next().unwrap().to_owned();
    // The setup is once only.
    let (status, head, _) = http_with(
        addr,
        "POST",
        "/auth/setup",
        Some(&form.replace("root", "eve")),
        &[FORM, ("Origin", &origin)],
    )
    .await;
    assert_eq!((status, location(&head).as_deref()), (303, Some("/login")));
    // Wrong passwords are refused with a message, right ones sign in.
    let (status, head, _) = http_with(
        addr,
        "POST",
        "/auth/login",
        Some("username=root&password=wrong+password+here&next=/apps/1"),
        &[FORM, ("Origin", &origin)],
    )
    .await;
    assert_eq!(status, 303);
    assert!(set_cookie(&head).is_none());
    assert!(location(&head).unwrap().contains("error="), "{head}");

    // Something to protect: an app, a finished deployment, a token.
    let (app_id, id) = server
        .finished_deployment("guarded", "lines 3\ninterval_us 0\n")
        .await;
    let (status, token) = server
        .json("POST", "/api/tokens", Some(json!({"name": "ci"})))
        .await;
    assert_eq!(status, 201, "{token}");
    let token_id = token["id"].as_i64().unwrap();

    let server_fns: Vec<(&str, &str)> = vec![
        ("POST", app::api::ListApps::PATH),
        ("POST", app::api::CreateApp::PATH),
        ("POST", app::api::GetApp::PATH),
        ("POST", app::api::Deploy::PATH),
        ("POST", app::api::GetDeployment::PATH),
        ("POST", app::api::ListTokens::PATH),
        ("POST", app::api::NewToken::PATH),
        ("POST", app::api::RevokeToken::PATH),
        ("POST", app::api::CancelDeployment::PATH),
        ("POST", app::api::Redeploy::PATH),
        ("POST", app::api::UpdateApp::PATH),
        ("POST", app::api::DeploymentUrl::PATH),
        ("POST", app::api::LogLines::PATH),
        ("POST", app::api::SearchLog::PATH),
        ("POST", app::api::Rollback::PATH),
        ("POST", app::api::RotateWebhook::PATH),
        ("POST", app::api::GetAppLogs::PATH),
        ("POST", app::api::AppLogLines::PATH),
        ("POST", app::api::ListNotifications::PATH),
        ("POST", app::api::AddNotification::PATH),
        ("POST", app::api::DeleteNotification::PATH),
        ("POST", app::api::SetupAllowed::PATH),
    ];
    let api_routes: Vec<(&str, String, Option<String>)> = vec![
        ("GET", "/api/apps".into(), None),
        (
            "POST",
            "/api/apps".into(),
            Some(json!({"name": "intruder", "repo_url": "https://example.com/x.git"}).to_string()),
        ),
        ("GET", format!("/api/apps/{app_id}"), None),
        ("DELETE", format!("/api/apps/{app_id}"), None),
        (
            "PATCH",
            format!("/api/apps/{app_id}"),
            Some(json!({"branch": "evil"}).to_string()),
        ),
        ("POST", format!("/api/deployments/{id}/redeploy"), None),
        ("GET", format!("/api/apps/{app_id}/deployments"), None),
        (
            "POST",
            "/api/deployments".into(),
            Some(json!({"appId": app_id}).to_string()),
        ),
        ("GET", format!("/api/deployments/{id}"), None),
        ("POST", format!("/api/deployments/{id}/cancel"), None),
        ("GET", format!("/api/deployments/{id}/logs"), None),
        ("GET", "/api/deployments/logs?id=1".into(), None),
        ("GET", "/api/tokens".into(), None),
        (
            "POST",
            "/api/tokens".into(),
            Some(json!({"name": "stolen"}).to_string()),
        ),
        ("DELETE", format!("/api/tokens/{token_id}"), None),
        ("GET", "/api/metrics".into(), None),
        ("GET", "/metrics".into(), None),
        (
            "GET",
            format!("/api/deployments/{id}/lines?from=1&to=10"),
            None,
        ),
        (
            "GET",
            format!("/api/deployments/{id}/search?q=guarded"),
            None,
        ),
        ("POST", format!("/api/apps/{app_id}/rollback"), None),
        ("POST", format!("/api/apps/{app_id}/webhook"), None),
        (
            "GET",
            format!("/api/apps/{app_id}/webhook/deliveries"),
            None,
        ),
        ("GET", format!("/api/apps/{app_id}/logs"), None),
        ("GET", "/api/events".into(), None),
        ("GET", "/api/notifications".into(), None),
        (
            "POST",
            "/api/notifications".into(),
            Some(json!({"url": "http://127.0.0.1:9/x", "events": ["success"]}).to_string()),
        ),
        ("DELETE", "/api/notifications/1".into(), None),
        (
            "POST",
            "/api/account/password".into(),
            Some(
                json!({"current_password": PASSWORD, "new_password": "taken over 1234"})
                    .to_string(),
            ),
        ),
        ("DELETE", "/api/sessions".into(), None),
        ("GET", "/api/nothing-here".into(), None),
    ];
    let routes: Vec<(&str, String, Option<String>)> = api_routes
        .into_iter()
        .chain(
            server_fns
                .iter()
                .map(|(method, path)| (*method, path.to_string(), Some(String::new()))),
        )
        .collect();
    let pages = [
        "/".to_owned(),
        format!("/apps/{app_id}"),
        format!("/apps/{app_id}/logs"),
        "/settings/notifications".to_owned(),
        format!("/deployments/{id}"),
        "/settings/tokens".to_owned(),
    ];

    let wrong = "Bearer slw_0000000000000000000000000000000000000000000000000000000000000000";
    let admin_bearer = format!("Bearer {ADMIN_TOKEN}");
    let mut refusals = 0;
    for (method, path, body) in &routes {
        let body = body.as_deref();
        let mut cases: Vec<Case> = vec![
            ("anonymous", vec![], 401),
            ("wrong token", vec![("Authorization", wrong)], 401),
            (
                "token without scheme",
                vec![("Authorization", ADMIN_TOKEN)],
                401,
            ),
            (
                "basic auth",
                vec![("Authorization", "Basic cm9vdDpyb290")],
                401,
            ),
            // A valid cookie does not rescue a wrong token.
            (
                "wrong token with a cookie",
                vec![
                    ("Authorization", wrong),
                    ("Cookie", &session),
                    ("Origin", &origin),
                ],
                401,
            ),
        ];
        if *method != "GET" {
            cases.push((
                "cookie from a foreign origin",
                vec![("Cookie", &session), ("Origin", foreign)],
                403,
            ));
            cases.push(("cookie without an origin", vec![("Cookie", &session)], 403));
        }
        for (who, headers, expected) in cases {
            let (status, _, answer) = http_with(addr, method, path, body, &headers).await;
            assert_eq!(status, expected, "{who}: {method} {path} answered {answer}");
            let code = if expected == 401 {
                "unauthorized"
            } else {
                "forbidden"
            };
            assert_eq!(
                error_code(&answer),
                code,
                "{who}: {method} {path}: {answer}"
            );
            refusals += 1;
        }
    }
    for page in &pages {
        for (who, headers) in [
            ("anonymous", vec![]),
            ("wrong token", vec![("Authorization", wrong)]),
        ] {
            let (status, head, answer) = http_with(addr, "GET", page, None, &headers).await;
            if who == "anonymous" {
                assert_eq!(status, 303, "{page}: {answer}");
                assert!(
                    location(&head).unwrap().starts_with("/login?next="),
                    "{head}"
                );
            } else {
                assert_eq!(status, 401, "{who}: {page}: {answer}");
            }
            assert!(!answer.contains("guarded"), "{who} saw the app on {page}");
            refusals += 1;
        }
    }

    // The monitor: refusals arrive as an error event and a 44xx close.
    let url = format!("ws://{addr}/api/deployments/logs?id={id}");
    for (who, headers, close) in [
        ("anonymous", vec![], 4401),
        ("wrong token", vec![("Authorization", wrong)], 4401),
        (
            "foreign origin",
            vec![("Cookie", session.as_str()), ("Origin", foreign)],
            4403,
        ),
    ] {
        let received = common::Viewer::connect_with(&url, &headers)
            .await
            .read_to_close(Duration::from_secs(10))
            .await;
        assert_eq!(received.close_code, Some(close), "{who}");
        assert_eq!(received.events.len(), 1, "{who}: {:?}", received.events);
        assert!(received.seqs().is_empty(), "{who} received log lines");
        refusals += 1;
    }
    // A plain request to the monitor without credentials is a JSON 401.
    let (status, _, answer) = http_with(
        addr,
        "GET",
        &format!("/api/deployments/logs?id={id}"),
        None,
        &[],
    )
    .await;
    assert_eq!(
        (status, error_code(&answer).as_str()),
        (401, "unauthorized")
    );

    // Nothing changed: same app, same deployments, same single token, nobody signed in.
    let (_, apps) = server.json("GET", "/api/apps", None).await;
    assert_eq!(apps.as_array().unwrap().len(), 1, "{apps}");
    let (_, deployments) = server
        .json("GET", &format!("/api/apps/{app_id}/deployments"), None)
        .await;
    assert_eq!(deployments.as_array().unwrap().len(), 1, "{deployments}");
    let (_, tokens) = server.json("GET", "/api/tokens", None).await;
    assert_eq!(tokens.as_array().unwrap().len(), 1, "{tokens}");
    println!("authorisation matrix: {refusals} requests refused");

    // The same requests succeed with valid credentials.
    let (status, _, body) = http_with(
        addr,
        "POST",
        "/api/deployments",
        Some(&json!({"appId": app_id}).to_string()),
        &[("Cookie", &session), ("Origin", &origin)],
    )
    .await;
    assert_eq!(status, 201, "cookie from our own origin: {body}");
    let (status, _, page) = http_with(
        addr,
        "GET",
        &format!("/apps/{app_id}"),
        None,
        &[("Cookie", &session)],
    )
    .await;
    assert_eq!(status, 200);
    assert!(page.contains("guarded"));
    let (status, _, _) = http_with(
        addr,
        "GET",
        "/api/apps",
        None,
        &[("Authorization", &admin_bearer)],
    )
    .await;
    assert_eq!(status, 200);
    let created = format!("Bearer {}", token["token"].as_str().unwrap());
    let (status, _, _) = http_with(
        addr,
        "GET",
        "/api/apps",
        None,
        &[("Authorization", &created)],
    )
    .await;
    assert_eq!(status, 200, "a created token works");
    let received = common::Viewer::connect_with(
        &url,
        &[("Cookie", session.as_str()), ("Origin", origin.as_str())],
    )
    .await
    .read_to_close(Duration::from_secs(10))
    .await;
    assert_eq!(received.close_code, Some(1000));
    let seqs = received.seqs();
    assert!(!seqs.is_empty());
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());

    // Revoked tokens stop at once; signed-out sessions too.
    let (status, _, _) = http_with(
        addr,
        "DELETE",
        &format!("/api/tokens/{token_id}"),
        None,
        &[("Cookie", &session), ("Origin", &origin)],
    )
    .await;
    assert_eq!(status, 204);
    let (status, _, _) = http_with(
        addr,
        "GET",
        "/api/apps",
        None,
        &[("Authorization", &created)],
    )
    .await;
    assert_eq!(status, 401, "a revoked token is refused");
    let (status, head, _) = http_with(
        addr,
        "POST",
        "/auth/logout",
        None,
        &[("Cookie", &session), ("Origin", &origin)],
    )
    .await;
    assert_eq!(status, 303);
    assert!(set_cookie(&head).unwrap().contains("Max-Age=0"));
    let (status, _, _) = http_with(addr, "GET", "/api/apps", None, &[("Cookie", &session)]).await;
    assert_eq!(status, 401, "a signed-out session is refused");

    server.stop().await;
}

/// Nobody can sign in yet and the address is reachable from elsewhere: the server refuses
/// to start, and says what to do.
#[tokio::test]
async fn a_public_address_without_credentials_is_refused() {
    let dir = common::temp_dir("exposed");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_slipway"))
        .env("SLIPWAY_ADDR", "0.0.0.0:0")
        .env("SLIPWAY_DATA_DIR", dir.join("data"))
        .env_remove("SLIPWAY_ADMIN_TOKEN")
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("the server stops by itself")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("refusing to serve on 0.0.0.0"), "{stderr}");
    assert!(stderr.contains("SLIPWAY_ADMIN_TOKEN"), "{stderr}");
}
