//! The DNS rebinding defence: the dashboard and the API answer only requests whose `Host`
//! is one of this server's own names. A page on `rebind.example` whose name later
//! resolves to 127.0.0.1 reaches this server with `Host: rebind.example`, and gets `421`
//! with code `misdirected`, whatever its `Origin` says.
//!
//! Allowed (PROTOCOL.md, "Security limits"): the listen address, `localhost`,
//! `127.0.0.1`, `[::1]`, the host of `SLIPWAY_PUBLIC_URL` and the names in
//! `SLIPWAY_ALLOWED_HOSTS`; on any port (a reverse proxy on the same machine may forward
//! another port's requests).

use crate::AppState;
use crate::error::ApiError;
use axum::extract::{Request, State};
use axum::http::header::HOST;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use protocol::ErrorCode;
use std::net::SocketAddr;

#[derive(Debug, Clone)]
pub struct AllowedHosts {
    /// Lower case, without port; IPv6 addresses in brackets.
    names: Vec<String>,
}

/// The host part of a `Host` header (`name`, `name:port`, `[v6]:port`), lower case and
/// without a trailing dot; `None` when it is not of that form.
fn host_name(header: &str) -> Option<String> {
    let header = header.trim();
    let (host, port) = match header.strip_prefix('[') {
        Some(v6) => {
            let (inside, rest) = v6.split_once(']')?;
            (format!("[{inside}]"), rest.strip_prefix(':'))
        }
        None => match header.split_once(':') {
            Some((host, port)) => (host.to_owned(), Some(port)),
            None => (header.to_owned(), None),
        },
    };
    if port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let host = host.strip_suffix('.').unwrap_or(&host).to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

impl AllowedHosts {
    pub fn new(local: SocketAddr, public_url: Option<&str>, extra: &[String]) -> AllowedHosts {
        let listen = match local {
            SocketAddr::V4(v4) => v4.ip().to_string(),
            SocketAddr::V6(v6) => format!("[{}]", v6.ip()),
        };
        let mut names = vec![
            listen,
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "[::1]".to_owned(),
        ];
        if let Some(host) = public_url
            .and_then(|url| url::Url::parse(url).ok())
            .and_then(|url| url.host_str().map(str::to_ascii_lowercase))
        {
            names.push(host);
        }
        names.extend(extra.iter().cloned());
        names.dedup();
        AllowedHosts { names }
    }

    /// Whether a request with this `Host` header is for this server.
    pub fn allows(&self, header: &str) -> bool {
        host_name(header).is_some_and(|host| self.names.contains(&host))
    }
}

/// Refuses, before anything else runs, every request whose `Host` is not allowed.
pub async fn check(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.to_string()));
    match host {
        Some(host) if state.hosts.allows(&host) => next.run(request).await,
        Some(host) => {
            let shown: String = host.chars().take(100).collect();
            ApiError::new(
                ErrorCode::Misdirected,
                format!(
                    "Host {shown:?} is not a name of this server: add it to SLIPWAY_ALLOWED_HOSTS (or SLIPWAY_PUBLIC_URL) if it is"
                ),
            )
            .into_response()
        }
        None => ApiError::new(
            ErrorCode::Misdirected,
            "the Host header is missing: this server answers only for its own names",
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_own_names_are_allowed() {
        let hosts = AllowedHosts::new(
            std::net::SocketAddr::from(([127, 0, 0, 1], 3000)),
            Some("https://deploy.example.com"),
            &["ops.example.net".to_owned(), "10.0.0.7".to_owned()],
        );
        for ok in [
            "127.0.0.1:3000",
            "127.0.0.1",
            "localhost:3000",
            "LOCALHOST:8080",
            "localhost.",
            "[::1]:3000",
            "deploy.example.com",
            "deploy.example.com:443",
            "ops.example.net",
            "10.0.0.7:3000",
        ] {
            assert!(hosts.allows(ok), "{ok}");
        }
        for bad in [
            "rebind.example:3000",
            "rebind.example",
            "127.0.0.2:3000",
            "localhost.rebind.example",
            "deploy.example.com.evil.example",
            "localhost:3000:1",
            "localhost:",
            "localhost:abc",
            "[::1",
            "",
            "0.0.0.0:3000",
        ] {
            assert!(!hosts.allows(bad), "{bad}");
        }
        let v6 = AllowedHosts::new(
            std::net::SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 3000)),
            None,
            &[],
        );
        assert!(v6.allows("[::]:3000"));
        assert!(v6.allows("[::1]:3000"));
    }
}
