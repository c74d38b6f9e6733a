//! Session ids the chat Worker recognises without reading anything. A session's Durable
//! Object is created the moment anything calls it, so a turn for an id nobody issued must be
//! refused before the call. A session id is a UUIDv7 (time-ordered, like every id here)
//! whose last 40 bits are an HMAC-SHA256 tag of the rest under the secret `SESSION_ID_KEY`:
//! 34 random bits keep ids of the same millisecond apart, and guessing a valid id takes
//! about 2^40 tries, far beyond the per-player rate limits.
//!
//! An id without a valid tag may still be a real session: one started before tags existed,
//! or while no key was set. The chat Worker looks those up in D1 (a read, never a write)
//! before it calls the actor; only ids it issued skip that read.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

/// Bytes of the tag at the end of the id.
const TAG_BYTES: usize = 5;
/// The id's bytes the tag covers: everything before it.
const TAGGED: usize = 16 - TAG_BYTES;

fn tag(key: &[u8], head: &[u8]) -> [u8; TAG_BYTES] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(b"session-id\n");
    mac.update(head);
    let full = mac.finalize().into_bytes();
    let mut out = [0u8; TAG_BYTES];
    out.copy_from_slice(&full[..TAG_BYTES]);
    out
}

/// A new session id at `now_ms`, from random bytes, tagged under `key` (untagged, a plain
/// UUIDv7, when there is no key).
pub fn issue(now_ms: i64, random: [u8; 10], key: Option<&[u8]>) -> Uuid {
    let id = crate::ids::time_ordered(now_ms, random);
    let Some(key) = key else {
        return id;
    };
    let mut bytes = *id.as_bytes();
    let t = tag(key, &bytes[..TAGGED]);
    bytes[TAGGED..].copy_from_slice(&t);
    Uuid::from_bytes(bytes)
}

/// Whether `id` was issued under `key`.
pub fn is_issued(id: &Uuid, key: &[u8]) -> bool {
    let bytes = id.as_bytes();
    id.get_version_num() == 7
        && constant_time_eq::constant_time_eq(&bytes[TAGGED..], &tag(key, &bytes[..TAGGED]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"test-session-key";

    #[test]
    fn issued_ids_are_recognised_and_others_are_not() {
        let id = issue(1_700_000_000_000, [9; 10], Some(KEY));
        assert_eq!(id.get_version_num(), 7);
        assert!(is_issued(&id, KEY));
        assert!(!is_issued(&id, b"another key"));
        // Any changed bit of the id breaks the tag.
        for byte in 0..16 {
            let mut b = *id.as_bytes();
            b[byte] ^= 0x01;
            assert!(!is_issued(&Uuid::from_bytes(b), KEY), "byte {byte}");
        }
        assert!(!is_issued(&Uuid::now_v7(), KEY));
        assert!(!is_issued(&Uuid::nil(), KEY));
        let plain = issue(1_700_000_000_000, [9; 10], None);
        assert!(!is_issued(&plain, KEY));
    }

    #[test]
    fn ids_stay_time_ordered_and_apart() {
        let a = issue(1_700_000_000_000, [0xff; 10], Some(KEY));
        let b = issue(1_700_000_000_001, [0; 10], Some(KEY));
        assert!(a.to_string() < b.to_string());
        assert_ne!(
            issue(1_700_000_000_000, [1; 10], Some(KEY)),
            issue(1_700_000_000_000, [2; 10], Some(KEY))
        );
    }
}
