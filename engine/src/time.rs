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

/// The timestamp `wait` from now.
pub fn after(wait: std::time::Duration) -> String {
    let now = Utc::now();
    chrono::Duration::from_std(wait)
        .ok()
        .and_then(|wait| now.checked_add_signed(wait))
        .map_or_else(|| format(DateTime::<Utc>::MAX_UTC), format)
}

/// The timestamp `wait` before timestamp `at` (`at` itself when it cannot be read).
pub fn before(at: &str, wait: std::time::Duration) -> String {
    DateTime::parse_from_rfc3339(at)
        .ok()
        .zip(chrono::Duration::from_std(wait).ok())
        .and_then(|(at, wait)| at.with_timezone(&Utc).checked_sub_signed(wait))
        .map_or_else(|| at.to_owned(), format)
}

/// Unix milliseconds of a timestamp of ours (0 when it cannot be read).
pub fn millis_of(at: &str) -> i64 {
    DateTime::parse_from_rfc3339(at).map_or(0, |at| at.timestamp_millis())
}

/// Milliseconds from now until a timestamp of ours (negative when it is past; 0 when it
/// cannot be read).
pub fn millis_until(at: &str) -> i64 {
    DateTime::parse_from_rfc3339(at)
        .map(|at| (at.with_timezone(&Utc) - Utc::now()).num_milliseconds())
        .unwrap_or(0)
}

/// Seconds between two timestamps of ours, to the millisecond.
pub fn seconds_between(start: &str, end: &str) -> Option<f64> {
    let start = DateTime::parse_from_rfc3339(start).ok()?;
    let end = DateTime::parse_from_rfc3339(end).ok()?;
    Some((end - start).num_milliseconds() as f64 / 1000.0)
}

/// Whether timestamp `a` is later than `b` (both RFC 3339, any precision); unreadable
/// ones count as later, so nothing is skipped on their account.
pub fn is_after(a: &str, b: &str) -> bool {
    match (
        DateTime::parse_from_rfc3339(a),
        DateTime::parse_from_rfc3339(b),
    ) {
        (Ok(a), Ok(b)) => a > b,
        _ => true,
    }
}

/// An RFC 3339 timestamp as Unix seconds with a fraction (`1764500000.123456789`).
pub fn unix_seconds(at: &str) -> Option<String> {
    let at = DateTime::parse_from_rfc3339(at).ok()?;
    Some(format!(
        "{}.{:09}",
        at.timestamp(),
        at.timestamp_subsec_nanos()
    ))
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
