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
//! The `/auth/*` form handlers create the admin account (with the one-time setup code),
//! sign in (throttled: `429` with `Retry-After`), sign out, sign out everywhere and
//! change the password. What went wrong goes back to the page as a
//! [`FormProblem`] key, never as text, and `next` only ever leads to a path of this site.

use crate::AppState;
use crate::error::ApiError;
use app::pages::account::FormProblem;
use axum::Form;
use axum::extract::{ConnectInfo, Extension, Request, State};
use axum::http::header::{
    ACCEPT, AUTHORIZATION, CONTENT_TYPE, COOKIE, HOST, LOCATION, ORIGIN, REFERER, RETRY_AFTER,
    SET_COOKIE,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use engine::EngineError;
use engine::auth::{Credential, Principal, SESSION_LIFETIME};
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

/// The token of an `Authorization: Bearer <token>` header.
fn bearer_token(value: &axum::http::HeaderValue) -> Option<&str> {
    let (scheme, token) = value.to_str().ok()?.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

pub fn access(state: &AppState, method: &Method, headers: &HeaderMap) -> Access {
    let auth = state.engine.auth();
    if let Some(value) = headers.get(AUTHORIZATION) {
        return match bearer_token(value).and_then(|t| auth.bearer(t)) {
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
    // In a cluster, a session or token another node created a moment ago.
    let auth = state.engine.auth();
    if let Some(token) = request.headers().get(AUTHORIZATION).and_then(bearer_token) {
        auth.learn_token(token).await;
    } else if let Some(secret) = cookie(request.headers(), SESSION_COOKIE) {
        auth.learn_session(&secret).await;
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

/// A `next` that stays on this site: a path (`/...`, not `//...`) of URL characters only.
/// Anything else (a scheme, a backslash, spaces, tabs or other control characters that
/// browsers drop or read as slashes) leads to `/`.
pub fn local_path(next: Option<&str>) -> &str {
    let url_char = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%#".contains(&b);
    match next {
        Some(next)
            if next.starts_with('/')
                && !next.starts_with("//")
                && next.len() <= 2048
                && next.bytes().all(url_char) =>
        {
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

/// Sets (or, with an empty `secret`, clears) the session cookie on `response`.
pub fn with_session(state: &AppState, mut response: Response, secret: &str) -> Response {
    let max_age = if secret.is_empty() {
        0
    } else {
        SESSION_LIFETIME.as_secs()
    };
    if let Ok(value) = HeaderValue::from_str(&session_cookie(state, secret, max_age)) {
        response.headers_mut().insert(SET_COOKIE, value);
    }
    response
}

fn signed_in(state: &AppState, secret: &str, next: Option<&str>) -> Response {
    with_session(state, see_other(local_path(next)), secret)
}

/// `page?error=<key>&...`: the page shows the problem's own message.
fn back_to(page: &str, problem: FormProblem, more: &[(&str, &str)]) -> Response {
    let mut pairs = vec![("error", problem.key())];
    pairs.extend_from_slice(more);
    see_other(&format!("{page}?{}", query(&pairs)))
}

/// The form problem an engine error is, for the field it names.
fn problem_of(e: &EngineError) -> FormProblem {
    match e {
        EngineError::TooManyRequests { .. } => FormProblem::Throttled,
        EngineError::Unauthorized(_) => FormProblem::Credentials,
        EngineError::Forbidden(_) => FormProblem::SetupCode,
        _ => match e.field() {
            Some("username") => FormProblem::Username,
            Some("password" | "new_password") => FormProblem::Password,
            Some("current_password") => FormProblem::CurrentPassword,
            _ => FormProblem::Failed,
        },
    }
}

/// `429` with `Retry-After`: a small page for a browser's form, our JSON error otherwise.
fn too_many(headers: &HeaderMap, e: EngineError, back: &str) -> Response {
    let error = ApiError::from(e);
    let wants_html = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    if !wants_html {
        return error.into_response();
    }
    let secs = error.retry_after.unwrap_or(1);
    let page = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Slipway</title>\
         <link rel=\"stylesheet\" href=\"/pkg/slipway.css\"></head>\
         <body class=\"min-h-screen bg-slate-950 text-slate-100\"><main class=\"mx-auto mt-10 max-w-sm px-4\">\
         <h1 class=\"text-2xl font-semibold\">Too many attempts</h1>\
         <p role=\"alert\" class=\"mt-4\">Too many sign-in attempts: try again in {secs} s.</p>\
         <p class=\"mt-4\"><a class=\"text-sky-300\" href=\"{back}\">Back</a></p></main></body></html>"
    );
    let mut response = (StatusCode::TOO_MANY_REQUESTS, page).into_response();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(RETRY_AFTER, secs.into());
    response
}

#[derive(Deserialize)]
pub struct SetupForm {
    #[serde(default)]
    code: String,
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

#[derive(Deserialize)]
pub struct PasswordForm {
    current_password: String,
    new_password: String,
    confirm: String,
}

/// `POST /auth/setup`: creates the admin account while none exists, with the setup code
/// printed at start, then signs in.
pub async fn setup(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<SetupForm>,
) -> Response {
    if let Err(refusal) = state.origins.check(&headers) {
        return refusal.into_response();
    }
    let auth = state.engine.auth();
    if auth.has_users() {
        return see_other("/login");
    }
    if !auth.setup_code_matches(&form.code) {
        return back_to("/setup", FormProblem::SetupCode, &[]);
    }
    let again = [
        ("username", form.username.as_str()),
        ("code", form.code.as_str()),
    ];
    if form.password != form.confirm {
        return back_to("/setup", FormProblem::Confirm, &again);
    }
    match auth
        .create_admin(&form.code, form.username.trim(), &form.password)
        .await
    {
        Ok(secret) => signed_in(&state, &secret, None),
        Err(EngineError::Conflict(engine::Conflict::AccountExists)) => see_other("/login"),
        Err(e) => {
            let problem = problem_of(&e);
            ApiError::from(e).log();
            back_to("/setup", problem, &again)
        }
    }
}

/// `POST /auth/login`. Password checks are throttled per address and per user.
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if let Err(refusal) = state.origins.check(&headers) {
        return refusal.into_response();
    }
    let next = local_path(form.next.as_deref());
    match state
        .engine
        .auth()
        .login(form.username.trim(), &form.password, peer.ip())
        .await
    {
        Ok(secret) => signed_in(&state, &secret, Some(next)),
        Err(e @ EngineError::TooManyRequests { .. }) => {
            too_many(&headers, e, &format!("/login?{}", query(&[("next", next)])))
        }
        Err(e) => {
            let problem = problem_of(&e);
            ApiError::from(e).log();
            back_to("/login", problem, &[("next", next)])
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
    with_session(&state, see_other("/login"), "")
}

/// Whose sessions "sign out everywhere" ends: a user's own, or (with an API token)
/// everyone's.
pub fn sessions_of(principal: &Principal) -> Option<&str> {
    (principal.via == Credential::Session).then_some(principal.name.as_str())
}

/// `POST /auth/logout-everywhere`: ends every session of the signed-in user.
pub async fn logout_everywhere(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Response {
    match state
        .engine
        .auth()
        .sign_out_everywhere(sessions_of(&principal))
        .await
    {
        Ok(_) => with_session(&state, see_other("/login"), ""),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// The user whose password a request may change: only a signed-in person's own.
pub fn password_owner(principal: &Principal) -> Result<&str, ApiError> {
    match principal.via {
        Credential::Session => Ok(&principal.name),
        _ => Err(ApiError::new(
            ErrorCode::Forbidden,
            "an API token has no password: sign in as the user to change it",
        )),
    }
}

/// `POST /auth/password`: a new password; every session of the user ends, and this
/// browser gets a new one.
pub async fn change_password(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    Form(form): Form<PasswordForm>,
) -> Response {
    let user = match password_owner(&principal) {
        Ok(user) => user,
        Err(refusal) => return refusal.into_response(),
    };
    if form.new_password != form.confirm {
        return back_to("/settings/account", FormProblem::Confirm, &[]);
    }
    match state
        .engine
        .auth()
        .change_password(user, &form.current_password, &form.new_password, peer.ip())
        .await
    {
        Ok(secret) => with_session(
            &state,
            see_other("/settings/account?done=password"),
            &secret,
        ),
        Err(e @ EngineError::TooManyRequests { .. }) => too_many(&headers, e, "/settings/account"),
        Err(e) => {
            let problem = problem_of(&e);
            ApiError::from(e).log();
            back_to("/settings/account", problem, &[])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn origin_must_be_the_servers_own() {
        let local = SocketAddr::from(([127, 0, 0, 1], 3000));
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
        let wide = Origins::new(None, SocketAddr::from(([0, 0, 0, 0], 3000)));
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
        assert_eq!(local_path(Some("/apps/3?x=1#log")), "/apps/3?x=1#log");
        for bad in [
            "//evil.example",
            "https://evil.example",
            "/\\evil",
            "",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r/evil.example",
            " //evil.example",
            "/ /evil.example",
            "/\u{0}x",
            "/é",
        ] {
            assert_eq!(local_path(Some(bad)), "/", "{bad:?}");
        }
    }
}
