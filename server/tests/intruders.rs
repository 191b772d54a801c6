//! Attacks on the real `slipway` binary, with the real Docker engine: a stranger reaching
//! a fresh install, credentials in a repository URL, and a sign-in flood while a
//! deployment streams. The server's memory is read from `/proc`, its processes' command
//! lines and environments too, and every line it prints is kept and searched.
#![allow(clippy::unwrap_used)]

mod common;

use common::{ADMIN_TOKEN, form_value, git_repo, header, http, http_with};
use protocol::{Event, Status};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");
const PASSWORD: &str = "correct horse battery staple";

/// A running `slipway` and everything it printed so far.
struct Slipway {
    child: tokio::process::Child,
    addr: SocketAddr,
    output: Arc<Mutex<String>>,
    /// Counts the lines printed: a change wakes [`Slipway::wait_for`].
    printed: tokio::sync::watch::Sender<u64>,
    /// The tasks reading stdout and stderr: done once the process has closed both.
    readers: Vec<tokio::task::JoinHandle<()>>,
}

impl Slipway {
    async fn start(data: &Path, vars: &[(&str, &str)]) -> Slipway {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_slipway"));
        command
            .env("SLIPWAY_ADDR", "127.0.0.1:0")
            .env("SLIPWAY_DATA_DIR", data)
            .env("SLIPWAY_ALLOW_LOCAL_REPOS", "1")
            .env("SLIPWAY_HEALTH_TIMEOUT_SECS", "20")
            // The edge (Caddy) is not what these tests attack.
            .env("SLIPWAY_EDGE_HTTP_ADDR", "off")
            .env("NO_COLOR", "1")
            .env_remove("SLIPWAY_ADMIN_TOKEN")
            .env_remove("SLIPWAY_PUBLIC_URL")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        for (name, value) in vars {
            command.env(name, value);
        }
        let mut child = command.spawn().unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        let (found, mut addr) = tokio::sync::mpsc::channel(1);
        let printed = tokio::sync::watch::Sender::new(0u64);
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let (output, found, printed) = (output.clone(), found.clone(), printed.clone());
            readers.push(tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(rest) = line.split("serving the dashboard on http://").nth(1) {
                        let _ = found.send(rest.trim().parse::<SocketAddr>().ok()).await;
                    }
                    {
                        let mut all = output.lock().unwrap();
                        all.push_str(&line);
                        all.push('\n');
                    }
                    printed.send_modify(|n| *n += 1);
                }
            }));
        }
        let addr = tokio::time::timeout(Duration::from_secs(60), addr.recv())
            .await
            .expect("the server starts")
            .flatten()
            .expect("it says where it listens");
        Slipway {
            child,
            addr,
            output,
            printed,
            readers,
        }
    }

    /// Everything printed so far, once it contains `needle` (within a minute).
    async fn wait_for(&self, needle: &str) -> String {
        let mut changed = self.printed.subscribe();
        tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let output = self.output();
                if output.contains(needle) {
                    return output;
                }
                changed.changed().await.expect("the output is still read");
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{needle:?} was never printed: {}", self.output()))
    }

    fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    async fn stop(mut self) -> String {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
        let _ = self.child.kill().await;
        // Every line it printed, to the last.
        for reader in self.readers.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(10), reader).await;
        }
        self.output()
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Every process below `root`: its pid, command line and environment (NUL-separated).
fn descendants(root: u32) -> Vec<(u32, String, String)> {
    let mut parent = HashMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // The command name is in parentheses and may hold spaces: the fields follow ')'.
        if let Some(ppid) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok())
        {
            parent.insert(pid, ppid);
        }
    }
    let below = |mut pid: u32| {
        while let Some(&up) = parent.get(&pid) {
            if up == root {
                return true;
            }
            if up <= 1 {
                return false;
            }
            pid = up;
        }
        false
    };
    parent
        .keys()
        .filter(|pid| below(**pid))
        .map(|pid| {
            let read = |what: &str| {
                std::fs::read(format!("/proc/{pid}/{what}"))
                    .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                    .unwrap_or_default()
            };
            (*pid, read("cmdline"), read("environ"))
        })
        .collect()
}

/// The one-time link a fresh install prints, and the files it keeps, are its owner's
/// only; a stranger who reaches it through its public address cannot claim it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_install_is_claimed_only_with_its_printed_link() {
    let dir = common::temp_dir("fresh");
    let data = dir.join("data");
    let slipway = Slipway::start(
        &data,
        &[("SLIPWAY_PUBLIC_URL", "https://deploy.example.com")],
    )
    .await;
    let addr = slipway.addr;
    let printed = slipway.wait_for("/setup?code=").await;
    let link = printed
        .split_whitespace()
        .find(|w| w.starts_with("https://deploy.example.com/setup?code="))
        .unwrap_or_else(|| panic!("no setup link printed: {printed}"));
    let code = link.split("code=").nth(1).unwrap();
    assert_eq!(code.len(), 32, "{link}");
    let file = data.join("setup-code");
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), code);

    // Nobody else on this machine may read the data: the directory, the database and its
    // journal, the setup code.
    assert_eq!(mode(&data), 0o700, "the data directory");
    assert_eq!(mode(&file), 0o600, "the setup code");
    for name in ["slipway.db", "slipway.db-wal", "slipway.db-shm"] {
        assert_eq!(mode(&data.join(name)), 0o600, "{name}");
    }

    // A stranger at the public address, with a matching Origin, guesses.
    let stranger = [
        FORM,
        ("Host", "deploy.example.com"),
        ("Origin", "https://deploy.example.com"),
    ];
    for guess in ["", "wrong", &code[..16]] {
        let form = format!(
            "code={guess}&username=stranger&password={0}&confirm={0}",
            form_value(PASSWORD)
        );
        let (status, head, _) =
            http_with(addr, "POST", "/auth/setup", Some(&form), &stranger).await;
        assert_eq!(status, 303, "{head}");
        assert_eq!(
            header(&head, "location").as_deref(),
            Some("/setup?error=code")
        );
    }
    let (status, head, _) =
        http_with(addr, "GET", "/", None, &[("Host", "deploy.example.com")]).await;
    assert_eq!(
        (status, header(&head, "location").as_deref()),
        (303, Some("/setup")),
        "still no account"
    );

    // The operator follows the link.
    let form = format!(
        "code={code}&username=root&password={0}&confirm={0}",
        form_value(PASSWORD)
    );
    let (status, head, _) = http_with(addr, "POST", "/auth/setup", Some(&form), &stranger).await;
    assert_eq!(
        (status, header(&head, "location").as_deref()),
        (303, Some("/")),
        "{head}"
    );
    assert!(!file.exists(), "the used code was left on disk");
    slipway.stop().await;

    // Once an account exists, a restart prints no link and writes no code.
    let again = Slipway::start(&data, &[]).await;
    let printed = again.stop().await;
    assert!(!printed.contains("setup?code="), "{printed}");
    assert!(!file.exists());
    let _ = std::fs::remove_dir_all(dir);
}

/// What a fake git host saw of each request: its path and `Authorization` header, and
/// what the server's processes showed while it was asked.
#[derive(Default)]
struct Seen {
    requests: Vec<(String, Option<String>)>,
    processes: Vec<(u32, String, String)>,
}

/// An HTTP server that answers every request 404 (git then says the repository does not
/// exist), recording what it was sent and, meanwhile, the processes below `server_pid`.
async fn fake_git_host(server_pid: Arc<Mutex<Option<u32>>>) -> (String, Arc<Mutex<Seen>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (record, server_pid) = (record.clone(), server_pid.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
                    match socket.read(&mut byte).await {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                let authorization = header(&head, "authorization");
                // git is connected right now: look at it.
                let processes = server_pid
                    .lock()
                    .unwrap()
                    .map(descendants)
                    .unwrap_or_default();
                {
                    let mut seen = record.lock().unwrap();
                    seen.requests.push((path, authorization));
                    seen.processes.extend(processes);
                }
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    )
                    .await;
            });
        }
    });
    (base, seen)
}

/// Queues a deployment of `app` on the server at `addr`; answers its id.
async fn deploy(addr: SocketAddr, app: i64) -> i64 {
    let body = json!({"appId": app}).to_string();
    let (status, body) = http(addr, "POST", "/api/deployments", Some(&body)).await;
    assert_eq!(status, 201, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_i64()
        .unwrap()
}

async fn follow(addr: SocketAddr, id: i64) -> common::Received {
    common::Viewer::connect(&format!("ws://{addr}/api/deployments/logs?id={id}"))
        .await
        .read_to_close(Duration::from_secs(120))
        .await
}

/// `https://user:token@host/repo.git`: the token reaches git (as a header, for that host
/// only), and nothing else: no API answer, page, log line, error message, command line
/// or environment of another process; git sees none of the server's environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repository_credentials_never_show() {
    const SECRET: &str = "s3cr3t-T0ken-4f9a2c";
    const USER: &str = "deploy-bot-7731";
    let dir = common::temp_dir("credentials");
    let pid = Arc::new(Mutex::new(None));
    let (base, seen) = fake_git_host(pid.clone()).await;
    let (other_base, other_seen) = fake_git_host(pid.clone()).await;
    let slipway = Slipway::start(
        &dir.join("data"),
        &[("SLIPWAY_ADMIN_TOKEN", ADMIN_TOKEN), ("RUST_LOG", "debug")],
    )
    .await;
    *pid.lock().unwrap() = Some(slipway.pid());
    let addr = slipway.addr;
    let clean = format!("{base}/team/repo.git");
    let with_secret = clean.replace("http://", &format!("http://{USER}:{SECRET}@"));
    let mut answers: Vec<String> = Vec::new();

    let (status, body) = http(
        addr,
        "POST",
        "/api/apps",
        Some(&json!({"name": "private", "repo_url": with_secret}).to_string()),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let app: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        app["repo_url"],
        json!(clean),
        "the URL is shown without credentials"
    );
    answers.push(body);
    let id = app["id"].as_i64().unwrap();
    // Error messages about such an app.
    for (method, path, body) in [
        (
            "POST",
            "/api/apps".to_owned(),
            json!({"name": "private", "repo_url": with_secret}),
        ),
        (
            "POST",
            "/api/apps".to_owned(),
            json!({"name": "other", "repo_url": with_secret, "branch": "-evil"}),
        ),
        (
            "PATCH",
            format!("/api/apps/{id}"),
            json!({"repo_url": with_secret, "port": 99999}),
        ),
    ] {
        let (status, answer) = http(addr, method, &path, Some(&body.to_string())).await;
        assert!(status >= 400, "{answer}");
        answers.push(answer);
    }

    let first = deploy(addr, id).await;
    let got = follow(addr, first).await;
    let last = got.statuses().pop().unwrap();
    assert_eq!(last.status, Status::Failed, "{last:?}");
    assert!(
        last.error_message.contains("not found"),
        "{}",
        last.error_message
    );
    answers.push(serde_json::to_string(&got.events).unwrap());

    // git got the credentials, as a header.
    // base64 of "deploy-bot-7731:s3cr3t-T0ken-4f9a2c" (Python's base64.b64encode).
    let expected = "Basic ZGVwbG95LWJvdC03NzMxOnMzY3IzdC1UMGtlbi00ZjlhMmM=".to_owned();
    {
        let seen = seen.lock().unwrap();
        assert!(!seen.requests.is_empty(), "git never asked");
        assert!(
            seen.requests
                .iter()
                .all(|(_, a)| a.as_deref() == Some(expected.as_str())),
            "{:?}",
            seen.requests
        );
        // While it was connected, no process showed them on its command line, and git
        // saw none of the server's environment.
        let git: Vec<_> = seen
            .processes
            .iter()
            .filter(|(_, cmd, _)| cmd.contains("git"))
            .collect();
        assert!(!git.is_empty(), "no git process seen: {:?}", seen.processes);
        for (pid, cmdline, environ) in &seen.processes {
            assert!(
                !cmdline.contains(SECRET) && !cmdline.contains(USER),
                "{pid}: {cmdline}"
            );
            assert!(
                !environ.contains(ADMIN_TOKEN),
                "{pid} ({cmdline}) sees the admin token"
            );
            assert!(
                !environ.contains("SLIPWAY_"),
                "{pid} ({cmdline}): {environ}"
            );
        }
    }

    // Every answer and page about the app and its deployment.
    for path in [
        "/api/apps".to_owned(),
        format!("/api/apps/{id}"),
        format!("/api/apps/{id}/deployments"),
        format!("/api/deployments/{first}"),
        format!("/api/deployments/{first}/logs"),
        format!("/api/deployments/{first}/lines?from=1&to=100"),
        "/".to_owned(),
        format!("/apps/{id}"),
        format!("/deployments/{first}"),
    ] {
        let (status, body) = http(addr, "GET", &path, None).await;
        assert_eq!(status, 200, "{path}: {body}");
        answers.push(body);
    }

    // Changing other settings keeps the credentials for the same host...
    let (status, body) = http(
        addr,
        "PATCH",
        &format!("/api/apps/{id}"),
        Some(&json!({"repo_url": clean, "branch": "release"}).to_string()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    answers.push(body);
    let before = seen.lock().unwrap().requests.len();
    let second = deploy(addr, id).await;
    answers.push(serde_json::to_string(&follow(addr, second).await.events).unwrap());
    {
        let seen = seen.lock().unwrap();
        assert!(seen.requests.len() > before);
        assert!(
            seen.requests[before..]
                .iter()
                .all(|(_, a)| a.as_deref() == Some(expected.as_str()))
        );
    }
    // ... and never sends them to another host.
    let moved = format!("{other_base}/team/repo.git");
    let (status, body) = http(
        addr,
        "PATCH",
        &format!("/api/apps/{id}"),
        Some(&json!({"repo_url": moved}).to_string()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let third = deploy(addr, id).await;
    answers.push(serde_json::to_string(&follow(addr, third).await.events).unwrap());
    {
        let other = other_seen.lock().unwrap();
        assert!(!other.requests.is_empty());
        assert!(
            other.requests.iter().all(|(_, a)| a.is_none()),
            "{:?}",
            other.requests
        );
    }

    let printed = slipway.stop().await;
    assert!(
        printed.contains("deployment ended"),
        "the log was captured: {printed}"
    );
    answers.push(printed);
    for text in &answers {
        assert!(!text.contains(SECRET), "the secret leaked: {text}");
        assert!(!text.contains(USER), "the user name leaked: {text}");
        assert!(
            !text.contains(&expected[6..]),
            "the encoded secret leaked: {text}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// A thousand sign-in attempts from two hundred addresses while a deployment streams:
/// the deployment's lines keep arriving, every one once, and the server's memory stays
/// within a few password hashes of where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_flood_neither_stalls_deployments_nor_takes_memory() {
    const ATTEMPTS: usize = 1000;
    const AT_ONCE: usize = 250;
    const ADDRESSES: usize = 200;
    let dir = common::temp_dir("flood");
    let slipway = Slipway::start(
        &dir.join("data"),
        &[
            ("SLIPWAY_ADMIN_TOKEN", ADMIN_TOKEN),
            ("RUST_LOG", "info,sqlx=warn"),
        ],
    )
    .await;
    let (addr, pid) = (slipway.addr, slipway.pid());

    // A build that prints a line every 50 ms for about half a minute.
    let repo = git_repo(
        &dir.join("ticks"),
        &[(
            "Dockerfile",
            "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
             RUN for i in $(seq 1 600); do echo \"tick $i\"; usleep 50000; done\n\
             CMD [\"/bin/sleep\", \"3600\"]\n",
        )],
    );
    let (status, body) = http(
        addr,
        "POST",
        "/api/apps",
        Some(&json!({"name": "ticks", "repo_url": repo.display().to_string()}).to_string()),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let app = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_i64()
        .unwrap();
    let id = deploy(addr, app).await;

    // The viewer notes when each line arrives.
    let arrivals = Arc::new(Mutex::new(Vec::<(Instant, u64, String)>::new()));
    let (ticking, mut started) = tokio::sync::mpsc::channel(1);
    let viewer = {
        let arrivals = arrivals.clone();
        let mut viewer =
            common::Viewer::connect(&format!("ws://{addr}/api/deployments/logs?id={id}")).await;
        tokio::spawn(async move {
            let mut events = Vec::new();
            while let Some(event) = viewer.next_event().await {
                if let Event::Log { data, .. } = &event {
                    if data.line.starts_with("tick") {
                        let _ = ticking.try_send(());
                    }
                    arrivals
                        .lock()
                        .unwrap()
                        .push((Instant::now(), data.seq, data.line.clone()));
                }
                let end = event.is_terminal();
                events.push(event);
                if end {
                    break;
                }
            }
            events
        })
    };
    tokio::time::timeout(Duration::from_secs(180), started.recv())
        .await
        .expect("the build starts printing");
    let (baseline, _) = common::memory_kib(&pid.to_string());

    // The flood: wrong passwords for many names, from many addresses, many at once.
    let clients: Vec<reqwest::Client> = (0..ADDRESSES)
        .map(|n| {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .local_address(IpAddr::from([
                    127,
                    0,
                    1 + (n / 250) as u8,
                    1 + (n % 250) as u8,
                ]))
                .build()
                .unwrap()
        })
        .collect();
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let mut peak = 0;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(common::memory_kib(&pid.to_string()).0);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            peak
        })
    };
    let flood_start = Instant::now();
    let limiter = Arc::new(tokio::sync::Semaphore::new(AT_ONCE));
    let mut attempts = Vec::new();
    for n in 0..ATTEMPTS {
        let client = clients[n % ADDRESSES].clone();
        let permit = limiter.clone().acquire_owned().await.unwrap();
        attempts.push(tokio::spawn(async move {
            let answer = client
                .post(format!("http://{addr}/auth/login"))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .header("Origin", format!("http://{addr}"))
                .body(format!("username=user{n}&password=guess+{n}&next=%2F"))
                .send()
                .await;
            drop(permit);
            answer.map(|r| r.status().as_u16()).unwrap_or(0)
        }));
    }
    let mut answered: HashMap<u16, usize> = HashMap::new();
    for attempt in attempts {
        *answered.entry(attempt.await.unwrap()).or_default() += 1;
    }
    let flood_end = Instant::now();
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let peak_sampled = sampler.await.unwrap();

    let events = tokio::time::timeout(Duration::from_secs(300), viewer)
        .await
        .expect("the deployment ends")
        .unwrap();
    let (_, high_water) = common::memory_kib(&pid.to_string());
    let during: usize = arrivals
        .lock()
        .unwrap()
        .iter()
        .filter(|(at, _, _)| *at >= flood_start && *at <= flood_end)
        .count();
    // The longest wait between two deployment lines from the flood's start to its end
    // (the build prints one every 50 ms).
    let longest_gap = {
        let arrivals = arrivals.lock().unwrap();
        let mut times: Vec<Instant> = arrivals
            .iter()
            .map(|(at, _, _)| *at)
            .filter(|at| *at <= flood_end)
            .collect();
        times.push(flood_end);
        times
            .windows(2)
            .filter(|w| w[1] >= flood_start)
            .map(|w| w[1] - w[0].max(flood_start))
            .max()
            .unwrap_or_default()
    };
    println!(
        "sign-in flood: {ATTEMPTS} attempts ({AT_ONCE} at once, {ADDRESSES} addresses) in {:.1} s, answers {answered:?}; \
         {during} deployment lines arrived meanwhile, at most {} ms apart; \
         server RSS {} MiB before, {} MiB peak sampled, {} MiB high-water mark",
        (flood_end - flood_start).as_secs_f64(),
        longest_gap.as_millis(),
        baseline / 1024,
        peak_sampled / 1024,
        high_water / 1024
    );
    // Every attempt was answered: refused with a reason, never an error or a dropped
    // connection; most were refused before hashing.
    assert_eq!(
        answered.keys().filter(|s| ![303, 429].contains(*s)).count(),
        0,
        "{answered:?}"
    );
    assert!(
        answered.get(&429).copied().unwrap_or(0) > ATTEMPTS / 2,
        "{answered:?}"
    );
    // The deployment went on: lines arrived during the flood, and all of them once.
    assert!(during > 0, "no deployment line arrived during the flood");
    assert!(
        longest_gap < Duration::from_secs(5),
        "the deployment's lines stalled for {longest_gap:?} during the flood"
    );
    let last = events.iter().rev().find_map(|e| match e {
        Event::Status { data, .. } => Some(data.clone()),
        _ => None,
    });
    assert_eq!(last.map(|s| s.status), Some(Status::Success));
    let seqs: Vec<u64> = arrivals
        .lock()
        .unwrap()
        .iter()
        .map(|(_, s, _)| *s)
        .collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    let ticks = arrivals
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, _, l)| l.starts_with("tick "))
        .count();
    assert_eq!(ticks, 600);
    // Memory: a few hashes' worth (19 MiB each) above where it was, not one per attempt.
    let grew = high_water.saturating_sub(baseline) / 1024;
    assert!(grew < 100, "the server grew by {grew} MiB during the flood");

    let (status, _) = http(addr, "DELETE", &format!("/api/apps/{app}"), None).await;
    assert_eq!(status, 204);
    slipway.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}
