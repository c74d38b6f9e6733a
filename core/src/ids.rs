//! Identifiers.
//!
//! - A user's id is a name-based UUID (v5) of the external identity, so the chat Worker knows
//!   it without a lookup and every upsert of the same account agrees on it.
//! - A turn's three rows (the player's message, the character's reply, the point event) share
//!   one 15-byte stem and differ only in the last byte (0, 1, 2). They sit next to each other
//!   in every B-tree, and the consumer can check that a record's ids belong together.
//! - Without an idempotency key the stem is time-ordered (UUIDv7): random keys dirty a
//!   different B-tree page per row (docs/design.md: 5× slower commits with v4).
//! - With an idempotency key the stem must be the same on every retry, so it cannot carry the
//!   clock. It is a UUIDv8 whose first 48 bits are the *session's* creation time and whose
//!   rest is a hash of (session id, key): retries agree, and a session's turns still cluster.

use crate::domain::IdempotencyKey;
use uuid::{Builder, Uuid};

/// Namespace for user ids: v5(USER_NAMESPACE, "<provider>:<provider user id>").
pub const USER_NAMESPACE: Uuid = Uuid::from_u128(0x6c1f_7c2e_5b7a_4f0e_9d3c_2a4b_8e61_d0a1);
/// Namespace for keyed turn stems: v5(TURN_KEY_NAMESPACE, "<session id>\n<key>").
pub const TURN_KEY_NAMESPACE: Uuid = Uuid::from_u128(0x0f3b_52d4_9a1e_4c77_b2e8_71c5_3d90_46fe);

/// Which of a turn's rows an id names: the last byte of the id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum TurnPart {
    UserMessage = 0,
    AgentMessage = 1,
    PointEvent = 2,
}

/// The three ids of one turn. The turn id is the player's message id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TurnIds {
    pub user_message: Uuid,
    pub agent_message: Uuid,
    pub point_event: Uuid,
}

impl TurnIds {
    /// The ids of the turn whose player message is `turn_id`, or `None` when `turn_id` is not
    /// a turn stem (its last byte must be 0).
    pub fn from_turn_id(turn_id: Uuid) -> Option<Self> {
        (turn_id.as_bytes()[15] == TurnPart::UserMessage as u8).then(|| Self::from_stem(turn_id))
    }

    fn from_stem(stem: Uuid) -> Self {
        Self {
            user_message: with_part(stem, TurnPart::UserMessage),
            agent_message: with_part(stem, TurnPart::AgentMessage),
            point_event: with_part(stem, TurnPart::PointEvent),
        }
    }

    /// A fresh turn: a UUIDv7 stem from the clock and 10 random bytes.
    pub fn random(now_ms: i64, random: [u8; 10]) -> Self {
        Self::from_stem(time_ordered(now_ms, random))
    }

    /// The turn named by a client's idempotency key within a session: the same on every retry.
    pub fn keyed(session_id: Uuid, session_created_ms: i64, key: &IdempotencyKey) -> Self {
        let name = format!("{session_id}\n{key}");
        let mut bytes = *Uuid::new_v5(&TURN_KEY_NAMESPACE, name.as_bytes()).as_bytes();
        let ms = u64::try_from(session_created_ms).unwrap_or(0).to_be_bytes();
        bytes[..6].copy_from_slice(&ms[2..]);
        Self::from_stem(Builder::from_custom_bytes(bytes).into_uuid())
    }
}

fn with_part(stem: Uuid, part: TurnPart) -> Uuid {
    let mut bytes = *stem.as_bytes();
    bytes[15] = part as u8;
    Uuid::from_bytes(bytes)
}

/// A UUIDv7 from the clock and 10 random bytes (sessions and turn stems).
pub fn time_ordered(now_ms: i64, random: [u8; 10]) -> Uuid {
    let ms = u64::try_from(now_ms).unwrap_or(0);
    Builder::from_unix_timestamp_millis(ms, &random).into_uuid()
}

/// The internal id of the user behind an external identity.
pub fn user_id(provider: &str, provider_user_id: &str) -> Uuid {
    Uuid::new_v5(
        &USER_NAMESPACE,
        format!("{provider}:{provider_user_id}").as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SESSION: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001);

    #[test]
    fn user_id_is_stable_and_provider_scoped() {
        assert_eq!(user_id("x", "42"), user_id("x", "42"));
        assert_ne!(user_id("x", "42"), user_id("privy", "42"));
        assert_eq!(user_id("x", "42").get_version_num(), 5);
    }

    #[test]
    fn turn_parts_share_a_stem_and_sort_together() {
        let ids = TurnIds::random(1_700_000_000_000, [7; 10]);
        assert_eq!(ids.user_message.get_version_num(), 7);
        let (u, a, e) = (
            ids.user_message.as_bytes(),
            ids.agent_message.as_bytes(),
            ids.point_event.as_bytes(),
        );
        assert_eq!(u[..15], a[..15]);
        assert_eq!(u[..15], e[..15]);
        assert_eq!((u[15], a[15], e[15]), (0, 1, 2));
        assert!(ids.user_message.to_string() < ids.agent_message.to_string());
        assert_eq!(TurnIds::from_turn_id(ids.user_message), Some(ids));
        assert_eq!(TurnIds::from_turn_id(ids.agent_message), None);
    }

    #[test]
    fn random_turns_are_time_ordered() {
        let a = TurnIds::random(1_700_000_000_000, [0xff; 10]).user_message;
        let b = TurnIds::random(1_700_000_000_001, [0; 10]).user_message;
        assert!(a.to_string() < b.to_string());
    }

    #[test]
    fn keyed_turns_repeat_and_carry_the_session_time() {
        let k = |s: &str| IdempotencyKey::parse(s).unwrap();
        let a = TurnIds::keyed(SESSION, 1_700_000_000_000, &k("k1"));
        assert_eq!(a, TurnIds::keyed(SESSION, 1_700_000_000_000, &k("k1")));
        assert_ne!(a, TurnIds::keyed(SESSION, 1_700_000_000_000, &k("k2")));
        assert_ne!(a, TurnIds::keyed(Uuid::nil(), 1_700_000_000_000, &k("k1")));
        assert_eq!(a.user_message.get_version_num(), 8);
        let ts = u64::from_be_bytes([
            0,
            0,
            a.user_message.as_bytes()[0],
            a.user_message.as_bytes()[1],
            a.user_message.as_bytes()[2],
            a.user_message.as_bytes()[3],
            a.user_message.as_bytes()[4],
            a.user_message.as_bytes()[5],
        ]);
        assert_eq!(ts, 1_700_000_000_000);
    }
}
