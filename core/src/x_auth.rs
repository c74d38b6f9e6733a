//! Sign-in with X: the Worker asks X's `GET /2/users/me` with the player's OAuth 2.0 user
//! token. This module reads X's answer; the Worker does the HTTP call and the caching.

use crate::identity::{AuthProvider, Identity, MAX_DISPLAY_NAME_CHARS};
use crate::text::without_controls;
use serde_json::Value;

// Every failed sign-in is a 401 with its code: the player signs in again or retries.
use crate::refusal::{Kind, Refusal};

/// The path asked on the configured X API base URL.
pub const USERS_ME_PATH: &str = "/2/users/me";

/// The player X's `users/me` answered with `status` and `body`.
pub fn identity_from_users_me(status: u16, body: &str) -> Result<Identity, Refusal> {
    match status {
        200 => {}
        401 | 403 => {
            return Err(Refusal::new(
                Kind::Unauthorized,
                "invalid_token",
                "X refused the token (expired or revoked?)",
            ))
        }
        429 => {
            return Err(Refusal::new(
                Kind::Unauthorized,
                "auth_unavailable",
                "X is rate-limiting sign-ins; retry shortly",
            ))
        }
        s => {
            return Err(Refusal::new(
                Kind::Unauthorized,
                "auth_unavailable",
                format!("X answered {s}; retry shortly"),
            ))
        }
    }
    let bad = || {
        Refusal::new(
            Kind::Unauthorized,
            "auth_unavailable",
            "X's answer was not a user",
        )
    };
    let value: Value = serde_json::from_str(body).map_err(|_| bad())?;
    let data = &value["data"];
    let id = data["id"].as_str().ok_or_else(bad)?;
    let mut identity = Identity::new(AuthProvider::X, id).map_err(|_| bad())?;
    // X's profile is text from outside: no control characters reach D1 or a page.
    let clean = |s: &str| without_controls(s, false).trim().to_owned();
    let username = data["username"]
        .as_str()
        .map(clean)
        .filter(|u| !u.is_empty())
        .map(|u| u.chars().take(64).collect::<String>());
    identity.display_name = data["name"]
        .as_str()
        .map(clean)
        .filter(|n| !n.is_empty())
        .map(|n| n.chars().take(MAX_DISPLAY_NAME_CHARS).collect())
        .or_else(|| username.clone());
    identity.x_user_id = Some(id.to_owned());
    identity.x_username = username;
    Ok(identity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_becomes_an_x_identity() {
        let id = identity_from_users_me(
            200,
            r#"{"data":{"id":"2244994945","name":"X Dev","username":"XDevelopers"}}"#,
        )
        .unwrap();
        assert_eq!(
            (id.provider, id.provider_user_id.as_str()),
            (AuthProvider::X, "2244994945")
        );
        assert_eq!(id.display_name.as_deref(), Some("X Dev"));
        assert_eq!(id.x_username.as_deref(), Some("XDevelopers"));
    }

    #[test]
    fn errors_map_to_codes() {
        assert_eq!(
            identity_from_users_me(401, "{}").unwrap_err().code,
            "invalid_token"
        );
        assert_eq!(
            identity_from_users_me(403, "").unwrap_err().code,
            "invalid_token"
        );
        assert_eq!(
            identity_from_users_me(429, "").unwrap_err().code,
            "auth_unavailable"
        );
        assert_eq!(
            identity_from_users_me(500, "").unwrap_err().code,
            "auth_unavailable"
        );
        assert_eq!(
            identity_from_users_me(200, "not json").unwrap_err().code,
            "auth_unavailable"
        );
        assert_eq!(
            identity_from_users_me(200, r#"{"data":{"id":""}}"#)
                .unwrap_err()
                .code,
            "auth_unavailable"
        );
        assert_eq!(
            identity_from_users_me(200, r#"{"errors":[]}"#)
                .unwrap_err()
                .code,
            "auth_unavailable"
        );
    }

    #[test]
    fn control_characters_never_reach_the_profile() {
        let id = identity_from_users_me(
            200,
            r#"{"data":{"id":"9","name":"\u0007Eve\u001b[2J\u0000","username":"e\u0000ve\n"}}"#,
        )
        .unwrap();
        assert_eq!(id.display_name.as_deref(), Some("Eve[2J"));
        assert_eq!(id.x_username.as_deref(), Some("eve"));
        let id = identity_from_users_me(
            200,
            r#"{"data":{"id":"9","name":"\u0001\u0002","username":"u"}}"#,
        )
        .unwrap();
        assert_eq!(
            id.display_name.as_deref(),
            Some("u"),
            "an all-control name falls back"
        );
    }
}
