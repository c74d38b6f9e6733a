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
use crate::jwt::{Es256Verifier, Expected, TokenError};
use serde_json::{Map, Value};

/// The issuer of every Privy token.
pub const ISSUER: &str = "privy.io";

/// A Privy app: its id (the tokens' audience) and verification key.
#[derive(Debug, Clone)]
pub struct PrivyApp {
    pub app_id: String,
    pub verifier: Es256Verifier,
}

/// Why a Privy sign-in failed: which token, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivyError {
    pub code: &'static str,
    pub message: String,
}

impl PrivyError {
    fn new(which: &str, e: TokenError) -> Self {
        Self {
            code: e.code(),
            message: format!("{which}: {e}"),
        }
    }
}

impl PrivyApp {
    /// The player of `access_token`, with the profile of `id_token` when one is sent.
    pub fn identity(
        &self,
        access_token: &str,
        id_token: Option<&str>,
        now: i64,
    ) -> Result<Identity, PrivyError> {
        let expected = Expected {
            issuer: ISSUER,
            audience: &self.app_id,
            now,
        };
        let access = self
            .verifier
            .verify(access_token, &expected)
            .map_err(|e| PrivyError::new("access token", e))?;
        // An identity token is signed by the same key for the same audience: tell them apart.
        // Privy's access tokens carry the session id `sid`; identity tokens carry the
        // profile (`linked_accounts`) and must never stand in for an access token.
        if access.contains_key("linked_accounts") {
            return Err(PrivyError {
                code: "not_an_access_token",
                message: "Authorization holds a Privy identity token; send the access token there and the identity token in privy-id-token".into(),
            });
        }
        if access
            .get("sid")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(PrivyError {
                code: "not_an_access_token",
                message: "access token: no 'sid' claim; only Privy access tokens are accepted in Authorization".into(),
            });
        }
        let sub = access["sub"].as_str().unwrap_or_default();
        let mut identity = Identity::new(AuthProvider::Privy, sub).map_err(|_| PrivyError {
            code: "invalid_claims",
            message: "access token: 'sub' is not a usable user id".into(),
        })?;
        if let Some(id_token) = id_token {
            let claims = self
                .verifier
                .verify(id_token, &expected)
                .map_err(|e| PrivyError::new("identity token", e))?;
            if claims["sub"].as_str() != Some(sub) {
                return Err(PrivyError {
                    code: "identity_mismatch",
                    message: "the identity token belongs to another user than the access token"
                        .into(),
                });
            }
            apply_profile(&mut identity, &claims);
        }
        Ok(identity)
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
