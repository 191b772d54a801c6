//! Security headers on every response (PROTOCOL.md, "Security limits").
//!
//! Every HTML page gets a `Content-Security-Policy` whose scripts are this site's files
//! and the inline scripts that carry the page's nonce: Leptos' hydration script (given
//! the nonce through [`provide_request_nonce`]) and the monitor's scroll script. The
//! WebAssembly needs `'wasm-unsafe-eval'`. Styles may be inline attributes (the log's
//! ANSI colours and the progress bar's width are computed), never inline `<style>`
//! elements. No page may be framed (`frame-ancestors 'none'` and `X-Frame-Options`),
//! so the Deploy and Revoke buttons cannot be clickjacked.

use axum::extract::Request;
use axum::http::header::{
    CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use leptos::nonce::Nonce;

/// The policy of an HTML page whose inline scripts carry `nonce`.
pub fn page_policy(nonce: &str) -> String {
    format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self' 'unsafe-inline'; style-src-elem 'self'; img-src 'self' data:; \
         connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'"
    )
}

/// The policy of everything else (JSON, assets): nothing may run or frame it.
const OTHER_POLICY: &str = "default-src 'none'; frame-ancestors 'none'; sandbox";

/// Gives every request a fresh nonce (for the page it may render) and every response
/// the security headers.
pub async fn security_headers(mut request: Request, next: Next) -> Response {
    let nonce = Nonce::new();
    request.extensions_mut().insert(nonce.clone());
    let mut response = next.run(request).await;
    set(response.headers_mut(), &nonce);
    response
}

fn set(headers: &mut HeaderMap, nonce: &Nonce) {
    let html = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    let policy = if html {
        page_policy(nonce)
    } else {
        OTHER_POLICY.to_owned()
    };
    if let Ok(value) = HeaderValue::from_str(&policy) {
        headers.insert(CONTENT_SECURITY_POLICY, value);
    }
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
}

/// For Leptos' rendering context: the nonce [`security_headers`] gave this request, so
/// the scripts Leptos writes inline carry the one the policy names.
pub fn provide_request_nonce() {
    use leptos::prelude::{provide_context, use_context};
    if let Some(nonce) = use_context::<axum::http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Nonce>().cloned())
    {
        provide_context(nonce);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_get_a_nonce_and_everything_else_nothing() -> Result<(), axum::http::header::ToStrError>
    {
        let nonce = Nonce::new();
        let mut page = HeaderMap::new();
        page.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        set(&mut page, &nonce);
        let policy = page[CONTENT_SECURITY_POLICY].to_str()?;
        assert!(policy.contains(&format!("'nonce-{}'", &*nonce)), "{policy}");
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
        assert!(
            !policy.contains("script-src 'self' 'unsafe-inline'"),
            "{policy}"
        );
        assert_eq!(page[X_FRAME_OPTIONS], "DENY");
        let mut json = HeaderMap::new();
        json.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        set(&mut json, &nonce);
        assert_eq!(json[CONTENT_SECURITY_POLICY], OTHER_POLICY);
        assert_eq!(json[X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(json[REFERRER_POLICY], "same-origin");
        Ok(())
    }
}
