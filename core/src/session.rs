//! A chat session's live state, and the decisions its Durable Object (`SessionActor` in the
//! chat Worker) takes on each turn.
//!
//! The actor is the one authority for a session while it is played: who owns it, whether its
//! game is over, the last turns the character remembers, and every idempotency key it has
//! answered with the exact answer. D1 stays the system of record across players (the queue's
//! consumer writes it); the actor never waits on D1 on the chat path.
//!
//! Everything here is plain data and pure functions, so the rules are tested natively and the
//! actor itself only loads state, calls [`decide_turn`], and stores the outcome.

use crate::character::{Character, Locale};
use crate::domain::{IdempotencyKey, SessionId};
use crate::engine::HistoryTurn;
use crate::identity::Identity;
use crate::scoring::Emotion;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Turns an actor remembers for the engine's context unless `SESSION_HISTORY_TURNS` says
/// otherwise. The full history stays in D1.
pub const DEFAULT_HISTORY_TURNS: u32 = 20;
/// The most turns an actor may be configured to keep.
pub const MAX_HISTORY_TURNS: u32 = 200;
/// How long an answered key keeps its exact answer. After that the key still refuses another
/// message (its digest is kept), but a retry of the same message gets `idempotency_key_expired`.
pub const ANSWER_KEEP_MS: i64 = 24 * 60 * 60 * 1000;
/// How long an expired answer's storage may wait to be freed. An answer expires for every
/// retry when it is read ([`AnsweredKey::expired`]); the actor's alarm only frees its row,
/// and each alarm is billed twice (its `setAlarm` a row written, its run a request), so it
/// runs about once a day per session that plays, freeing every answer that expired
/// meanwhile, instead of once per keyed turn.
pub const SWEEP_SLACK_MS: i64 = 24 * 60 * 60 * 1000;

/// Where to move the alarm, if anywhere, so that storage due to be freed at `due_ms` is:
/// an alarm set no later than `due_ms` plus [`SWEEP_SLACK_MS`] frees it soon enough and is
/// left alone; without one, or with a later one, it is set for `due_ms`.
pub fn alarm_to_set(set_ms: Option<i64>, due_ms: i64) -> Option<i64> {
    match set_ms {
        Some(set) if set <= due_ms + SWEEP_SLACK_MS => None,
        _ => Some(due_ms),
    }
}

/// When the alarm runs next, after a run at `now_ms` that left storage due at `due_ms`: not
/// before [`SWEEP_SLACK_MS`] has passed, so that one run frees a day's answers.
pub fn next_sweep(now_ms: i64, due_ms: i64) -> i64 {
    due_ms.max(now_ms + SWEEP_SLACK_MS)
}

/// Turns of one session that may wait behind the one in progress; more are refused with
/// 409 `turn_in_progress`. A player types one line at a time: a deeper queue is a runaway
/// client, and each waiting request holds memory in the actor.
pub const MAX_WAITING_TURNS: usize = 8;

/// The session as its actor keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionState {
    pub id: SessionId,
    pub user_id: Uuid,
    pub character_type: Character,
    pub locale: Locale,
    pub username: String,
    pub created_at: i64,
    pub ended_at: Option<i64>,
}

impl SessionState {
    /// Whether `user_id` may play this session. Another player's session is "not found", so
    /// session ids reveal nothing.
    pub fn owned_by(&self, user_id: Uuid) -> bool {
        self.user_id == user_id
    }
}

/// What the chat Worker sends the actor for one turn, after authenticating the player and
/// validating the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TurnAsk {
    pub session_id: SessionId,
    pub identity: Identity,
    pub message: String,
    /// Overrides the session's locale for this reply.
    #[serde(default)]
    pub locale: Option<Locale>,
    #[serde(default)]
    pub idempotency_key: Option<IdempotencyKey>,
}

/// An idempotency key the actor has bound to a message (just before its turn was queued).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AnsweredKey {
    /// SHA-256 (hex) of the message the key was first used with.
    pub message_sha256: String,
    /// The exact JSON answer, until the actor's alarm drops it after [`ANSWER_KEEP_MS`].
    pub answer: Option<String>,
    /// When the key was bound and its answer fixed (epoch ms).
    pub answered_at: i64,
}

impl AnsweredKey {
    /// Whether the answer has expired at `now_ms`, whether or not the alarm dropped it yet.
    pub fn expired(&self, now_ms: i64) -> bool {
        self.answer.is_none() || now_ms - self.answered_at >= ANSWER_KEEP_MS
    }
}

/// What the actor does with a turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<'a> {
    /// 200 with this earlier answer, byte for byte; nothing is queued.
    Replay(&'a str),
    /// 422 `idempotency_key_reused`: the key was answered for another message.
    KeyReused,
    /// 422 `idempotency_key_expired`: the key's answer is older than [`ANSWER_KEEP_MS`].
    KeyExpired,
    /// 409 `session_ended`.
    Ended,
    /// Ask the engine, queue the turn, record it.
    Proceed,
}

/// The decision for a turn saying `message` in `session` at `now_ms`, given what the actor
/// knows of its idempotency key, once the session's owner is known to be asking (the turn
/// runner checks the owner once, before the turn waits for its session). A known key wins
/// over a game over, so the retry of the turn that ended the game still gets its answer. An
/// answer expires when the retry comes [`ANSWER_KEEP_MS`] after it was given, whether or not
/// a later turn came.
pub fn decide_turn<'a>(
    session: &SessionState,
    message: &str,
    key: Option<&'a AnsweredKey>,
    now_ms: i64,
) -> Decision<'a> {
    if let Some(key) = key {
        if key.message_sha256 != message_sha256(message) {
            return Decision::KeyReused;
        }
        return match &key.answer {
            Some(answer) if !key.expired(now_ms) => Decision::Replay(answer),
            _ => Decision::KeyExpired,
        };
    }
    if session.ended_at.is_some() {
        return Decision::Ended;
    }
    Decision::Proceed
}

/// SHA-256 of a message, in hex: what an answered key remembers of the message it answered.
pub fn message_sha256(message: &str) -> String {
    Sha256::digest(message.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The answer of `POST /api/chat`. It is serialized once, stored with its key, and every
/// retry gets those same bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TurnAnswer {
    pub reply: String,
    pub score: i32,
    pub emotion: Emotion,
    pub is_game_over: bool,
    pub message_id: Uuid,
}

impl TurnAnswer {
    /// What the player is told of a turn.
    pub fn of(record: &crate::record::TurnRecord) -> Self {
        Self {
            reply: record.agent_message.content.clone(),
            score: record.score.adjusted,
            emotion: record.agent_message.emotion,
            is_game_over: record.game_over,
            message_id: record.turn_id,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an answer always serializes")
    }
}

/// A turn the character remembers, as the actor's `turns` table holds it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RememberedTurn {
    /// Its place in the session's order of turns.
    pub seq: i64,
    pub user_content: String,
    pub agent_content: String,
    pub score_raw: i32,
    pub emotion: String,
}

impl RememberedTurn {
    pub fn history(&self) -> HistoryTurn {
        HistoryTurn {
            user: self.user_content.clone(),
            agent: self.agent_content.clone(),
            score_raw: self.score_raw,
            emotion: Emotion::ALL
                .into_iter()
                .find(|e| e.as_str() == self.emotion)
                .unwrap_or_else(|| Emotion::from_raw(self.score_raw)),
        }
    }
}

/// A session as a table holds it, enums as text: the actor's `session` row and D1's
/// `chat_sessions` row alike (the same columns, read by the same name).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SessionRow {
    pub id: String,
    pub user_id: String,
    pub character_type: String,
    pub locale: String,
    pub username: String,
    pub created_at: i64,
    pub ended_at: Option<i64>,
}

impl SessionRow {
    /// The session it holds, or what of it is unreadable.
    pub fn into_state(self) -> Result<SessionState, String> {
        let bad = |what: &str| format!("the session row holds a bad {what}");
        Ok(SessionState {
            id: SessionId::parse(&self.id).ok_or_else(|| bad("session id"))?,
            user_id: self.user_id.parse().map_err(|_| bad("user id"))?,
            character_type: Character::parse(&self.character_type)
                .ok_or_else(|| bad("character"))?,
            locale: Locale::parse(&self.locale).ok_or_else(|| bad("locale"))?,
            username: self.username,
            created_at: self.created_at,
            ended_at: self.ended_at,
        })
    }
}

/// `SESSION_HISTORY_TURNS` read strictly: a whole number from 1 to [`MAX_HISTORY_TURNS`], or
/// the default when unset. A bad value is an error, so a typo is seen, not silently ignored.
pub fn history_turns(setting: Option<&str>) -> Result<u32, String> {
    match setting.map(str::trim) {
        None | Some("") => Ok(DEFAULT_HISTORY_TURNS),
        Some(s) => s
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_HISTORY_TURNS).contains(n))
            .ok_or_else(|| {
                format!("SESSION_HISTORY_TURNS={s:?} is not a whole number from 1 to {MAX_HISTORY_TURNS}")
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(ended: bool) -> SessionState {
        SessionState {
            id: SessionId::from(Uuid::from_u128(1)),
            user_id: Uuid::from_u128(2),
            character_type: Character::Sakura,
            locale: Locale::En,
            username: "Alice".into(),
            created_at: 1,
            ended_at: ended.then_some(5),
        }
    }

    fn key(message: &str, answer: Option<&str>) -> AnsweredKey {
        AnsweredKey {
            message_sha256: message_sha256(message),
            answer: answer.map(str::to_owned),
            answered_at: 1_000,
        }
    }

    const NOW: i64 = 2_000;

    #[test]
    fn answers_expire_when_the_retry_comes_a_day_later() {
        let s = session(true);
        let k = key("bye", Some("{}"));
        let day = k.answered_at + ANSWER_KEEP_MS;
        assert_eq!(
            decide_turn(&s, "bye", Some(&k), day - 1),
            Decision::Replay("{}")
        );
        assert_eq!(
            decide_turn(&s, "bye", Some(&k), day),
            Decision::KeyExpired,
            "expired even though no later turn dropped the answer"
        );
        assert_eq!(decide_turn(&s, "other", Some(&k), day), Decision::KeyReused);
    }

    #[test]
    fn only_the_owner_plays_a_session() {
        let s = session(false);
        assert!(s.owned_by(s.user_id));
        assert!(!s.owned_by(Uuid::from_u128(3)));
        assert_eq!(decide_turn(&s, "hi", None, NOW), Decision::Proceed);
    }

    #[test]
    fn a_known_key_replays_or_refuses() {
        let s = session(false);
        let k = key("hello", Some(r#"{"reply":"x"}"#));
        assert_eq!(
            decide_turn(&s, "hello", Some(&k), NOW),
            Decision::Replay(r#"{"reply":"x"}"#)
        );
        assert_eq!(
            decide_turn(&s, "hello!", Some(&k), NOW),
            Decision::KeyReused
        );
        let old = key("hello", None);
        assert_eq!(
            decide_turn(&s, "hello", Some(&old), NOW),
            Decision::KeyExpired
        );
        assert_eq!(
            decide_turn(&s, "other", Some(&old), NOW),
            Decision::KeyReused
        );
    }

    #[test]
    fn a_game_over_is_final_but_its_own_retry_is_answered() {
        let s = session(true);
        assert_eq!(decide_turn(&s, "sorry", None, NOW), Decision::Ended);
        let last = key("I hate you", Some("{}"));
        assert_eq!(
            decide_turn(&s, "I hate you", Some(&last), NOW),
            Decision::Replay("{}")
        );
    }

    #[test]
    fn the_digest_tells_messages_apart() {
        assert_eq!(message_sha256("a"), message_sha256("a"));
        assert_ne!(message_sha256("a"), message_sha256("a "));
        assert_eq!(message_sha256("").len(), 64);
    }

    #[test]
    fn a_session_row_reads_back_or_says_what_is_wrong() {
        let row = SessionRow {
            id: "0190a8c4-1234-7abc-8def-0123456789ab".into(),
            user_id: Uuid::from_u128(2).to_string(),
            character_type: "rin".into(),
            locale: "ja".into(),
            username: "Alice".into(),
            created_at: 7,
            ended_at: Some(9),
        };
        let state = row.clone().into_state().unwrap();
        assert_eq!(state.character_type, Character::Rin);
        assert_eq!((state.created_at, state.ended_at), (7, Some(9)));
        let bad = SessionRow {
            character_type: "nobody".into(),
            ..row
        };
        assert!(bad.into_state().unwrap_err().contains("character"));
    }

    #[test]
    fn history_length_is_read_strictly() {
        assert_eq!(history_turns(None), Ok(DEFAULT_HISTORY_TURNS));
        assert_eq!(history_turns(Some("")), Ok(DEFAULT_HISTORY_TURNS));
        assert_eq!(history_turns(Some("5")), Ok(5));
        for bad in ["0", "-1", "201", "ten", "1.5"] {
            assert!(history_turns(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn answers_keep_the_api_field_names() {
        let a = TurnAnswer {
            reply: "Hi".into(),
            score: 4,
            emotion: Emotion::Happy,
            is_game_over: false,
            message_id: Uuid::nil(),
        };
        let v: serde_json::Value = serde_json::from_str(&a.to_json()).unwrap();
        assert_eq!(v["isGameOver"], false);
        assert_eq!(v["messageId"], Uuid::nil().to_string());
        assert_eq!(v["emotion"], "happy");
        assert_eq!(serde_json::from_value::<TurnAnswer>(v).unwrap(), a);
    }

    #[test]
    fn the_alarm_sweeps_a_day_of_answers_at_a_time() {
        let day = SWEEP_SLACK_MS;
        // No alarm: set for the first answer's expiry.
        assert_eq!(alarm_to_set(None, 1_000), Some(1_000));
        // One set, due within a day of the next answer's expiry: left alone, however many
        // turns come.
        for later in [1_000, 5_000, 1_000 + day] {
            assert_eq!(alarm_to_set(Some(1_000), later), None, "{later}");
        }
        // One set more than a day after what is due (a ticket's short expiry): brought in.
        assert_eq!(alarm_to_set(Some(10 * day), 2_000), Some(2_000));
        // After a run, the next is a day away even when an answer expires sooner…
        assert_eq!(next_sweep(day, day + 5), 2 * day);
        // …and when the next is further than a day, at that time.
        assert_eq!(next_sweep(day, 5 * day), 5 * day);
    }
}
