//! `POST /admin/shards/{hold,copy,verify,flip,purge,release}` bodies: the steps of a bucket
//! move (`crate::moves` decides whether each may run).

use super::{bad, object};
use crate::refusal::Refusal;
use serde_json::Value;

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
pub fn parse_shard_request(body: &[u8], needs_to: bool) -> Result<ShardRequest, Refusal> {
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
