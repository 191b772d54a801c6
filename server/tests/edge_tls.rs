//! HTTPS at the edge for real: Caddy obtains a certificate for an app's domain through
//! ACME from Debian's `pebble` (which validates the HTTP-01 challenge against the edge,
//! names resolved by `pebble-challtestsrv`'s mock DNS), and the test fetches the app over
//! TLS, verifying the chain against pebble's root. Then `SLIPWAY_TLS=internal`, with
//! Caddy's own CA.

mod common;

use common::{TestServer, free_port, git_repo};
use protocol::Status;
use serde_json::json;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(180);

const APP: &str = "FROM scratch
COPY busybox /bin/busybox
RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]
RUN mkdir -p /www && echo \"over tls\" > /www/index.html
EXPOSE 8080
CMD [\"/bin/httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]
";

/// Pebble and its mock DNS, stopped when dropped.
struct Pebble {
    children: Vec<Child>,
    directory: String,
    /// The CA of pebble's own HTTPS listener (Caddy trusts it for the directory).
    listener_ca: std::path::PathBuf,
    management: u16,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Pebble {
    /// Starts pebble on free ports; its validation connects to `http_port` (the edge).
    fn start(dir: &Path, http_port: u16, tls_port: u16) -> Pebble {
        std::fs::create_dir_all(dir).expect("pebble dir");
        // A small CA, and pebble's listener certificate signed by it (rustls, like any
        // strict client, wants a CA as the anchor, not the leaf itself).
        let (ca, ca_key) = (dir.join("ca.crt"), dir.join("ca.key"));
        let (cert, key, csr) = (
            dir.join("listener.crt"),
            dir.join("listener.key"),
            dir.join("listener.csr"),
        );
        let extensions = dir.join("listener.ext");
        std::fs::write(
            &extensions,
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .expect("extensions");
        let openssl = |args: &[&std::ffi::OsStr]| {
            let made = Command::new("openssl")
                .args(args)
                .stderr(Stdio::null())
                .status()
                .expect("openssl");
            assert!(made.success(), "openssl {args:?}");
        };
        let os = |s: &'static str| std::ffi::OsStr::new(s);
        openssl(&[
            os("req"),
            os("-x509"),
            os("-newkey"),
            os("ec"),
            os("-pkeyopt"),
            os("ec_paramgen_curve:P-256"),
            os("-nodes"),
            os("-days"),
            os("2"),
            os("-subj"),
            os("/CN=pebble-test-ca"),
            os("-keyout"),
            ca_key.as_os_str(),
            os("-out"),
            ca.as_os_str(),
        ]);
        openssl(&[
            os("req"),
            os("-newkey"),
            os("ec"),
            os("-pkeyopt"),
            os("ec_paramgen_curve:P-256"),
            os("-nodes"),
            os("-subj"),
            os("/CN=pebble-listener"),
            os("-keyout"),
            key.as_os_str(),
            os("-out"),
            csr.as_os_str(),
        ]);
        openssl(&[
            os("x509"),
            os("-req"),
            os("-in"),
            csr.as_os_str(),
            os("-CA"),
            ca.as_os_str(),
            os("-CAkey"),
            ca_key.as_os_str(),
            os("-CAcreateserial"),
            os("-days"),
            os("2"),
            os("-extfile"),
            extensions.as_os_str(),
            os("-out"),
            cert.as_os_str(),
        ]);
        let (acme, management, dns, dns_management) =
            (free_port(), free_port(), free_port(), free_port());
        let config = json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{acme}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": cert,
            "privateKey": key,
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        std::fs::write(dir.join("pebble.json"), config.to_string()).expect("pebble config");
        let log = |name: &str| std::fs::File::create(dir.join(name)).expect("log file");
        // Every name resolves to 127.0.0.1; its own challenge servers stay off (the edge
        // answers the challenges).
        let challtestsrv = Command::new("pebble-challtestsrv")
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-dns01", &format!("127.0.0.1:{dns}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{dns_management}")])
            .stdout(log("challtestsrv.log"))
            .stderr(log("challtestsrv.err"))
            .spawn()
            .expect("pebble-challtestsrv (Debian's pebble package)");
        let pebble = Command::new("pebble")
            .arg("-config")
            .arg(dir.join("pebble.json"))
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            // No random sleeps before validation, no injected bad nonces.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(log("pebble.log"))
            .stderr(log("pebble.err"))
            .spawn()
            .expect("pebble (Debian's pebble package)");
        Pebble {
            children: vec![challtestsrv, pebble],
            directory: format!("https://127.0.0.1:{acme}/dir"),
            listener_ca: ca,
            management,
        }
    }

    /// The root pebble issues under (made anew at each start), once pebble answers.
    async fn issuing_root(&self) -> reqwest::Certificate {
        let listener = std::fs::read(&self.listener_ca).expect("listener CA");
        let client = reqwest::Client::builder()
            .no_proxy()
            .add_root_certificate(reqwest::Certificate::from_pem(&listener).expect("pem"))
            .build()
            .expect("client");
        let url = format!("https://127.0.0.1:{}/roots/0", self.management);
        let began = Instant::now();
        loop {
            if let Ok(response) = client.get(&url).send().await
                && response.status() == 200
            {
                let pem = response.bytes().await.expect("root");
                return reqwest::Certificate::from_pem(&pem).expect("pebble's root");
            }
            assert!(
                began.elapsed() < Duration::from_secs(30),
                "pebble did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A client that trusts only `root` and finds `host` at the edge on loopback.
fn tls_client(root: reqwest::Certificate, host: &str, port: u16) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(root)
        .resolve(host, std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// Deploys an app answering `over tls`, with `domains`; waits for success.
async fn deploy(server: &TestServer, name: &str, domains: serde_json::Value) {
    let repo = git_repo(&server.dir.join(name), &[("Dockerfile", APP)]);
    let (status, app) = server
        .json(
            "POST",
            "/api/apps",
            Some(json!({"name": name, "repo_url": repo.display().to_string(), "port": 8080, "domains": domains})),
        )
        .await;
    assert_eq!(status, 201, "{app}");
    let (status, d) = server
        .json(
            "POST",
            "/api/deployments",
            Some(json!({"appId": app["id"]})),
        )
        .await;
    assert_eq!(status, 201, "{d}");
    let got = server
        .ws(&format!("id={}", d["id"]))
        .await
        .read_to_close(LIMIT)
        .await;
    let end = got.statuses().last().cloned().expect("a status");
    assert_eq!(end.status, Status::Success, "{}", end.error_message);
}

/// GETs `url` until it answers `over tls` (the certificate may still be on its way).
async fn until_served(client: &reqwest::Client, url: &str) -> Duration {
    let began = Instant::now();
    loop {
        let last = match client.get(url).send().await {
            Ok(response) if response.status() == 200 => {
                let text = response.text().await.unwrap_or_default();
                assert_eq!(text, "over tls\n");
                return began.elapsed();
            }
            Ok(response) => format!("HTTP {}", response.status()),
            Err(e) => format!("{e:?}"),
        };
        assert!(
            began.elapsed() < Duration::from_secs(90),
            "{url} never answered over TLS: {last}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_acme_and_the_app_over_tls() {
    let (http, https) = (free_port(), free_port());
    let dir = common::temp_dir("pebble");
    let pebble = Pebble::start(&dir, http, https);
    let root = pebble.issuing_root().await;
    let server = TestServer::start_with_vars(
        "edge-acme",
        &[
            ("SLIPWAY_EDGE_HTTP_ADDR", format!("127.0.0.1:{http}")),
            ("SLIPWAY_EDGE_HTTPS_ADDR", format!("127.0.0.1:{https}")),
            ("SLIPWAY_TLS", "acme".into()),
            ("SLIPWAY_ACME_CA", pebble.directory.clone()),
            (
                "SLIPWAY_ACME_CA_ROOT",
                pebble.listener_ca.display().to_string(),
            ),
            ("SLIPWAY_ACME_EMAIL", "ops@example.test".into()),
        ],
    )
    .await;
    deploy(&server, "shop", json!(["shop.example.test"])).await;
    let client = tls_client(root, "shop.example.test", https);
    let took = until_served(&client, &format!("https://shop.example.test:{https}/")).await;
    println!(
        "a certificate from pebble (ACME, HTTP-01 validated against the edge) served after {:.2} s",
        took.as_secs_f64()
    );
    // Plain HTTP answers with a redirect to HTTPS.
    let plain = reqwest::Client::builder()
        .no_proxy()
        .resolve(
            "shop.example.test",
            std::net::SocketAddr::from(([127, 0, 0, 1], http)),
        )
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let answer = plain
        .get(format!("http://shop.example.test:{http}/x?y=1"))
        .send()
        .await
        .expect("answer");
    assert_eq!(answer.status(), 308);
    assert_eq!(
        answer
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok()),
        Some(format!("https://shop.example.test:{https}/x?y=1").as_str())
    );
    let (_, app) = server.json("GET", "/api/apps", None).await;
    assert_eq!(app[0]["url"], format!("https://shop.localhost:{https}"));
    server.stop().await;
    drop(pebble);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_internal_certificate_from_caddys_own_ca() {
    let (http, https) = (free_port(), free_port());
    let server = TestServer::start_with_vars(
        "edge-internal",
        &[
            ("SLIPWAY_EDGE_HTTP_ADDR", format!("127.0.0.1:{http}")),
            ("SLIPWAY_EDGE_HTTPS_ADDR", format!("127.0.0.1:{https}")),
            ("SLIPWAY_TLS", "internal".into()),
        ],
    )
    .await;
    deploy(&server, "inside", json!([])).await;
    let root_file = server
        .dir
        .join("data/caddy/data/pki/authorities/local/root.crt");
    let began = Instant::now();
    while !root_file.exists() {
        assert!(
            began.elapsed() < Duration::from_secs(30),
            "Caddy made no local CA"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let root =
        reqwest::Certificate::from_pem(&std::fs::read(&root_file).expect("root")).expect("pem");
    let client = tls_client(root, "inside.localhost", https);
    until_served(&client, &format!("https://inside.localhost:{https}/")).await;
    server.stop().await;
}
