//! What a client may know before signing in (`GET /api/info`): the sign-in mode, the
//! characters and locales, and the rules a page shows or enforces before it sends anything.
//!
//! The rules come from the constants the server applies, so a page never holds its own copy
//! of a figure (a copied figure drifts: the play page once allowed 64-character names where
//! the API refused more than 40).

use crate::character;
use crate::request::{MAX_MESSAGE_CHARS, MAX_USERNAME_CHARS};
use crate::scoring::{GAME_OVER_PENALTY, LEVEL_THRESHOLDS};
use serde_json::{json, Value};

/// The figures of the game and of the API's limits that a client needs.
pub fn rules() -> Value {
    json!({
        "gameOverPenalty": GAME_OVER_PENALTY,
        "levelThresholds": LEVEL_THRESHOLDS,
        "maxMessageChars": MAX_MESSAGE_CHARS,
        "maxUsernameChars": MAX_USERNAME_CHARS,
    })
}

/// The whole answer of `GET /api/info`, for a Worker whose sign-in mode is `sign_in`.
pub fn public(sign_in: &str) -> Value {
    json!({
        "signIn": sign_in,
        "characters": character::catalog(),
        "locales": ["ja", "en"],
        "rules": rules(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{ChatTurn, NewSession};

    #[test]
    fn the_rules_are_the_ones_applied() {
        let info = public("dev");
        let rules = &info["rules"];
        assert_eq!(rules["gameOverPenalty"], json!(GAME_OVER_PENALTY));
        assert_eq!(rules["maxMessageChars"], json!(MAX_MESSAGE_CHARS));
        assert_eq!(rules["maxUsernameChars"], json!(MAX_USERNAME_CHARS));
        assert_eq!(rules["levelThresholds"].as_array().unwrap().len(), 10);
        assert_eq!(info["signIn"], "dev");
        // The limit published is the limit the parser enforces, to the character.
        let max = rules["maxMessageChars"].as_u64().unwrap() as usize;
        let body = |n: usize| {
            format!(
                r#"{{"sessionId":"01a21901-9d4f-704e-b447-4c684bd6b0fe","message":"{}"}}"#,
                "あ".repeat(n)
            )
        };
        assert!(ChatTurn::parse(body(max).as_bytes()).is_ok());
        assert!(ChatTurn::parse(body(max + 1).as_bytes()).is_err());
        let max = rules["maxUsernameChars"].as_u64().unwrap() as usize;
        let session = |n: usize| {
            format!(
                r#"{{"characterType":"sakura","username":"{}","locale":"en"}}"#,
                "名".repeat(n)
            )
        };
        assert!(NewSession::parse(session(max).as_bytes()).is_ok());
        assert!(NewSession::parse(session(max + 1).as_bytes()).is_err());
    }
}
