//! `GET /metrics` in the Prometheus text format (prometheus-client). The lifecycle counts
//! what happens as it commits it; gauges are read when scraped.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use protocol::Status;

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
enum StatusLabel {
    pending,
    cloning,
    building,
    deploying,
    success,
    failed,
    cancelled,
}

impl From<Status> for StatusLabel {
    fn from(status: Status) -> Self {
        match status {
            Status::Pending => StatusLabel::pending,
            Status::Cloning => StatusLabel::cloning,
            Status::Building => StatusLabel::building,
            Status::Deploying => StatusLabel::deploying,
            Status::Success => StatusLabel::success,
            Status::Failed => StatusLabel::failed,
            Status::Cancelled => StatusLabel::cancelled,
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: StatusLabel,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    stage: StatusLabel,
}

pub struct Metrics {
    registry: Registry,
    deployments: Family<StatusLabels, Counter>,
    durations: Family<StageLabels, Histogram>,
    queue_depth: Gauge,
    viewers: Gauge,
    log_lines: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let deployments = Family::<StatusLabels, Counter>::default();
        registry.register(
            "slipway_deployments",
            "Deployments that ended, by how",
            deployments.clone(),
        );
        // 0.1 s to about 55 min: a clone, a build, a health check, a whole deployment.
        let durations = Family::<StageLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.1, 2.0, 16))
        });
        registry.register(
            "slipway_deployment_duration_seconds",
            "Time deployments spent in each stage",
            durations.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "slipway_queue_depth",
            "Deployments waiting for a worker",
            queue_depth.clone(),
        );
        let viewers = Gauge::default();
        registry.register(
            "slipway_monitor_viewers",
            "Open monitor connections",
            viewers.clone(),
        );
        let log_lines = Counter::default();
        registry.register(
            "slipway_log_lines",
            "Log lines written by deployments",
            log_lines.clone(),
        );
        Metrics {
            registry,
            deployments,
            durations,
            queue_depth,
            viewers,
            log_lines,
        }
    }
}

impl Metrics {
    /// A deployment ended with `status`.
    pub(crate) fn ended(&self, status: Status) {
        self.deployments
            .get_or_create(&StatusLabels {
                status: status.into(),
            })
            .inc();
    }

    /// A deployment spent `seconds` in `stage`.
    pub(crate) fn stage(&self, stage: Status, seconds: f64) {
        self.durations
            .get_or_create(&StageLabels {
                stage: stage.into(),
            })
            .observe(seconds.max(0.0));
    }

    pub(crate) fn lines(&self, n: usize) {
        self.log_lines.inc_by(n as u64);
    }

    /// The text format, with the gauges as of now.
    pub fn encode(&self, queue_depth: u64, viewers: u64) -> String {
        self.queue_depth
            .set(i64::try_from(queue_depth).unwrap_or(i64::MAX));
        self.viewers.set(i64::try_from(viewers).unwrap_or(i64::MAX));
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_series_of_protocol_md() {
        let metrics = Metrics::default();
        metrics.ended(Status::Success);
        metrics.stage(Status::Building, 1.5);
        metrics.lines(3);
        let text = metrics.encode(2, 7);
        for expected in [
            "slipway_deployments_total{status=\"success\"} 1",
            "slipway_deployment_duration_seconds_count{stage=\"building\"} 1",
            "slipway_queue_depth 2",
            "slipway_monitor_viewers 7",
            "slipway_log_lines_total 3",
        ] {
            assert!(text.contains(expected), "{expected} in {text}");
        }
    }
}
