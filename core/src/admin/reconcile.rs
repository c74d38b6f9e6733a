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

/// Where one reconcile call works: a database of the map, and the user after which its page
/// starts. The cursor is `DB_k/<last user id>`: one database at a time, in the map's order
/// (a bare user id, from before there were several databases, means the first one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub binding: String,
    /// The database's place in the map's order.
    pub at: usize,
    pub after: Option<String>,
}

/// The page a cursor names, among the map's databases `dbs` (never empty).
pub fn page(dbs: &[&str], cursor: Option<&str>) -> Result<Page, Refusal> {
    let (binding, after) = match cursor {
        None => (dbs[0].to_owned(), None),
        Some(cursor) => match cursor.split_once('/') {
            Some((b, a)) => (b.to_owned(), Some(a.to_owned()).filter(|a| !a.is_empty())),
            None => (dbs[0].to_owned(), Some(cursor.to_owned())),
        },
    };
    let at = dbs.iter().position(|b| *b == binding).ok_or_else(|| {
        bad(
            "invalid_cursor",
            format!("the cursor names {binding:?}, which the bucket map does not use"),
        )
    })?;
    Ok(Page { binding, at, after })
}

/// The cursor after a page that checked `checked` users of at most `limit`, the last being
/// `last_id`: a full page may have more users after it; a short one ends its database, and
/// the next database of `dbs` starts (none after the last).
pub fn next_cursor(
    dbs: &[&str],
    page: &Page,
    checked: i64,
    limit: u32,
    last_id: Option<String>,
) -> Option<String> {
    match last_id.filter(|_| checked >= i64::from(limit)) {
        Some(last) => Some(format!("{}/{last}", page.binding)),
        None => dbs.get(page.at + 1).map(|next| format!("{next}/")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_walk_every_database_in_the_maps_order() {
        let dbs = ["DB_0", "DB_1"];
        let first = page(&dbs, None).unwrap();
        assert_eq!(
            (first.binding.as_str(), first.at, first.after.as_deref()),
            ("DB_0", 0, None)
        );
        // A full page goes on in the same database; a short one moves to the next.
        let next = next_cursor(&dbs, &first, 500, 500, Some("u9".into()));
        assert_eq!(next.as_deref(), Some("DB_0/u9"));
        let p = page(&dbs, next.as_deref()).unwrap();
        assert_eq!(
            (p.binding.as_str(), p.after.as_deref()),
            ("DB_0", Some("u9"))
        );
        let next = next_cursor(&dbs, &p, 3, 500, Some("uz".into()));
        assert_eq!(next.as_deref(), Some("DB_1/"));
        let p = page(&dbs, next.as_deref()).unwrap();
        assert_eq!(
            (p.binding.as_str(), p.at, p.after.as_deref()),
            ("DB_1", 1, None)
        );
        assert_eq!(
            next_cursor(&dbs, &p, 0, 500, None),
            None,
            "the last page ends the run"
        );
        // An old bare cursor is the first database's; an unknown database is refused.
        assert_eq!(page(&dbs, Some("u5")).unwrap().after.as_deref(), Some("u5"));
        let refused = page(&dbs, Some("DB_7/u1")).unwrap_err();
        assert_eq!((refused.code, refused.status()), ("invalid_cursor", 400));
    }
}
