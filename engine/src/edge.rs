//! The edge: Caddy (2.7 or later), started and supervised by Slipway and configured only
//! through its admin API on a Unix socket in the data directory. Slipway holds the route
//! table (one route per app with a serving container: its host names → the container's
//! loopback port) and pushes it whole (`POST /load`) after each change, so Caddy never
//! drifts from it; the same table is written to the file Caddy starts from, so a Caddy
//! that died comes back with every route. We never proxy a byte ourselves.
//!
//! Settings that make a switch drop nothing (measured: `scripts/` and the edge tests):
//! one upstream per app, `load_balancing.try_duration` (a request that meets a container
//! not answering yet waits and retries instead of failing), and a long
//! `stream_close_delay` (WebSockets and other upgraded streams survive configuration
//! reloads; without it Caddy closes them all with 1001 at every change). Plain HTTP
//! servers get `automatic_https.disable`, or Caddy would move them to HTTPS.

use crate::config::{Config, Listen, Tls};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use protocol::AppId;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, watch};
use tokio_util::sync::CancellationToken;

/// How long Caddy has to answer on its admin socket after it starts.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// One admin request's limit.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Between restarts of a Caddy that keeps dying: doubling up to the maximum.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long a request may wait for an upstream that does not answer yet.
const TRY_DURATION: &str = "5s";
const TRY_INTERVAL: &str = "250ms";
/// Streams proxied to an app (WebSockets, server-sent events) outlive a configuration
/// change by this much: in practice, until their container stops.
const STREAM_CLOSE_DELAY: &str = "24h";

#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("the edge (Caddy at {caddy}) could not start: {detail}")]
    Start { caddy: String, detail: String },
    #[error("the edge's admin API: {0}")]
    Admin(String),
}

/// The edge's part of the configuration.
#[derive(Debug, Clone)]
pub struct EdgeSettings {
    pub caddy: PathBuf,
    /// Caddy's own directory: admin socket, config, certificates, logs.
    pub dir: PathBuf,
    pub http: SocketAddr,
    pub https: Option<SocketAddr>,
    pub tls: Tls,
    pub acme_ca: String,
    pub acme_email: Option<String>,
    pub acme_ca_root: Option<PathBuf>,
    pub apps_domain: String,
    pub drain: Duration,
    /// Caddy runs in a container (a Swarm service) whose ports are published on the
    /// host: it listens on every address of its own network namespace.
    pub in_container: bool,
}

impl EdgeSettings {
    /// `None` when the edge is off (`SLIPWAY_EDGE_HTTP_ADDR=off`).
    pub fn from_config(config: &Config) -> Option<EdgeSettings> {
        let Listen::At(http) = config.edge_http_addr else {
            return None;
        };
        Some(EdgeSettings {
            caddy: config.caddy.clone(),
            dir: config.data_dir.join("caddy"),
            http,
            https: config.edge_https_addr,
            tls: config.tls,
            acme_ca: config.acme_ca.clone(),
            acme_email: config.acme_email.clone(),
            acme_ca_root: config.acme_ca_root.clone(),
            apps_domain: config.apps_domain.clone(),
            drain: config.drain,
            in_container: false,
        })
    }

    /// What Caddy listens on for `addr`.
    fn listen(&self, addr: SocketAddr) -> String {
        if self.in_container {
            format!(":{}", addr.port())
        } else {
            addr.to_string()
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("admin.sock")
    }

    fn config_file(&self) -> PathBuf {
        self.dir.join("caddy.json")
    }

    /// The host an app is served at, before its extra domains.
    pub fn host_of(&self, app: &str) -> String {
        format!("{app}.{}", self.apps_domain)
    }

    /// The app's public address: HTTPS when the edge serves it, the port unless default.
    pub fn public_url(&self, app: &str) -> String {
        let host = self.host_of(app);
        match self.https {
            Some(addr) if addr.port() == 443 => format!("https://{host}"),
            Some(addr) => format!("https://{host}:{}", addr.port()),
            None if self.http.port() == 80 => format!("http://{host}"),
            None => format!("http://{host}:{}", self.http.port()),
        }
    }
}

/// One app's route: its host names and where its serving container answers (none while
/// nothing serves it: the edge then answers 503 for it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub hosts: Vec<String>,
    /// Caddy's dial address: `127.0.0.1:PORT` for a container, `SERVICE:PORT` on Swarm.
    pub upstream: Option<String>,
}

pub struct Edge {
    settings: EdgeSettings,
    /// The route table, by app. Held while a change is pushed, so pushes are ordered.
    routes: Mutex<BTreeMap<AppId, Route>>,
    /// Each start of Caddy bumps this; the supervisor publishes it once the admin socket
    /// answers.
    started: watch::Receiver<u64>,
}

impl Edge {
    /// Starts Caddy with `routes` and supervises it until `shutdown`: a Caddy that exits
    /// is started again with the whole route table. Returns once it answers.
    pub async fn start(
        settings: EdgeSettings,
        routes: BTreeMap<AppId, Route>,
        shutdown: CancellationToken,
        tasks: &tokio_util::task::TaskTracker,
    ) -> Result<Arc<Edge>, EdgeError> {
        let start_error = |detail: String| EdgeError::Start {
            caddy: settings.caddy.display().to_string(),
            detail,
        };
        create_private_dir(&settings.dir).map_err(|e| start_error(e.to_string()))?;
        // A Caddy left by a previous run (Slipway was killed) holds our socket and ports.
        stop_orphan(&settings).await;
        write_config(&settings, &routes)
            .await
            .map_err(|e| start_error(e.to_string()))?;
        let (started_tx, started) = watch::channel(0);
        let edge = Arc::new(Edge {
            settings: settings.clone(),
            routes: Mutex::new(routes),
            started,
        });
        let mut first = spawn_caddy(&settings).await.map_err(start_error)?;
        started_tx.send_replace(1);
        tracing::info!(http = %settings.http, https = ?settings.https, "the edge (Caddy) is serving");
        let supervised = edge.clone();
        tasks.spawn(async move {
            let mut backoff = FIRST_BACKOFF;
            let mut generation = 1;
            loop {
                let exited = tokio::select! {
                    status = first.wait() => status,
                    _ = shutdown.cancelled() => {
                        supervised.stop(&mut first).await;
                        return;
                    }
                };
                tracing::warn!(status = ?exited, "the edge (Caddy) exited; starting it again with every route");
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.cancelled() => return,
                    }
                    // The table may have changed while Caddy was down.
                    {
                        let routes = supervised.routes.lock().await;
                        if let Err(e) = write_config(&supervised.settings, &routes).await {
                            tracing::error!(error = %e, "could not write the edge's configuration");
                        }
                    }
                    match spawn_caddy(&supervised.settings).await {
                        Ok(child) => {
                            first = child;
                            generation += 1;
                            started_tx.send_replace(generation);
                            backoff = FIRST_BACKOFF;
                            tracing::info!("the edge (Caddy) is serving again");
                            break;
                        }
                        Err(detail) => {
                            tracing::error!(%detail, "the edge (Caddy) did not start");
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                        }
                    }
                }
            }
        });
        Ok(edge)
    }

    /// Runs Caddy as a Swarm service on this node (`SLIPWAY_RUNTIME=swarm`), on the
    /// overlay network where it reaches apps by service name; Swarm restarts it when it
    /// exits, from the configuration file Slipway keeps current. It keeps serving while
    /// Slipway restarts: the next start takes it over. Returns once it answers.
    pub async fn start_on_swarm(
        mut settings: EdgeSettings,
        routes: BTreeMap<AppId, Route>,
        swarm: &crate::swarm::SwarmRuntime,
    ) -> Result<Arc<Edge>, EdgeError> {
        settings.in_container = true;
        let start_error = |detail: String| EdgeError::Start {
            caddy: settings.caddy.display().to_string(),
            detail,
        };
        create_private_dir(&settings.dir).map_err(|e| start_error(e.to_string()))?;
        write_config(&settings, &routes)
            .await
            .map_err(|e| start_error(e.to_string()))?;
        let socket = settings.socket();
        let answers = || admin(&socket, hyper::Method::GET, "/config/admin", None);
        if answers().await.is_err() {
            // Left by a Caddy that did not stop cleanly: the new one must create it.
            let _ = std::fs::remove_file(&socket);
        }
        let mut ports = vec![settings.http.port()];
        ports.extend(settings.https.map(|a| a.port()));
        swarm
            .run_edge(
                &settings.caddy,
                &settings.dir,
                &settings.config_file(),
                &ports,
            )
            .await
            .map_err(|e| start_error(e.to_string()))?;
        // Its image may be pulled and its task scheduled first.
        let deadline = tokio::time::Instant::now() + START_TIMEOUT * 4;
        while answers().await.is_err() {
            if tokio::time::Instant::now() >= deadline {
                return Err(start_error(format!(
                    "its admin socket {} did not answer within {} s (docker service ps slipway-…-edge)",
                    socket.display(),
                    (START_TIMEOUT * 4).as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (_, started) = watch::channel(1);
        let edge = Arc::new(Edge {
            settings,
            routes: Mutex::new(routes.clone()),
            started,
        });
        // A running edge kept the table of the previous start: load the current one.
        edge.push(&routes).await?;
        tracing::info!(http = %edge.settings.http, https = ?edge.settings.https, "the edge (Caddy, a Swarm service) is serving");
        Ok(edge)
    }

    pub fn settings(&self) -> &EdgeSettings {
        &self.settings
    }

    /// Sets an app's route and pushes the table to Caddy.
    pub async fn set(&self, app: AppId, route: Route) -> Result<(), EdgeError> {
        let mut routes = self.routes.lock().await;
        if routes.get(&app) == Some(&route) {
            return Ok(());
        }
        routes.insert(app, route);
        self.push(&routes).await
    }

    /// Removes an app's route (the app was deleted).
    pub async fn remove(&self, app: AppId) -> Result<(), EdgeError> {
        let mut routes = self.routes.lock().await;
        if routes.remove(&app).is_none() {
            return Ok(());
        }
        self.push(&routes).await
    }

    /// The route table as the edge holds it.
    pub async fn routes(&self) -> BTreeMap<AppId, Route> {
        self.routes.lock().await.clone()
    }

    /// Replaces the whole table (after the container engine restarted).
    pub async fn replace(&self, table: BTreeMap<AppId, Route>) -> Result<(), EdgeError> {
        let mut routes = self.routes.lock().await;
        if *routes == table {
            return Ok(());
        }
        *routes = table;
        self.push(&routes).await
    }

    /// Writes the file Caddy restarts from, then loads the table into the running Caddy.
    /// If Caddy is down, the supervisor starts it from the file.
    async fn push(&self, routes: &BTreeMap<AppId, Route>) -> Result<(), EdgeError> {
        write_config(&self.settings, routes)
            .await
            .map_err(|e| EdgeError::Admin(e.to_string()))?;
        let config = render(&self.settings, routes);
        let (status, body) = admin(
            &self.settings.socket(),
            hyper::Method::POST,
            "/load",
            Some(config.to_string()),
        )
        .await
        .map_err(EdgeError::Admin)?;
        if status != 200 {
            return Err(EdgeError::Admin(format!(
                "POST /load answered {status}: {body}"
            )));
        }
        Ok(())
    }

    /// Requests the edge is sending to `upstream` right now (Caddy counts them per
    /// upstream); `None` when it cannot say.
    pub async fn in_flight(&self, upstream: &str) -> Option<u64> {
        let (status, body) = admin(
            &self.settings.socket(),
            hyper::Method::GET,
            "/reverse_proxy/upstreams",
            None,
        )
        .await
        .ok()?;
        if status != 200 {
            return None;
        }
        let upstreams: Vec<Value> = serde_json::from_str(&body).ok()?;
        Some(
            upstreams
                .iter()
                .filter(|u| u["address"].as_str() == Some(upstream))
                .filter_map(|u| u["num_requests"].as_u64())
                .sum(),
        )
    }

    /// Waits until the edge has sent nothing to `upstream` (it no longer routes there),
    /// at most `SLIPWAY_DRAIN_SECS`. Answers how long it waited.
    pub async fn drain(&self, upstream: &str) -> Duration {
        let began = std::time::Instant::now();
        let deadline = began + self.settings.drain;
        // Between looks at Caddy's request counters while a container drains (a bounded
        // wait on Caddy, not a viewer-facing poll).
        const LOOK_EVERY: Duration = Duration::from_millis(100);
        loop {
            match self.in_flight(upstream).await {
                Some(0) => return began.elapsed(),
                _ if std::time::Instant::now() >= deadline => return began.elapsed(),
                _ => tokio::time::sleep(LOOK_EVERY).await,
            }
        }
    }

    /// How many times Caddy was started (for tests and the nodes view).
    pub fn generation(&self) -> u64 {
        *self.started.borrow()
    }

    /// Stops Caddy gracefully: in-flight requests get the drain time to finish.
    async fn stop(&self, child: &mut tokio::process::Child) {
        let _ = admin(&self.settings.socket(), hyper::Method::POST, "/stop", None).await;
        let grace = self.settings.drain + Duration::from_secs(5);
        if tokio::time::timeout(grace, child.wait()).await.is_err() {
            let _ = child.kill().await;
        }
    }
}

/// A directory only its owner can read (certificates and keys live there).
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Stops a Caddy that answers on our socket (started by a previous run), and waits until
/// it has let go of the socket and ports.
async fn stop_orphan(settings: &EdgeSettings) {
    let socket = settings.socket();
    if admin(&socket, hyper::Method::GET, "/config/admin", None)
        .await
        .is_err()
    {
        let _ = std::fs::remove_file(&socket);
        return;
    }
    tracing::info!("stopping the edge a previous run left behind");
    let _ = admin(&socket, hyper::Method::POST, "/stop", None).await;
    let deadline = tokio::time::Instant::now() + settings.drain + Duration::from_secs(5);
    while socket.exists() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = std::fs::remove_file(&socket);
}

async fn write_config(
    settings: &EdgeSettings,
    routes: &BTreeMap<AppId, Route>,
) -> std::io::Result<()> {
    let text = render(settings, routes).to_string();
    let file = settings.config_file();
    let temporary = file.with_extension("json.tmp");
    tokio::fs::write(&temporary, text).await?;
    tokio::fs::rename(&temporary, &file).await
}

/// Starts `caddy run` from the configuration file; answers once its admin socket does.
async fn spawn_caddy(settings: &EdgeSettings) -> Result<tokio::process::Child, String> {
    let dir = &settings.dir;
    let stderr = std::fs::File::create(dir.join("caddy.stderr")).map_err(|e| e.to_string())?;
    let mut child = tokio::process::Command::new(&settings.caddy)
        .arg("run")
        .arg("--config")
        .arg(settings.config_file())
        .arg("--pidfile")
        .arg(dir.join("caddy.pid"))
        // Its own directories and nothing of ours (no tokens in its environment).
        .env_clear()
        .env("HOME", dir)
        .env("XDG_DATA_HOME", dir.join("xdg-data"))
        .env("XDG_CONFIG_HOME", dir.join("xdg-config"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("{e} (SLIPWAY_CADDY; `make run` installs it)"))?;
    let socket = settings.socket();
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.join("caddy.stderr")).unwrap_or_default();
            let last = log
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            return Err(format!("it exited ({status}): {last}"));
        }
        if admin(&socket, hyper::Method::GET, "/config/admin", None)
            .await
            .is_ok()
        {
            return Ok(child);
        }
        if tokio::time::Instant::now() >= deadline {
            let _ = child.kill().await;
            return Err(format!(
                "its admin socket {} did not answer within {} s",
                socket.display(),
                START_TIMEOUT.as_secs()
            ));
        }
        // Caddy starts in tens of milliseconds; this is a bounded wait for its socket.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One request to Caddy's admin API over its Unix socket: the status and the body.
/// Caddy answers mutations with `Connection: close`, so each request gets a connection.
async fn admin(
    socket: &Path,
    method: hyper::Method,
    path: &str,
    body: Option<String>,
) -> Result<(u16, String), String> {
    let exchange = async {
        let stream = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|e| format!("{}: {e}", socket.display()))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            // Any Host passes on a Unix socket, but one must be sent.
            .header(hyper::header::HOST, "localhost")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
    };
    tokio::time::timeout(ADMIN_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| Err("no answer".into()))
}

/// Caddy's whole configuration for `routes`.
pub(crate) fn render(settings: &EdgeSettings, routes: &BTreeMap<AppId, Route>) -> Value {
    let dir = &settings.dir;
    let app_routes = |tls: bool| -> Vec<Value> {
        let mut list: Vec<Value> = routes
            .values()
            .filter(|r| !r.hosts.is_empty())
            .map(|route| {
                let handle = match (&route.upstream, settings.https.is_some() && !tls) {
                    // With HTTPS on, plain HTTP only redirects (ACME's HTTP challenges
                    // are answered by Caddy before any route).
                    (_, true) => json!({
                        "handler": "static_response",
                        "status_code": 308,
                        "headers": {"Location": [format!("https://{{http.request.host}}{}{{http.request.uri}}",
                            settings.https.filter(|a| a.port() != 443).map(|a| format!(":{}", a.port())).unwrap_or_default())]},
                    }),
                    (Some(upstream), false) => json!({
                        "handler": "reverse_proxy",
                        "upstreams": [{"dial": upstream}],
                        "load_balancing": {"try_duration": TRY_DURATION, "try_interval": TRY_INTERVAL},
                        "stream_close_delay": STREAM_CLOSE_DELAY,
                    }),
                    (None, false) => json!({
                        "handler": "static_response",
                        "status_code": 503,
                        "headers": {"Content-Type": ["text/plain; charset=utf-8"]},
                        "body": "This app has no running deployment.\n",
                    }),
                };
                json!({"match": [{"host": route.hosts}], "handle": [handle], "terminal": true})
            })
            .collect();
        // Any other host: 404, never another app.
        list.push(json!({
            "handle": [{
                "handler": "static_response",
                "status_code": 404,
                "headers": {"Content-Type": ["text/plain; charset=utf-8"]},
                "body": "No app is served at this address.\n",
            }],
        }));
        list
    };
    let mut servers = serde_json::Map::new();
    servers.insert(
        "edge".into(),
        json!({
            "listen": [settings.listen(settings.http)],
            "automatic_https": {"disable": true},
            "routes": app_routes(false),
        }),
    );
    let mut apps = json!({
        "pki": {"certificate_authorities": {"local": {"install_trust": false}}},
    });
    if let Some(https) = settings.https {
        servers.insert(
            "edge_tls".into(),
            json!({
                "listen": [settings.listen(https)],
                "automatic_https": {"disable": true},
                "tls_connection_policies": [{}],
                "routes": app_routes(true),
            }),
        );
        let hosts: Vec<&String> = routes.values().flat_map(|r| r.hosts.iter()).collect();
        let issuer = match settings.tls {
            Tls::Internal => json!({"module": "internal", "ca": "local"}),
            Tls::Acme => {
                let mut acme = json!({"module": "acme", "ca": settings.acme_ca});
                if let Some(email) = &settings.acme_email {
                    acme["email"] = json!(email);
                }
                if let Some(root) = &settings.acme_ca_root {
                    acme["trusted_roots_pem_files"] = json!([root]);
                }
                acme
            }
        };
        apps["tls"] = json!({
            "automation": {"policies": [{"issuers": [issuer]}]},
            "certificates": {"automate": hosts},
        });
    }
    apps["http"] = json!({
        "http_port": settings.http.port(),
        "https_port": settings.https.map(|a| a.port()).unwrap_or(443),
        "grace_period": format!("{}s", settings.drain.as_secs().max(1)),
        "servers": servers,
    });
    json!({
        "admin": {
            "listen": format!("unix/{}|0600", settings.socket().display()),
            "config": {"persist": false},
        },
        "storage": {"module": "file_system", "root": dir.join("data")},
        "logging": {"logs": {"default": {
            "level": "WARN",
            "writer": {"output": "file", "filename": dir.join("caddy.log"), "roll_size_mb": 10, "roll_keep": 3},
        }}},
        "apps": apps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(https: Option<SocketAddr>) -> EdgeSettings {
        EdgeSettings {
            caddy: "caddy".into(),
            dir: "/data/caddy".into(),
            http: "127.0.0.1:8080".parse().expect("addr"),
            https,
            tls: Tls::Acme,
            acme_ca: "https://acme.example/dir".into(),
            acme_email: Some("ops@example.com".into()),
            acme_ca_root: None,
            apps_domain: "localhost".into(),
            drain: Duration::from_secs(10),
            in_container: false,
        }
    }

    #[test]
    fn in_a_container_caddy_listens_on_every_address_of_its_ports() {
        let routes = BTreeMap::from([(
            1,
            Route {
                hosts: vec!["hello.localhost".into()],
                upstream: Some("slipway-hello:8080".into()),
            },
        )]);
        let mut settings = settings(Some("127.0.0.1:8443".parse().expect("addr")));
        let config = render(&settings, &routes);
        assert_eq!(
            config["apps"]["http"]["servers"]["edge"]["listen"],
            json!(["127.0.0.1:8080"])
        );
        settings.in_container = true;
        let config = render(&settings, &routes);
        let servers = &config["apps"]["http"]["servers"];
        assert_eq!(servers["edge"]["listen"], json!([":8080"]));
        let https = servers
            .as_object()
            .expect("servers")
            .values()
            .find(|s| s["listen"] == json!([":8443"]));
        assert!(https.is_some(), "{servers}");
        assert_eq!(
            servers["edge"]["routes"][0]["handle"][0]["status_code"], 308,
            "{servers}"
        );
    }

    #[test]
    fn each_app_gets_its_hosts_and_anything_else_a_404() {
        let routes = BTreeMap::from([
            (
                1,
                Route {
                    hosts: vec!["hello.localhost".into(), "www.example.com".into()],
                    upstream: Some("127.0.0.1:49153".into()),
                },
            ),
            (
                2,
                Route {
                    hosts: vec!["idle.localhost".into()],
                    upstream: None,
                },
            ),
        ]);
        let config = render(&settings(None), &routes);
        let edge = &config["apps"]["http"]["servers"]["edge"];
        let list = edge["routes"].as_array().expect("routes");
        assert_eq!(list.len(), 3);
        assert_eq!(
            list[0]["match"][0]["host"],
            json!(["hello.localhost", "www.example.com"])
        );
        assert_eq!(
            list[0]["handle"][0]["upstreams"][0]["dial"],
            "127.0.0.1:49153"
        );
        assert_eq!(
            list[0]["handle"][0]["stream_close_delay"],
            STREAM_CLOSE_DELAY
        );
        assert_eq!(list[1]["handle"][0]["status_code"], 503);
        assert_eq!(list[2]["handle"][0]["status_code"], 404);
        assert!(
            list[2].get("match").is_none(),
            "the catch-all matches any host"
        );
        assert_eq!(edge["automatic_https"]["disable"], true);
        assert!(config["apps"].get("tls").is_none());
        assert_eq!(config["admin"]["config"]["persist"], false);

        let tls = render(
            &settings(Some("0.0.0.0:443".parse().expect("addr"))),
            &routes,
        );
        let plain = &tls["apps"]["http"]["servers"]["edge"]["routes"][0]["handle"][0];
        assert_eq!(
            plain["status_code"], 308,
            "plain HTTP redirects once HTTPS is on"
        );
        assert_eq!(
            tls["apps"]["tls"]["certificates"]["automate"],
            json!(["hello.localhost", "www.example.com", "idle.localhost"])
        );
        assert_eq!(
            tls["apps"]["tls"]["automation"]["policies"][0]["issuers"][0]["email"],
            "ops@example.com"
        );
    }

    #[test]
    fn public_addresses() {
        assert_eq!(
            settings(None).public_url("hello"),
            "http://hello.localhost:8080"
        );
        let https = settings(Some("0.0.0.0:443".parse().expect("addr")));
        assert_eq!(https.public_url("hello"), "https://hello.localhost");
    }
}
