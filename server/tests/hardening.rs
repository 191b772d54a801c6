//! Attacks on a real server (port 0, synthetic runtime), one per hole of issue 12: DNS
//! rebinding, a setup without the printed code, password guessing, missing security
//! headers, an open redirect and attacker text on the sign-in page, and sessions that
//! outlive a password change. Each first mounts the attack, then checks the legitimate
//! path still works.
#![allow(clippy::unwrap_used)]

mod common;

use common::{ADMIN_TOKEN, TestServer, form_value, header, http_with};
use serde_json::{Value, json};
use std::net::{IpAddr, SocketAddr};

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

/// A request an attacker sends: method, path, body, headers.
type Attack<'a> = (&'a str, &'a str, Option<&'a str>, Vec<(&'a str, &'a str)>);
const PASSWORD: &str = "correct horse battery staple";

fn error_code(body: &str) -> String {
    serde_json::from_str::<Value>(body).unwrap_or(Value::Null)["error"]["code"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

/// Creates the admin account with the setup code; answers the session cookie.
async fn create_admin(server: &TestServer) -> String {
    let code = server.engine.auth().setup_code().expect("no account yet");
    let origin = format!("http://{}", server.addr);
    let form = format!(
        "code={code}&username=root&password={0}&confirm={0}",
        form_value(PASSWORD)
    );
    let (status, head, _) = http_with(
        server.addr,
        "POST",
        "/auth/setup",
        Some(&form),
        &[FORM, ("Origin", &origin)],
    )
    .await;
    assert_eq!(status, 303, "{head}");
    session_of(&head)
}

fn session_of(head: &str) -> String {
    header(head, "set-cookie")
        .expect("a session cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// A form sign-in sent from `from` (any 127.0.0.0/8 address is this machine).
async fn sign_in_from(
    addr: SocketAddr,
    from: IpAddr,
    username: &str,
    password: &str,
) -> (u16, String, String) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .local_address(from)
        .build()
        .unwrap();
    let body = format!(
        "username={}&password={}&next=/",
        form_value(username),
        form_value(password)
    );
    let response = client
        .post(format!("http://{addr}/auth/login"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("Origin", format!("http://{addr}"))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let mut head = String::new();
    for (name, value) in response.headers() {
        head.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap_or("")));
    }
    (status, head, response.text().await.unwrap())
}

/// A page on `rebind.example` whose name now resolves to 127.0.0.1 sends requests with
/// its own Host and a matching Origin. With no account yet, it used to create the admin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebinding_page_is_misdirected_everywhere() {
    let server = TestServer::start_synthetic_with_vars(
        "rebind",
        &[("SLIPWAY_ALLOWED_HOSTS", "deploy.internal, 10.9.8.7".into())],
    )
    .await;
    let addr = server.addr;
    let port = addr.port();
    let evil_host = format!("rebind.example:{port}");
    let evil_origin = format!("http://{evil_host}");
    // Even with the right code (which the page could not know), the Host stops it.
    let code = server.engine.auth().setup_code().unwrap();
    let form = format!(
        "code={code}&username=evil&password={0}&confirm={0}",
        form_value(PASSWORD)
    );
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let attacks: Vec<Attack> = vec![
        (
            "POST",
            "/auth/setup",
            Some(&form),
            vec![FORM, ("Host", &evil_host), ("Origin", &evil_origin)],
        ),
        ("GET", "/setup", None, vec![("Host", &evil_host)]),
        ("GET", "/", None, vec![("Host", &evil_host)]),
        ("GET", "/api/health", None, vec![("Host", &evil_host)]),
        (
            "GET",
            "/api/apps",
            None,
            vec![("Host", &evil_host), ("Authorization", &bearer)],
        ),
        (
            "POST",
            "/api/apps",
            Some(r#"{"name":"x","repo_url":"/tmp/x"}"#),
            vec![("Host", &evil_host), ("Authorization", &bearer)],
        ),
        ("GET", "/pkg/slipway.js", None, vec![("Host", &evil_host)]),
        ("GET", "/api/health", None, vec![("Host", "127.0.0.2")]),
        (
            "GET",
            "/api/health",
            None,
            vec![("Host", "localhost.rebind.example")],
        ),
        (
            "GET",
            "/api/health",
            None,
            vec![("Host", "deploy.internal.evil.example")],
        ),
    ];
    for (method, path, body, headers) in &attacks {
        let (status, head, answer) = http_with(addr, method, path, *body, headers).await;
        assert_eq!(status, 421, "{method} {path} {headers:?}: {head}{answer}");
        assert_eq!(error_code(&answer), "misdirected", "{answer}");
        assert!(answer.contains("SLIPWAY_ALLOWED_HOSTS"), "{answer}");
    }
    assert!(
        !server.engine.auth().has_users(),
        "the rebinding page made an account"
    );

    // The monitor's upgrade is refused the same way.
    let request = {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = format!("ws://{addr}/api/deployments/logs?id=1")
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("Host", evil_host.parse().unwrap());
        request
            .headers_mut()
            .insert("Authorization", bearer.parse().unwrap());
        request
    };
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 421)
        }
        other => panic!(
            "the monitor accepted a foreign Host: {:?}",
            other.map(|_| ())
        ),
    }

    // Our own names still work, on any port.
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "localhost".to_owned(),
        format!("[::1]:{port}"),
        "deploy.internal".to_owned(),
        "DEPLOY.INTERNAL:8443".to_owned(),
        "10.9.8.7".to_owned(),
    ] {
        let (status, _, answer) =
            http_with(addr, "GET", "/api/health", None, &[("Host", &host)]).await;
        assert_eq!(status, 200, "{host}: {answer}");
    }
    create_admin(&server).await;
    server.stop().await;
}

/// With no account, the setup form is refused without the code printed at start, also
/// to a stranger who reaches the install through its public address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_setup_needs_the_printed_code() {
    let server = TestServer::start_synthetic_with_vars(
        "setup-code",
        &[("SLIPWAY_PUBLIC_URL", "https://deploy.example.com".into())],
    )
    .await;
    let addr = server.addr;
    let public = [
        FORM,
        ("Host", "deploy.example.com"),
        ("Origin", "https://deploy.example.com"),
    ];
    let code = server.engine.auth().setup_code().unwrap();
    for guess in ["", "0", "00000000000000000000000000000000", &code[..31]] {
        let form = format!(
            "code={guess}&username=stranger&password={0}&confirm={0}",
            form_value(PASSWORD)
        );
        let (status, head, _) = http_with(addr, "POST", "/auth/setup", Some(&form), &public).await;
        assert_eq!(status, 303, "{head}");
        assert_eq!(
            header(&head, "location").as_deref(),
            Some("/setup?error=code"),
            "{head}"
        );
        assert!(header(&head, "set-cookie").is_none(), "{head}");
    }
    // The old form, without the field at all.
    let old_form = format!(
        "username=stranger&password={0}&confirm={0}",
        form_value(PASSWORD)
    );
    let (status, head, _) = http_with(addr, "POST", "/auth/setup", Some(&old_form), &public).await;
    assert_eq!(
        (status, header(&head, "location")),
        (303, Some("/setup?error=code".into()))
    );
    assert!(
        !server.engine.auth().has_users(),
        "a stranger made the account"
    );
    for path in ["/setup", "/setup?code=", "/setup?code=wrong"] {
        let (status, _, page) =
            http_with(addr, "GET", path, None, &[("Host", "deploy.example.com")]).await;
        assert_eq!(status, 403, "{path}");
        assert!(!page.contains("name=\"password\""), "{path} shows the form");
    }

    // The operator, with the printed link.
    let (status, _, page) = http_with(
        addr,
        "GET",
        &format!("/setup?code={code}"),
        None,
        &[("Host", "deploy.example.com")],
    )
    .await;
    assert_eq!(status, 200);
    assert!(page.contains(&format!("value=\"{code}\"")), "{page}");
    let form = format!(
        "code={code}&username=root&password={0}&confirm={0}",
        form_value(PASSWORD)
    );
    let (status, head, _) = http_with(addr, "POST", "/auth/setup", Some(&form), &public).await;
    assert_eq!((status, header(&head, "location")), (303, Some("/".into())));
    assert!(header(&head, "set-cookie").unwrap().contains("Secure"));
    assert!(server.engine.auth().has_users());
    assert_eq!(
        server.engine.auth().setup_code(),
        None,
        "the code works once"
    );
    let notice = server::setup_notice(&server.engine, addr);
    assert_eq!(notice, None);
    server.stop().await;
}

/// Password guessing: after a few failures from one address, or for one user, every
/// attempt waits (429 with Retry-After), before any password hash is computed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_passwords_gets_429_with_retry_after() {
    let server = TestServer::start_synthetic("throttle").await;
    create_admin(&server).await;
    let addr = server.addr;
    let ip = |n: u8| IpAddr::from([127, 0, 0, n]);
    let free = engine::throttle::FREE_FAILURES;
    for n in 0..free + 1 {
        let (status, head, _) = sign_in_from(addr, ip(2), "root", &format!("guess {n}")).await;
        assert_eq!(status, 303, "failure {n}");
        assert_eq!(
            header(&head, "location").as_deref(),
            Some("/login?error=credentials&next=%2F")
        );
    }
    // The address waits, for any user; the user waits, from any address.
    for (from, user, why) in [
        (ip(2), "root", "the address and the user"),
        (ip(2), "someone-else", "the address"),
        (ip(3), "root", "the user"),
    ] {
        let (status, head, body) = sign_in_from(addr, from, user, PASSWORD).await;
        assert_eq!(status, 429, "{why}: {head}");
        let retry: u64 = header(&head, "retry-after").unwrap().parse().unwrap();
        assert!((1..=900).contains(&retry), "{retry}");
        assert_eq!(error_code(&body), "too_many_requests", "{body}");
        assert!(header(&head, "set-cookie").is_none());
    }
    // Someone else, somewhere else, is not affected.
    let (status, head, _) = sign_in_from(addr, ip(4), "someone-else", "a wrong password").await;
    assert_eq!(
        (status, header(&head, "location").as_deref()),
        (303, Some("/login?error=credentials&next=%2F"))
    );
    // A browser's form gets a page saying so.
    let (status, head, page) = http_with(
        addr,
        "POST",
        "/auth/login",
        Some("username=root&password=x&next=%2Fapps%2F1"),
        &[
            FORM,
            ("Origin", &format!("http://{addr}")),
            ("Accept", "text/html,application/xhtml+xml"),
        ],
    )
    .await;
    assert_eq!(status, 429, "{head}");
    assert!(header(&head, "retry-after").is_some());
    assert!(page.contains("Too many sign-in attempts"), "{page}");
    assert!(page.contains("href=\"/login?next=%2Fapps%2F1\""), "{page}");
    server.stop().await;
}

/// Every page carries the security headers; its inline scripts all carry the nonce its
/// policy names, so none runs without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_carries_the_security_headers() {
    let server = TestServer::start_synthetic("headers").await;
    let addr = server.addr;
    let code = server.engine.auth().setup_code().unwrap();
    let mut pages: Vec<(String, Vec<(&str, String)>)> = vec![
        (format!("/setup?code={code}"), vec![]),
        ("/setup".into(), vec![]),
        ("/login".into(), vec![]),
    ];
    let mut answers = Vec::new();
    for (path, headers) in pages.drain(..) {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        answers.push((
            path.clone(),
            http_with(addr, "GET", &path, None, &headers).await,
        ));
    }
    let session = create_admin(&server).await;
    let (app_id, id) = server
        .finished_deployment("framed", "lines 3\ninterval_us 0\n")
        .await;
    for path in [
        "/".to_owned(),
        format!("/apps/{app_id}"),
        format!("/deployments/{id}"),
        "/settings/tokens".to_owned(),
        "/settings/account".to_owned(),
        "/no/such/page".to_owned(),
        "/login?next=/apps/1".to_owned(),
    ] {
        let answer = http_with(addr, "GET", &path, None, &[("Cookie", &session)]).await;
        answers.push((path, answer));
    }
    let mut scripts = 0;
    for (path, (status, head, page)) in &answers {
        assert!([200, 403, 404].contains(status), "{path}: {status} {head}");
        assert!(page.starts_with("<!DOCTYPE html>"), "{path}: {page}");
        let policy = header(head, "content-security-policy")
            .unwrap_or_else(|| panic!("{path} has no Content-Security-Policy: {head}"));
        assert_eq!(
            header(head, "x-frame-options").as_deref(),
            Some("DENY"),
            "{path}"
        );
        assert_eq!(
            header(head, "x-content-type-options").as_deref(),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(
            header(head, "referrer-policy").as_deref(),
            Some("same-origin"),
            "{path}"
        );
        assert!(
            policy.contains("frame-ancestors 'none'"),
            "{path}: {policy}"
        );
        assert!(!policy.contains(" 'unsafe-eval'"), "{path}: {policy}");
        let script_src = policy
            .split(';')
            .map(str::trim)
            .find(|d| d.starts_with("script-src "))
            .unwrap_or_else(|| panic!("{path}: no script-src in {policy}"));
        assert!(!script_src.contains("'unsafe-inline'"), "{policy}");
        let nonce = script_src
            .split_whitespace()
            .find_map(|s| s.strip_prefix("'nonce-"))
            .and_then(|s| s.strip_suffix('\''))
            .unwrap_or_else(|| panic!("{path}: no nonce in {policy}"));
        assert!(nonce.len() >= 16, "{nonce}");
        // Every inline script carries this response's nonce; no inline style element.
        for tag in page.split("<script").skip(1) {
            let open = tag.split('>').next().unwrap_or_default();
            assert!(
                open.contains(&format!("nonce=\"{nonce}\"")),
                "{path}: a script without the nonce: <script{open}>"
            );
            scripts += 1;
        }
        assert!(!page.contains("<style"), "{path} has an inline <style>");
        assert!(!page.contains(" onclick="), "{path} has an inline handler");
    }
    assert!(
        scripts >= answers.len(),
        "every page has the hydration script"
    );
    // A second request gets a different nonce.
    let (_, first, _) = http_with(addr, "GET", "/login", None, &[]).await;
    let (_, second, _) = http_with(addr, "GET", "/login", None, &[]).await;
    assert_ne!(
        header(&first, "content-security-policy"),
        header(&second, "content-security-policy")
    );
    // JSON answers and assets carry them too.
    for path in ["/api/health", "/api/apps", "/api/nothing", "/favicon.ico"] {
        let (_, head, _) = http_with(
            addr,
            "GET",
            path,
            None,
            &[("Authorization", &format!("Bearer {ADMIN_TOKEN}"))],
        )
        .await;
        assert_eq!(
            header(&head, "x-content-type-options").as_deref(),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(
            header(&head, "x-frame-options").as_deref(),
            Some("DENY"),
            "{path}"
        );
        assert!(
            header(&head, "content-security-policy")
                .is_some_and(|p| p.contains("frame-ancestors 'none'")),
            "{path}: {head}"
        );
    }
    server.stop().await;
}

/// `next` after sign-in leads only to a path of this site, and `/login?error=` shows only
/// our own messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_stay_here_and_the_sign_in_page_shows_only_our_messages() {
    let server = TestServer::start_synthetic("redirects").await;
    create_admin(&server).await;
    let addr = server.addr;
    let origin = format!("http://{addr}");
    for (next, expected) in [
        ("/\t/evil.example", "/"),
        ("/\n/evil.example", "/"),
        ("/\r\n/evil.example", "/"),
        ("\t//evil.example", "/"),
        ("//evil.example", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("javascript:alert(1)", "/"),
        ("/ /evil.example", "/"),
        ("/\u{7f}/evil.example", "/"),
        ("/\u{2028}/evil.example", "/"),
        ("/apps/1?tab=log#end", "/apps/1?tab=log#end"),
    ] {
        let body = format!(
            "username=root&password={}&next={}",
            form_value(PASSWORD),
            form_value(next)
        );
        let (status, head, _) = http_with(
            addr,
            "POST",
            "/auth/login",
            Some(&body),
            &[FORM, ("Origin", &origin)],
        )
        .await;
        assert_eq!(status, 303, "{next:?}: {head}");
        assert_eq!(
            header(&head, "location").as_deref(),
            Some(expected),
            "next={next:?}"
        );
    }
    // A failed sign-in keeps only a safe `next` too.
    let body = format!(
        "username=root&password=wrong&next={}",
        form_value("/\t/evil.example")
    );
    let (_, head, _) = http_with(
        addr,
        "POST",
        "/auth/login",
        Some(&body),
        &[FORM, ("Origin", &origin)],
    )
    .await;
    assert_eq!(
        header(&head, "location").as_deref(),
        Some("/login?error=credentials&next=%2F")
    );

    for error in [
        "Your account is locked. Call +1 555 0100 to unlock it",
        "<script>alert(1)</script>",
        "wrong username or password<img src=x>",
    ] {
        let path = format!("/login?error={}", form_value(error));
        let (status, _, page) = http_with(addr, "GET", &path, None, &[]).await;
        assert_eq!(status, 200);
        assert!(!page.contains("Call +1 555"), "attacker text shown");
        assert!(!page.contains("alert(1)"), "attacker text shown");
        assert!(!page.contains("img src"), "attacker text shown");
        assert!(
            !page.contains("role=\"alert\""),
            "an alert for an unknown error"
        );
    }
    let (_, _, page) = http_with(addr, "GET", "/login?error=credentials", None, &[]).await;
    assert!(page.contains("wrong username or password"), "{page}");
    let (_, _, page) = http_with(addr, "GET", "/login?error=throttled", None, &[]).await;
    assert!(page.contains("too many attempts"), "{page}");
    server.stop().await;
}

/// A stolen session ends when its owner changes the password or signs out everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_password_and_sign_out_everywhere_end_every_session() {
    let server = TestServer::start_synthetic("sessions").await;
    let addr = server.addr;
    let origin = format!("http://{addr}");
    let first = create_admin(&server).await;
    let (_, head, _) = sign_in_from(addr, IpAddr::from([127, 0, 0, 1]), "root", PASSWORD).await;
    let stolen = session_of(&head);
    let works = |cookie: String| async move {
        let (status, _, _) =
            http_with(addr, "GET", "/api/apps", None, &[("Cookie", &cookie)]).await;
        status == 200
    };
    assert!(works(first.clone()).await && works(stolen.clone()).await);

    // API tokens have no password; a wrong current password changes nothing.
    let change = |current: &str, new: &str| {
        json!({"current_password": current, "new_password": new}).to_string()
    };
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let (status, _, body) = http_with(
        addr,
        "POST",
        "/api/account/password",
        Some(&change(PASSWORD, "a brand new password")),
        &[("Authorization", &bearer)],
    )
    .await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (403, "forbidden"),
        "{body}"
    );
    let (status, _, body) = http_with(
        addr,
        "POST",
        "/api/account/password",
        Some(&change("not the password", "a brand new password")),
        &[("Cookie", &first), ("Origin", &origin)],
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("current_password"), "{body}");
    let (status, _, body) = http_with(
        addr,
        "POST",
        "/api/account/password",
        Some(&change(PASSWORD, "short")),
        &[("Cookie", &first), ("Origin", &origin)],
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("new_password"), "{body}");
    assert!(works(stolen.clone()).await);

    // The owner changes the password: every session ends, the owner gets a new one.
    let (status, head, body) = http_with(
        addr,
        "POST",
        "/api/account/password",
        Some(&change(PASSWORD, "a brand new password")),
        &[("Cookie", &first), ("Origin", &origin)],
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let fresh = session_of(&head);
    assert!(!works(stolen.clone()).await, "the stolen session survived");
    assert!(!works(first.clone()).await);
    assert!(works(fresh.clone()).await);
    let (status, _, _) = sign_in_from(addr, IpAddr::from([127, 0, 0, 5]), "root", PASSWORD).await;
    assert_eq!(status, 303);
    let (_, head, _) = sign_in_from(
        addr,
        IpAddr::from([127, 0, 0, 5]),
        "root",
        "a brand new password",
    )
    .await;
    assert_eq!(header(&head, "location").as_deref(), Some("/"));
    let other = session_of(&head);

    // Sign out everywhere, from the dashboard's form: both sessions end.
    let (status, head, _) = http_with(
        addr,
        "POST",
        "/auth/logout-everywhere",
        None,
        &[FORM, ("Cookie", &fresh), ("Origin", &origin)],
    )
    .await;
    assert_eq!(
        (status, header(&head, "location").as_deref()),
        (303, Some("/login"))
    );
    assert!(header(&head, "set-cookie").unwrap().contains("Max-Age=0"));
    assert!(!works(fresh).await && !works(other).await);

    // The password form, and the API's sign-out with a token (everyone's sessions).
    let (_, head, _) = sign_in_from(
        addr,
        IpAddr::from([127, 0, 0, 6]),
        "root",
        "a brand new password",
    )
    .await;
    let again = session_of(&head);
    let form = format!(
        "current_password={}&new_password={1}&confirm={1}",
        form_value("a brand new password"),
        form_value(PASSWORD)
    );
    let (status, head, _) = http_with(
        addr,
        "POST",
        "/auth/password",
        Some(&form),
        &[FORM, ("Cookie", &again), ("Origin", &origin)],
    )
    .await;
    assert_eq!(
        (status, header(&head, "location").as_deref()),
        (303, Some("/settings/account?done=password"))
    );
    let renewed = session_of(&head);
    assert!(!works(again).await && works(renewed.clone()).await);
    let (status, _, body) = http_with(
        addr,
        "DELETE",
        "/api/sessions",
        None,
        &[("Authorization", &bearer)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["ended"], 1);
    assert!(!works(renewed).await);
    server.stop().await;
}
