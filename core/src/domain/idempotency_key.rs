//! A client's idempotency key: the `Idempotency-Key` header of `POST /api/chat`, or the
//! `key` of a live socket's frame. It names one turn of a session on every retry.

use serde::{Deserialize, Serialize};

/// Longest key accepted, in bytes.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 128;

/// 1 to 128 visible ASCII characters: it goes into ids, logs and frames as it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(key: impl Into<String>) -> Result<Self, &'static str> {
        let key = key.into();
        if key.is_empty()
            || key.len() > MAX_IDEMPOTENCY_KEY_LEN
            || !key.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err("an idempotency key is 1 to 128 visible ASCII characters");
        }
        Ok(Self(key))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

text_newtype!(IdempotencyKey);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_visible_ascii_of_bounded_length() {
        assert_eq!(
            IdempotencyKey::parse("abc-123_XYZ").unwrap().as_str(),
            "abc-123_XYZ"
        );
        assert!(IdempotencyKey::parse("a".repeat(128)).is_ok());
        for bad in ["", "has space", "ü", "tab\there", "new\nline"] {
            assert!(IdempotencyKey::parse(bad).is_err(), "{bad:?}");
        }
        assert!(IdempotencyKey::parse("a".repeat(129)).is_err());
    }

    #[test]
    fn a_key_is_checked_when_it_is_read_back_too() {
        let key: IdempotencyKey = serde_json::from_str(r#""k-1""#).unwrap();
        assert_eq!(serde_json::to_string(&key).unwrap(), r#""k-1""#);
        assert!(serde_json::from_str::<IdempotencyKey>(r#""a b""#).is_err());
        assert!(serde_json::from_str::<IdempotencyKey>(r#""""#).is_err());
    }
}
