//! The built `slipway` binary as a client of a real server on the real Docker engine:
//! `deploy --follow` prints exactly the stored log and exits with the deployment's
//! outcome (0, 1, 3), a monitor socket cut by a proxy the test controls resumes with no
//! line lost or doubled, and every other command, error and exit code of PROTOCOL.md's
//! CLI section.
#![allow(clippy::unwrap_used)]

mod common;

use common::{ADMIN_TOKEN, BROKEN_DOCKERFILE, HTTPD_DOCKERFILE, TestServer, git_repo};
use protocol::{App, Deployment, Status};
use serde_json::json;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Longest a command may take (a build on the real engine included).
const LIMIT: Duration = Duration::from_secs(180);

/// A web app whose build prints a line a second for `n` seconds: long enough to cut its
/// monitor or cancel it midway.
fn slow_dockerfile(n: u32) -> String {
    HTTPD_DOCKERFILE.replacen(
        "EXPOSE 8080",
        &format!("RUN for i in $(seq 1 {n}); do echo \"slow line $i\"; sleep 1; done\nEXPOSE 8080"),
        1,
    )
}

/// How the test runs the binary: against `url`, with `token`, and a home directory of its
/// own (so no credentials of the machine's user are read).
struct Slipway {
    url: String,
    token: Option<String>,
    home: PathBuf,
}

impl Slipway {
    fn new(url: String, home: &Path) -> Slipway {
        Slipway {
            url,
            token: Some(ADMIN_TOKEN.into()),
            home: home.to_owned(),
        }
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_slipway"));
        command
            .args(args)
            .env("SLIPWAY_URL", &self.url)
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        match &self.token {
            Some(token) => command.env("SLIPWAY_TOKEN", token),
            None => command.env_remove("SLIPWAY_TOKEN"),
        };
        command
    }

    async fn run(&self, args: &[&str]) -> Ran {
        let output = tokio::time::timeout(LIMIT, self.command(args).output())
            .await
            .unwrap_or_else(|_| panic!("slipway {args:?} did not end"))
            .expect("slipway runs");
        Ran::of(args, output)
    }
}

/// One run of the binary.
struct Ran {
    args: String,
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
}

impl Ran {
    fn of(args: &[&str], output: Output) -> Ran {
        Ran {
            args: args.join(" "),
            code: output.status.code(),
            stdout: output.stdout,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Exits with `code`; answers self for more checks.
    #[track_caller]
    fn exits(&self, code: i32) -> &Ran {
        assert_eq!(
            self.code,
            Some(code),
            "slipway {}\n--- stdout\n{}\n--- stderr\n{}",
            self.args,
            self.stdout(),
            self.stderr
        );
        self
    }

    /// Fails with exit code 2 and a message on stderr holding every one of `parts`.
    #[track_caller]
    fn refused_with(&self, parts: &[&str]) {
        self.exits(2);
        for part in parts {
            assert!(
                self.stderr.contains(part),
                "slipway {}: stderr lacks {part:?}:\n{}",
                self.args,
                self.stderr
            );
        }
        assert!(
            !self.stderr.contains(ADMIN_TOKEN),
            "a message never shows the token"
        );
    }
}

/// The stored log, as `GET /api/deployments/{id}/logs` answers it.
async fn stored_log(server: &TestServer, id: i64) -> Vec<u8> {
    let (status, body) = server
        .request("GET", &format!("/api/deployments/{id}/logs"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    body.into_bytes()
}

async fn deployment(server: &TestServer, id: i64) -> Deployment {
    let (status, body) = server
        .json("GET", &format!("/api/deployments/{id}"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_value(body).unwrap()
}

/// Creates an app through the API, answers its id.
async fn create_app(server: &TestServer, name: &str, dockerfile: &str, port: Option<u16>) -> i64 {
    let repo = git_repo(&server.dir.join(name), &[("Dockerfile", dockerfile)]);
    let (status, app) = server
        .json(
            "POST",
            "/api/apps",
            Some(json!({"name": name, "repo_url": repo.display().to_string(), "port": port})),
        )
        .await;
    assert_eq!(status, 201, "{app}");
    app["id"].as_i64().unwrap()
}

/// The id of the app's newest deployment.
async fn last_deployment(server: &TestServer, app: i64) -> i64 {
    let (status, app) = server.json("GET", &format!("/api/apps/{app}"), None).await;
    assert_eq!(status, 200, "{app}");
    app["last_deployment"]["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no deployment yet: {app}"))
}

/// A child `slipway` whose stdout is read as it comes.
struct Following {
    child: tokio::process::Child,
    stdout: BufReader<tokio::process::ChildStdout>,
    received: Vec<u8>,
    args: Vec<String>,
}

impl Following {
    fn start(slipway: &Slipway, args: &[&str]) -> Following {
        let mut child = slipway.command(args).spawn().expect("slipway starts");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Following {
            child,
            stdout,
            received: Vec::new(),
            args: args.iter().map(|a| a.to_string()).collect(),
        }
    }

    /// Reads stdout until a line holds `marker`.
    async fn read_until(&mut self, marker: &str) {
        tokio::time::timeout(LIMIT, async {
            loop {
                let start = self.received.len();
                let n = self
                    .stdout
                    .read_until(b'\n', &mut self.received)
                    .await
                    .unwrap();
                assert!(n > 0, "stdout ended before {marker:?}");
                if String::from_utf8_lossy(&self.received[start..]).contains(marker) {
                    return;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {marker:?} on stdout"));
    }

    async fn finish(mut self) -> Ran {
        let mut stderr = self.child.stderr.take().unwrap();
        let (rest, errors, status) = tokio::time::timeout(LIMIT, async {
            let mut rest = Vec::new();
            let mut errors = Vec::new();
            let (a, b) = tokio::join!(
                self.stdout.read_to_end(&mut rest),
                stderr.read_to_end(&mut errors)
            );
            a.unwrap();
            b.unwrap();
            (rest, errors, self.child.wait().await.unwrap())
        })
        .await
        .expect("slipway ends");
        self.received.extend_from_slice(&rest);
        Ran {
            args: self.args.join(" "),
            code: status.code(),
            stdout: self.received,
            stderr: String::from_utf8_lossy(&errors).into_owned(),
        }
    }
}

#[tokio::test]
async fn deploy_follow_prints_the_stored_log_and_exits_0() {
    let server = TestServer::start("cli-deploy").await;
    let slipway = Slipway::new(format!("http://{}", server.addr), &server.dir);
    let repo = git_repo(
        &server.dir.join("hello"),
        &[("Dockerfile", HTTPD_DOCKERFILE)],
    );
    let repo = repo.display().to_string();

    let created = slipway
        .run(&[
            "apps",
            "create",
            "hello",
            "--repo",
            &repo,
            "--port",
            "8080",
            "--env",
            "GREETING=hi there",
            "--env",
            "EMPTY=",
        ])
        .await;
    assert!(
        created.exits(0).stdout().contains("hello"),
        "{}",
        created.stdout()
    );
    let listed = slipway.run(&["apps"]).await;
    let table = listed.exits(0).stdout();
    assert!(
        table.starts_with("NAME") && table.contains("hello") && table.contains("never deployed"),
        "{table}"
    );

    let ran = slipway.run(&["deploy", "hello", "--follow"]).await;
    ran.exits(0);
    let (_, app) = server.json("GET", "/api/apps", None).await;
    let apps: Vec<App> = serde_json::from_value(app).unwrap();
    let id = apps[0].last_deployment.as_ref().unwrap().id;
    let log = stored_log(&server, id).await;
    assert!(String::from_utf8_lossy(&log).contains("build line 3"));
    assert_eq!(
        String::from_utf8_lossy(&ran.stdout),
        String::from_utf8_lossy(&log),
        "stdout is the stored log"
    );
    assert_eq!(ran.stdout, log, "byte for byte");
    for part in [
        format!("Deployment {id} of hello queued"),
        format!("deployment {id}: cloning (20%)"),
        format!("deployment {id}: building (50%)"),
        format!("deployment {id}: deploying (80%)"),
        format!("deployment {id}: success in "),
        "Live at http://127.0.0.1:".to_owned(),
    ] {
        assert!(
            ran.stderr.contains(&part),
            "stderr lacks {part:?}:\n{}",
            ran.stderr
        );
    }
    assert!(
        !ran.stderr.contains('\u{1b}'),
        "no progress bar or colour when stderr is not a terminal:\n{}",
        ran.stderr
    );

    // The listing and the API's JSON.
    let json = slipway.run(&["apps", "--json"]).await;
    let apps: Vec<App> = serde_json::from_slice(&json.exits(0).stdout).unwrap();
    assert_eq!(apps[0].name, "hello");
    let mut keys = apps[0].env_keys.clone();
    keys.sort();
    assert_eq!(
        keys,
        ["EMPTY", "GREETING"],
        "names only: values are never echoed"
    );
    assert_eq!(apps[0].port, Some(8080));
    assert_eq!(
        apps[0].last_deployment.as_ref().map(|d| d.status),
        Some(Status::Success)
    );
    let table = slipway.run(&["apps"]).await.stdout();
    let row = table
        .lines()
        .find(|l| l.starts_with("hello"))
        .unwrap()
        .to_owned();
    assert!(
        row.contains("success")
            && row.contains(&id.to_string())
            && row.contains("http://127.0.0.1:"),
        "{row}"
    );

    // status, plain and JSON.
    let status = slipway.run(&["status", &id.to_string(), "--json"]).await;
    let shown: Deployment = serde_json::from_slice(&status.exits(0).stdout).unwrap();
    assert_eq!(shown, deployment(&server, id).await);
    let plain = slipway.run(&["status", &id.to_string()]).await;
    let text = plain.exits(0).stdout();
    assert!(
        text.contains("status      success") && text.contains("progress    100%"),
        "{text}"
    );

    // logs: whole, after line N, and followed after the end (the server sends the
    // terminal status first, then the lines, then the terminal status again).
    let whole = slipway.run(&["logs", &id.to_string()]).await;
    assert_eq!(whole.exits(0).stdout, log);
    let lines: Vec<&[u8]> = log.split_inclusive(|b| *b == b'\n').collect();
    assert!(lines.len() > 5);
    let since = slipway
        .run(&["logs", &id.to_string(), "--since", "3"])
        .await;
    assert_eq!(since.exits(0).stdout, lines[3..].concat());
    let beyond = slipway
        .run(&["logs", &id.to_string(), "--since", "100000"])
        .await;
    assert!(beyond.exits(0).stdout.is_empty());
    let late = slipway.run(&["logs", &id.to_string(), "--follow"]).await;
    assert_eq!(
        late.exits(0).stdout,
        log,
        "a late follower gets every line once"
    );
    let late_since = slipway
        .run(&["logs", &id.to_string(), "--follow", "--since", "3"])
        .await;
    assert_eq!(late_since.exits(0).stdout, lines[3..].concat());

    // deploy without --follow prints the id alone; cancel stops it; a second cancel is
    // refused with the server's message; following it afterwards exits 3.
    let queued = slipway.run(&["deploy", &apps[0].id.to_string()]).await;
    let second: i64 = queued
        .exits(0)
        .stdout()
        .trim()
        .parse()
        .expect("stdout is the id");
    assert!(second > id);
    let cancelled = slipway.run(&["cancel", &second.to_string()]).await;
    assert!(
        cancelled
            .exits(0)
            .stdout()
            .contains(&format!("deployment {second}: cancelled")),
        "{}",
        cancelled.stdout()
    );
    assert_eq!(deployment(&server, second).await.status, Status::Cancelled);
    slipway
        .run(&["cancel", &second.to_string()])
        .await
        .refused_with(&[&second.to_string(), "(conflict)"]);
    let followed = slipway
        .run(&["logs", &second.to_string(), "--follow"])
        .await;
    assert_eq!(followed.exits(3).stdout, stored_log(&server, second).await);
    assert!(
        followed
            .stderr
            .contains(&format!("deployment {second}: cancelled"))
    );

    // A second success, then a rollback to the first: its image starts again (no clone,
    // no build), followed like a deploy.
    slipway.run(&["deploy", "hello", "--follow"]).await.exits(0);
    let rolled = slipway
        .run(&["rollback", "hello", "--to", &id.to_string(), "--follow"])
        .await;
    rolled.exits(0);
    let (_, history) = server
        .json(
            "GET",
            &format!("/api/apps/{}/deployments", apps[0].id),
            None,
        )
        .await;
    let history: Vec<Deployment> = serde_json::from_value(history).unwrap();
    let newest = history.iter().max_by_key(|d| d.id).unwrap();
    assert_eq!(newest.image_from, Some(id), "{history:#?}");
    assert_eq!(newest.status, Status::Success);
    assert!(
        rolled
            .stderr
            .contains(&format!("deployment {}: deploying", newest.id))
            && !rolled.stderr.contains("building"),
        "{}",
        rolled.stderr
    );
    assert_eq!(rolled.stdout, stored_log(&server, newest.id).await);

    // Runtime logs: what the running containers printed, with Slipway's switch lines.
    let app_logs = slipway.run(&["app-logs", "hello"]).await;
    let text = app_logs.exits(0).stdout();
    let (_, kept) = server
        .request("GET", &format!("/api/apps/{}/logs", apps[0].id), None)
        .await;
    assert!(
        text.contains("[slipway] now serving container") && text == kept,
        "{text}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_failing_build_exits_1_and_says_why() {
    let server = TestServer::start("cli-broken").await;
    let slipway = Slipway::new(format!("http://{}", server.addr), &server.dir);
    let app = create_app(&server, "broken", BROKEN_DOCKERFILE, None).await;
    let ran = slipway.run(&["deploy", "broken", "--follow"]).await;
    ran.exits(1);
    let id = last_deployment(&server, app).await;
    let log = stored_log(&server, id).await;
    assert!(String::from_utf8_lossy(&log).contains("about-to-fail"));
    assert_eq!(ran.stdout, log);
    let failed = deployment(&server, id).await;
    assert_eq!(failed.status, Status::Failed);
    assert!(
        ran.stderr.contains(&format!(
            "deployment {id}: failed in building: {}",
            failed.error_message
        )),
        "{}",
        ran.stderr
    );
    assert!(
        failed.error_message.contains("exit code 3"),
        "{}",
        failed.error_message
    );
    // Without --follow, `status` of a failed deployment worked: exit 0.
    let status = slipway.run(&["status", &id.to_string()]).await;
    assert!(
        status.exits(0).stdout().contains("failed in   building"),
        "{}",
        status.stdout()
    );
    server.stop().await;
}

#[tokio::test]
async fn a_deployment_cancelled_while_followed_exits_3() {
    let server = TestServer::start("cli-cancel").await;
    let slipway = Slipway::new(format!("http://{}", server.addr), &server.dir);
    let app = create_app(&server, "slow", &slow_dockerfile(60), Some(8080)).await;
    let mut following = Following::start(&slipway, &["deploy", "slow", "--follow"]);
    following.read_until("slow line 1").await;
    let id = last_deployment(&server, app).await;
    let (status, body) = server
        .request("POST", &format!("/api/deployments/{id}/cancel"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let ran = following.finish().await;
    ran.exits(3);
    assert_eq!(ran.stdout, stored_log(&server, id).await);
    assert!(
        ran.stderr.contains(&format!("deployment {id}: cancelled")),
        "{}",
        ran.stderr
    );
    server.stop().await;
}

#[tokio::test]
async fn a_cut_connection_resumes_with_no_line_lost_or_doubled() {
    let server = TestServer::start("cli-cut").await;
    let proxy = Proxy::start(server.addr).await;
    let slipway = Slipway::new(format!("http://{}", proxy.addr), &server.dir);
    let app = create_app(&server, "cut", &slow_dockerfile(8), Some(8080)).await;
    let following = Following::start(&slipway, &["deploy", "cut", "--follow"]);
    // Cut mid-build, then refuse the first two reconnections: the client backs off and
    // tries again. Then cut once more.
    proxy.wait_for("slow line 2").await;
    proxy.sever(2);
    proxy.wait_for("slow line 5").await;
    proxy.sever(0);
    let ran = following.finish().await;
    ran.exits(0);
    let id = last_deployment(&server, app).await;
    let log = stored_log(&server, id).await;
    assert!(String::from_utf8_lossy(&log).contains("slow line 8"));
    assert_eq!(
        String::from_utf8_lossy(&ran.stdout),
        String::from_utf8_lossy(&log),
        "every line once, in order"
    );
    assert_eq!(proxy.refused(), 2, "both refusals were met");
    assert!(ran.stderr.contains("connection lost"), "{}", ran.stderr);
    let monitors = proxy.monitor_requests();
    assert!(monitors.len() >= 3, "{monitors:#?}");
    let sinces: Vec<u64> = monitors
        .iter()
        .map(|request| {
            let query = request.split_once("since=").unwrap().1;
            query
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(sinces[0], 0, "{monitors:#?}");
    assert!(
        sinces.windows(2).all(|w| w[0] < w[1]),
        "each resume starts after the last line received: {monitors:#?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn credentials_and_refusals_exit_2_with_a_clear_message() {
    let server = TestServer::start_synthetic("cli-errors").await;
    let url = format!("http://{}", server.addr);
    let home = server.dir.join("home");
    let mut slipway = Slipway::new(url.clone(), &home);
    let app = create_app(&server, "present", "FROM scratch\n", None).await;

    // A wrong token, on the API and on the monitor socket (close 4401).
    slipway.token = Some("not-the-right-token".into());
    slipway.run(&["apps"]).await.refused_with(&[
        "refused the token in SLIPWAY_TOKEN",
        "the bearer token is not valid",
        "API tokens page",
    ]);
    slipway
        .run(&["logs", "1", "--follow"])
        .await
        .refused_with(&["refused the token in SLIPWAY_TOKEN"]);
    slipway.token = None;
    slipway.run(&["apps"]).await.refused_with(&[
        "needs an API token",
        "SLIPWAY_TOKEN",
        "slipway login",
    ]);
    slipway.token = Some(ADMIN_TOKEN.into());

    // Nobody listening.
    let nowhere = Slipway::new(format!("http://127.0.0.1:{}", common::free_port()), &home);
    nowhere
        .run(&["apps"])
        .await
        .refused_with(&["cannot reach Slipway at http://127.0.0.1:", "SLIPWAY_URL"]);
    nowhere
        .run(&["logs", "3", "--follow"])
        .await
        .refused_with(&["cannot reach Slipway"]);
    Slipway::new("localhost:3000".into(), &home)
        .run(&["apps"])
        .await
        .refused_with(&["SLIPWAY_URL", "is not a URL"]);

    // The server's own messages.
    slipway
        .run(&["status", "999"])
        .await
        .refused_with(&["deployment 999 does not exist", "(not_found)"]);
    slipway
        .run(&["logs", "999", "--follow"])
        .await
        .refused_with(&["deployment 999 does not exist"]);
    slipway
        .run(&["deploy", "absent"])
        .await
        .refused_with(&["no app is named \"absent\"", "present"]);
    slipway
        .run(&["apps", "create", "Bad_Name", "--repo", "/srv/x"])
        .await
        .refused_with(&["name"]);
    // Nothing to roll back to: the server's reason.
    let id = app.to_string();
    slipway
        .run(&["rollback", "present"])
        .await
        .refused_with(&["no earlier successful deployment", "(conflict)"]);
    slipway
        .run(&["rollback", id.as_str(), "--to", "999"])
        .await
        .refused_with(&["deployment 999 does not exist", "(not_found)"]);
    slipway
        .run(&["app-logs", "absent"])
        .await
        .refused_with(&["no app is named \"absent\""]);

    // clap's usage errors.
    for args in [
        &["deploy"][..],
        &["logs", "abc"],
        &["status", "0"],
        &["apps", "create", "x"],
        &["bogus"],
    ] {
        let ran = slipway.run(args).await;
        assert!(ran.exits(2).stderr.contains("error:"), "{}", ran.stderr);
    }
    let help = slipway.run(&["serve", "--help"]).await;
    assert!(
        help.exits(0).stdout().contains("SLIPWAY_DATA_DIR"),
        "{}",
        help.stdout()
    );

    // login: a refused token saves nothing; a good one is saved for its owner only and
    // used when the environment says nothing, but never sent to another server.
    let credentials = home.join(".config/slipway/credentials");
    slipway.token = None;
    slipway
        .run(&["login", "--url", &url, "--token", "wrong-token"])
        .await
        .refused_with(&["refused this token", "nothing was saved"]);
    assert!(!credentials.exists());
    let login = slipway
        .run(&["login", "--url", &url, "--token", ADMIN_TOKEN])
        .await;
    assert!(
        login.exits(0).stdout().contains("Logged in"),
        "{}",
        login.stdout()
    );
    assert!(!login.stdout().contains(ADMIN_TOKEN));
    let mode = std::fs::metadata(&credentials)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&credentials).unwrap()).unwrap();
    assert_eq!(saved, json!({"url": url, "token": ADMIN_TOKEN}));
    let mut command = slipway.command(&["apps", "--json"]);
    command.env_remove("SLIPWAY_URL");
    let output = command.output().await.unwrap();
    let ran = Ran::of(&["apps", "--json", "(saved credentials)"], output);
    let apps: Vec<App> = serde_json::from_slice(&ran.exits(0).stdout).unwrap();
    assert_eq!(apps[0].name, "present");
    let elsewhere = Slipway {
        token: None,
        ..Slipway::new(format!("http://localhost:{}", server.addr.port()), &home)
    };
    elsewhere
        .run(&["apps"])
        .await
        .refused_with(&["needs an API token"]);
    server.stop().await;
}

/// A TCP proxy in front of the server that the test can sever: every open connection is
/// dropped at once, and the next `refuse` connections are closed as soon as accepted.
struct Proxy {
    addr: SocketAddr,
    state: Arc<ProxyState>,
}

struct ProxyState {
    generation: tokio::sync::watch::Sender<u64>,
    /// Everything the server sent on monitor connections, to wait for a line.
    monitor_bytes: tokio::sync::watch::Sender<Vec<u8>>,
    /// The request line of each monitor connection.
    monitor_requests: std::sync::Mutex<Vec<String>>,
    refuse: AtomicUsize,
    refused: AtomicUsize,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ProxyState {
            generation: tokio::sync::watch::channel(0).0,
            monitor_bytes: tokio::sync::watch::channel(Vec::new()).0,
            monitor_requests: std::sync::Mutex::new(Vec::new()),
            refuse: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
        });
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let refuse = shared.refuse.load(Ordering::SeqCst);
                if refuse > 0 {
                    shared.refuse.store(refuse - 1, Ordering::SeqCst);
                    shared.refused.fetch_add(1, Ordering::SeqCst);
                    drop(client);
                    continue;
                }
                tokio::spawn(relay(client, upstream, shared.clone()));
            }
        });
        Proxy { addr, state }
    }

    fn sever(&self, then_refuse: usize) {
        self.state.refuse.store(then_refuse, Ordering::SeqCst);
        self.state.generation.send_modify(|g| *g += 1);
    }

    async fn wait_for(&self, marker: &str) {
        let mut bytes = self.state.monitor_bytes.subscribe();
        tokio::time::timeout(LIMIT, async {
            loop {
                if String::from_utf8_lossy(&bytes.borrow_and_update()).contains(marker) {
                    return;
                }
                bytes.changed().await.unwrap();
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{marker:?} never went through the proxy"));
    }

    fn refused(&self) -> usize {
        self.state.refused.load(Ordering::SeqCst)
    }

    fn monitor_requests(&self) -> Vec<String> {
        self.state.monitor_requests.lock().unwrap().clone()
    }
}

async fn relay(client: TcpStream, upstream: SocketAddr, state: Arc<ProxyState>) {
    let mut severed = state.generation.subscribe();
    severed.borrow_and_update();
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    // The request head tells a monitor connection from the rest.
    let mut head = Vec::new();
    let mut buffer = vec![0u8; 16 * 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match client_read.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buffer[..n]),
        }
    }
    let request_line = String::from_utf8_lossy(&head)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    let monitor = request_line.starts_with("GET /api/deployments/logs");
    if monitor {
        state.monitor_requests.lock().unwrap().push(request_line);
    }
    if server_write.write_all(&head).await.is_err() {
        return;
    }
    let up = async {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
        let _ = server_write.shutdown().await;
    };
    let down = async {
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            let n = match server_read.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if monitor {
                state
                    .monitor_bytes
                    .send_modify(|bytes| bytes.extend_from_slice(&buffer[..n]));
            }
            if client_write.write_all(&buffer[..n]).await.is_err() {
                break;
            }
        }
        let _ = client_write.shutdown().await;
    };
    tokio::select! {
        _ = async { tokio::join!(up, down) } => {}
        // Severed: both sockets are dropped, mid-frame or not.
        _ = severed.changed() => {}
    }
}
