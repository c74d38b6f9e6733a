//! A page of a session's history over both tiers: the newest messages before a cursor, from
//! D1 and from the session's objects, merged by `(created_at, id)`.
//!
//! The cursor names a message's time and id, never a tier, and archiving moves a message
//! without changing either, so a walk back sees every message once whether the archiver ran
//! between two pages or not. Within a page, the D1 rows and the list of objects are read in
//! one D1 batch (one snapshot): a message is in one or the other, and one that is in both
//! (a commit between two reads) is counted once, by id.

use super::format::{MessageRow, Part};
use super::ports::ObjectReader;
use std::collections::BTreeMap;

/// An object of the session that may hold messages before the cursor (a row of
/// `sql::archive::SESSION_PARTS`, newest `last_at` first).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct PartRef {
    pub key: String,
    pub first_at: i64,
    pub last_at: i64,
}

/// Why a page could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistoryFailure {
    /// R2 failed: the page can be asked again.
    #[error("the archive store failed: {0}")]
    Store(String),
    /// A committed object is missing or unreadable (never expected).
    #[error("archive object {key}: {error}")]
    Broken { key: String, error: String },
}

/// The newest `limit` messages before `before` across both tiers, oldest first, and whether
/// older ones remain. `d1` holds the newest `limit + 1` of D1 before the cursor; `parts` are
/// the session's objects that start before it, newest `last_at` first (`more_parts` reads
/// the next ones after the last given, when those run out first).
pub async fn merge_page<R: ObjectReader>(
    store: &R,
    d1: Vec<MessageRow>,
    parts: &[PartRef],
    before: Option<(i64, &str)>,
    limit: usize,
) -> Result<(Vec<MessageRow>, bool), HistoryFailure> {
    let want = limit + 1;
    let is_before = |m: &MessageRow| match before {
        None => true,
        Some((at, id)) => (m.created_at, m.id.as_str()) < (at, id),
    };
    let mut found: BTreeMap<(i64, String), MessageRow> = d1
        .into_iter()
        .filter(|m| is_before(m))
        .map(|m| ((m.created_at, m.id.clone()), m))
        .collect();
    for part in parts {
        // The newest `want` so far are all newer than anything this object holds.
        if found.len() >= want {
            let kth = found.keys().rev().nth(want - 1).map(|k| k.0);
            if kth.is_some_and(|t| part.last_at < t) {
                break;
            }
        }
        let bytes = store
            .get(&part.key)
            .await
            .map_err(HistoryFailure::Store)?
            .ok_or_else(|| HistoryFailure::Broken {
                key: part.key.clone(),
                error: "missing".into(),
            })?;
        let object = Part::decode(&bytes).map_err(|e| HistoryFailure::Broken {
            key: part.key.clone(),
            error: e.to_string(),
        })?;
        for m in object.messages.into_iter().filter(|m| is_before(m)) {
            found.insert((m.created_at, m.id.clone()), m);
        }
        // Keep only the newest `want`: a long walk holds no more than a page.
        while found.len() > want {
            let oldest = found.keys().next().cloned().expect("not empty");
            found.remove(&oldest);
        }
    }
    let mut rows: Vec<MessageRow> = found.into_values().collect();
    let more = rows.len() > limit;
    if more {
        rows.remove(0);
    }
    Ok((rows, more))
}
