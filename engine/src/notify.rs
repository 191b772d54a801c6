//! Outgoing notifications when a deployment ends: delivered at least once from the
//! `notification_outbox` table, whose rows are written in the same transaction as the
//! deployment's terminal status (`db::transition`), so a restart loses none.
//!
//! One task delivers: woken when a deployment ends, otherwise asleep until the next retry
//! is due. A receiver that fails or takes longer than 10 s is tried again with backoff
//! (1 s doubling to 5 min) for an hour. Deliveries never hold up a deployment: the
//! lifecycle only writes rows and wakes this task.

use crate::db::{self, OutboxRow, Pool};
use hmac::{Hmac, Mac};
use protocol::{DeploymentSummary, NotificationBody, NotificationFormat, Status};
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How long a receiver has to answer.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How long a notification is retried.
const GIVE_UP_AFTER: Duration = Duration::from_secs(3600);
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(300);
/// Deliveries sent at once.
const BATCH: i64 = 32;

pub(crate) struct Notifier {
    pool: Pool,
    wake: Arc<Notify>,
    client: reqwest::Client,
    /// The dashboard's address, for the monitor's URL in a notification.
    public_url: String,
}

impl Notifier {
    pub(crate) fn new(pool: Pool, wake: Arc<Notify>, public_url: String) -> Notifier {
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Notifier {
            pool,
            wake,
            client,
            public_url,
        }
    }

    /// Delivers until `shutdown`.
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        loop {
            // Enabled before looking, so a wake-up meanwhile is not missed.
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let wait = match self.deliver_due().await {
                Ok(wait) => wait,
                Err(e) => {
                    tracing::warn!(error = %e, "notifications: cannot read the outbox");
                    Some(Duration::from_secs(5))
                }
            };
            let sleep = async {
                match wait {
                    Some(wait) => tokio::time::sleep(wait).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = woken => {}
                _ = sleep => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// Sends every due delivery; answers how long until the next one is due.
    async fn deliver_due(&self) -> crate::Result<Option<Duration>> {
        loop {
            let now = crate::time::now();
            let due = db::due_notifications(&self.pool, &now, BATCH).await?;
            if due.is_empty() {
                break;
            }
            let sends = due.into_iter().map(|row| self.deliver(row));
            futures_util::future::join_all(sends).await;
        }
        let next = db::next_notification_due(&self.pool).await?;
        Ok(next.map(|at| {
            let ms = crate::time::millis_until(&at).max(0);
            Duration::from_millis(ms as u64)
        }))
    }

    async fn deliver(&self, row: OutboxRow) {
        let outcome = self.send(&row).await;
        let now = crate::time::now();
        let result = match outcome {
            Ok(()) => db::notification_delivered(&self.pool, row.id, &now).await,
            Err(why) => {
                let attempts = row.attempts + 1;
                let age = crate::time::seconds_between(&row.created_at, &now).unwrap_or(0.0);
                let retry = retry_after(attempts);
                let give_up = age + retry.as_secs_f64() > GIVE_UP_AFTER.as_secs_f64();
                tracing::info!(outbox.id = row.id, attempts, %why, give_up, "notification not delivered");
                let next = if give_up {
                    None
                } else {
                    Some(crate::time::after(retry))
                };
                db::notification_failed(&self.pool, row.id, attempts, next.as_deref(), &why).await
            }
        };
        if let Err(e) = result {
            tracing::warn!(outbox.id = row.id, error = %e, "notifications: cannot record a delivery");
        }
    }

    async fn send(&self, row: &OutboxRow) -> Result<(), String> {
        let summary: DeploymentSummary =
            serde_json::from_str(&row.summary).map_err(|e| format!("stored summary: {e}"))?;
        let monitor_url = format!(
            "{}/deployments/{}",
            self.public_url.trim_end_matches('/'),
            summary.id
        );
        let body = match row.format {
            NotificationFormat::Json => serde_json::to_string(&NotificationBody {
                deployment: summary,
                app_name: row.app_name.clone(),
                monitor_url,
            }),
            NotificationFormat::Slack => serde_json::to_string(
                &serde_json::json!({"text": slack_text(&row.app_name, &summary, &monitor_url)}),
            ),
        }
        .map_err(|e| e.to_string())?;
        let response = self
            .client
            .post(&row.url)
            .header("Content-Type", "application/json")
            .header("User-Agent", "slipway-notifications")
            .header(
                "X-Slipway-Signature",
                format!("sha256={}", sign(&row.secret, &body)),
            )
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("answered {}", response.status()))
        }
    }
}

/// The `X-Slipway-Signature` of a body: hex HMAC-SHA256 with the notification's secret.
pub fn sign(secret: &str, body: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn retry_after(attempts: i64) -> Duration {
    let exp = u32::try_from(attempts.clamp(1, 20) - 1).unwrap_or(0);
    FIRST_RETRY
        .saturating_mul(2u32.saturating_pow(exp))
        .min(MAX_RETRY)
}

fn slack_text(app: &str, d: &DeploymentSummary, monitor_url: &str) -> String {
    let what = match d.status {
        Status::Success => "is live".to_owned(),
        Status::Failed if !d.error_message.is_empty() => format!("failed: {}", d.error_message),
        Status::Failed => "failed".to_owned(),
        Status::Cancelled => "was cancelled".to_owned(),
        other => other.as_str().to_owned(),
    };
    let commit = d
        .commit
        .as_deref()
        .map(|c| format!(" ({})", &c[..c.len().min(10)]))
        .unwrap_or_default();
    format!(
        "{app}: deployment #{}{commit} {what} <{monitor_url}|monitor>",
        d.id
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_from_one_second_to_five_minutes() {
        let secs: Vec<u64> = (1..=11).map(|a| retry_after(a).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
    }

    #[test]
    fn signatures_are_hex_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
