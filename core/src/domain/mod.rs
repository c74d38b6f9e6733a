//! Values parsed once at the edge and trusted after, in the style of zero-to-production's
//! `domain/`: each type can only hold a value that passed its `parse`, so a key, an id or a
//! session named anywhere past the edge needs no check of its own.
//!
//! - [`IdempotencyKey`]: a client's `Idempotency-Key` (or a socket frame's `key`).
//! - [`ProviderUserId`]: the player's id at their sign-in provider.
//! - [`SessionId`]: a chat session's id, and the tag that tells the ids this Worker issued.

/// The conversions every text newtype here has: from a `String` through its `parse`
/// (serde reads it so), back to a `String`, and as `&str`.
macro_rules! text_newtype {
    ($name:ident) => {
        impl TryFrom<String> for $name {
            type Error = &'static str;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

mod idempotency_key;
mod provider_user_id;
mod session_id;

pub use idempotency_key::{IdempotencyKey, MAX_IDEMPOTENCY_KEY_LEN};
pub use provider_user_id::{ProviderUserId, MAX_PROVIDER_USER_ID_LEN};
pub use session_id::SessionId;
