//! A player's data, exported or erased on request, everywhere it lives.
//!
//! - [`ErasureKey`]: the keyed hash an erasure leaves behind instead of the player's id.
//! - [`erase`]: the erasure as a flow over small traits: every place counted, then the
//!   tombstone first, the actors, the dead letters, the archive, the rows last, each step
//!   safe to run again.
//! - [`export`]: everything held on a player as JSON lines.

pub mod erase;
pub mod export;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

/// The secret an erasure's tombstone is keyed with (`ERASURE_KEY`, in both Workers). The
/// tombstone holds `tag(user)`, never the id: without the key, nobody can tell whether a
/// given player was erased.
#[derive(Clone)]
pub struct ErasureKey(Vec<u8>);

impl std::fmt::Debug for ErasureKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ErasureKey(…)")
    }
}

impl ErasureKey {
    /// The key from the secret's text; `None` when it is empty.
    pub fn new(secret: &str) -> Option<Self> {
        let secret = secret.trim();
        (!secret.is_empty()).then(|| Self(secret.as_bytes().to_vec()))
    }

    /// The tombstone's hash of `user`: hex HMAC-SHA256 of "erased-player\n<id>".
    pub fn tag(&self, user: &Uuid) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(b"erased-player\n");
        mac.update(user.to_string().as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_depends_on_the_key_and_the_player_and_reveals_neither() {
        let a = ErasureKey::new("secret-a").unwrap();
        let b = ErasureKey::new("secret-b").unwrap();
        let u = Uuid::from_u128(1);
        assert_eq!(a.tag(&u), a.tag(&u));
        assert_eq!(a.tag(&u).len(), 64);
        assert_ne!(a.tag(&u), b.tag(&u));
        assert_ne!(a.tag(&u), a.tag(&Uuid::from_u128(2)));
        assert!(!a.tag(&u).contains(&u.simple().to_string()[..8]));
        assert!(ErasureKey::new("  ").is_none());
        assert_eq!(format!("{a:?}"), "ErasureKey(…)");
    }
}
