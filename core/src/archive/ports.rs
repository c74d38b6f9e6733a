//! What the archiver's flow needs from the world: the Worker implements these over D1 and
//! R2 (`producer/src/archive.rs`), the native tests over SQLite and a map with faults
//! (`native::archive`).

use super::format::{EventRow, MessageRow, SessionRow};
use serde::{Deserialize, Serialize};

/// A session with turns to archive (a row of `sql::archive::SESSIONS_TO_ARCHIVE`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SessionRef {
    pub session_id: String,
    pub user_id: String,
}

/// A session's turns older than the cutoff, read in one snapshot.
#[derive(Debug, Clone, Default)]
pub struct OldTurns {
    pub messages: Vec<MessageRow>,
    pub events: Vec<EventRow>,
    /// The session's row, if it started before the cutoff (`sql::archive::SESSION_TAIL`).
    pub session: Option<SessionRow>,
    /// How many of the session's messages D1 holds in all.
    pub session_messages: usize,
}

/// What an object holds and the ids of its rows: the one JSON parameter of
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
    /// 1 when the object took the session's row (then it must be unchanged: `ended_at`).
    pub session_archived: u8,
    pub session_ended_at: Option<i64>,
}

/// What a commit found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// This commit deleted the rows and counted them for the player.
    Committed,
    /// Some of the rows had left D1 already (this object committed before by a run that
    /// stopped after its commit, or another run's object), the session's row changed, or the
    /// bucket is moving: nothing changed. The object holds only rows held elsewhere.
    Lost,
}

/// The players' databases, as the archiver uses them.
#[allow(async_fn_in_trait)] // The Workers are single-threaded; no Send bound is wanted.
pub trait ArchiveLedgers {
    /// Sessions of `db` with a message older than `cutoff`, after the (user, session)
    /// `after` (`("", "")` for the first), of `buckets`.
    async fn sessions(
        &self,
        db: &str,
        after: &(String, String),
        cutoff: i64,
        buckets: &[String],
        limit: usize,
    ) -> Result<Vec<SessionRef>, String>;
    /// A session's turns older than `cutoff`, after the turn `after`, at most `limit`,
    /// and its row, read in one snapshot.
    async fn old_turns(
        &self,
        db: &str,
        session: &SessionRef,
        cutoff: i64,
        after: Option<(i64, String)>,
        limit: usize,
    ) -> Result<OldTurns, String>;
    /// Commits an object, atomically (`sql::archive::COMMIT`).
    async fn commit(&self, db: &str, part: &PartCommit) -> Result<Commit, String>;
}

/// Reading objects (the consumer and the history reads need no more).
#[allow(async_fn_in_trait)]
pub trait ObjectReader {
    /// The object's bytes, `None` if there is none under `key`.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String>;
    /// Every key under `prefix`, in key order.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, String>;
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
    async fn list(&self, prefix: &str) -> Result<Vec<String>, String> {
        (**self).list(prefix).await
    }
}
