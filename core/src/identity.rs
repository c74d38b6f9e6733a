//! Who a player is. The external identity (provider, provider's user id) is the truth; the
//! internal user id is derived from it (see `ids::user_id`).

use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

/// Longest provider user id accepted, in bytes.
pub const MAX_PROVIDER_USER_ID_LEN: usize = 128;
/// Longest display name kept, in characters.
pub const MAX_DISPLAY_NAME_CHARS: usize = 64;
/// Longest wallet address kept, in bytes.
pub const MAX_WALLET_LEN: usize = 128;

/// Where an identity comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthProvider {
    X,
    Privy,
}

impl AuthProvider {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "x" => Some(Self::X),
            "privy" => Some(Self::Privy),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::X => "x",
            Self::Privy => "privy",
        }
    }
}

impl fmt::Display for AuthProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A resolved player.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    pub provider: AuthProvider,
    pub provider_user_id: String,
    pub display_name: Option<String>,
    pub wallet_address: Option<String>,
    /// The player's X account, when signed in with X or linked to their Privy account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_username: Option<String>,
}

/// Why an identity was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("expected '<provider>:<provider user id>' with provider 'x' or 'privy'")]
    Malformed,
    #[error("the provider user id must be 1 to 128 visible characters")]
    BadUserId,
}

impl Identity {
    /// An identity with no profile fields.
    pub fn new(provider: AuthProvider, provider_user_id: &str) -> Result<Self, IdentityError> {
        if !valid_provider_user_id(provider_user_id) {
            return Err(IdentityError::BadUserId);
        }
        Ok(Self {
            provider,
            provider_user_id: provider_user_id.to_owned(),
            display_name: None,
            wallet_address: None,
            x_user_id: None,
            x_username: None,
        })
    }

    /// Parses the development header value `<provider>:<provider user id>`.
    pub fn parse_dev_header(value: &str) -> Result<Self, IdentityError> {
        let (provider, id) = value.split_once(':').ok_or(IdentityError::Malformed)?;
        let provider = AuthProvider::parse(provider).ok_or(IdentityError::Malformed)?;
        Self::new(provider, id)
    }

    /// The internal user id of this identity.
    pub fn user_id(&self) -> Uuid {
        crate::ids::user_id(self.provider.as_str(), &self.provider_user_id)
    }
}

/// Provider user ids are opaque but bounded: no control characters, no whitespace.
pub fn valid_provider_user_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_PROVIDER_USER_ID_LEN
        && id.chars().all(|c| !c.is_control() && !c.is_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_header_parses_provider_and_id() {
        let id = Identity::parse_dev_header("x:1234").unwrap();
        assert_eq!(
            (id.provider, id.provider_user_id.as_str()),
            (AuthProvider::X, "1234")
        );
        let id = Identity::parse_dev_header("privy:did:privy:abc").unwrap();
        assert_eq!(id.provider_user_id, "did:privy:abc");
        assert_eq!(id.user_id(), crate::ids::user_id("privy", "did:privy:abc"));
    }

    #[test]
    fn dev_header_refuses_bad_values() {
        for bad in ["", "x", "x:", "google:1", "X:1", ":1", "x:a b", "x:\u{0}"] {
            assert!(Identity::parse_dev_header(bad).is_err(), "{bad:?}");
        }
        assert!(Identity::parse_dev_header(&format!("x:{}", "a".repeat(129))).is_err());
    }
}
