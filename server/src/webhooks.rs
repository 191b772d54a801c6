//! Deploy on git push: `POST /api/hooks/{app id}`, authenticated by the forge's signature
//! alone (no session, no token), checked in constant time against the app's secret:
//!
//! - Forgejo: `X-Forgejo-Signature: <hex HMAC-SHA256 of the body>`, event in
//!   `X-Forgejo-Event`, delivery in `X-Forgejo-Delivery`;
//! - Gitea: the same with `X-Gitea-*` (Forgejo sends those too, and both also send
//!   GitHub's headers: the most specific forge is read first);
//! - GitLab: `X-Gitlab-Token: <secret>`, event in `X-Gitlab-Event`, delivery in
//!   `Idempotency-Key` (the same across GitLab's retries) or `X-Gitlab-Event-UUID`;
//! - GitHub: `X-Hub-Signature-256: sha256=<hex>`, `X-GitHub-Event`, `X-GitHub-Delivery`.
//!
//! A push to the app's branch deploys the pushed commit; pings, tags, deleted branches and
//! other branches are answered `200 {"ignored": why}`; the engine makes redeliveries
//! idempotent.

use crate::AppState;
use crate::api::parse_id;
use crate::error::ApiError;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use engine::{Hook, Push};
use hmac::{Hmac, Mac};
use protocol::ErrorCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Largest webhook body read (PROTOCOL.md): pushes with many commits stay well below.
pub const BODY_LIMIT: usize = 1024 * 1024;

const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Forge {
    Forgejo,
    Gitea,
    GitLab,
    GitHub,
}

impl Forge {
    fn name(self) -> &'static str {
        match self {
            Forge::Forgejo => "forgejo",
            Forge::Gitea => "gitea",
            Forge::GitLab => "gitlab",
            Forge::GitHub => "github",
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        // Gitea sends its signature headers empty when no secret is set.
        .filter(|v| !v.is_empty())
}

/// Whether `signature` (hex) is the HMAC-SHA256 of `body` with `secret`, in constant time.
fn hmac_matches(secret: &str, body: &[u8], signature: &str) -> bool {
    let Ok(expected) = hex::decode(signature) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// The forge whose signature checks out, or `None`.
fn verify(headers: &HeaderMap, body: &[u8], secret: &str) -> Option<Forge> {
    if let Some(signature) = header(headers, "x-forgejo-signature") {
        return hmac_matches(secret, body, signature).then_some(Forge::Forgejo);
    }
    if let Some(signature) = header(headers, "x-gitea-signature") {
        return hmac_matches(secret, body, signature).then_some(Forge::Gitea);
    }
    if let Some(token) = header(headers, "x-gitlab-token") {
        // Compared as digests so the time does not depend on where they differ or on
        // their lengths.
        let (given, wanted) = (
            Sha256::digest(token.as_bytes()),
            Sha256::digest(secret.as_bytes()),
        );
        return bool::from(given.ct_eq(&wanted)).then_some(Forge::GitLab);
    }
    if let Some(signature) = header(headers, "x-hub-signature-256") {
        let hex = signature.strip_prefix("sha256=")?;
        return hmac_matches(secret, body, hex).then_some(Forge::GitHub);
    }
    None
}

/// The event and the delivery id a forge names in its headers.
fn event_and_delivery(forge: Forge, headers: &HeaderMap, body: &[u8]) -> (String, String) {
    let (event, delivery) = match forge {
        Forge::Forgejo => (
            header(headers, "x-forgejo-event"),
            header(headers, "x-forgejo-delivery"),
        ),
        Forge::Gitea => (
            header(headers, "x-gitea-event"),
            header(headers, "x-gitea-delivery"),
        ),
        Forge::GitLab => (
            header(headers, "x-gitlab-event"),
            header(headers, "idempotency-key").or_else(|| header(headers, "x-gitlab-event-uuid")),
        ),
        Forge::GitHub => (
            header(headers, "x-github-event"),
            header(headers, "x-github-delivery"),
        ),
    };
    // Without a delivery id, the body stands for the delivery: the same one twice is a
    // redelivery.
    let delivery = delivery
        .map(|d| d.chars().take(200).collect())
        .unwrap_or_else(|| format!("body-{}", hex::encode(Sha256::digest(body))));
    (event.unwrap_or("unknown").to_owned(), delivery)
}

/// What a signed delivery asks for.
fn read_push(forge: Forge, event: &str, payload: &Value) -> Push {
    let is_push = match forge {
        Forge::GitLab => event == "Push Hook",
        _ => event == "push",
    };
    if !is_push {
        return Push::Ignore(match (forge, event) {
            (Forge::GitHub, "ping") => "a ping: the webhook is set up".to_owned(),
            (Forge::GitLab, "Tag Push Hook") => "a tag push".to_owned(),
            (_, "delete") => "a deletion".to_owned(),
            _ => format!("a {event} event, not a push"),
        });
    }
    let reference = payload["ref"].as_str().unwrap_or_default();
    if let Some(tag) = reference.strip_prefix("refs/tags/") {
        return Push::Ignore(format!("a tag push ({tag})"));
    }
    let Some(branch) = reference.strip_prefix("refs/heads/") else {
        return Push::Ignore(format!("a push to {reference:?}, not to a branch"));
    };
    let commit = match forge {
        // GitLab: the commit to check out; null when the branch was deleted.
        Forge::GitLab => match payload.get("checkout_sha") {
            Some(serde_json::Value::Null) => Some(ZERO_SHA),
            Some(sha) => sha.as_str(),
            None => payload["after"].as_str(),
        },
        _ => payload["after"].as_str(),
    }
    .unwrap_or(ZERO_SHA);
    if commit == ZERO_SHA || payload["deleted"].as_bool() == Some(true) {
        return Push::Ignore(format!("branch {branch} was deleted"));
    }
    match protocol::validate::commit(commit) {
        Ok(commit) => Push::Branch {
            branch: branch.to_owned(),
            commit,
        },
        Err(_) => Push::Ignore(format!("the pushed commit {commit:?} is not a full SHA")),
    }
}

/// `POST /api/hooks/{id}`.
pub async fn receive(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                "the webhook body is larger than 1 MiB",
            )
        } else {
            ApiError::bad_request(format!("the webhook body could not be read: {rejection}"))
        }
    })?;
    let app = parse_id("app id", &id)?;
    let refused = || {
        ApiError::new(
            ErrorCode::Unauthorized,
            "signature missing or wrong: sign with the app's webhook secret \
             (X-Hub-Signature-256, X-Gitea-Signature, X-Forgejo-Signature or X-Gitlab-Token)",
        )
    };
    // An unknown app and a wrong signature look the same from outside.
    let secret = match state.engine.webhook_secret(app).await {
        Ok(Some(secret)) => secret,
        Ok(None) | Err(engine::EngineError::NotFound(_)) => return Err(refused()),
        Err(e) => return Err(e.into()),
    };
    let forge = verify(&headers, &body, &secret).ok_or_else(refused)?;
    let (event, delivery) = event_and_delivery(forge, &headers, &body);
    let payload: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the webhook body is not JSON: {e}")))?;
    let push = read_push(forge, &event, &payload);
    let delivery = state
        .engine
        .receive_hook(
            app,
            Hook {
                forge: forge.name().to_owned(),
                event,
                delivery,
                push,
            },
        )
        .await?;
    Ok(match (delivery.deployment_id, delivery.ignored) {
        (Some(deployment), _) => (
            StatusCode::ACCEPTED,
            Json(json!({"deployment_id": deployment})),
        )
            .into_response(),
        (None, why) => (
            StatusCode::OK,
            Json(json!({"ignored": why.unwrap_or_else(|| "nothing to do".into())})),
        )
            .into_response(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_s_own_test_vector() {
        // From GitHub's documentation on validating deliveries.
        assert!(hmac_matches(
            "It's a Secret to Everybody",
            b"Hello, World!",
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        ));
        assert!(!hmac_matches(
            "It's a Secret to Everybody",
            b"Hello, World?",
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        ));
        assert!(!hmac_matches("s", b"x", "not hex"));
    }

    #[test]
    fn pushes_tags_and_deletions() {
        let sha = "a".repeat(40);
        let push = json!({"ref": "refs/heads/main", "after": sha});
        assert!(
            matches!(read_push(Forge::GitHub, "push", &push), Push::Branch { branch, .. } if branch == "main")
        );
        let tag = json!({"ref": "refs/tags/v1", "after": sha});
        assert!(
            matches!(read_push(Forge::GitHub, "push", &tag), Push::Ignore(why) if why.contains("tag"))
        );
        let deleted = json!({"ref": "refs/heads/main", "after": ZERO_SHA, "deleted": true});
        assert!(
            matches!(read_push(Forge::Gitea, "push", &deleted), Push::Ignore(why) if why.contains("deleted"))
        );
        let gitlab = json!({"ref": "refs/heads/main", "after": sha, "checkout_sha": null});
        assert!(
            matches!(read_push(Forge::GitLab, "Push Hook", &gitlab), Push::Ignore(why) if why.contains("deleted"))
        );
        assert!(
            matches!(read_push(Forge::GitHub, "ping", &json!({})), Push::Ignore(why) if why.contains("ping"))
        );
    }
}
