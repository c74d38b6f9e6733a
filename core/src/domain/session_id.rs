//! A chat session's id, and the ids the chat Worker recognises without reading anything.
//!
//! A session's Durable Object is created the moment anything calls it, so a turn for an id
//! nobody issued must be refused before the call. A session id is a UUIDv7 (time-ordered,
//! like every id here) whose last 40 bits are an HMAC-SHA256 tag of the rest under the
//! secret `SESSION_ID_KEY`: 34 random bits keep ids of the same millisecond apart, and
//! guessing a valid id takes about 2^40 tries, far beyond the per-player rate limits.
//!
//! An id without a valid tag may still be a real session: one started before tags existed,
//! or while no key was set. The chat Worker looks those up in D1 (a read, never a write)
//! before it calls the actor; only ids it issued skip that read.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::fmt;
use uuid::Uuid;

/// Bytes of the tag at the end of the id.
const TAG_BYTES: usize = 5;
/// The id's bytes the tag covers: everything before it.
const TAGGED: usize = 16 - TAG_BYTES;

/// A session id: a UUID, written as we print them (hyphenated, 36 characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(Uuid);

fn tag(key: &[u8], head: &[u8]) -> [u8; TAG_BYTES] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(b"session-id\n");
    mac.update(head);
    let full = mac.finalize().into_bytes();
    let mut out = [0u8; TAG_BYTES];
    out.copy_from_slice(&full[..TAG_BYTES]);
    out
}

impl SessionId {
    /// An id as we print them: a hyphenated UUID. Anything else (paths, braces, URNs) is not
    /// an id of ours.
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() != 36 {
            return None;
        }
        Uuid::try_parse(s).ok().map(Self)
    }

    /// A new session id at `now_ms`, from random bytes, tagged under `key` (untagged, a
    /// plain UUIDv7, when there is no key).
    pub fn issue(now_ms: i64, random: [u8; 10], key: Option<&[u8]>) -> Self {
        let id = crate::ids::time_ordered(now_ms, random);
        let Some(key) = key else {
            return Self(id);
        };
        let mut bytes = *id.as_bytes();
        let t = tag(key, &bytes[..TAGGED]);
        bytes[TAGGED..].copy_from_slice(&t);
        Self(Uuid::from_bytes(bytes))
    }

    /// Whether this id was issued under `key`.
    pub fn is_issued(&self, key: &[u8]) -> bool {
        let bytes = self.0.as_bytes();
        self.0.get_version_num() == 7
            && constant_time_eq::constant_time_eq(&bytes[TAGGED..], &tag(key, &bytes[..TAGGED]))
    }

    pub fn uuid(self) -> Uuid {
        self.0
    }
}

impl From<Uuid> for SessionId {
    /// A UUID that is already known to be a session's (read back from storage or D1).
    fn from(id: Uuid) -> Self {
        Self(id)
    }
}

impl From<SessionId> for Uuid {
    fn from(id: SessionId) -> Self {
        id.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"test-session-key";

    #[test]
    fn issued_ids_are_recognised_and_others_are_not() {
        let id = SessionId::issue(1_700_000_000_000, [9; 10], Some(KEY));
        assert_eq!(id.uuid().get_version_num(), 7);
        assert!(id.is_issued(KEY));
        assert!(!id.is_issued(b"another key"));
        // Any changed bit of the id breaks the tag.
        for byte in 0..16 {
            let mut b = *id.uuid().as_bytes();
            b[byte] ^= 0x01;
            assert!(
                !SessionId::from(Uuid::from_bytes(b)).is_issued(KEY),
                "byte {byte}"
            );
        }
        assert!(!SessionId::from(Uuid::now_v7()).is_issued(KEY));
        assert!(!SessionId::from(Uuid::nil()).is_issued(KEY));
        let plain = SessionId::issue(1_700_000_000_000, [9; 10], None);
        assert!(!plain.is_issued(KEY));
    }

    #[test]
    fn ids_stay_time_ordered_and_apart() {
        let a = SessionId::issue(1_700_000_000_000, [0xff; 10], Some(KEY));
        let b = SessionId::issue(1_700_000_000_001, [0; 10], Some(KEY));
        assert!(a.to_string() < b.to_string());
        assert_ne!(
            SessionId::issue(1_700_000_000_000, [1; 10], Some(KEY)),
            SessionId::issue(1_700_000_000_000, [2; 10], Some(KEY))
        );
    }

    #[test]
    fn only_hyphenated_uuids_parse() {
        let id = "0190a8c4-1234-7abc-8def-0123456789ab";
        assert_eq!(SessionId::parse(id).unwrap().to_string(), id);
        assert!(SessionId::parse("0190a8c412347abc8def0123456789ab").is_none());
        assert!(SessionId::parse("{0190a8c4-1234-7abc-8def-0123456789ab}").is_none());
        assert!(SessionId::parse("").is_none());
        let back: SessionId = serde_json::from_str(&format!("\"{id}\"")).unwrap();
        assert_eq!(back.to_string(), id);
    }
}
