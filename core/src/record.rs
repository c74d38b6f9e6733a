//! The turn record: what the chat Worker puts on the queue and the consumer stores.
//!
//! It is versioned (`"v"`), carried as JSON text, and self-checking: the consumer refuses a
//! record whose ids do not belong together, whose user id is not the one its identity
//! derives, or whose fields are out of range, so a bad producer or a hand-made record can
//! never write a half-valid turn.

use crate::character::{Character, Locale};
use crate::domain::{IdempotencyKey, ProviderUserId};
use crate::identity::{self, AuthProvider, Identity};
use crate::ids::{self, TurnIds};
use crate::request::MAX_MESSAGE_CHARS;
use crate::scoring::{self, Emotion};
use crate::time;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The record version this code writes.
pub const CURRENT_VERSION: u64 = 1;
/// Longest character reply kept, in characters.
pub const MAX_REPLY_CHARS: usize = 4000;
/// Longest character reply an engine may give, in UTF-8 bytes (4,000 characters of Japanese
/// text are 12,000): with the player's message and JSON escaping, a record stays far under
/// the queue's 128 KB message limit.
pub const MAX_REPLY_BYTES: usize = 8 * 1024;
/// Largest point-event metadata, as JSON text.
pub const MAX_METADATA_BYTES: usize = 2048;
/// Largest encoded record, after JSON escaping. The biggest record the chat Worker can build
/// (a 2,000-character message of 4-byte characters, a reply at both of its caps, half of it
/// quotes) is about 20 KB, so this bound is never met by the chat; it keeps a hand-made
/// record, and so a queue message and a row of the consumer's JSON, far under the queue's
/// 128 KB and D1's 2 MB (see `d1_limits`).
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

/// Version 1 of the turn record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TurnRecord {
    pub v: u64,
    /// The player's message id; the agent message and point event ids derive from it.
    pub turn_id: Uuid,
    pub session_id: Uuid,
    pub user: RecordUser,
    pub character_type: Character,
    pub locale: Locale,
    pub user_message: UserMessage,
    pub agent_message: AgentMessage,
    pub score: Score,
    pub point_event: PointEvent,
    pub game_over: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordUser {
    pub id: Uuid,
    pub provider: AuthProvider,
    pub provider_user_id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub wallet_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_username: Option<String>,
    /// When the sign-in behind this profile was made (`Identity::signed_at`): the consumer
    /// keeps the profile signed last. Absent in records written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_at: Option<i64>,
}

impl RecordUser {
    pub fn new(identity: &Identity) -> Self {
        Self {
            id: identity.user_id(),
            provider: identity.provider,
            provider_user_id: identity.provider_user_id.to_string(),
            display_name: identity.display_name.clone(),
            wallet_address: identity.wallet_address.clone(),
            x_user_id: identity.x_user_id.clone(),
            x_username: identity.x_username.clone(),
            signed_at: identity.signed_at,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserMessage {
    pub content: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentMessage {
    pub id: Uuid,
    pub content: String,
    pub emotion: Emotion,
    pub created_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Score {
    pub raw: i32,
    pub adjusted: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PointEvent {
    pub id: Uuid,
    pub delta: i32,
    pub reason: String,
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// Why a queue message is not a storable turn. Each is permanent: retrying cannot fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("undecodable: {0}")]
    Undecodable(String),
    #[error("unknown record version {0}")]
    UnknownVersion(String),
    #[error("invalid: {0}")]
    Invalid(String),
}

impl RecordError {
    /// The class name used in logs and dead letters.
    pub fn class(&self) -> &'static str {
        match self {
            Self::Undecodable(_) => "undecodable",
            Self::UnknownVersion(_) => "unknown_version",
            Self::Invalid(_) => "invalid",
        }
    }
}

/// What makes two deliveries "the same turn": the same player saying the same words in the
/// same session under the same turn id. The reply, scores and timestamps may differ between
/// a client's retries (an LLM engine is not deterministic), and the first stored wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnIdentity<'a> {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub content: &'a str,
}

impl TurnRecord {
    /// Decodes and validates a queue message body.
    pub fn decode(body: &str) -> Result<Self, RecordError> {
        let value: serde_json::Value =
            serde_json::from_str(body).map_err(|e| RecordError::Undecodable(e.to_string()))?;
        let version = match value.get("v") {
            Some(v) => v.clone(),
            None if value.is_object() => {
                return Err(RecordError::Invalid(
                    "the record has no version field 'v'".into(),
                ))
            }
            None => {
                return Err(RecordError::Undecodable(
                    "the body is not a JSON object".into(),
                ))
            }
        };
        if version.as_u64() != Some(CURRENT_VERSION) {
            return Err(RecordError::UnknownVersion(version.to_string()));
        }
        let record: Self =
            serde_json::from_value(value).map_err(|e| RecordError::Invalid(e.to_string()))?;
        record.validate()?;
        Ok(record)
    }

    /// The JSON text put on the queue.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("a turn record always serializes")
    }

    pub fn ids(&self) -> TurnIds {
        TurnIds {
            user_message: self.turn_id,
            agent_message: self.agent_message.id,
            point_event: self.point_event.id,
        }
    }

    pub fn identity(&self) -> TurnIdentity<'_> {
        TurnIdentity {
            user_id: self.user.id,
            session_id: self.session_id,
            content: &self.user_message.content,
        }
    }

    /// Checks everything the consumer relies on.
    pub fn validate(&self) -> Result<(), RecordError> {
        let invalid = |m: String| Err(RecordError::Invalid(m));
        if self.v != CURRENT_VERSION {
            return Err(RecordError::UnknownVersion(self.v.to_string()));
        }
        match TurnIds::from_turn_id(self.turn_id) {
            Some(ids) if ids == self.ids() => {}
            Some(_) => {
                return invalid(
                    "the agent message and point event ids do not derive from turnId".into(),
                )
            }
            None => return invalid("turnId is not a turn id (its last byte must be 0)".into()),
        }
        let who = &self.user;
        if ProviderUserId::parse(who.provider_user_id.as_str()).is_err() {
            return invalid("user.providerUserId must be 1 to 128 visible characters".into());
        }
        if who.id != ids::user_id(who.provider.as_str(), &who.provider_user_id) {
            return invalid(format!(
                "user.id is not the id of {}:{}",
                who.provider.as_str(),
                who.provider_user_id
            ));
        }
        if who
            .display_name
            .as_ref()
            .is_some_and(|n| n.chars().count() > identity::MAX_DISPLAY_NAME_CHARS)
        {
            return invalid("user.displayName is too long".into());
        }
        if who
            .wallet_address
            .as_ref()
            .is_some_and(|w| w.is_empty() || w.len() > identity::MAX_WALLET_LEN)
        {
            return invalid("user.walletAddress must be 1 to 128 bytes".into());
        }
        check_text(
            "userMessage.content",
            &self.user_message.content,
            MAX_MESSAGE_CHARS,
        )?;
        check_text(
            "agentMessage.content",
            &self.agent_message.content,
            MAX_REPLY_CHARS,
        )?;
        if self.agent_message.content.len() > MAX_REPLY_BYTES {
            return invalid(format!(
                "agentMessage.content is larger than {MAX_REPLY_BYTES} bytes"
            ));
        }
        for (name, at) in [
            ("userMessage.createdAt", self.user_message.created_at),
            ("agentMessage.createdAt", self.agent_message.created_at),
        ] {
            if !time::is_plausible(at) {
                return invalid(format!("{name} is not a plausible time in milliseconds"));
            }
        }
        if who.signed_at.is_some_and(|at| !time::is_plausible(at)) {
            return invalid("user.signedAt is not a plausible time in milliseconds".into());
        }
        if self.agent_message.created_at < self.user_message.created_at {
            return invalid("the reply is older than the message".into());
        }
        let s = self.score;
        if !(scoring::MIN_RAW..=scoring::MAX_RAW).contains(&s.raw) {
            return invalid(format!("score.raw {} is outside -10..=10", s.raw));
        }
        if !(scoring::MIN_ADJUSTED..=scoring::MAX_ADJUSTED).contains(&s.adjusted) {
            return invalid(format!("score.adjusted {} is out of range", s.adjusted));
        }
        if !(scoring::MIN_DELTA..=scoring::MAX_DELTA).contains(&self.point_event.delta) {
            return invalid(format!(
                "pointEvent.delta {} is out of range",
                self.point_event.delta
            ));
        }
        if self.point_event.reason.is_empty() || self.point_event.reason.len() > 64 {
            return invalid("pointEvent.reason must be 1 to 64 bytes".into());
        }
        if serde_json::to_string(&self.point_event.metadata)
            .map_or(true, |m| m.len() > MAX_METADATA_BYTES)
        {
            return invalid(format!(
                "pointEvent.metadata is larger than {MAX_METADATA_BYTES} bytes"
            ));
        }
        if let Some(key) = &self.idempotency_key {
            if IdempotencyKey::parse(key.as_str()).is_err() {
                return invalid("idempotencyKey must be 1 to 128 visible ASCII characters".into());
            }
        }
        let bytes = self.encode().len();
        if bytes > MAX_RECORD_BYTES {
            return invalid(format!(
                "the record is {bytes} bytes encoded, over {MAX_RECORD_BYTES}"
            ));
        }
        Ok(())
    }
}

fn check_text(name: &str, text: &str, max_chars: usize) -> Result<(), RecordError> {
    if text.is_empty() || text.chars().count() > max_chars {
        return Err(RecordError::Invalid(format!(
            "{name} must be 1 to {max_chars} characters"
        )));
    }
    Ok(())
}

/// Everything the chat Worker knows when it builds a record.
pub struct TurnInput<'a> {
    pub ids: TurnIds,
    pub session_id: Uuid,
    pub identity: &'a Identity,
    pub character: Character,
    pub locale: Locale,
    pub message: &'a str,
    pub message_at: i64,
    pub reply: &'a crate::engine::Reply,
    pub reply_at: i64,
    pub idempotency_key: Option<&'a IdempotencyKey>,
}

impl TurnRecord {
    /// Builds the record of one turn, applying the scoring rules.
    pub fn build(input: TurnInput<'_>) -> Self {
        let score = scoring::TurnScore::new(input.character, input.reply.score_raw);
        let mut metadata = serde_json::Map::new();
        metadata.insert("engine".into(), input.reply.engine.into());
        metadata.insert("characterType".into(), input.character.as_str().into());
        Self {
            v: CURRENT_VERSION,
            turn_id: input.ids.user_message,
            session_id: input.session_id,
            user: RecordUser::new(input.identity),
            character_type: input.character,
            locale: input.locale,
            user_message: UserMessage {
                content: input.message.to_owned(),
                created_at: input.message_at,
            },
            agent_message: AgentMessage {
                id: input.ids.agent_message,
                content: input.reply.text.clone(),
                emotion: input.reply.emotion,
                created_at: input.reply_at.max(input.message_at),
            },
            score: Score {
                raw: score.raw,
                adjusted: score.adjusted,
            },
            point_event: PointEvent {
                id: input.ids.point_event,
                delta: score.delta,
                reason: if score.game_over {
                    "game_over"
                } else {
                    "chat_turn"
                }
                .into(),
                metadata,
            },
            game_over: score.game_over,
            idempotency_key: input.idempotency_key.map(IdempotencyKey::to_string),
        }
    }
}

/// A valid record for tests and benchmarks: `n` varies the ids, content and score.
pub fn sample(provider_user_id: &str, session_id: Uuid, n: u64, at: i64) -> TurnRecord {
    let identity = Identity::new(AuthProvider::X, provider_user_id).expect("a valid sample id");
    let mut random = [0u8; 10];
    random[..8].copy_from_slice(&n.to_be_bytes());
    random[8] = 0x5a;
    let raw = (n % 21) as i32 - 10;
    let reply = crate::engine::Reply {
        text: format!("reply {n}"),
        score_raw: raw,
        emotion: Emotion::from_raw(raw),
        engine: "sample",
    };
    TurnRecord::build(TurnInput {
        ids: TurnIds::random(at, random),
        session_id,
        identity: &identity,
        character: Character::Kai,
        locale: Locale::En,
        message: &format!("message {n}"),
        message_at: at,
        reply: &reply,
        reply_at: at,
        idempotency_key: None,
    })
}

/// The largest record the chat Worker can build: every text at its cap, in the characters
/// that encode longest (4-byte emoji, and quotes, which JSON escapes to two bytes).
pub fn largest_sample(provider_user_id: &str, session_id: Uuid, n: u64, at: i64) -> TurnRecord {
    let mut r = sample(provider_user_id, session_id, n, at);
    let emoji = "\u{1F600}";
    let prefix = format!("{n} ");
    r.user_message.content = format!(
        "{prefix}{}",
        emoji.repeat(MAX_MESSAGE_CHARS - prefix.chars().count())
    );
    // 1,397 emoji and 2,603 quotes: 4,000 characters in 8,191 bytes, 10,791 once escaped.
    r.agent_message.content = format!("{}{}", emoji.repeat(1397), "\"".repeat(2603));
    r.user.display_name = Some(emoji.repeat(identity::MAX_DISPLAY_NAME_CHARS));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    const SESSION: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001);
    const AT: i64 = 1_700_000_000_000;

    #[test]
    fn a_built_record_round_trips() {
        let r = sample("42", SESSION, 3, AT);
        assert_eq!(TurnRecord::decode(&r.encode()).unwrap(), r);
    }

    #[test]
    fn the_largest_record_fits_and_bigger_ones_are_invalid() {
        let r = largest_sample("big", SESSION, 12345, AT);
        assert_eq!(r.validate(), Ok(()));
        let bytes = r.encode().len();
        assert!((19_000..=MAX_RECORD_BYTES).contains(&bytes), "{bytes}");
        assert_eq!(TurnRecord::decode(&r.encode()), Ok(r.clone()));
        let mut over = r.clone();
        over.user.x_username = Some("a".repeat(MAX_RECORD_BYTES));
        assert!(
            matches!(over.validate(), Err(RecordError::Invalid(m)) if m.contains("encoded")),
            "an oversize record is refused"
        );
        let mut long_reply = r;
        long_reply.agent_message.content = "\u{1F600}".repeat(MAX_REPLY_BYTES / 4 + 1);
        assert!(long_reply.validate().is_err(), "a reply over its byte cap");
    }

    #[test]
    fn undecodable_bodies() {
        for body in ["", "{", "nope", "\u{0}"] {
            assert_eq!(
                TurnRecord::decode(body).unwrap_err().class(),
                "undecodable",
                "{body:?}"
            );
        }
        assert_eq!(
            TurnRecord::decode("[1,2]").unwrap_err().class(),
            "undecodable"
        );
    }

    #[test]
    fn unknown_versions() {
        for v in ["0", "2", "\"1\"", "1.5", "null", "-1"] {
            let body = format!(r#"{{"v":{v}}}"#);
            assert_eq!(
                TurnRecord::decode(&body).unwrap_err().class(),
                "unknown_version",
                "{v}"
            );
        }
    }

    #[test]
    fn invalid_records() {
        let good = sample("42", SESSION, 3, AT);
        type Spoil = Box<dyn Fn(&mut TurnRecord)>;
        let cases: Vec<(&str, Spoil)> = vec![
            ("user id", Box::new(|r| r.user.id = Uuid::nil())),
            ("agent id", Box::new(|r| r.agent_message.id = Uuid::nil())),
            (
                "event id",
                Box::new(|r| r.point_event.id = r.agent_message.id),
            ),
            ("turn id", Box::new(|r| r.turn_id = r.agent_message.id)),
            (
                "empty content",
                Box::new(|r| r.user_message.content.clear()),
            ),
            (
                "long content",
                Box::new(|r| r.user_message.content = "a".repeat(MAX_MESSAGE_CHARS + 1)),
            ),
            ("raw", Box::new(|r| r.score.raw = 11)),
            ("adjusted", Box::new(|r| r.score.adjusted = 21)),
            ("delta", Box::new(|r| r.point_event.delta = 1_000_000)),
            ("time", Box::new(|r| r.user_message.created_at = 0)),
            (
                "order",
                Box::new(|r| r.agent_message.created_at = r.user_message.created_at - 1),
            ),
            ("reason", Box::new(|r| r.point_event.reason.clear())),
            (
                "key",
                Box::new(|r| r.idempotency_key = Some("has space".into())),
            ),
            (
                "wallet",
                Box::new(|r| r.user.wallet_address = Some(String::new())),
            ),
        ];
        for (name, spoil) in cases {
            let mut r = good.clone();
            spoil(&mut r);
            let err = TurnRecord::decode(&r.encode()).unwrap_err();
            assert_eq!(err.class(), "invalid", "{name}: {err}");
        }
    }

    #[test]
    fn wrong_types_and_unknown_fields_are_invalid() {
        let mut v: serde_json::Value =
            serde_json::from_str(&sample("42", SESSION, 3, AT).encode()).unwrap();
        v["score"]["raw"] = "high".into();
        assert_eq!(
            TurnRecord::decode(&v.to_string()).unwrap_err().class(),
            "invalid"
        );
        let mut v: serde_json::Value =
            serde_json::from_str(&sample("42", SESSION, 3, AT).encode()).unwrap();
        v["surprise"] = 1.into();
        assert_eq!(
            TurnRecord::decode(&v.to_string()).unwrap_err().class(),
            "invalid"
        );
        assert_eq!(TurnRecord::decode("{}").unwrap_err().class(), "invalid");
    }

    #[test]
    fn scoring_rules_apply_when_building() {
        let r = sample("42", SESSION, 0, AT); // raw -10: game over
        assert!(r.game_over);
        assert_eq!(r.point_event.delta, -10 + scoring::GAME_OVER_PENALTY);
        assert_eq!(r.point_event.reason, "game_over");
    }
}
