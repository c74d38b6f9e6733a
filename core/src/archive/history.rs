//! A page of a session's history over both tiers: the newest messages before a cursor, from
//! D1 and from the session's objects, merged by `(created_at, id)`.
//!
//! The cursor names a message's time and id, never a tier, and archiving moves a message
//! without changing either, so a walk back sees every message once whether the archiver ran
//! between two pages or not. Within a page, D1 is read first and the session's objects are
//! listed after: a message leaves D1 only once its object is written, so it is in one or
//! the other, and one in both (a commit between the two reads, or an object a run did not
//! commit) is taken once, by its id.

use super::format::{MessageRow, ObjectKey};
use super::ports::ObjectReader;
use super::{read_part, ReadFailure};
use std::collections::BTreeMap;

/// The objects of a listing (`keys` under `prefix`) that may hold messages before
/// `before_at` (all with `None`), newest `last_at` first: the order a page reads them in.
pub fn candidates(keys: &[String], prefix: &str, before_at: Option<i64>) -> Vec<ObjectKey> {
    let mut out: Vec<ObjectKey> = keys
        .iter()
        .filter_map(|k| ObjectKey::parse(k, prefix))
        .filter(|k| before_at.is_none_or(|at| k.first_at <= at))
        .collect();
    out.sort_by(|a, b| (b.last_at, &b.key).cmp(&(a.last_at, &a.key)));
    out
}

/// The newest `limit` messages before `before` across both tiers, oldest first, and whether
/// older ones remain. `d1` holds the newest `limit + 1` of D1 before the cursor; `parts` are
/// the session's objects that start before it, newest `last_at` first ([`candidates`]). It
/// reads objects until the rest are older than the page it holds.
pub async fn merge_page<R: ObjectReader>(
    store: &R,
    d1: Vec<MessageRow>,
    parts: &[ObjectKey],
    before: Option<(i64, &str)>,
    limit: usize,
) -> Result<(Vec<MessageRow>, bool), ReadFailure> {
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
        let object = read_part(store, &part.key).await?;
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
