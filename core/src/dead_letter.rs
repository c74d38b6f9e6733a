//! Dead letters: the envelope a failed turn travels in on the dead-letter queue, and the
//! verdicts a replay dry run gives.
//!
//! The consumer wraps each failure with its class, error text and attempts, so the archive
//! says *why*; Cloudflare's own move to the dead-letter queue after `max_retries` says
//! nothing, and such a bare message is archived as `retries_exhausted`.

use crate::batch::StoredTurn;
use crate::failure::FailureClass;
use crate::record::TurnRecord;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Envelope format version (the `deadLetter` field marks a body as an envelope).
pub const ENVELOPE_VERSION: u32 = 1;
/// Longest error text kept.
pub const MAX_ERROR_CHARS: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Envelope {
    pub dead_letter: u32,
    /// The id of the failed queue message: the letter's id, so a letter delivered twice is
    /// stored once.
    pub message_id: String,
    /// The turn the payload names, when it names one.
    pub turn_id: Option<Uuid>,
    pub class: FailureClass,
    pub error: String,
    pub attempts: u32,
    pub first_failed_at: i64,
    pub last_failed_at: i64,
    /// The original message body, verbatim.
    pub payload: String,
    /// The keyed hash of the payload's player and when its turn was made, set by the
    /// consumer as it stores the letter: an erased player's letter is not stored
    /// (`sql::STORE_LETTERS`). Never sent on the queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erasure_tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn_at: Option<i64>,
}

impl Envelope {
    pub fn new(
        message_id: &str,
        payload: &str,
        class: FailureClass,
        error: &str,
        attempts: u32,
        first_failed_at: i64,
        now_ms: i64,
    ) -> Self {
        Self {
            dead_letter: ENVELOPE_VERSION,
            message_id: message_id.to_owned(),
            turn_id: turn_id_of(payload),
            class,
            error: error.chars().take(MAX_ERROR_CHARS).collect(),
            attempts,
            first_failed_at: first_failed_at.min(now_ms),
            last_failed_at: now_ms,
            payload: payload.to_owned(),
            erasure_tag: None,
            turn_at: None,
        }
    }

    /// Largest envelope put on a queue (a message may be 128 KB).
    pub const MAX_BYTES: usize = 120 * 1024;

    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("an envelope serializes")
    }

    /// The envelope as JSON text of at most `max_bytes`, measured after JSON escaping (a
    /// control byte escapes to six): an oversize payload keeps its longest prefix that fits,
    /// cut on a character boundary, and the error says so, rather than the letter being
    /// unsendable. `max_bytes` must leave room for the rest of the envelope (an error is at
    /// most `MAX_ERROR_CHARS` characters); [`Self::MAX_BYTES`] leaves plenty.
    pub fn encode_within(&self, max_bytes: usize) -> String {
        let text = self.encode();
        if text.len() <= max_bytes {
            return text;
        }
        let original = self.payload.len();
        let cut_to = |keep: usize| {
            let mut cut = self.clone();
            cut.payload.truncate(keep);
            cut.error = format!(
                "{} (payload of {original} bytes truncated to {keep})",
                cut.error
            );
            cut.encode()
        };
        // Binary search over the payload's character boundaries for the longest prefix
        // whose envelope fits: escaping makes the encoded size grow with the prefix, but not
        // in step with it.
        let bounds: Vec<usize> = self.payload.char_indices().map(|(i, _)| i).collect();
        let (mut fits, mut over) = (0, bounds.len());
        while over - fits > 1 {
            let mid = (fits + over) / 2;
            if cut_to(bounds[mid]).len() <= max_bytes {
                fits = mid;
            } else {
                over = mid;
            }
        }
        cut_to(bounds.get(fits).copied().unwrap_or(0))
    }

    /// Reads a dead-letter queue body: our envelope, or a bare message the queue moved there
    /// by itself after `max_retries`.
    pub fn from_queue_body(
        message_id: &str,
        body: &str,
        attempts: u32,
        sent_at: i64,
        now_ms: i64,
    ) -> Self {
        match serde_json::from_str::<Self>(body) {
            Ok(envelope) if envelope.dead_letter == ENVELOPE_VERSION => envelope,
            _ => Self::new(
                message_id,
                body,
                FailureClass::RetriesExhausted,
                "the queue moved this message here after max_retries without a reason",
                attempts,
                sent_at,
                now_ms,
            ),
        }
    }
}

/// The turn id a payload names, if it is JSON with a UUID `turnId`.
fn turn_id_of(payload: &str) -> Option<Uuid> {
    let value: serde_json::Value = serde_json::from_str(payload).ok()?;
    value
        .get("turnId")?
        .as_str()
        .and_then(|s| Uuid::try_parse(s).ok())
}

/// What replaying a letter would do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The turn is not stored: replaying stores it.
    WouldApply,
    /// The same turn is stored: replaying changes nothing.
    AlreadyApplied,
    /// A different turn is stored under this id: replaying would dead-letter it again.
    Conflict,
    /// The payload is not a valid record: replaying would dead-letter it again.
    Invalid,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WouldApply => "would_apply",
            Self::AlreadyApplied => "already_applied",
            Self::Conflict => "conflict",
            Self::Invalid => "invalid",
        }
    }

    /// Whether a real replay re-queues the letter. Conflicts and invalid payloads stay
    /// pending: queueing them again would only make another dead letter.
    pub fn replayable(self) -> bool {
        matches!(self, Self::WouldApply | Self::AlreadyApplied)
    }
}

/// The verdict for a payload, given what is stored under its turn id, with a reason for
/// people.
pub fn verdict(payload: &str, stored: Option<&StoredTurn>) -> (Verdict, String) {
    match TurnRecord::decode(payload) {
        Err(e) => (Verdict::Invalid, e.to_string()),
        Ok(record) => match stored {
            None => (Verdict::WouldApply, "the turn is not stored".into()),
            Some(s) if s.matches(&record) => {
                (Verdict::AlreadyApplied, "the same turn is stored".into())
            }
            Some(_) => (
                Verdict::Conflict,
                "a different turn is stored under this turn id".into(),
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::sample;

    const SESSION: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001);

    #[test]
    fn envelopes_round_trip_and_bare_bodies_are_exhausted_retries() {
        let payload = sample("1", SESSION, 1, 1_700_000_000_000).encode();
        let e = Envelope::new("m1", &payload, FailureClass::Conflict, "clash", 1, 5, 10);
        assert_eq!(
            e.turn_id,
            Some(sample("1", SESSION, 1, 1_700_000_000_000).turn_id)
        );
        assert_eq!(Envelope::from_queue_body("other", &e.encode(), 1, 0, 99), e);
        let bare = Envelope::from_queue_body("m2", "garbage", 6, 3, 99);
        assert_eq!(bare.class, FailureClass::RetriesExhausted);
        assert_eq!(
            (
                bare.message_id.as_str(),
                bare.payload.as_str(),
                bare.attempts
            ),
            ("m2", "garbage", 6)
        );
        assert_eq!(
            (bare.first_failed_at, bare.last_failed_at, bare.turn_id),
            (3, 99, None)
        );
    }

    #[test]
    fn oversize_envelopes_are_cut_to_fit() {
        let e = Envelope::new(
            "m",
            &"\u{1F600}".repeat(100_000),
            FailureClass::Undecodable,
            "bad",
            1,
            0,
            1,
        );
        let text = e.encode_within(Envelope::MAX_BYTES);
        assert!(text.len() <= Envelope::MAX_BYTES, "{}", text.len());
        let back: Envelope = serde_json::from_str(&text).unwrap();
        assert!(back.error.contains("truncated"));
        assert_eq!(e.encode_within(usize::MAX), e.encode());
    }

    #[test]
    fn an_envelope_of_control_bytes_fits_after_escaping() {
        let payload = "\u{1}".repeat(25_000);
        let e = Envelope::new("m", &payload, FailureClass::Undecodable, "bad", 1, 0, 1);
        assert!(
            e.encode().len() > 128 * 1024,
            "escaped it would not fit a queue message"
        );
        let text = e.encode_within(Envelope::MAX_BYTES);
        assert!(text.len() <= Envelope::MAX_BYTES, "{}", text.len());
        let back: Envelope = serde_json::from_str(&text).unwrap();
        assert!(payload.starts_with(&back.payload));
        // The longest prefix that fits: six bytes more would not.
        assert!(
            back.payload.len() * 6 > Envelope::MAX_BYTES - 2_000,
            "{}",
            back.payload.len()
        );
        assert!(
            back.error.contains("payload of 25000 bytes truncated to"),
            "{}",
            back.error
        );
    }

    #[test]
    fn error_text_is_bounded() {
        let e = Envelope::new(
            "m",
            "x",
            FailureClass::Transient,
            &"e".repeat(5000),
            6,
            0,
            1,
        );
        assert_eq!(e.error.chars().count(), MAX_ERROR_CHARS);
    }

    #[test]
    fn verdicts() {
        let r = sample("1", SESSION, 1, 1_700_000_000_000);
        let same = StoredTurn {
            id: r.turn_id.to_string(),
            user_id: r.user.id.to_string(),
            session_id: r.session_id.to_string(),
            content: r.user_message.content.clone(),
        };
        let other = StoredTurn {
            content: "else".into(),
            ..same.clone()
        };
        assert_eq!(verdict(&r.encode(), None).0, Verdict::WouldApply);
        assert_eq!(verdict(&r.encode(), Some(&same)).0, Verdict::AlreadyApplied);
        assert_eq!(verdict(&r.encode(), Some(&other)).0, Verdict::Conflict);
        assert_eq!(verdict("{", None).0, Verdict::Invalid);
        assert!(Verdict::WouldApply.replayable() && Verdict::AlreadyApplied.replayable());
        assert!(!Verdict::Conflict.replayable() && !Verdict::Invalid.replayable());
    }
}
