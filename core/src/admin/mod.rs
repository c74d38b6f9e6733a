//! The admin API's requests, parsed in plain Rust so that every refusal is tested natively,
//! by request family:
//!
//! - [`letters`]: dead-letter listings (filters, cursors) and replay / discard bodies.
//! - [`reconcile`]: `POST /admin/reconcile` bodies.
//! - [`turns`]: `POST /admin/turns` bodies (raw records queued as given).
//! - [`shards`]: `POST /admin/shards/*` bodies (a bucket move's steps).
//!
//! and here, the bearer token check and the limits they share.

pub mod letters;
pub mod reconcile;
pub mod shards;
pub mod turns;

pub use letters::*;
pub use reconcile::*;
pub use shards::*;
pub use turns::*;

use crate::refusal::Refusal;
use serde_json::{Map, Value};

/// Most letters one list or replay call handles.
pub const MAX_LIMIT: u32 = 500;
pub const DEFAULT_LIMIT: u32 = 50;
/// Largest admin request body (raw turn records for `/admin/turns`).
pub const MAX_ADMIN_BODY_BYTES: usize = 1024 * 1024;

// A refused admin request is a 400 with a stable code and a message for people.
pub(crate) fn bad(code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal::invalid(code, message)
}

pub(crate) fn object(body: &[u8]) -> Result<Map<String, Value>, Refusal> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(bad("invalid_body", "the body must be a JSON object")),
        Err(e) => Err(bad(
            "malformed_json",
            format!("the body is not valid JSON: {e}"),
        )),
    }
}

/// The `Authorization: Bearer <token>` check, in constant time over the token's bytes. An
/// unset or empty configured token refuses everything.
pub fn bearer_matches(header: Option<&str>, configured: Option<&str>) -> bool {
    let Some(expected) = configured.filter(|t| !t.is_empty()) else {
        return false;
    };
    let Some(header) = header else { return false };
    let Some((scheme, token)) = header.trim().split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer")
        && constant_time_eq::constant_time_eq(token.trim().as_bytes(), expected.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::FailureClass;

    #[test]
    fn list_queries_parse_and_refuse() {
        let q = ListQuery::parse([
            ("status", "pending"),
            ("class", "conflict"),
            ("q", "D1"),
            ("from", "2026-01-01T00:00:00Z"),
            ("to", "1800000000000"),
            ("limit", "10"),
        ])
        .unwrap();
        assert_eq!(q.filter.status, Some(LetterStatus::Pending));
        assert_eq!(q.filter.class, Some(FailureClass::Conflict));
        assert_eq!(q.filter.from, Some(1_767_225_600_000));
        assert_eq!((q.filter.to, q.limit), (Some(1_800_000_000_000), 10));
        let c = Cursor {
            after_failed_at: 5,
            after_id: "abc.def".into(),
        };
        assert_eq!(
            ListQuery::parse([("cursor", c.encode().as_str())])
                .unwrap()
                .cursor,
            Some(c)
        );
        for bad in [
            ("status", "lost"),
            ("class", "x"),
            ("from", "yesterday"),
            ("limit", "0"),
            ("limit", "501"),
            ("cursor", "nope"),
            ("colour", "red"),
        ] {
            assert!(ListQuery::parse([bad]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn shard_bodies_parse_and_refuse() {
        let r = parse_shard_request(
            br#"{"bucket":17,"to":"DB_1","cursor":"2.11.k","limit":5}"#,
            true,
        )
        .unwrap();
        assert_eq!((r.bucket, r.to.as_deref(), r.limit), (17, Some("DB_1"), 5));
        assert_eq!(r.cursor.unwrap().table, 2);
        assert_eq!(
            parse_shard_request(br#"{"bucket":0}"#, false)
                .unwrap()
                .limit,
            MAX_COPY_PAGE
        );
        for (body, needs_to) in [
            (&br#"{"bucket":256,"to":"DB_1"}"#[..], true),
            (br#"{"bucket":-1}"#, false),
            (br#"{"to":"DB_1"}"#, true),
            (br#"{"bucket":1}"#, true),
            (br#"{"bucket":1,"to":"db1"}"#, true),
            (br#"{"bucket":1,"to":"DB_1","limit":101}"#, true),
            (br#"{"bucket":1,"cursor":"nope"}"#, false),
            (br#"{"bucket":1,"colour":"red"}"#, false),
        ] {
            assert!(
                parse_shard_request(body, needs_to).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn action_bodies_parse_and_refuse() {
        let r = ActionRequest::parse(
            br#"{"ids":["a","b"],"dryRun":true,"limit":5,"runId":"run-1"}"#,
            None,
        )
        .unwrap();
        assert_eq!(r.selection, Selection::Ids(vec!["a".into(), "b".into()]));
        assert!(r.dry_run);
        assert_eq!((r.limit, r.run_id.as_deref()), (5, Some("run-1")));
        let r = ActionRequest::parse(
            br#"{"filter":{"class":"invalid"}}"#,
            Some(LetterStatus::Pending),
        )
        .unwrap();
        let Selection::Filter(f) = r.selection else {
            panic!()
        };
        assert_eq!(
            (f.class, f.status),
            (Some(FailureClass::Invalid), Some(LetterStatus::Pending))
        );
        let r = ActionRequest::parse(
            br#"{"filter":{"class":"invalid"},"cursor":"5.abc","limit":2}"#,
            None,
        )
        .unwrap();
        assert_eq!(
            r.cursor,
            Some(Cursor {
                after_failed_at: 5,
                after_id: "abc".into()
            })
        );
        let r = ActionRequest::parse(b"{}", Some(LetterStatus::Pending)).unwrap();
        assert_eq!(r.cursor, None);
        assert_eq!(
            r.selection,
            Selection::Filter(LetterFilter {
                status: Some(LetterStatus::Pending),
                ..Default::default()
            })
        );
        for body in [
            &b"{"[..],
            b"[]",
            br#"{"ids":[]}"#,
            br#"{"ids":[1]}"#,
            br#"{"ids":"a"}"#,
            br#"{"ids":["a"],"filter":{}}"#,
            br#"{"filter":{"colour":"red"}}"#,
            br#"{"filter":{"status":"lost"}}"#,
            br#"{"dryRun":"yes"}"#,
            br#"{"limit":0}"#,
            br#"{"limit":-1}"#,
            br#"{"runId":""}"#,
            br#"{"surprise":1}"#,
            br#"{"ids":["a"],"cursor":"5.abc"}"#,
            br#"{"cursor":"nope"}"#,
            br#"{"cursor":5}"#,
        ] {
            assert!(
                ActionRequest::parse(body, None).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn reconcile_and_raw_turn_bodies() {
        let first = parse_reconcile(b"").unwrap();
        assert_eq!(
            (first.dry_run, first.after, first.limit),
            (false, None, DEFAULT_RECONCILE_PAGE)
        );
        let page = parse_reconcile(br#"{"dryRun":true,"cursor":"u-9","limit":2}"#).unwrap();
        assert_eq!(
            (page.dry_run, page.after.as_deref(), page.limit),
            (true, Some("u-9"), 2)
        );
        assert!(parse_reconcile(br#"{"dryRun":1}"#).is_err());
        assert!(parse_reconcile(b"{").is_err());
        assert_eq!(
            parse_reconcile(br#"{"cursor":""}"#).unwrap_err().code,
            "invalid_cursor"
        );
        assert!(parse_reconcile(br#"{"limit":0}"#).is_err());
        assert!(parse_reconcile(br#"{"limit":1001}"#).is_err());
        assert!(parse_reconcile(br#"{"everything":true}"#).is_err());
        let texts = parse_raw_turns(br#"{"records":["raw text",{"v":9},[1]]}"#).unwrap();
        assert_eq!(texts, vec!["raw text", r#"{"v":9}"#, "[1]"]);
        assert!(parse_raw_turns(br#"{"records":[]}"#).is_err());
        assert!(parse_raw_turns(br#"{"records":{}}"#).is_err());
        let huge = format!(
            r#"{{"records":["{}"]}}"#,
            "a".repeat(MAX_RAW_RECORD_BYTES + 1)
        );
        assert!(parse_raw_turns(huge.as_bytes()).is_err());
    }

    #[test]
    fn bearer_tokens_must_match_exactly() {
        let t = Some("s3cret");
        assert!(bearer_matches(Some("Bearer s3cret"), t));
        assert!(bearer_matches(Some("bearer s3cret"), t));
        for h in [
            None,
            Some(""),
            Some("Bearer"),
            Some("Bearer s3cre"),
            Some("Bearer s3cret2"),
            Some("Basic s3cret"),
            Some("s3cret"),
        ] {
            assert!(!bearer_matches(h, t), "{h:?}");
        }
        assert!(
            !bearer_matches(Some("Bearer "), Some("")),
            "an empty configured token refuses all"
        );
        assert!(!bearer_matches(Some("Bearer x"), None));
    }
}
