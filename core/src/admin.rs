//! The admin API's requests: dead-letter filters, replay and discard bodies, and the bearer
//! token check. Parsed here, in plain Rust, so every refusal is tested natively.

use crate::failure::FailureClass;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Most letters one list or replay call handles.
pub const MAX_LIMIT: u32 = 500;
pub const DEFAULT_LIMIT: u32 = 50;
/// Largest admin request body (raw turn records for `/admin/turns`).
pub const MAX_ADMIN_BODY_BYTES: usize = 1024 * 1024;
/// Largest single raw record `/admin/turns` queues (a queue message may be 128 KB).
pub const MAX_RAW_RECORD_BYTES: usize = 100 * 1024;

/// A refused admin request: a stable code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminError {
    pub code: &'static str,
    pub message: String,
}

fn bad(code: &'static str, message: impl Into<String>) -> AdminError {
    AdminError {
        code,
        message: message.into(),
    }
}

/// A dead letter's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LetterStatus {
    Pending,
    Replayed,
    Discarded,
}

impl LetterStatus {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "replayed" => Some(Self::Replayed),
            "discarded" => Some(Self::Discarded),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Replayed => "replayed",
            Self::Discarded => "discarded",
        }
    }
}

/// Which letters: every field narrows the set; none means all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LetterFilter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<LetterStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<FailureClass>,
    /// Text the error contains.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    /// Last failure at or after (epoch ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<i64>,
    /// Last failure before (epoch ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<i64>,
}

/// Where a listing resumes: after this (last failure time, id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub after_failed_at: i64,
    pub after_id: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        format!("{}.{}", self.after_failed_at, self.after_id)
    }

    pub fn parse(s: &str) -> Result<Self, AdminError> {
        let invalid = || bad("invalid_cursor", "the cursor is not one this API gave out");
        let (at, id) = s.split_once('.').ok_or_else(invalid)?;
        let after_failed_at = at.parse().map_err(|_| invalid())?;
        if id.is_empty() || id.len() > 128 {
            return Err(invalid());
        }
        Ok(Self {
            after_failed_at,
            after_id: id.to_owned(),
        })
    }
}

/// `GET /admin/dead-letters` query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub filter: LetterFilter,
    pub limit: u32,
    pub cursor: Option<Cursor>,
}

/// A time bound: epoch milliseconds or RFC 3339.
pub fn parse_time(field: &str, s: &str) -> Result<i64, AdminError> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            bad(
                "invalid_query",
                format!("'{field}' must be epoch milliseconds or an RFC 3339 time"),
            )
        })
}

fn parse_limit(s: &str) -> Result<u32, AdminError> {
    s.parse::<u32>()
        .ok()
        .filter(|n| (1..=MAX_LIMIT).contains(n))
        .ok_or_else(|| {
            bad(
                "invalid_query",
                format!("'limit' must be a whole number from 1 to {MAX_LIMIT}"),
            )
        })
}

fn set_filter_field(filter: &mut LetterFilter, key: &str, value: &str) -> Result<bool, AdminError> {
    match key {
        "status" => {
            filter.status = Some(LetterStatus::parse(value).ok_or_else(|| {
                bad(
                    "invalid_query",
                    "'status' must be pending, replayed or discarded",
                )
            })?)
        }
        "class" => {
            let names: Vec<_> = FailureClass::ALL.iter().map(|c| c.as_str()).collect();
            filter.class = Some(FailureClass::parse(value).ok_or_else(|| {
                bad(
                    "invalid_query",
                    format!("'class' must be one of {}", names.join(", ")),
                )
            })?)
        }
        "q" => filter.q = Some(value.to_owned()).filter(|q| !q.is_empty()),
        "from" => filter.from = Some(parse_time("from", value)?),
        "to" => filter.to = Some(parse_time("to", value)?),
        _ => return Ok(false),
    }
    Ok(true)
}

impl ListQuery {
    pub fn parse<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, AdminError> {
        let mut query = Self {
            filter: LetterFilter::default(),
            limit: DEFAULT_LIMIT,
            cursor: None,
        };
        for (key, value) in pairs {
            if set_filter_field(&mut query.filter, key, value)? {
                continue;
            }
            match key {
                "limit" => query.limit = parse_limit(value)?,
                "cursor" => query.cursor = Some(Cursor::parse(value)?),
                other => {
                    return Err(bad(
                        "invalid_query",
                        format!("unknown query parameter '{other}'"),
                    ))
                }
            }
        }
        Ok(query)
    }
}

/// Which letters a replay or discard acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    Ids(Vec<String>),
    Filter(LetterFilter),
}

/// `POST /admin/dead-letters/replay` and `/discard` bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionRequest {
    pub selection: Selection,
    pub dry_run: bool,
    pub limit: u32,
    /// With a filter: go on after the letters an earlier call selected (its `nextCursor`),
    /// so that letters left pending (conflicts, invalid payloads) are not selected again.
    pub cursor: Option<Cursor>,
    /// Groups the calls of one operator run into one `replay_runs` row.
    pub run_id: Option<String>,
}

fn object(body: &[u8]) -> Result<Map<String, Value>, AdminError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(bad("invalid_body", "the body must be a JSON object")),
        Err(e) => Err(bad(
            "malformed_json",
            format!("the body is not valid JSON: {e}"),
        )),
    }
}

impl ActionRequest {
    /// Parses a body; `default_status` narrows a filter that names no status (a replay
    /// defaults to pending letters).
    pub fn parse(body: &[u8], default_status: Option<LetterStatus>) -> Result<Self, AdminError> {
        let map = object(body)?;
        for key in map.keys() {
            if !["ids", "filter", "dryRun", "limit", "cursor", "runId"].contains(&key.as_str()) {
                return Err(bad("invalid_field", format!("unknown field '{key}'")));
            }
        }
        let selection = match (map.get("ids"), map.get("filter")) {
            (Some(_), Some(_)) => {
                return Err(bad("invalid_field", "give 'ids' or 'filter', not both"))
            }
            (Some(Value::Array(ids)), None) => {
                if ids.is_empty() || ids.len() > MAX_LIMIT as usize {
                    return Err(bad(
                        "invalid_field",
                        format!("'ids' must list 1 to {MAX_LIMIT} ids"),
                    ));
                }
                let ids = ids
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .filter(|s| !s.is_empty() && s.len() <= 128)
                            .map(str::to_owned)
                    })
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| bad("invalid_field", "'ids' must be non-empty strings"))?;
                Selection::Ids(ids)
            }
            (Some(_), None) => {
                return Err(bad("invalid_field", "'ids' must be an array of strings"))
            }
            (None, Some(Value::Object(f))) => {
                let mut filter = LetterFilter::default();
                for (key, value) in f {
                    let text = match value {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        _ => {
                            return Err(bad(
                                "invalid_field",
                                format!("filter '{key}' must be a string or number"),
                            ))
                        }
                    };
                    if !set_filter_field(&mut filter, key, &text)
                        .map_err(|e| bad("invalid_field", e.message))?
                    {
                        return Err(bad("invalid_field", format!("unknown filter '{key}'")));
                    }
                }
                filter.status = filter.status.or(default_status);
                Selection::Filter(filter)
            }
            (None, Some(_)) => return Err(bad("invalid_field", "'filter' must be an object")),
            (None, None) => Selection::Filter(LetterFilter {
                status: default_status,
                ..Default::default()
            }),
        };
        let dry_run = match map.get("dryRun") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(bad("invalid_field", "'dryRun' must be true or false")),
        };
        let limit = match map.get("limit") {
            None | Some(Value::Null) => 100,
            Some(v) => v
                .as_u64()
                .filter(|n| (1..=u64::from(MAX_LIMIT)).contains(n))
                .map(|n| n as u32)
                .ok_or_else(|| {
                    bad(
                        "invalid_field",
                        format!("'limit' must be a whole number from 1 to {MAX_LIMIT}"),
                    )
                })?,
        };
        let run_id = match map.get("runId") {
            None | Some(Value::Null) => None,
            Some(Value::String(s))
                if !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                Some(s.clone())
            }
            Some(_) => {
                return Err(bad(
                    "invalid_field",
                    "'runId' must be 1 to 64 visible ASCII characters",
                ))
            }
        };
        let cursor = match (map.get("cursor"), &selection) {
            (None | Some(Value::Null), _) => None,
            (Some(_), Selection::Ids(_)) => {
                return Err(bad(
                    "invalid_field",
                    "'cursor' pages a filter; it cannot go with 'ids'",
                ))
            }
            (Some(Value::String(c)), Selection::Filter(_)) => Some(Cursor::parse(c)?),
            (Some(_), Selection::Filter(_)) => {
                return Err(bad(
                    "invalid_cursor",
                    "'cursor' must be a nextCursor this API gave out",
                ))
            }
        };
        Ok(Self {
            selection,
            dry_run,
            limit,
            cursor,
            run_id,
        })
    }
}

/// Most users one reconcile call checks.
pub const MAX_RECONCILE_PAGE: u32 = 1000;
/// Users one reconcile call checks unless `limit` says otherwise.
pub const DEFAULT_RECONCILE_PAGE: u32 = 500;

/// `POST /admin/reconcile` body (empty means a real run over the first page): one page of
/// users, after the cursor a previous call gave out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileRequest {
    pub dry_run: bool,
    /// The last user id of the previous page (`nextCursor`), or none for the first page.
    pub after: Option<String>,
    pub limit: u32,
}

pub fn parse_reconcile(body: &[u8]) -> Result<ReconcileRequest, AdminError> {
    let mut request = ReconcileRequest {
        dry_run: false,
        after: None,
        limit: DEFAULT_RECONCILE_PAGE,
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(request);
    }
    let map = object(body)?;
    for (key, value) in &map {
        match (key.as_str(), value) {
            (_, Value::Null) => {}
            ("dryRun", Value::Bool(b)) => request.dry_run = *b,
            ("dryRun", _) => return Err(bad("invalid_field", "'dryRun' must be true or false")),
            ("cursor", Value::String(c)) if !c.is_empty() && c.len() <= 64 => {
                request.after = Some(c.clone())
            }
            ("cursor", _) => {
                return Err(bad(
                    "invalid_cursor",
                    "'cursor' must be a nextCursor this API gave out",
                ))
            }
            ("limit", v) => {
                request.limit = v
                    .as_u64()
                    .filter(|n| (1..=u64::from(MAX_RECONCILE_PAGE)).contains(n))
                    .map(|n| n as u32)
                    .ok_or_else(|| {
                        bad(
                            "invalid_field",
                            format!(
                                "'limit' must be a whole number from 1 to {MAX_RECONCILE_PAGE}"
                            ),
                        )
                    })?
            }
            _ => return Err(bad("invalid_field", format!("unknown field '{key}'"))),
        }
    }
    Ok(request)
}

/// `POST /admin/turns` body: `{ "records": [...] }`. Each record is queued as given: a JSON
/// string as its text, anything else as its JSON text.
pub fn parse_raw_turns(body: &[u8]) -> Result<Vec<String>, AdminError> {
    let map = object(body)?;
    let Some(Value::Array(records)) = map.get("records") else {
        return Err(bad("invalid_field", "'records' must be an array"));
    };
    if records.is_empty() || records.len() > 1000 {
        return Err(bad(
            "invalid_field",
            "'records' must hold 1 to 1000 records",
        ));
    }
    records
        .iter()
        .map(|r| {
            let text = match r {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if text.len() > MAX_RAW_RECORD_BYTES {
                return Err(bad(
                    "invalid_field",
                    format!("a record is larger than {MAX_RAW_RECORD_BYTES} bytes"),
                ));
            }
            Ok(text)
        })
        .collect()
}

/// Most rows one `POST /admin/shards/copy` call moves: a page of `chat_messages` at their
/// largest stays under D1's 2 MB per value.
pub const MAX_COPY_PAGE: u32 = 100;

/// A `POST /admin/shards/{hold,copy,verify,flip,purge,release}` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardRequest {
    pub bucket: u8,
    /// The database the bucket goes to (`copy`, `verify`, `flip`).
    pub to: Option<String>,
    /// Where a copy goes on (`copy`): a `nextCursor` this API gave out.
    pub cursor: Option<crate::shards::CopyCursor>,
    /// Rows per call (`copy`, `purge`).
    pub limit: u32,
}

/// Parses a shard request; `needs_to` says whether `to` is required.
pub fn parse_shard_request(body: &[u8], needs_to: bool) -> Result<ShardRequest, AdminError> {
    let map = object(body)?;
    for key in map.keys() {
        if !["bucket", "to", "cursor", "limit"].contains(&key.as_str()) {
            return Err(bad("invalid_field", format!("unknown field '{key}'")));
        }
    }
    let bucket = map
        .get("bucket")
        .and_then(Value::as_u64)
        .filter(|b| *b < crate::shards::BUCKETS as u64)
        .ok_or_else(|| {
            bad(
                "invalid_field",
                "'bucket' must be a whole number from 0 to 255",
            )
        })? as u8;
    let to = match map.get("to") {
        None | Some(Value::Null) if !needs_to => None,
        Some(Value::String(t)) if crate::shards::valid_binding(t) => Some(t.clone()),
        _ => {
            return Err(bad(
                "invalid_field",
                "'to' must name a database binding: DB_0, DB_1, …",
            ))
        }
    };
    let cursor = match map.get("cursor") {
        None | Some(Value::Null) => None,
        Some(Value::String(c)) => Some(crate::shards::CopyCursor::parse(c).ok_or_else(|| {
            bad(
                "invalid_cursor",
                "'cursor' must be a nextCursor this API gave out",
            )
        })?),
        Some(_) => return Err(bad("invalid_cursor", "'cursor' must be a string")),
    };
    let limit = match map.get("limit") {
        None | Some(Value::Null) => MAX_COPY_PAGE,
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=u64::from(MAX_COPY_PAGE)).contains(n))
            .ok_or_else(|| {
                bad(
                    "invalid_field",
                    format!("'limit' must be a whole number from 1 to {MAX_COPY_PAGE}"),
                )
            })? as u32,
    };
    Ok(ShardRequest {
        bucket,
        to,
        cursor,
        limit,
    })
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
