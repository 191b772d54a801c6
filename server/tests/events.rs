//! Live everywhere: the event feed (`GET /api/events`) and outgoing notifications, against
//! a real server. The feed: apps and deployments in one ordered feed, resumed exactly with
//! `since`. Notifications: a real HTTP receiver that fails the first attempts gets each
//! notification, signed; a server killed between a deployment's end and the delivery
//! delivers it after its restart.

#![allow(clippy::unwrap_used)]

mod common;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use common::{Binary, HTTPD_DOCKERFILE, TestServer, Viewer, free_port, git_repo, temp_dir};
use hmac::{Hmac, Mac};
use protocol::{AppAction, FeedEvent, Status};
use serde_json::{Value, json};
use sha2::Sha256;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(120);

async fn feed(server: std::net::SocketAddr, since: Option<u64>) -> Viewer {
    let query = since.map(|s| format!("?since={s}")).unwrap_or_default();
    Viewer::connect(&format!("ws://{server}/api/events{query}")).await
}

/// Reads feed events until `done` says so; answers them all.
async fn read_until(viewer: &mut Viewer, done: impl Fn(&FeedEvent) -> bool) -> Vec<FeedEvent> {
    let mut events = Vec::new();
    let read = async {
        while let Some(text) = viewer.next_text().await {
            let event: FeedEvent = serde_json::from_str(&text).expect("a feed event");
            let stop = done(&event);
            events.push(event);
            if stop {
                return;
            }
        }
        panic!("the feed closed: {events:#?}");
    };
    tokio::time::timeout(LIMIT, read)
        .await
        .unwrap_or_else(|_| panic!("timed out"));
    events
}

fn deployment_statuses(events: &[FeedEvent], id: i64) -> Vec<Status> {
    events
        .iter()
        .filter_map(|e| match e {
            FeedEvent::Deployment { data, .. } if data.id == id => Some(data.status),
            _ => None,
        })
        .collect()
}

fn ids(events: &[FeedEvent]) -> Vec<u64> {
    events.iter().filter_map(FeedEvent::id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_carries_apps_and_deployments_in_order_and_resumes_exactly() {
    let server = TestServer::start_synthetic("events-feed").await;
    let mut live = feed(server.addr, None).await;

    let repo = git_repo(
        &server.dir.join("repo"),
        &[("Dockerfile", "lines 50\nsteps 2\n")],
    );
    let (status, app) = server
        .json(
            "POST",
            "/api/apps",
            Some(json!({"name": "fed", "repo_url": repo.display().to_string()})),
        )
        .await;
    assert_eq!(status, 201, "{app}");
    let app_id = app["id"].as_i64().unwrap();
    let (status, created) = server
        .json("POST", "/api/deployments", Some(json!({"appId": app_id})))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_i64().unwrap();
    let events = read_until(&mut live, |e| {
        matches!(e, FeedEvent::Deployment { data, .. } if data.id == id && data.status.is_terminal())
    })
    .await;

    // The app's creation, then every status of the deployment once, in order; progress
    // inside a stage is not an event.
    assert!(
        matches!(&events[0], FeedEvent::App { data, .. } if data.id == app_id && data.name == "fed" && data.action == AppAction::Created),
        "{events:#?}"
    );
    assert_eq!(
        deployment_statuses(&events, id),
        [
            Status::Pending,
            Status::Cloning,
            Status::Building,
            Status::Deploying,
            Status::Success
        ]
    );
    let first = ids(&events)[0];
    assert_eq!(
        ids(&events),
        (first..first + events.len() as u64).collect::<Vec<_>>(),
        "ids increase by one per event"
    );
    let FeedEvent::Deployment { data, .. } = events.last().unwrap() else {
        unreachable!()
    };
    assert!(
        data.finished_at.is_some() && data.commit.is_some(),
        "{data:?}"
    );

    // A change and a deletion of the app.
    let (status, _) = server
        .json(
            "PATCH",
            &format!("/api/apps/{app_id}"),
            Some(json!({"branch": "main"})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = server
        .request("DELETE", &format!("/api/apps/{app_id}"), None)
        .await;
    assert_eq!(status, 204);
    let more = read_until(
        &mut live,
        |e| matches!(e, FeedEvent::App { data, .. } if data.action == AppAction::Deleted),
    )
    .await;
    let actions: Vec<AppAction> = more
        .iter()
        .filter_map(|e| match e {
            FeedEvent::App { data, .. } => Some(data.action),
            _ => None,
        })
        .collect();
    assert_eq!(actions, [AppAction::Updated, AppAction::Deleted]);

    // Resume from the middle: exactly the events after it, once, in order.
    let all: Vec<FeedEvent> = events.into_iter().chain(more).collect();
    let middle = ids(&all)[all.len() / 2];
    let mut resumed = feed(server.addr, Some(middle)).await;
    let last = *ids(&all).last().unwrap();
    let rest = read_until(&mut resumed, |e| e.id() == Some(last)).await;
    assert_eq!(rest, all[all.len() / 2 + 1..].to_vec());

    // A `since` that is not a number is refused with the error event.
    let mut bad = Viewer::connect(&format!("ws://{}/api/events?since=x", server.addr)).await;
    let text = bad.next_text().await.expect("an error event");
    let refused: FeedEvent = serde_json::from_str(&text).unwrap();
    assert!(
        matches!(&refused, FeedEvent::Error { data, .. } if data.message.contains("since")),
        "{refused:?}"
    );
    server.stop().await;
}

/// What a receiver got: bodies and their signature headers.
#[derive(Default)]
struct Received {
    calls: usize,
    /// The body parsed, the body as sent, the signature header.
    delivered: Vec<(Value, String, Option<String>)>,
}

struct Receiver {
    state: Arc<Mutex<Received>>,
    url: String,
}

/// A real HTTP receiver on `port` that answers 500 to the first `fail_first` calls.
async fn receiver(port: u16, fail_first: usize) -> Receiver {
    let state = Arc::new(Mutex::new(Received::default()));
    let handler = move |State(state): State<Arc<Mutex<Received>>>,
                        headers: HeaderMap,
                        body: String| async move {
        let mut state = state.lock().unwrap();
        state.calls += 1;
        if state.calls <= fail_first {
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
        let signature = headers
            .get("x-slipway-signature")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let parsed = serde_json::from_str(&body).expect("a JSON body");
        state.delivered.push((parsed, body, signature));
        StatusCode::NO_CONTENT
    };
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(handler))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind the receiver");
    tokio::spawn(async move {
        axum::serve(listener, app).await.ok();
    });
    Receiver {
        state,
        url: format!("http://127.0.0.1:{port}/hook"),
    }
}

impl Receiver {
    /// Waits for `n` deliveries; answers them.
    async fn wait_for(&self, n: usize) -> Vec<(Value, String, Option<String>)> {
        let started = Instant::now();
        loop {
            {
                let state = self.state.lock().unwrap();
                if state.delivered.len() >= n {
                    return state.delivered.clone();
                }
            }
            assert!(started.elapsed() < LIMIT, "no {n} deliveries");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn calls(&self) -> usize {
        self.state.lock().unwrap().calls
    }
}

fn signed(secret: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_arrive_signed_after_failed_attempts() {
    let server = TestServer::start_synthetic("events-notify").await;
    let json_receiver = receiver(free_port(), 2).await;
    let slack_receiver = receiver(free_port(), 1).await;

    // Bad input names the field.
    for (body, field) in [
        (json!({"url": "ftp://x", "events": ["success"]}), "url"),
        (
            json!({"url": "http://127.0.0.1:9/x", "events": []}),
            "events",
        ),
        (
            json!({"url": "http://127.0.0.1:9/x", "events": ["building"]}),
            "events",
        ),
        (
            json!({"url": "http://127.0.0.1:9/x", "events": ["success"], "format": "xml"}),
            "format",
        ),
    ] {
        let (status, answer) = server.json("POST", "/api/notifications", Some(body)).await;
        assert_eq!(status, 422, "{answer}");
        assert!(answer.to_string().contains(field), "{answer}");
    }

    let (status, created) = server
        .json(
            "POST",
            "/api/notifications",
            Some(json!({"url": json_receiver.url, "events": ["success", "failed"], "format": "json"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    let (status, _) = server
        .json(
            "POST",
            "/api/notifications",
            Some(json!({"url": slack_receiver.url, "events": ["failed"], "format": "slack"})),
        )
        .await;
    assert_eq!(status, 201);
    let (_, listed) = server.json("GET", "/api/notifications", None).await;
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert!(
        !listed.to_string().contains(&secret),
        "the secret is shown once"
    );

    // A success: the json receiver gets it on the third attempt, signed.
    let repo = git_repo(&server.dir.join("repo"), &[("Dockerfile", "lines 5\n")]);
    let (_, app) = server
        .json(
            "POST",
            "/api/apps",
            Some(json!({"name": "told", "repo_url": repo.display().to_string()})),
        )
        .await;
    let (_, created) = server
        .json(
            "POST",
            "/api/deployments",
            Some(json!({"appId": app["id"]})),
        )
        .await;
    let id = created["id"].as_i64().unwrap();
    let delivered = json_receiver.wait_for(1).await;
    let (body, raw, signature) = &delivered[0];
    assert_eq!(body["id"], id);
    assert_eq!(body["status"], "success");
    assert_eq!(body["app_name"], "told");
    assert!(
        body["monitor_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/deployments/{id}")),
        "{body}"
    );
    assert_eq!(signature.as_deref(), Some(signed(&secret, raw).as_str()));
    assert_eq!(json_receiver.calls(), 3, "two failures, then the delivery");
    assert_eq!(slack_receiver.calls(), 0, "it listens for failures only");

    // A failure (the repository is gone): both hear of it, Slack as text with the reason.
    let (_, broken) = server
        .json(
            "POST",
            "/api/apps",
            Some(json!({"name": "broken", "repo_url": server.dir.join("nowhere").display().to_string()})),
        )
        .await;
    let (_, failed) = server
        .json(
            "POST",
            "/api/deployments",
            Some(json!({"appId": broken["id"]})),
        )
        .await;
    let failed_id = failed["id"].as_i64().unwrap();
    let slack = slack_receiver.wait_for(1).await;
    let text = slack[0].0["text"].as_str().unwrap();
    assert!(
        text.starts_with(&format!("broken: deployment #{failed_id}")) && text.contains("failed"),
        "{text}"
    );
    let delivered = json_receiver.wait_for(2).await;
    assert_eq!(delivered[1].0["status"], "failed");
    assert!(!delivered[1].0["error_message"].as_str().unwrap().is_empty());

    // Deleting notifications.
    let (_, listed) = server.json("GET", "/api/notifications", None).await;
    for n in listed.as_array().unwrap() {
        let (status, _) = server
            .request("DELETE", &format!("/api/notifications/{}", n["id"]), None)
            .await;
        assert_eq!(status, 204);
    }
    let (status, _) = server
        .request("DELETE", "/api/notifications/999", None)
        .await;
    assert_eq!(status, 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_survives_a_crash_between_the_end_and_the_delivery() {
    let data = temp_dir("events-crash");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let receiver_port = free_port();
    let mut server = Binary::start(&data, addr, &[]).await;
    // Nobody listens on the receiver's port yet: every attempt fails.
    let (status, created) = server
        .json(
            "POST",
            "/api/notifications",
            Some(json!({"url": format!("http://127.0.0.1:{receiver_port}/hook"), "events": ["success"]})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    let repo = git_repo(&data.join("repo"), &[("Dockerfile", HTTPD_DOCKERFILE)]);
    let (_, app) = server
        .json(
            "POST",
            "/api/apps",
            Some(json!({"name": "crash", "repo_url": repo.display().to_string(), "port": 8080})),
        )
        .await;
    let (_, deployment) = server
        .json(
            "POST",
            "/api/deployments",
            Some(json!({"appId": app["id"]})),
        )
        .await;
    let id = deployment["id"].as_i64().unwrap();
    let got = server
        .ws(&format!("id={id}"))
        .await
        .read_to_close(LIMIT)
        .await;
    assert_eq!(got.statuses().last().unwrap().status, Status::Success);

    // Killed (no graceful shutdown) while the notification is undelivered.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let receiver = receiver(receiver_port, 0).await;
    server = Binary::start(&data, addr, &[]).await;
    let delivered = receiver.wait_for(1).await;
    let (body, raw, signature) = &delivered[0];
    assert_eq!(body["id"], id);
    assert_eq!(body["status"], "success");
    assert_eq!(signature.as_deref(), Some(signed(&secret, raw).as_str()));
    // Delivered once: nothing more comes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.calls(), 1);
    server.stop().await;
}
