//! `POST /admin/reconcile` bodies: one page of users per call.

use super::{bad, object};
use crate::refusal::Refusal;
use serde_json::Value;

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

pub fn parse_reconcile(body: &[u8]) -> Result<ReconcileRequest, Refusal> {
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
