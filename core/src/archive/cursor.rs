//! `POST /admin/archive`: the request, parsed once at the edge, and the cursor a run goes
//! on from.

use crate::refusal::Refusal;
use serde_json::Value;
use uuid::Uuid;

/// The longest `olderThanSeconds` taken: 100 years (anything older is everything).
pub const MAX_OLDER_THAN_SECONDS: i64 = 100 * 365 * 86_400;

/// Where a run goes on: a database (its binding) and the last session done in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveCursor {
    pub database: String,
    /// The last (user, session) done; `None`: the database's first session.
    pub after: Option<(Uuid, Uuid)>,
}

impl ArchiveCursor {
    /// `DB_1/` or `DB_1/<user id>/<session id>`.
    pub fn encode(&self) -> String {
        match self.after {
            Some((u, s)) => format!("{}/{u}/{s}", self.database),
            None => format!("{}/", self.database),
        }
    }

    /// A cursor this API gave out, naming a database of `bindings`.
    pub fn parse(s: &str, bindings: &[String]) -> Option<Self> {
        let (database, after) = s.split_once('/')?;
        if !bindings.iter().any(|b| b == database) {
            return None;
        }
        let id = |s: &str| (s.len() == 36).then(|| Uuid::try_parse(s).ok()).flatten();
        let after = match after.split_once('/') {
            None if after.is_empty() => None,
            Some((user, session)) => Some((id(user)?, id(session)?)),
            None => return None,
        };
        Some(Self {
            database: database.to_owned(),
            after,
        })
    }
}

/// `{ "olderThanSeconds": N, "cursor"?: string | null, "dryRun"?: bool }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveRequest {
    pub older_than_seconds: i64,
    /// `None`: the first database's first session.
    pub cursor: Option<ArchiveCursor>,
    pub dry_run: bool,
}

impl ArchiveRequest {
    /// Parses the body's bytes; `bindings` are the databases of the bucket map, in order.
    pub fn parse_bytes(body: &[u8], bindings: &[String]) -> Result<Self, Refusal> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|_| Refusal::invalid("invalid_body", "the body must be a JSON object"))?;
        Self::parse(&value, bindings)
    }

    /// Parses the body; `bindings` are the databases of the bucket map, in order.
    pub fn parse(body: &Value, bindings: &[String]) -> Result<Self, Refusal> {
        let body = body
            .as_object()
            .ok_or_else(|| Refusal::invalid("invalid_body", "the body must be a JSON object"))?;
        let older_than_seconds = body
            .get("olderThanSeconds")
            .and_then(Value::as_i64)
            .filter(|n| (0..=MAX_OLDER_THAN_SECONDS).contains(n))
            .ok_or_else(|| {
                Refusal::invalid(
                    "invalid_older_than",
                    format!("'olderThanSeconds' must be a whole number from 0 to {MAX_OLDER_THAN_SECONDS}"),
                )
            })?;
        let cursor = match body.get("cursor") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(ArchiveCursor::parse(s, bindings).ok_or_else(|| {
                Refusal::invalid(
                    "invalid_cursor",
                    "'cursor' must be a nextCursor value this API gave out",
                )
            })?),
            Some(_) => {
                return Err(Refusal::invalid(
                    "invalid_cursor",
                    "'cursor' must be a string or null",
                ))
            }
        };
        let dry_run = match body.get("dryRun") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(Refusal::invalid(
                    "invalid_body",
                    "'dryRun' must be true or false",
                ))
            }
        };
        Ok(Self {
            older_than_seconds,
            cursor,
            dry_run,
        })
    }

    /// The cutoff: turns older than this (ms) are archived.
    pub fn cutoff(&self, now_ms: i64) -> i64 {
        now_ms - self.older_than_seconds * 1000
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dbs() -> Vec<String> {
        vec!["DB_0".into(), "DB_1".into()]
    }

    #[test]
    fn requests_parse_or_refuse_with_a_code() {
        let r = ArchiveRequest::parse(&json!({"olderThanSeconds": 0}), &dbs()).unwrap();
        assert_eq!(
            (r.older_than_seconds, r.cursor, r.dry_run),
            (0, None, false)
        );
        let c = ArchiveCursor {
            database: "DB_1".into(),
            after: Some((Uuid::from_u128(6), Uuid::from_u128(7))),
        };
        let r = ArchiveRequest::parse(
            &json!({"olderThanSeconds": 60, "cursor": c.encode(), "dryRun": true}),
            &dbs(),
        )
        .unwrap();
        assert_eq!(r.cursor, Some(c));
        for (body, code) in [
            (json!({}), "invalid_older_than"),
            (json!({"olderThanSeconds": -1}), "invalid_older_than"),
            (json!({"olderThanSeconds": "30d"}), "invalid_older_than"),
            (json!({"olderThanSeconds": 1.5}), "invalid_older_than"),
            (
                json!({"olderThanSeconds": 1, "cursor": "DB_9/"}),
                "invalid_cursor",
            ),
            (
                json!({"olderThanSeconds": 1, "cursor": "DB_0/nope"}),
                "invalid_cursor",
            ),
            (
                json!({"olderThanSeconds": 1, "cursor": 3}),
                "invalid_cursor",
            ),
            (
                json!({"olderThanSeconds": 1, "dryRun": "yes"}),
                "invalid_body",
            ),
            (json!([]), "invalid_body"),
        ] {
            assert_eq!(
                ArchiveRequest::parse(&body, &dbs()).unwrap_err().code,
                code,
                "{body}"
            );
        }
    }
}
