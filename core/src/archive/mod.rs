//! The archive: every turn older than `HOT_DAYS` moves out of D1 into R2, one database and
//! one session at a time, and stays readable and counted for good.
//!
//! - [`format`]: an object (one session's oldest turns as gzip JSON lines) and its key.
//! - [`ports`]: what the archiver needs: the databases' SQL and the object store.
//! - [`run`]: one page of an archive run, crash-safe and idempotent: write the object, read
//!   it back, then commit (the rows deleted and counted for the player, atomically, only if
//!   every row is still there).
//! - [`cursor`]: where a run goes on, and the request that runs it.
//! - [`job`]: the Cron Trigger's run, one job per database on a queue, each a few pages.
//! - [`history`]: a page of a session's history over both tiers.
//! - [`read_part`]: an object read and decoded, the one way every reader reads one.
//! - [`stored_turns`]: the turns of some objects, for the consumer's dedup across tiers.
//!
//! The ledger across tiers: a player's `user_stats.total_points` is the `points` of their
//! `archive_players` row plus the `delta` of their point events still in D1. A commit
//! moves a turn's event from one side to the other in one D1 transaction, so the sum never
//! changes, and `user_stats` is never written by the archiver.

pub mod cursor;
pub mod format;
pub mod history;
pub mod job;
pub mod ports;
pub mod run;

pub use format::{EventRow, MessageRow, Part};

use crate::batch::StoredTurn;
use format::{session_prefix, ObjectKey};
use ports::ObjectReader;
use std::collections::{BTreeMap, BTreeSet};

/// Why an object could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadFailure {
    /// R2 failed: ask again.
    #[error("the archive store failed: {0}")]
    Store(String),
    /// An object listed, or committed, is missing or unreadable (never expected).
    #[error("archive object {key}: {error}")]
    Broken { key: String, error: String },
}

/// The object under `key`, decoded. Every reader of objects reads them through this.
pub async fn read_part<R: ObjectReader>(store: &R, key: &str) -> Result<Part, ReadFailure> {
    let broken = |error: String| ReadFailure::Broken {
        key: key.to_owned(),
        error,
    };
    let bytes = store
        .get(key)
        .await
        .map_err(ReadFailure::Store)?
        .ok_or_else(|| broken("missing".into()))?;
    Part::decode(&bytes).map_err(|e| broken(e.to_string()))
}

/// A turn to look for in the archive: its player, session and time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Lookup {
    pub user_id: String,
    pub session_id: String,
    pub at: i64,
}

/// The turns (player messages) of the objects that may hold the turns `lookups` name: each
/// session's objects are listed once, and only those whose time range covers a turn are
/// read. The consumer judges a turn delivered again after it was archived with them.
pub async fn stored_turns<R: ObjectReader>(
    store: &R,
    lookups: &[Lookup],
) -> Result<Vec<StoredTurn>, String> {
    let mut by_session: BTreeMap<(&str, &str), Vec<i64>> = BTreeMap::new();
    for l in lookups {
        by_session
            .entry((&l.user_id, &l.session_id))
            .or_default()
            .push(l.at);
    }
    let mut keys = BTreeSet::new();
    for ((user, session), times) in by_session {
        let prefix = session_prefix(user, session);
        for key in store.list(&prefix).await? {
            if let Some(k) = ObjectKey::parse(&key, &prefix) {
                if times.iter().any(|&t| k.first_at <= t && t <= k.last_at) {
                    keys.insert(k.key);
                }
            }
        }
    }
    let mut turns: BTreeMap<String, StoredTurn> = BTreeMap::new();
    for key in keys {
        // Listed a moment ago and never deleted but by an erasure: missing is an error.
        let part = read_part(store, &key).await.map_err(|e| e.to_string())?;
        for m in part.messages.into_iter().filter(|m| m.role == "user") {
            turns.insert(
                m.id.clone(),
                StoredTurn {
                    id: m.id,
                    user_id: m.user_id,
                    session_id: m.session_id,
                    content: m.content,
                },
            );
        }
    }
    Ok(turns.into_values().collect())
}
