//! Why a turn could not be stored, and what happens next.
//!
//! Permanent failures (the record itself is wrong) go to the dead-letter queue at once:
//! retrying cannot fix them. Transient failures (D1 errors, timeouts) are retried with
//! backoff; on the last attempt the message goes to the dead-letter queue with its last error.

use crate::record::RecordError;
use serde::{Deserialize, Serialize};

/// The class recorded with every dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// Not JSON, or not a JSON object.
    Undecodable,
    /// A `"v"` this code does not know.
    UnknownVersion,
    /// Decodes but fails validation.
    Invalid,
    /// A turn id already stored (or earlier in the batch) with a different turn.
    Conflict,
    /// D1 kept failing until the last attempt.
    Transient,
    /// Moved to the dead-letter queue by the queue itself, without our envelope (for
    /// example a consumer that crashed on every attempt).
    RetriesExhausted,
}

impl FailureClass {
    pub const ALL: [FailureClass; 6] = [
        Self::Undecodable,
        Self::UnknownVersion,
        Self::Invalid,
        Self::Conflict,
        Self::Transient,
        Self::RetriesExhausted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Undecodable => "undecodable",
            Self::UnknownVersion => "unknown_version",
            Self::Invalid => "invalid",
            Self::Conflict => "conflict",
            Self::Transient => "transient",
            Self::RetriesExhausted => "retries_exhausted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Permanent failures skip the retries.
    pub fn is_permanent(self) -> bool {
        !matches!(self, Self::Transient | Self::RetriesExhausted)
    }
}

impl From<&RecordError> for FailureClass {
    fn from(e: &RecordError) -> Self {
        match e {
            RecordError::Undecodable(_) => Self::Undecodable,
            RecordError::UnknownVersion(_) => Self::UnknownVersion,
            RecordError::Invalid(_) => Self::Invalid,
        }
    }
}

/// What the consumer does with a message whose D1 batch failed, given its delivery count
/// (1 on the first delivery) and the queue's `max_retries`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransientAction {
    /// Retry after this many seconds.
    Retry { delay_seconds: u32 },
    /// This was the last attempt: dead-letter it with the error, then ack.
    DeadLetter,
}

pub fn on_transient(
    attempts: u32,
    max_retries: u32,
    backoff: &crate::backoff::Backoff,
    unit: f64,
) -> TransientAction {
    if attempts > max_retries {
        TransientAction::DeadLetter
    } else {
        TransientAction::Retry {
            delay_seconds: backoff.delay_seconds(attempts, unit),
        }
    }
}

/// What the dead-letter consumer does with a letter it could not store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LetterAction {
    /// Retry it on the dead-letter queue, after a backoff.
    Retry,
    /// This was its last attempt: the queue would drop it (nothing stands behind the
    /// dead-letter queue). Send it again as a fresh message and ack this one.
    Requeue,
}

/// The action for a letter on its `attempts`-th delivery, with the dead-letter queue's
/// `max_retries` (a message gets `max_retries + 1` deliveries in all).
pub fn letter_action(attempts: u32, max_retries: u32) -> LetterAction {
    if attempts > max_retries {
        LetterAction::Requeue
    } else {
        LetterAction::Retry
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backoff::Backoff;
    use crate::record::TurnRecord;

    #[test]
    fn record_errors_map_to_permanent_classes() {
        let class = |body: &str| FailureClass::from(&TurnRecord::decode(body).unwrap_err());
        assert_eq!(class("not json"), FailureClass::Undecodable);
        assert_eq!(class(r#"{"v":99}"#), FailureClass::UnknownVersion);
        assert_eq!(class(r#"{"v":1}"#), FailureClass::Invalid);
        for c in [
            FailureClass::Undecodable,
            FailureClass::UnknownVersion,
            FailureClass::Invalid,
            FailureClass::Conflict,
        ] {
            assert!(c.is_permanent(), "{c:?}");
        }
        assert!(!FailureClass::Transient.is_permanent());
    }

    #[test]
    fn class_names_round_trip() {
        for c in FailureClass::ALL {
            assert_eq!(FailureClass::parse(c.as_str()), Some(c));
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
        assert_eq!(FailureClass::parse("nope"), None);
    }

    #[test]
    fn the_last_attempt_dead_letters() {
        let b = Backoff {
            base_seconds: 1,
            max_seconds: 60,
        };
        assert!(matches!(
            on_transient(1, 5, &b, 0.5),
            TransientAction::Retry { .. }
        ));
        assert!(matches!(
            on_transient(5, 5, &b, 0.5),
            TransientAction::Retry { .. }
        ));
        assert_eq!(on_transient(6, 5, &b, 0.5), TransientAction::DeadLetter);
        assert_eq!(on_transient(1, 0, &b, 0.5), TransientAction::DeadLetter);
    }

    #[test]
    fn a_letter_is_requeued_on_its_last_delivery_only() {
        assert_eq!(letter_action(1, 100), LetterAction::Retry);
        assert_eq!(letter_action(100, 100), LetterAction::Retry);
        assert_eq!(letter_action(101, 100), LetterAction::Requeue);
        assert_eq!(letter_action(1, 0), LetterAction::Requeue);
    }
}
