//! Runtime logs against the real Docker engine: what a running app prints on stdout and
//! stderr reaches a viewer numbered per app, across a redeploy (a line of Slipway's marks
//! the switch), resumes exactly with `since`, is kept as text, and stays within
//! `SLIPWAY_RUNTIME_LOG_MB`.

#![allow(clippy::unwrap_used)]

mod common;

use common::{TestServer, Viewer, git_repo};
use protocol::{Event, LogLine, Status};
use serde_json::json;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(180);

/// Prints a greeting from its environment on stdout and a line on stderr, then serves.
const CHATTY_DOCKERFILE: &str = "FROM scratch
COPY busybox /bin/busybox
RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]
RUN mkdir -p /www && echo ok > /www/index.html
EXPOSE 8080
CMD [\"/bin/sh\", \"-c\", \"echo \\\"hello $GREETING\\\"; echo \\\"warning $GREETING\\\" >&2; exec httpd -f -p 8080 -h /www\"]
";

/// Prints 30,000 lines of 100 bytes (3 MB), then a marker, then serves.
const FLOOD_DOCKERFILE: &str = "FROM scratch
COPY busybox /bin/busybox
RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]
RUN mkdir -p /www && echo ok > /www/index.html
EXPOSE 8080
CMD [\"/bin/sh\", \"-c\", \"yes 012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678 | head -n 30000; echo flood-done; exec httpd -f -p 8080 -h /www\"]
";

async fn create_app(server: &TestServer, name: &str, dockerfile: &str, greeting: &str) -> i64 {
    let repo = git_repo(&server.dir.join(name), &[("Dockerfile", dockerfile)]);
    let (status, app) = server
        .json(
            "POST",
            "/api/apps",
            Some(json!({"name": name, "repo_url": repo.display().to_string(), "port": 8080, "env": {"GREETING": greeting}})),
        )
        .await;
    assert_eq!(status, 201, "{app}");
    app["id"].as_i64().expect("app id")
}

/// Deploys the app and waits for the deployment to end: answers its final status.
async fn deploy(server: &TestServer, app: i64) -> Status {
    let (status, created) = server
        .json("POST", "/api/deployments", Some(json!({"appId": app})))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_i64().expect("deployment id");
    let got = server
        .ws(&format!("id={id}"))
        .await
        .read_to_close(LIMIT)
        .await;
    got.statuses().last().expect("a status").status
}

async fn app_viewer(server: &TestServer, app: i64, since: u64) -> Viewer {
    Viewer::connect(&format!(
        "ws://{}/api/apps/{app}/logs?since={since}",
        server.addr
    ))
    .await
}

/// Reads log events until one whose line contains `marker`; answers them all.
async fn read_until(viewer: &mut Viewer, marker: &str) -> Vec<LogLine> {
    let mut lines = Vec::new();
    let read = async {
        while let Some(event) = viewer.next_event().await {
            if let Event::Log { data, .. } = event {
                let done = data.line.contains(marker);
                lines.push(data);
                if done {
                    return;
                }
            }
        }
        panic!("the socket closed before {marker:?}: {lines:#?}");
    };
    tokio::time::timeout(LIMIT, read)
        .await
        .unwrap_or_else(|_| panic!("no {marker:?} within {LIMIT:?}"));
    lines
}

/// Polls the text of the kept lines until it holds `marker`.
async fn text_until(server: &TestServer, app: i64, marker: &str) -> String {
    let started = Instant::now();
    loop {
        let (status, text) = server
            .request("GET", &format!("/api/apps/{app}/logs"), None)
            .await;
        assert_eq!(status, 200, "{text}");
        if text.contains(marker) {
            return text;
        }
        assert!(started.elapsed() < LIMIT, "no {marker:?} in {text:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_app_s_output_streams_across_redeploys_and_resumes_exactly() {
    let server = TestServer::start("app-logs").await;
    let app = create_app(&server, "chatty", CHATTY_DOCKERFILE, "one").await;

    // Connected before anything ran: the first message is a status, then the app's
    // output arrives live once it starts.
    let mut live = app_viewer(&server, app, 0).await;
    let first = tokio::time::timeout(LIMIT, live.next_event())
        .await
        .expect("a first message");
    assert!(
        matches!(first, Some(Event::Status { .. })),
        "the first message is a status: {first:?}"
    );
    assert_eq!(deploy(&server, app).await, Status::Success);
    let mut got = read_until(&mut live, "warning one").await;
    // stdout and stderr are separate streams, so their order may vary: read both.
    if !got.iter().any(|l| l.line == "hello one\n") {
        got.extend(read_until(&mut live, "hello one").await);
    }
    let hello = got
        .iter()
        .find(|l| l.line == "hello one\n")
        .expect("stdout line");
    assert_eq!(hello.stream.as_deref(), Some("stdout"));
    let warning = got
        .iter()
        .find(|l| l.line == "warning one\n")
        .expect("stderr line");
    assert_eq!(warning.stream.as_deref(), Some("stderr"));

    // A redeploy with another greeting: the switch is marked by Slipway, the new
    // container's lines follow, numbered on from the first deployment's.
    let (status, body) = server
        .json(
            "PATCH",
            &format!("/api/apps/{app}"),
            Some(json!({"env": {"GREETING": "two"}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(deploy(&server, app).await, Status::Success);
    got.extend(read_until(&mut live, "warning two").await);
    if !got.iter().any(|l| l.line == "hello two\n") {
        got.extend(read_until(&mut live, "hello two").await);
    }
    let seqs: Vec<u64> = got.iter().map(|l| l.seq).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "numbered 1, 2, 3, ... across deployments, no gap, no duplicate: {got:#?}"
    );
    let switch = got
        .iter()
        .rposition(|l| l.line.starts_with("[slipway] now serving container"))
        .expect("a line of Slipway's marks the switch");
    assert!(got[switch].line.contains("deployment #2"), "{got:#?}");
    let new_hello = got.iter().position(|l| l.line == "hello two\n").unwrap();
    assert!(switch < new_hello, "{got:#?}");
    assert!(
        got[switch + 1..].iter().all(|l| !l.line.contains("one\n")),
        "the old container's lines come before the switch: {got:#?}"
    );

    // Resume: a viewer from the middle gets exactly the rest.
    let middle = got[got.len() / 2].seq;
    let mut resumed = app_viewer(&server, app, middle).await;
    let rest = read_until(&mut resumed, &got.last().unwrap().line).await;
    assert_eq!(
        rest.iter().map(|l| l.seq).collect::<Vec<_>>(),
        (middle + 1..=got.last().unwrap().seq).collect::<Vec<_>>()
    );
    assert_eq!(rest[..], got[middle as usize..]);

    // The kept lines as text: the same lines, in order.
    let text = text_until(&server, app, "hello two").await;
    let joined: String = got.iter().map(|l| l.line.as_str()).collect();
    assert_eq!(text, joined);

    // Deleting the app ends its viewers.
    let (status, _) = server
        .request("DELETE", &format!("/api/apps/{app}"), None)
        .await;
    assert!(status == 204 || status == 200, "{status}");
    let closed = tokio::time::timeout(Duration::from_secs(30), async {
        while live.next_event().await.is_some() {}
    })
    .await;
    assert!(closed.is_ok(), "the stream ends when the app is deleted");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_keeps_only_its_newest_lines_within_its_budget() {
    let server =
        TestServer::start_with_vars("app-logs-bound", &[("SLIPWAY_RUNTIME_LOG_MB", "1".into())])
            .await;
    let app = create_app(&server, "flood", FLOOD_DOCKERFILE, "x").await;
    assert_eq!(deploy(&server, app).await, Status::Success);

    let text = text_until(&server, app, "flood-done").await;
    assert!(
        text.len() <= 1024 * 1024 + 64 * 1024,
        "3 MB printed, {} bytes kept",
        text.len()
    );
    assert!(
        text.len() > 512 * 1024,
        "the newest lines are kept: {}",
        text.len()
    );

    // A `since` older than what is kept starts at the oldest line kept, and from there
    // the lines run without a gap to the newest.
    let mut viewer = app_viewer(&server, app, 0).await;
    let lines = read_until(&mut viewer, "flood-done").await;
    let first = lines.first().expect("lines").seq;
    assert!(first > 1, "the oldest lines were dropped");
    assert_eq!(
        lines.iter().map(|l| l.seq).collect::<Vec<_>>(),
        (first..first + lines.len() as u64).collect::<Vec<_>>()
    );
    let streamed: String = lines.iter().map(|l| l.line.as_str()).collect();
    assert_eq!(streamed, text);
    server.stop().await;
}
