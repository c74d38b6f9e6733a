//! Privy sign-in: the player from a verified access token, and their profile from a verified
//! identity token (`privy-id-token`).
//!
//! The access token's `sub` (a Privy DID) is the player; it must carry a session id (`sid`)
//! and no `linked_accounts`, so an identity token is never taken for one. The identity token,
//! when sent, must
//! be for the same `sub`; its `linked_accounts` claim (a JSON array, which Privy sends as a
//! JSON *string*) gives the first wallet address and the X (Twitter) account, whose name
//! becomes the display name.

use crate::identity::{AuthProvider, Identity, MAX_DISPLAY_NAME_CHARS, MAX_WALLET_LEN};
use crate::jwt::{resolve_now, verify_with, Es256Key, Es256Verifier, Expected, TokenError};
use crate::refusal::Refusal;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The issuer of every Privy token.
pub const ISSUER: &str = "privy.io";

/// A Privy app: its id (the tokens' audience) and verification key.
#[derive(Debug, Clone)]
pub struct PrivyApp {
    pub app_id: String,
    pub verifier: Es256Verifier,
}

fn token_refused(which: &str, e: TokenError) -> Refusal {
    Refusal::unauthorized(e.code(), format!("{which}: {e}"))
}

/// A sign-in that verified: the player, and when the tokens stop being valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub identity: Identity,
    /// The earliest `exp` of the tokens, in seconds since the epoch: a cache drops it then.
    pub expires_at: i64,
}

/// What a cache of verified sign-ins is keyed by: SHA-256 over the whole access token and
/// the identity token, if any. The tokens themselves are never kept.
pub fn cache_key(access_token: &str, id_token: Option<&str>) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(access_token.as_bytes());
    if let Some(id) = id_token {
        // A separator no base64url token contains, so that no two pairs hash alike.
        hash.update(b"\n");
        hash.update(id.as_bytes());
    }
    hash.finalize().into()
}

impl PrivyApp {
    /// The player of `access_token`, with the profile of `id_token` when one is sent, checked
    /// with the app's own (pure-Rust) key.
    pub fn identity(
        &self,
        access_token: &str,
        id_token: Option<&str>,
        now: i64,
    ) -> Result<Identity, Refusal> {
        resolve_now(self.verify_with(&self.verifier, access_token, id_token, now))
            .map(|v| v.identity)
    }

    /// The same, with signatures checked by `key` (the Workers pass WebCrypto's).
    pub async fn verify_with<K: Es256Key>(
        &self,
        key: &K,
        access_token: &str,
        id_token: Option<&str>,
        now: i64,
    ) -> Result<Verified, Refusal> {
        let expected = Expected {
            issuer: ISSUER,
            audience: &self.app_id,
            now,
        };
        let access = verify_with(key, access_token, &expected)
            .await
            .map_err(|e| token_refused("access token", e))?;
        // An identity token is signed by the same key for the same audience: tell them apart.
        // Privy's access tokens carry the session id `sid`; identity tokens carry the
        // profile (`linked_accounts`) and must never stand in for an access token.
        if access.contains_key("linked_accounts") {
            return Err(Refusal::unauthorized("not_an_access_token", "Authorization holds a Privy identity token; send the access token there and the identity token in privy-id-token"));
        }
        if access
            .get("sid")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(Refusal::unauthorized("not_an_access_token", "access token: no 'sid' claim; only Privy access tokens are accepted in Authorization"));
        }
        let exp =
            |claims: &Map<String, Value>| claims.get("exp").and_then(Value::as_i64).unwrap_or(now);
        let mut expires_at = exp(&access);
        let sub = access["sub"].as_str().unwrap_or_default();
        let mut identity = Identity::new(AuthProvider::Privy, sub).map_err(|_| {
            Refusal::unauthorized(
                "invalid_claims",
                "access token: 'sub' is not a usable user id",
            )
        })?;
        if let Some(id_token) = id_token {
            let claims = verify_with(key, id_token, &expected)
                .await
                .map_err(|e| token_refused("identity token", e))?;
            if claims["sub"].as_str() != Some(sub) {
                return Err(Refusal::unauthorized(
                    "identity_mismatch",
                    "the identity token belongs to another user than the access token",
                ));
            }
            expires_at = expires_at.min(exp(&claims));
            apply_profile(&mut identity, &claims);
            // The profile is as of when Privy signed it: of two, the later wins in D1.
            let iat = claims.get("iat").and_then(Value::as_i64).unwrap_or(now);
            identity.signed_at = Some(iat.saturating_mul(1000));
        }
        Ok(Verified {
            identity,
            expires_at,
        })
    }
}

/// The linked accounts of an identity token: an array, or an array serialized as a string.
fn linked_accounts(claims: &Map<String, Value>) -> Vec<Value> {
    match claims.get("linked_accounts") {
        Some(Value::Array(list)) => list.clone(),
        Some(Value::String(text)) => serde_json::from_str::<Vec<Value>>(text).unwrap_or_default(),
        _ => Vec::new(),
    }
}

fn bounded(s: Option<&str>, max_chars: usize) -> Option<String> {
    let s = s?.trim();
    (!s.is_empty() && !s.chars().any(char::is_control)).then(|| s.chars().take(max_chars).collect())
}

/// Fills the display name, wallet and X account from the identity token's claims.
fn apply_profile(identity: &mut Identity, claims: &Map<String, Value>) {
    let accounts = linked_accounts(claims);
    let of_type = |t: &str| accounts.iter().find(|a| a["type"].as_str() == Some(t));
    identity.wallet_address = of_type("wallet")
        .and_then(|w| bounded(w["address"].as_str(), MAX_WALLET_LEN))
        .filter(|w| w.len() <= MAX_WALLET_LEN);
    if let Some(x) = of_type("twitter_oauth") {
        identity.x_user_id = bounded(x["subject"].as_str(), 64);
        identity.x_username = bounded(x["username"].as_str(), 64);
        identity.display_name = bounded(x["name"].as_str(), MAX_DISPLAY_NAME_CHARS)
            .or_else(|| identity.x_username.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt;
    use crate::jwt::signing::{privy_token, public_pem, test_key};
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;

    fn app() -> PrivyApp {
        PrivyApp {
            app_id: "app-1".into(),
            verifier: Es256Verifier::from_pem(&public_pem(&test_key(3))).unwrap(),
        }
    }

    /// An access token: it carries the Privy session id.
    fn access(extra: Value) -> String {
        let mut with_sid = json!({ "sid": "session-1" });
        with_sid
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        token(with_sid)
    }

    /// A token with the common claims (an identity token when given `linked_accounts`).
    fn token(extra: Value) -> String {
        let mut claims = json!({ "sub": "did:privy:p1", "iss": "privy.io", "aud": "app-1", "iat": NOW, "exp": NOW + 600 });
        claims
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        privy_token(&test_key(3), &claims)
    }

    /// A key that answers as told and records what it was asked, as WebCrypto would be.
    struct Recording {
        answer: bool,
        asked: std::cell::RefCell<Vec<String>>,
    }

    impl Es256Key for Recording {
        async fn signature_verifies(&self, signed: &[u8], _: &[u8; 64]) -> bool {
            self.asked
                .borrow_mut()
                .push(String::from_utf8(signed.to_vec()).unwrap());
            self.answer
        }
    }

    #[test]
    fn another_key_checks_exactly_the_signed_part_of_both_tokens() {
        let (a, i) = (
            access(json!({ "exp": NOW + 600 })),
            token(json!({ "linked_accounts": [], "exp": NOW + 90 })),
        );
        let yes = Recording {
            answer: true,
            asked: Default::default(),
        };
        let v = jwt::resolve_now(app().verify_with(&yes, &a, Some(&i), NOW)).unwrap();
        let signed = |t: &str| t[..t.rfind('.').unwrap()].to_owned();
        assert_eq!(*yes.asked.borrow(), [signed(&a), signed(&i)]);
        assert_eq!(v.expires_at, NOW + 90, "the earlier exp of the two");
        assert_eq!(Some(v.identity), app().identity(&a, Some(&i), NOW).ok());
        // The key's "no" is final, whatever the claims say.
        let no = Recording {
            answer: false,
            asked: Default::default(),
        };
        let e = jwt::resolve_now(app().verify_with(&no, &a, None, NOW)).unwrap_err();
        assert_eq!(e.code, "bad_signature");
    }

    #[test]
    fn the_cache_key_covers_both_whole_tokens() {
        let (a, i) = (access(json!({})), token(json!({ "linked_accounts": [] })));
        let k = cache_key(&a, Some(&i));
        assert_eq!(k, cache_key(&a, Some(&i)));
        assert_ne!(k, cache_key(&a, None));
        assert_ne!(cache_key(&a, None), cache_key(&i, None));
        // One changed character anywhere, the signature included, is another key.
        let mut changed = a.clone().into_bytes();
        let last = changed.len() - 1;
        changed[last] = if changed[last] == b'A' { b'B' } else { b'A' };
        assert_ne!(
            cache_key(&a, None),
            cache_key(std::str::from_utf8(&changed).unwrap(), None)
        );
    }

    #[test]
    fn the_player_is_the_access_tokens_subject() {
        let id = app().identity(&access(json!({})), None, NOW).unwrap();
        assert_eq!(
            (id.provider, id.provider_user_id.as_str()),
            (AuthProvider::Privy, "did:privy:p1")
        );
        assert_eq!((id.display_name, id.wallet_address), (None, None));
    }

    #[test]
    fn the_identity_token_fills_the_profile() {
        let accounts = json!([
            { "type": "email", "address": "a@example.com" },
            { "type": "wallet", "address": "0xAbC123", "chain_type": "ethereum" },
            { "type": "wallet", "address": "0xSecond" },
            { "type": "twitter_oauth", "subject": "4242", "username": "aki_x", "name": "Aki" }
        ]);
        // Privy sends linked_accounts as a JSON string; an array works too.
        for linked in [Value::String(accounts.to_string()), accounts.clone()] {
            let id_token = token(json!({ "linked_accounts": linked }));
            let id = app()
                .identity(&access(json!({})), Some(&id_token), NOW)
                .unwrap();
            assert_eq!(id.wallet_address.as_deref(), Some("0xAbC123"));
            assert_eq!(id.display_name.as_deref(), Some("Aki"));
            assert_eq!(
                (id.x_user_id.as_deref(), id.x_username.as_deref()),
                (Some("4242"), Some("aki_x"))
            );
        }
    }

    #[test]
    fn a_bad_or_foreign_identity_token_is_refused() {
        let other = privy_token(
            &test_key(3),
            &json!({ "sub": "did:privy:other", "iss": "privy.io", "aud": "app-1", "exp": NOW + 600 }),
        );
        assert_eq!(
            app()
                .identity(&access(json!({})), Some(&other), NOW)
                .unwrap_err()
                .code,
            "identity_mismatch"
        );
        let forged = privy_token(
            &test_key(4),
            &json!({ "sub": "did:privy:p1", "iss": "privy.io", "aud": "app-1", "exp": NOW + 600 }),
        );
        let err = app()
            .identity(&access(json!({})), Some(&forged), NOW)
            .unwrap_err();
        assert_eq!(err.code, "bad_signature");
        assert!(err.message.starts_with("identity token"));
        assert_eq!(
            app().identity("garbage", None, NOW).unwrap_err().code,
            "malformed_token"
        );
        let odd = token(json!({ "linked_accounts": "not json" }));
        assert!(app()
            .identity(&access(json!({})), Some(&odd), NOW)
            .unwrap()
            .wallet_address
            .is_none());
    }

    #[test]
    fn identity_and_access_tokens_are_told_apart() {
        let linked = json!([{ "type": "wallet", "address": "0xAbC123" }]).to_string();
        let id_token = token(json!({ "linked_accounts": linked }));
        // An identity token in Authorization is refused, with or without a session id.
        for as_access in [
            id_token.clone(),
            access(json!({ "linked_accounts": linked })),
        ] {
            let err = app().identity(&as_access, None, NOW).unwrap_err();
            assert_eq!(err.code, "not_an_access_token", "{}", err.message);
        }
        // A token without a session id is no access token either.
        for no_sid in [
            token(json!({})),
            token(json!({ "sid": "" })),
            token(json!({ "sid": 7 })),
        ] {
            assert_eq!(
                app().identity(&no_sid, None, NOW).unwrap_err().code,
                "not_an_access_token"
            );
        }
        // The right token in each place works.
        let id = app()
            .identity(&access(json!({})), Some(&id_token), NOW)
            .unwrap();
        assert_eq!(id.wallet_address.as_deref(), Some("0xAbC123"));
    }
}
