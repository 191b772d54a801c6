//! Deploy on git push: the forges' own payloads (`tests/fixtures/webhooks/`, from their
//! documentation) signed as each forge signs them, at a real server with a real git
//! repository (the synthetic runtime builds: its "Dockerfile" is a script of output). The
//! documented commit in each payload is replaced by one of the repository's.

mod common;

use common::{TestServer, http_with};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/webhooks/{name}.json")),
    )
    .expect("fixture")
}

/// The fixture with its documented pushed commit replaced by `commit`.
fn payload(name: &str, commit: &str) -> String {
    let text = fixture(name);
    let documented: Value = serde_json::from_str(&text).expect("json");
    match documented["after"].as_str() {
        Some(after) if after != "0000000000000000000000000000000000000000" => {
            text.replace(after, commit)
        }
        _ => text,
    }
}

fn hmac_hex(secret: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(body.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// A repository with two commits on `master` (the documented payloads push to it) and a
/// `develop` branch at the first: answers it and the two commits, oldest first.
fn repo(dir: &Path) -> (PathBuf, String, String) {
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).expect("dir");
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@slipway.invalid"])
            .args(args)
            .current_dir(&repo)
            .output()
            .expect("git");
        assert!(out.status.success(), "git {args:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    git(&["init", "-q", "-b", "master"]);
    std::fs::write(repo.join("Dockerfile"), "lines 3\nsteps 1\n").expect("write");
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "first"]);
    let first = git(&["rev-parse", "HEAD"]);
    git(&["branch", "develop"]);
    std::fs::write(repo.join("Dockerfile"), "lines 7\nsteps 1\n").expect("write");
    git(&["commit", "-q", "-am", "second"]);
    let second = git(&["rev-parse", "HEAD"]);
    (repo, first, second)
}

struct Sent {
    status: u16,
    body: Value,
}

async fn send(server: &TestServer, app: i64, headers: &[(&str, &str)], body: &str) -> Sent {
    let (status, _, text) = http_with(
        server.addr,
        "POST",
        &format!("/api/hooks/{app}"),
        Some(body),
        headers,
    )
    .await;
    Sent {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

async fn deployments(server: &TestServer, app: i64) -> usize {
    let (_, list) = server
        .json("GET", &format!("/api/apps/{app}/deployments"), None)
        .await;
    list.as_array().map(Vec::len).unwrap_or(0)
}

/// Waits for the deployment's end; answers its final record.
async fn finished(server: &TestServer, id: i64) -> Value {
    server
        .ws(&format!("id={id}"))
        .await
        .read_to_close(Duration::from_secs(60))
        .await;
    server
        .json("GET", &format!("/api/deployments/{id}"), None)
        .await
        .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forges_pushes_deploy_exactly_the_pushed_commit() {
    let server = TestServer::start_synthetic("webhooks").await;
    let (repo, first, second) = repo(&server.dir);
    let (status, app) = server
        .json(
            "POST",
            "/api/apps",
            Some(json!({"name": "pushed", "repo_url": repo.display().to_string(), "branch": "master"})),
        )
        .await;
    assert_eq!(status, 201, "{app}");
    let app = app["id"].as_i64().expect("id");
    // No secret yet: every delivery is refused.
    let body = payload("github-push-existing-branch", &first);
    let signature = format!("sha256={}", hmac_hex("anything", &body));
    let refused = send(
        &server,
        app,
        &[
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", &signature),
        ],
        &body,
    )
    .await;
    assert_eq!(refused.status, 401, "{}", refused.body);

    let (status, hook) = server
        .json("POST", &format!("/api/apps/{app}/webhook"), None)
        .await;
    assert_eq!(status, 200, "{hook}");
    assert_eq!(
        hook["url"],
        format!("http://127.0.0.1:3000/api/hooks/{app}")
    );
    let secret = hook["secret"].as_str().expect("secret").to_owned();

    // GitHub: the pushed commit is the branch's older one: that one is built.
    let signature = format!("sha256={}", hmac_hex(&secret, &body));
    let github = [
        ("X-GitHub-Event", "push"),
        ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ("X-Hub-Signature-256", signature.as_str()),
    ];
    let arrived = Instant::now();
    let sent = send(&server, app, &github, &body).await;
    assert_eq!(sent.status, 202, "{}", sent.body);
    let id = sent.body["deployment_id"].as_i64().expect("deployment id");
    let mut viewer = server.ws(&format!("id={id}")).await;
    loop {
        match viewer.next_event().await {
            Some(protocol::Event::Log { .. }) => break,
            Some(_) => continue,
            None => panic!("the stream ended before a line"),
        }
    }
    println!(
        "a GitHub push's first log line reached a viewer {:.1} ms after the webhook arrived",
        arrived.elapsed().as_secs_f64() * 1000.0
    );
    let done = finished(&server, id).await;
    assert_eq!(done["status"], "success", "{done}");
    assert_eq!(
        done["commit"], first,
        "exactly the pushed commit, not the branch's head {second}"
    );
    let (_, log) = server
        .request("GET", &format!("/api/deployments/{id}/logs"), None)
        .await;
    // The first commit's script prints 3 lines, the head's 7.
    assert!(log.contains("synthetic line 3 "), "{log}");
    assert!(!log.contains("synthetic line 7 "), "{log}");
    assert!(log.contains(&format!("Fetching commit {first}")), "{log}");
    // The same delivery again: the same answer, nothing queued.
    let again = send(&server, app, &github, &body).await;
    assert_eq!(
        (again.status, again.body["deployment_id"].as_i64()),
        (202, Some(id))
    );
    assert_eq!(deployments(&server, app).await, 1);

    // Wrong or missing signatures: 401, nothing queued.
    let forged = format!("sha256={}", hmac_hex("not the secret", &body));
    for headers in [
        vec![
            ("X-GitHub-Event", "push"),
            ("X-GitHub-Delivery", "other-1"),
            ("X-Hub-Signature-256", forged.as_str()),
        ],
        vec![("X-GitHub-Event", "push"), ("X-GitHub-Delivery", "other-2")],
        vec![("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", "guess")],
        vec![("X-Gitea-Event", "push"), ("X-Gitea-Signature", "")],
    ] {
        let sent = send(&server, app, &headers, &body).await;
        assert_eq!(sent.status, 401, "{headers:?}: {}", sent.body);
        assert_eq!(sent.body["error"]["code"], "unauthorized");
    }
    // A body that was changed after signing.
    let tampered = body.replacen("master", "master ", 1);
    let sent = send(
        &server,
        app,
        &github.map(|(n, v)| {
            if n == "X-GitHub-Delivery" {
                (n, "tampered")
            } else {
                (n, v)
            }
        }),
        &tampered,
    )
    .await;
    assert_eq!(sent.status, 401);
    assert_eq!(deployments(&server, app).await, 1);

    // Gitea (its captured push to master), signed without a prefix.
    let body = payload("gitea-push-captured", &second);
    let signature = hmac_hex(&secret, &body);
    let sent = send(
        &server,
        app,
        &[
            ("X-Gitea-Event", "push"),
            ("X-Gitea-Delivery", "gitea-1"),
            ("X-Gitea-Signature", &signature),
            // Gitea sends GitHub's headers too; its own are read first.
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", &format!("sha256={signature}")),
        ],
        &body,
    )
    .await;
    assert_eq!(sent.status, 202, "{}", sent.body);
    let done = finished(&server, sent.body["deployment_id"].as_i64().expect("id")).await;
    assert_eq!(
        (done["status"].as_str(), done["commit"].as_str()),
        (Some("success"), Some(second.as_str()))
    );

    // GitLab: the secret itself as a token, the commit in checkout_sha.
    let body = payload("gitlab-push", &first);
    let sent = send(
        &server,
        app,
        &[
            ("X-Gitlab-Event", "Push Hook"),
            ("X-Gitlab-Token", &secret),
            ("Idempotency-Key", "gitlab-1"),
        ],
        &body,
    )
    .await;
    assert_eq!(sent.status, 202, "{}", sent.body);
    let done = finished(&server, sent.body["deployment_id"].as_i64().expect("id")).await;
    assert_eq!(done["commit"], first);

    // Forgejo's documented push goes to `develop`: not the app's branch.
    let body = payload("forgejo-push", &first);
    let signature = hmac_hex(&secret, &body);
    let sent = send(
        &server,
        app,
        &[
            ("X-Forgejo-Event", "push"),
            ("X-Forgejo-Delivery", "forgejo-1"),
            ("X-Forgejo-Signature", &signature),
            ("X-Gitea-Event", "push"),
            ("X-Gitea-Signature", &signature),
        ],
        &body,
    )
    .await;
    assert_eq!(sent.status, 200, "{}", sent.body);
    assert!(
        sent.body["ignored"]
            .as_str()
            .unwrap_or("")
            .contains("develop"),
        "{}",
        sent.body
    );

    // Pings, tags and deleted branches are ignored with a reason.
    for (name, headers_for) in [
        ("github-ping", ("X-GitHub-Event", "ping")),
        ("github-push-tag", ("X-GitHub-Event", "push")),
        ("github-push-branch-deleted", ("X-GitHub-Event", "push")),
    ] {
        let body = fixture(name);
        let signature = format!("sha256={}", hmac_hex(&secret, &body));
        let sent = send(
            &server,
            app,
            &[
                headers_for,
                ("X-GitHub-Delivery", name),
                ("X-Hub-Signature-256", &signature),
            ],
            &body,
        )
        .await;
        assert_eq!(sent.status, 200, "{name}: {}", sent.body);
        assert!(sent.body["ignored"].is_string(), "{name}: {}", sent.body);
    }
    let body = fixture("gitlab-tag-push");
    let sent = send(
        &server,
        app,
        &[
            ("X-Gitlab-Event", "Tag Push Hook"),
            ("X-Gitlab-Token", &secret),
            ("X-Gitlab-Event-UUID", "tag-1"),
        ],
        &body,
    )
    .await;
    assert_eq!(
        (sent.status, sent.body["ignored"].as_str()),
        (200, Some("a tag push"))
    );
    assert_eq!(
        deployments(&server, app).await,
        3,
        "only the three pushes to master deployed"
    );

    // Every delivery is listed with what it did.
    let (_, list) = server
        .json("GET", &format!("/api/apps/{app}/webhook/deliveries"), None)
        .await;
    let list = list.as_array().cloned().unwrap_or_default();
    assert_eq!(list.len(), 8, "{list:?}");
    assert!(
        list.iter()
            .any(|d| d["forge"] == "forgejo" && d["ignored"].is_string())
    );
    assert!(
        list.iter()
            .any(|d| d["forge"] == "gitlab" && d["deployment_id"].is_i64())
    );

    // Over 1 MiB: 413. A rotated secret: the old one stops working.
    let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(1024 * 1024 + 1));
    let sent = send(&server, app, &[("X-GitHub-Event", "push")], &big).await;
    assert_eq!(sent.status, 413);
    let (_, rotated) = server
        .json("POST", &format!("/api/apps/{app}/webhook"), None)
        .await;
    assert_ne!(rotated["secret"].as_str(), Some(secret.as_str()));
    let body = payload("github-push-existing-branch", &first);
    let old = format!("sha256={}", hmac_hex(&secret, &body));
    let sent = send(
        &server,
        app,
        &[
            ("X-GitHub-Event", "push"),
            ("X-GitHub-Delivery", "after-rotation"),
            ("X-Hub-Signature-256", &old),
        ],
        &body,
    )
    .await;
    assert_eq!(sent.status, 401);
    // An unknown app looks like a wrong signature.
    let sent = send(&server, 999, &github, &body).await;
    assert_eq!(sent.status, 401);
    server.stop().await;
}
