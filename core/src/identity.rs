//! Who a player is. The external identity (provider, provider's user id) is the truth; the
//! internal user id is derived from it (see `ids::user_id`).

use crate::domain::ProviderUserId;
use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

pub use crate::domain::MAX_PROVIDER_USER_ID_LEN;
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
    pub provider_user_id: ProviderUserId,
    pub display_name: Option<String>,
    pub wallet_address: Option<String>,
    /// The player's X account, when signed in with X or linked to their Privy account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_username: Option<String>,
    /// When the sign-in that gave this profile was made (ms since the epoch): the identity
    /// token's `iat` for Privy, the `users/me` answer's time for X; `None` for an identity
    /// with no signed profile (development sign-in). Of two profiles of one player, the one
    /// signed later wins, whatever order their turns are stored in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_at: Option<i64>,
}

/// A verified sign-in: the player, and until when it holds. A live socket keeps it for its
/// life, and plays no turn past `valid_until`: the page signs in again for a new ticket, as
/// a plain request would be checked again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignIn {
    pub identity: Identity,
    /// Ms since the epoch: the tokens' `exp` for Privy, the end of `X_CACHE_SECONDS` for X;
    /// `None` for development sign-in, which has no end.
    pub valid_until: Option<i64>,
}

impl SignIn {
    /// Whether it still holds at `now_ms`.
    pub fn holds_at(&self, now_ms: i64) -> bool {
        self.valid_until.is_none_or(|until| now_ms < until)
    }
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
        Ok(Self {
            provider,
            provider_user_id: ProviderUserId::parse(provider_user_id)
                .map_err(|_| IdentityError::BadUserId)?,
            display_name: None,
            wallet_address: None,
            x_user_id: None,
            x_username: None,
            signed_at: None,
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
        crate::ids::user_id(self.provider.as_str(), self.provider_user_id.as_str())
    }
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
        assert_eq!(id.provider_user_id.as_str(), "did:privy:abc");
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
