//! The player's id at their sign-in provider (an X user id, a Privy DID). Opaque, but
//! bounded: it goes into the internal user id, D1's UNIQUE key and logs.

use serde::{Deserialize, Serialize};

/// Longest provider user id accepted, in bytes.
pub const MAX_PROVIDER_USER_ID_LEN: usize = 128;

/// 1 to 128 bytes, no control characters, no whitespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProviderUserId(String);

impl ProviderUserId {
    pub fn parse(id: impl Into<String>) -> Result<Self, &'static str> {
        let id = id.into();
        if id.is_empty()
            || id.len() > MAX_PROVIDER_USER_ID_LEN
            || id.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return Err("the provider user id must be 1 to 128 visible characters");
        }
        Ok(Self(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

text_newtype!(ProviderUserId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_opaque_but_bounded() {
        assert!(ProviderUserId::parse("did:privy:abc").is_ok());
        assert!(ProviderUserId::parse("12345").is_ok());
        assert!(ProviderUserId::parse("日本").is_ok(), "not only ASCII");
        assert!(ProviderUserId::parse("a".repeat(128)).is_ok());
        for bad in ["", "a b", "a\u{7}", "a\nb"] {
            assert!(ProviderUserId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(ProviderUserId::parse("a".repeat(129)).is_err());
        assert!(serde_json::from_str::<ProviderUserId>(r#""a b""#).is_err());
    }
}
