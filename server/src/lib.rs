//! Slipway's HTTP server.
//!
//! - [`api`]: the JSON API of PROTOCOL.md.
//! - [`hosts`]: the `Host` allow-list every request passes first (DNS rebinding).
//! - [`headers`]: security headers on every response; the page's CSP nonce.
//! - [`auth`]: the gate every request passes, and sign-in.
//! - [`monitor`]: the deployment monitor WebSocket.
//! - [`app_logs`]: the runtime logs of an app's running containers (WebSocket or text).
//! - [`webhooks`]: deploy on git push (`POST /api/hooks/{id}`, signed by the forge).
//! - [`events`]: the event feed (`GET /api/events`), a WebSocket.
//! - [`error`]: the JSON error body and the mapping from engine errors.
//! - [`cli`]: the `slipway` command line: `serve`, and the client commands of PROTOCOL.md.
//! - [`run`]: serves the API, the monitor and the Leptos dashboard on a listener until
//!   a shutdown future resolves. `main.rs` and the tests both call it.

pub mod api;
pub mod app_logs;
pub mod auth;
pub mod cli;
pub mod error;
pub mod events;
pub mod headers;
pub mod hosts;
pub mod monitor;
pub mod webhooks;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef};
use axum::routing::{get, post};
use engine::Engine;
use leptos::config::LeptosOptions;
use leptos_axum::{LeptosRoutes, generate_route_list};
use std::future::Future;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Largest request body the API reads.
const BODY_LIMIT: usize = 256 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    pub leptos: LeptosOptions,
    /// Cancelled when the server begins to shut down: monitor sockets close with 1001.
    pub closing: CancellationToken,
    /// Where signed-in browsers may send mutations and WebSocket upgrades from.
    pub origins: auth::Origins,
    /// The `Host` names this server answers to.
    pub hosts: std::sync::Arc<hosts::AllowedHosts>,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos.clone()
    }
}

/// The site's settings from `Leptos.toml` (compiled in), which `LEPTOS_*` variables
/// override: where the built site (`pkg/`, styles, `public/`) lives and its names.
pub fn leptos_options() -> Result<LeptosOptions, leptos::config::errors::LeptosConfigError> {
    leptos::config::get_config_from_str(include_str!("../../Leptos.toml"))
}

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/health", get(api::health))
        .route("/metrics", get(api::metrics))
        .route("/apps", get(api::list_apps).post(api::create_app))
        .route(
            "/apps/{id}",
            get(api::show_app)
                .delete(api::delete_app)
                .patch(api::update_app),
        )
        .route("/apps/{id}/deployments", get(api::app_deployments))
        .route("/apps/{id}/rollback", post(api::rollback))
        .route("/apps/{id}/logs", get(app_logs::app_logs))
        .route("/apps/{id}/webhook", post(api::rotate_webhook))
        .route("/apps/{id}/webhook/deliveries", get(api::deliveries))
        // Signed by forges, not behind a session or token (auth.rs lets it through); a
        // larger body than the rest of the API.
        .route(
            "/hooks/{id}",
            post(webhooks::receive).layer(DefaultBodyLimit::max(webhooks::BODY_LIMIT)),
        )
        .route("/deployments", post(api::create_deployment))
        .route("/deployments/logs", get(monitor::monitor))
        .route("/deployments/{id}", get(api::show_deployment))
        .route("/deployments/{id}/cancel", post(api::cancel_deployment))
        .route("/deployments/{id}/redeploy", post(api::redeploy))
        .route("/deployments/{id}/logs", get(api::deployment_log))
        .route("/deployments/{id}/lines", get(api::deployment_lines))
        .route("/deployments/{id}/search", get(api::search_log))
        .route("/events", get(events::events))
        .route(
            "/notifications",
            get(api::list_notifications).post(api::create_notification),
        )
        .route(
            "/notifications/{id}",
            axum::routing::delete(api::delete_notification),
        )
        .route("/nodes", get(api::nodes))
        .route("/tokens", get(api::list_tokens).post(api::create_token))
        .route("/tokens/{id}", axum::routing::delete(api::revoke_token))
        .route("/account/password", post(api::change_password))
        .route("/sessions", axum::routing::delete(api::end_sessions))
        .fallback(api::not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT));
    // The built assets, precompressed by scripts/build-site.sh: browsers that accept brotli
    // or gzip get the small file (the WebAssembly shrinks to about a quarter).
    let pkg = tower_http::services::ServeDir::new(
        std::path::Path::new(state.leptos.site_root.as_ref())
            .join(state.leptos.site_pkg_dir.as_ref()),
    )
    .precompressed_br()
    .precompressed_gzip();
    let routes = generate_route_list(app::App);
    let engine = state.engine.clone();
    let leptos = state.leptos.clone();
    Router::new()
        .nest("/api", api)
        .route("/metrics", get(api::prometheus))
        .nest_service(&format!("/{}", state.leptos.site_pkg_dir), pkg)
        .route("/auth/setup", post(auth::setup))
        .route("/auth/login", post(auth::login))
        .route("/auth/logout", post(auth::logout))
        .route("/auth/logout-everywhere", post(auth::logout_everywhere))
        .route("/auth/password", post(auth::change_password))
        .leptos_routes_with_context(
            &state,
            routes,
            move || {
                leptos::prelude::provide_context(engine.clone());
                headers::provide_request_nonce();
            },
            move || app::shell(leptos.clone()),
        )
        .fallback(leptos_axum::file_and_error_handler_with_context::<
            AppState,
            _,
        >(headers::provide_request_nonce, app::shell))
        // Pages, JSON, log ranges and downloads in brotli or gzip as the client accepts
        // (a 100,000-line log shrinks about tenfold); the built assets are precompressed
        // and passed as they are; sockets (no body) and tiny answers are left alone.
        .layer(compression())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::gate,
        ))
        // Outermost first: the Host is checked before anything else runs, and every
        // answer (a refusal too) gets the security headers.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            hosts::check,
        ))
        .layer(axum::middleware::from_fn(headers::security_headers))
        .with_state(state)
}

/// brotli at quality 4 and gzip at 6 (tower-http's defaults): about as fast as the socket
/// for a log download, most of brotli's gain on text.
fn compression() -> tower_http::compression::CompressionLayer {
    tower_http::compression::CompressionLayer::new()
        .br(true)
        .gzip(true)
        .no_deflate()
        .no_zstd()
}

/// Refuses to serve a non-loopback address while nobody can sign in: the first visitor
/// would claim the admin account.
pub fn exposure_check(addr: std::net::SocketAddr, engine: &Engine) -> Result<(), String> {
    if addr.ip().is_loopback() || engine.auth().can_authenticate() {
        return Ok(());
    }
    Err(format!(
        "refusing to serve on {addr}: no account exists and SLIPWAY_ADMIN_TOKEN is not set, \
         so anyone who reaches this address could claim the admin account. Set \
         SLIPWAY_ADMIN_TOKEN (16 characters or more), or start once on 127.0.0.1 and create \
         the admin account at /setup first."
    ))
}

/// What to print at start while no account exists: the one-time setup link (with the
/// public URL when there is one, else the listen address).
pub fn setup_notice(engine: &Engine, local: std::net::SocketAddr) -> Option<String> {
    let code = engine.auth().setup_code()?;
    let base = match &engine.config().public_url {
        Some(url) => url.clone(),
        None => format!("http://{local}"),
    };
    let file = engine.config().data_dir.join(engine::SETUP_CODE_FILE);
    Some(format!(
        "no account exists yet: create the admin account at {base}/setup?code={code} \
         (the code is also in {}, and works once)",
        file.display()
    ))
}

/// Serves until `shutdown` resolves, then closes monitor sockets and waits for requests
/// in flight. The caller shuts the engine down afterwards.
pub async fn run(
    engine: Engine,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let closing = CancellationToken::new();
    let local = listener.local_addr()?;
    let config = engine.config();
    let origins = auth::Origins::new(config.public_url.as_deref(), local);
    let hosts = hosts::AllowedHosts::new(
        local,
        config.public_url.as_deref(),
        config
            .allowed_hosts
            .as_ref()
            .map(|h| h.0.as_slice())
            .unwrap_or_default(),
    );
    let leptos =
        leptos_options().map_err(|e| std::io::Error::other(format!("Leptos.toml: {e}")))?;
    let state = AppState {
        engine,
        leptos,
        closing: closing.clone(),
        origins,
        hosts: std::sync::Arc::new(hosts),
    };
    // The peer's address: sign-in attempts are throttled per address.
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(accepting(listener), app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            closing.cancel();
        })
        .await
}

/// Connections as the server accepts them: Nagle's algorithm off (`TCP_NODELAY`). With it
/// on, a frame written while the previous small one is unacknowledged waits for that
/// acknowledgement: a round trip on a real network, plus the client's delayed-ACK timer
/// (40 ms on Linux, up to 200 ms on Windows) when it holds its ACKs back. A live log is
/// small frames, each wanted at once; large writes (a catch-up) go in 64 KiB pieces.
fn accepting(listener: TcpListener) -> axum::serve::TapIo<TcpListener, fn(&mut TcpStream)> {
    use axum::serve::ListenerExt;
    fn nodelay(tcp: &mut TcpStream) {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not turn Nagle's algorithm off");
        }
    }
    listener.tap_io(nodelay as fn(&mut TcpStream))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::serve::Listener;

    #[tokio::test]
    async fn accepted_connections_send_small_frames_at_once() -> std::io::Result<()> {
        // The kernel's default is Nagle on, as a plain accept shows; ours turns it off.
        let plain = TcpListener::bind("127.0.0.1:0").await?;
        let addr = plain.local_addr()?;
        let (accepted, client) = tokio::join!(plain.accept(), TcpStream::connect(addr));
        client?;
        assert!(!accepted?.0.nodelay()?);

        let mut ours = accepting(TcpListener::bind("127.0.0.1:0").await?);
        let addr = ours.local_addr()?;
        let (accepted, client) = tokio::join!(ours.accept(), TcpStream::connect(addr));
        client?;
        assert!(accepted.0.nodelay()?);
        Ok(())
    }
}
