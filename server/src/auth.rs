//! Authentication at the edge. One middleware ([`gate`]) sees every request:
//!
//! - `Authorization: Bearer <token>`: `SLIPWAY_ADMIN_TOKEN` or a token created in the
//!   dashboard. A header that is present but wrong is refused, whatever cookie comes with it.
//! - otherwise the session cookie. A cookie-authenticated mutation (any method but GET,
//!   HEAD, OPTIONS) or WebSocket upgrade must come from the dashboard's own origin: the
//!   CSRF and cross-site WebSocket hijacking defence (the cookie is also `SameSite=Lax`).
//! - without either, the API answers 401, the monitor closes with 4401 and pages redirect
//!   to the sign-in page (or to `/setup` while no account exists).
//!
//! Only `GET /api/health`, the sign-in pages and the static assets are public.
//! The `/auth/*` form handlers create the admin account, sign in and sign out.

use crate::AppState;
use crate::error::ApiError;
use axum::Form;
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, COOKIE, HOST, LOCATION, ORIGIN, REFERER, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use engine::auth::{Principal, SESSION_LIFETIME};
use protocol::ErrorCode;
use serde::Deserialize;
use std::net::SocketAddr;

pub const SESSION_COOKIE: &str = "slipway_session";

/// The origins a signed-in browser may send mutations and WebSocket upgrades from.
#[derive(Debug, Clone)]
pub struct Origins {
    allowed: Vec<String>,
    /// Without `SLIPWAY_PUBLIC_URL`, also the origin named by the request's own `Host`
    /// (a browser always sends the host it connects to; a cross-site page cannot make it
    /// send a foreign `Origin` that matches).
    same_host: bool,
    /// Whether the session cookie gets `Secure` (the public URL is https).
    secure: bool,
}

impl Origins {
    pub fn new(public_url: Option<&str>, local: SocketAddr) -> Origins {
        if let Some(url) = public_url {
            return Origins {
                allowed: vec![url.to_owned()],
                same_host: false,
                secure: url.starts_with("https://"),
            };
        }
        let port = local.port();
        let mut allowed = vec![format!("http://{local}")];
        if local.ip().is_loopback() || local.ip().is_unspecified() {
            for host in ["127.0.0.1", "localhost", "[::1]"] {
                allowed.push(format!("http://{host}:{port}"));
            }
        }
        Origins {
            allowed,
            same_host: true,
            secure: false,
        }
    }

    /// Whether a browser request came from the dashboard itself.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let header = |name| {
            headers
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
        };
        let origin = match header(ORIGIN) {
            Some(origin) => origin.to_ascii_lowercase(),
            None => match header(REFERER).and_then(origin_of_url) {
                Some(origin) => origin,
                None => {
                    return Err(ApiError::new(
                        ErrorCode::Forbidden,
                        "Origin header missing: signed-in browser requests must come from the dashboard",
                    ));
                }
            },
        };
        if self.allowed.contains(&origin) {
            return Ok(());
        }
        if self.same_host
            && let Some(host) = header(HOST)
            && origin == format!("http://{}", host.to_ascii_lowercase())
        {
            return Ok(());
        }
        Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "Origin {origin} is not this server's ({}): cross-site requests are refused",
                self.allowed[0]
            ),
        ))
    }
}

/// The origin (`scheme://host[:port]`) of a URL, as browsers serialise it.
pub fn origin_of_url(url: &str) -> Option<String> {
    let origin = url::Url::parse(url).ok()?.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}

/// What the gate decided, for handlers that answer refusals themselves (the monitor).
#[derive(Debug, Clone)]
pub enum Access {
    Granted(Principal),
    Refused(ApiError),
}

/// Paths anyone may ask for: health, the sign-in pages, static assets (under
/// `/<pkg_dir>/`).
fn is_public(path: &str, pkg_dir: &str) -> bool {
    matches!(
        path,
        "/api/health" | "/login" | "/setup" | "/auth/login" | "/auth/setup" | "/favicon.ico"
    ) || path.starts_with("/api/hooks/")
        || path
            .strip_prefix('/')
            .and_then(|p| p.strip_prefix(pkg_dir))
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The value of one cookie.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

pub fn access(state: &AppState, method: &Method, headers: &HeaderMap) -> Access {
    let auth = state.engine.auth();
    if let Some(value) = headers.get(AUTHORIZATION) {
        let token = value.to_str().ok().and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
        return match token.and_then(|t| auth.bearer(t)) {
            Some(principal) => Access::Granted(principal),
            None => Access::Refused(ApiError::new(
                ErrorCode::Unauthorized,
                "Authorization: the bearer token is not valid",
            )),
        };
    }
    match cookie(headers, SESSION_COOKIE).and_then(|secret| auth.session(&secret)) {
        Some(principal) => {
            let mutation = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
            let upgrade = headers.contains_key(axum::http::header::UPGRADE);
            if (mutation || upgrade)
                && let Err(refusal) = state.origins.check(headers)
            {
                return Access::Refused(refusal);
            }
            Access::Granted(principal)
        }
        None => Access::Refused(ApiError::new(
            ErrorCode::Unauthorized,
            if auth.has_users() {
                "sign in, or send Authorization: Bearer <token>"
            } else {
                "no account exists yet: create the admin account at /setup, or send Authorization: Bearer <SLIPWAY_ADMIN_TOKEN>"
            },
        )),
    }
}

pub async fn gate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    if is_public(&path, &state.leptos.site_pkg_dir) {
        if path == "/setup" && state.engine.auth().has_users() {
            return see_other("/login");
        }
        return next.run(request).await;
    }
    let access = access(&state, request.method(), request.headers());
    let app_logs = path
        .strip_prefix("/api/apps/")
        .and_then(|rest| rest.strip_suffix("/logs"))
        .is_some_and(|id| !id.contains('/'));
    if path == "/api/deployments/logs" || path == "/api/events" || app_logs {
        // The sockets answer refusals with an error event and a 44xx close code.
        request.extensions_mut().insert(access);
        return next.run(request).await;
    }
    let api = path.starts_with("/api/") || path == "/api" || path == "/metrics";
    // A browser without credentials is sent to sign in; a script that sent a wrong
    // token gets the 401.
    let presented = request.headers().contains_key(AUTHORIZATION);
    match access {
        Access::Granted(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Access::Refused(refusal) if api || presented || refusal.code != ErrorCode::Unauthorized => {
            refusal.into_response()
        }
        Access::Refused(_) => {
            let to = if state.engine.auth().has_users() {
                let here = request
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/");
                format!("/login?{}", query(&[("next", here)]))
            } else {
                "/setup".to_owned()
            };
            see_other(&to)
        }
    }
}

fn query(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, to.to_owned())]).into_response()
}

/// A `next` that stays on this site.
fn local_path(next: Option<&str>) -> &str {
    match next {
        Some(next) if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') => {
            next
        }
        _ => "/",
    }
}

fn session_cookie(state: &AppState, value: &str, max_age: u64) -> String {
    cookie::Cookie::build((SESSION_COOKIE, value))
        .path("/")
        .http_only(true)
        .same_site(cookie::SameSite::Lax)
        .max_age(cookie::time::Duration::seconds(
            i64::try_from(max_age).unwrap_or(i64::MAX),
        ))
        .secure(state.origins.secure)
        .build()
        .to_string()
}

fn signed_in(state: &AppState, secret: &str, next: Option<&str>) -> Response {
    let cookie = session_cookie(state, secret, SESSION_LIFETIME.as_secs());
    let mut response = see_other(local_path(next));
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(SET_COOKIE, value);
    }
    response
}

#[derive(Deserialize)]
pub struct SetupForm {
    username: String,
    password: String,
    confirm: String,
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    next: Option<String>,
}

/// `POST /auth/setup`: creates the admin account while none exists, then signs in.
pub async fn setup(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<SetupForm>,
) -> Response {
    if let Err(refusal) = state.origins.check(&headers) {
        return refusal.into_response();
    }
    if state.engine.auth().has_users() {
        return see_other("/login");
    }
    if form.password != form.confirm {
        return see_other(&format!(
            "/setup?{}",
            query(&[
                ("error", "confirm: the passwords differ"),
                ("username", &form.username)
            ])
        ));
    }
    match state
        .engine
        .auth()
        .create_admin(form.username.trim(), &form.password)
        .await
    {
        Ok(secret) => signed_in(&state, &secret, None),
        Err(engine::EngineError::Conflict(engine::Conflict::AccountExists)) => see_other("/login"),
        Err(e) => {
            let message = ApiError::from(e).message;
            see_other(&format!(
                "/setup?{}",
                query(&[("error", &message), ("username", &form.username)])
            ))
        }
    }
}

/// `POST /auth/login`.
pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if let Err(refusal) = state.origins.check(&headers) {
        return refusal.into_response();
    }
    match state
        .engine
        .auth()
        .login(form.username.trim(), &form.password)
        .await
    {
        Ok(secret) => signed_in(&state, &secret, form.next.as_deref()),
        Err(e) => {
            let message = ApiError::from(e).message;
            let next = local_path(form.next.as_deref());
            see_other(&format!(
                "/login?{}",
                query(&[("error", &message), ("next", next)])
            ))
        }
    }
}

/// `POST /auth/logout`: ends the session (behind the gate, so same-origin only).
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(secret) = cookie(&headers, SESSION_COOKIE)
        && let Err(e) = state.engine.auth().logout(&secret).await
    {
        return ApiError::from(e).into_response();
    }
    let mut response = see_other("/login");
    if let Ok(value) = HeaderValue::from_str(&session_cookie(&state, "", 0)) {
        response.headers_mut().insert(SET_COOKIE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).expect("header"));
        }
        map
    }

    #[test]
    fn origin_must_be_the_servers_own() {
        let local: SocketAddr = "127.0.0.1:3000".parse().expect("addr");
        let origins = Origins::new(None, local);
        for ok in [
            "http://127.0.0.1:3000",
            "http://localhost:3000",
            "HTTP://LOCALHOST:3000",
        ] {
            assert!(origins.check(&headers(&[("origin", ok)])).is_ok(), "{ok}");
        }
        for bad in [
            "http://evil.example",
            "null",
            "http://127.0.0.1:3001",
            "https://127.0.0.1:3000",
        ] {
            let refusal = origins.check(&headers(&[("origin", bad)]));
            assert!(
                matches!(&refusal, Err(e) if e.code == ErrorCode::Forbidden),
                "{bad}"
            );
        }
        assert!(origins.check(&headers(&[])).is_err());
        assert!(
            origins
                .check(&headers(&[("referer", "http://127.0.0.1:3000/apps/1")]))
                .is_ok()
        );
        // Without a public URL, the Host the browser connected to counts as ours.
        let wide = Origins::new(None, "0.0.0.0:3000".parse().expect("addr"));
        assert!(
            wide.check(&headers(&[
                ("origin", "http://192.168.1.5:3000"),
                ("host", "192.168.1.5:3000")
            ]))
            .is_ok()
        );
        assert!(
            wide.check(&headers(&[
                ("origin", "http://evil.example"),
                ("host", "192.168.1.5:3000")
            ]))
            .is_err()
        );
        // With one, only it.
        let public = Origins::new(Some("https://deploy.example.com"), local);
        assert!(public.secure);
        assert!(
            public
                .check(&headers(&[("origin", "https://deploy.example.com")]))
                .is_ok()
        );
        assert!(
            public
                .check(&headers(&[
                    ("origin", "http://127.0.0.1:3000"),
                    ("host", "127.0.0.1:3000")
                ]))
                .is_err()
        );
    }

    #[test]
    fn cookies_and_redirects() {
        let h = headers(&[("cookie", "a=1; slipway_session=abc; b=2")]);
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
        assert_eq!(local_path(Some("/apps/3")), "/apps/3");
        for bad in ["//evil.example", "https://evil.example", "/\\evil", ""] {
            assert_eq!(local_path(Some(bad)), "/", "{bad}");
        }
    }
}
