//! The probe a bucket move sends on the turn queue. The consumer, which has database
//! bindings of its own, answers it by reporting in the control database every `DB_k` it is
//! bound to and the newest migration applied to each (`consumer_databases`). A move then
//! refuses a target the consumer cannot reach, instead of holding the bucket and turning
//! its turns into retries that never land.
//!
//! A probe is not a turn record: it has no `"v"`, and the consumer looks for it before it
//! decodes a turn.

use serde::{Deserialize, Serialize};

/// The `probe` field of a databases probe.
pub const DATABASES: &str = "databases";

/// `{"probe": "databases", "requestedAt": ms}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    pub probe: String,
    /// When the move asked (epoch ms). The consumer reports with this time, so the move can
    /// tell the answer to its own probe from an older one.
    pub requested_at: i64,
}

impl Probe {
    pub fn databases(now_ms: i64) -> Self {
        Self {
            probe: DATABASES.into(),
            requested_at: now_ms,
        }
    }

    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("a probe serializes")
    }

    /// The probe in a queue message body, if it is one. A cheap look at the text comes
    /// first: turn records never carry a `"probe"` key.
    pub fn parse(body: &str) -> Option<Self> {
        if !body.contains("\"probe\"") {
            return None;
        }
        serde_json::from_str::<Self>(body)
            .ok()
            .filter(|p| p.probe == DATABASES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_round_trip_and_turns_are_not_probes() {
        let p = Probe::databases(1_700_000_000_000);
        assert_eq!(Probe::parse(&p.encode()), Some(p));
        let turn = crate::record::sample("1", uuid::Uuid::nil(), 1, 1_700_000_000_000).encode();
        assert_eq!(Probe::parse(&turn), None);
        assert_eq!(Probe::parse(r#"{"probe":"other","requestedAt":1}"#), None);
        assert_eq!(Probe::parse("not json \"probe\""), None);
    }
}
