//! Dead-letter listings (`GET /admin/dead-letters`: filters and cursors) and the bodies of
//! `POST /admin/dead-letters/replay` and `/discard`.

use super::{bad, object, DEFAULT_LIMIT, MAX_LIMIT};
use crate::failure::FailureClass;
use crate::refusal::Refusal;
use serde::{Deserialize, Serialize};
use serde_json::Value;

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

    pub fn parse(s: &str) -> Result<Self, Refusal> {
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
pub fn parse_time(field: &str, s: &str) -> Result<i64, Refusal> {
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

fn parse_limit(s: &str) -> Result<u32, Refusal> {
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

fn set_filter_field(filter: &mut LetterFilter, key: &str, value: &str) -> Result<bool, Refusal> {
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
    pub fn parse<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, Refusal> {
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

impl ActionRequest {
    /// Parses a body; `default_status` narrows a filter that names no status (a replay
    /// defaults to pending letters).
    pub fn parse(body: &[u8], default_status: Option<LetterStatus>) -> Result<Self, Refusal> {
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
