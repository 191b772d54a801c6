//! Timestamps as PROTOCOL.md writes them: RFC 3339, UTC, milliseconds.

use chrono::{DateTime, SecondsFormat, Utc};

pub fn now() -> String {
    format(Utc::now())
}

pub fn format(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn from_millis(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(format)
        .unwrap_or_default()
}

/// Seconds between two timestamps of ours, to the millisecond.
pub fn seconds_between(start: &str, end: &str) -> Option<f64> {
    let start = DateTime::parse_from_rfc3339(start).ok()?;
    let end = DateTime::parse_from_rfc3339(end).ok()?;
    Some((end - start).num_milliseconds() as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_with_milliseconds_in_utc() {
        assert_eq!(
            super::from_millis(1_795_835_468_123),
            "2026-11-28T03:11:08.123Z"
        );
        assert_eq!(
            super::seconds_between("2026-11-28T03:11:08.123Z", "2026-11-28T03:11:10.000Z"),
            Some(1.877)
        );
    }
}
