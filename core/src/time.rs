//! Timestamps are stored as integer milliseconds since the Unix epoch (they fit D1's 2^53
//! integer range and sort cheaply); the API shows them as RFC 3339 text.

use chrono::{DateTime, SecondsFormat};

/// Oldest timestamp a record may carry (2020-01-01): anything older is a bug upstream.
pub const MIN_MS: i64 = 1_577_836_800_000;
/// Newest timestamp a record may carry (2100-01-01).
pub const MAX_MS: i64 = 4_102_444_800_000;

/// Formats epoch milliseconds as RFC 3339 in UTC with millisecond precision.
pub fn to_rfc3339(ms: i64) -> Option<String> {
    DateTime::from_timestamp_millis(ms).map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// True when `ms` is inside the range a record may carry.
pub fn is_plausible(ms: i64) -> bool {
    (MIN_MS..=MAX_MS).contains(&ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_millis_in_utc() {
        assert_eq!(to_rfc3339(MIN_MS).unwrap(), "2020-01-01T00:00:00.000Z");
        assert_eq!(
            to_rfc3339(MIN_MS + 1_234).unwrap(),
            "2020-01-01T00:00:01.234Z"
        );
    }

    #[test]
    fn plausible_range_is_inclusive() {
        assert!(is_plausible(MIN_MS) && is_plausible(MAX_MS));
        assert!(!is_plausible(MIN_MS - 1) && !is_plausible(MAX_MS + 1) && !is_plausible(0));
    }
}
