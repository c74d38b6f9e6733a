//! What the archiver's flow needs from the world: the Worker implements these over D1 and
//! R2 (`producer/src/archive.rs`), the native tests over SQLite and a map with faults
//! (`native::archive`).

use super::format::{EventRow, MessageRow};
use serde::{Deserialize, Serialize};

/// A session with turns to archive (a row of `sql::archive::SESSIONS_TO_ARCHIVE`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SessionRef {
    pub session_id: String,
    pub user_id: String,
}

/// The index row of an object and the ids of the rows it holds: the one JSON parameter of
/// `sql::archive::COMMIT`.
#[derive(Debug, Clone, Serialize)]
pub struct PartCommit {
    pub key: String,
    pub user_id: String,
    pub session_id: String,
    pub first_at: i64,
    pub last_at: i64,
    pub turns: usize,
    pub messages: usize,
    pub point_events: usize,
    pub points: i64,
    pub bytes: usize,
    pub archived_at: i64,
    pub message_ids: Vec<String>,
    pub event_ids: Vec<String>,
}

/// What a commit found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// This commit wrote the index row and deleted the rows.
    Committed,
    /// The same object was committed before (a run that stopped after its commit, or a run
    /// beside this one that read the same rows): nothing changed.
    AlreadyCommitted,
    /// Another run archived some of these rows into another object first, or the bucket is
    /// moving: nothing changed, and this object is never read.
    Lost,
}

/// The players' databases, as the archiver uses them.
#[allow(async_fn_in_trait)] // The Workers are single-threaded; no Send bound is wanted.
pub trait ArchiveLedgers {
    /// Sessions of `db` with a turn older than `cutoff`, after `after`, of `buckets`.
    async fn sessions(
        &self,
        db: &str,
        after: &str,
        cutoff: i64,
        buckets: &[String],
        limit: usize,
    ) -> Result<Vec<SessionRef>, String>;
    /// A session's turns older than `cutoff`, after the turn `after`, at most `limit`,
    /// read in one snapshot: their messages and their point events.
    async fn old_turns(
        &self,
        db: &str,
        session: &SessionRef,
        cutoff: i64,
        after: Option<(i64, String)>,
        limit: usize,
    ) -> Result<(Vec<MessageRow>, Vec<EventRow>), String>;
    /// Commits an object, atomically (`sql::archive::COMMIT`).
    async fn commit(&self, db: &str, part: &PartCommit) -> Result<Commit, String>;
}

/// Reading objects (the consumer and the history reads need no more).
#[allow(async_fn_in_trait)]
pub trait ObjectReader {
    /// The object's bytes, `None` if there is none under `key`.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String>;
}

/// The object store (R2).
#[allow(async_fn_in_trait)]
pub trait ObjectStore: ObjectReader {
    async fn put(&self, key: &str, bytes: &[u8]) -> Result<(), String>;
}

impl<P: ObjectReader> ObjectReader for &P {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        (**self).get(key).await
    }
}
