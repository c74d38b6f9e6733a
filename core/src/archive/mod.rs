//! The archive: every turn older than `HOT_DAYS` moves out of D1 into R2, one database and
//! one session at a time, and stays readable and counted for good.
//!
//! - [`format`]: an object (one session's oldest turns as gzip JSON lines) and its key.
//! - [`ports`]: what the archiver needs: the databases' SQL and the object store.
//! - [`run`]: one page of an archive run, crash-safe and idempotent: write the object, read
//!   it back, then commit (index row + deletes, atomically, only if every row is still there).
//! - [`cursor`]: where a run goes on, and the request that runs it.
//! - [`history`]: a page of a session's history over both tiers.
//! - [`stored_turns`]: the turns of some objects, for the consumer's dedup across tiers.
//!
//! The ledger across tiers: a player's `user_stats.total_points` is the `points` of their
//! objects (`archive_parts`) plus the `delta` of their point events still in D1. A commit
//! moves a turn's event from one side to the other in one D1 transaction, so the sum never
//! changes, and `user_stats` is never written by the archiver.

pub mod cursor;
pub mod format;
pub mod history;
pub mod ports;
pub mod run;

pub use format::{EventRow, MessageRow, Part};

use crate::batch::StoredTurn;
use ports::ObjectReader;

/// The turns (player messages) of the objects `keys`, as the consumer judges with: a turn
/// redelivered after it was archived is found here. A key with no object is an error: an
/// index row names only objects written and read back before it was committed.
pub async fn stored_turns<R: ObjectReader>(
    store: &R,
    keys: &[String],
) -> Result<Vec<StoredTurn>, String> {
    let mut turns = Vec::new();
    for key in keys {
        let bytes = store
            .get(key)
            .await?
            .ok_or_else(|| format!("archive object {key} is missing"))?;
        let part = Part::decode(&bytes).map_err(|e| format!("{key}: {e}"))?;
        turns.extend(
            part.messages
                .into_iter()
                .filter(|m| m.role == "user")
                .map(|m| StoredTurn {
                    id: m.id,
                    user_id: m.user_id,
                    session_id: m.session_id,
                    content: m.content,
                }),
        );
    }
    Ok(turns)
}
