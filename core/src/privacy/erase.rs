//! Erasing a player everywhere their data lives, as `POST /admin/players/{id}/erase` runs it,
//! over small traits: the chat Worker implements them over D1, R2 and the session actors,
//! the native tests over SQLite, an in-memory R2 and in-memory actors with faults.
//!
//! 1. **Count** every place: each database's rows of the player, their sessions (from D1
//!    and the archive's keys), their dead letters, their archive objects. A database that
//!    cannot be read stops the run here, before anything changed. Nothing anywhere, and no
//!    tombstone: the player is unknown. A dry run stops here too, with the counts.
//! 2. **Tombstone** in every database, first: from then on each database's batch refuses
//!    any turn of the player made before it (`sql::SELECT_ERASED`), whatever is still
//!    queued, retried or replayed. An erasure run again keeps the first one's time.
//! 3. **Actors**: each session's storage deleted and its live sockets closed.
//! 4. **Dead letters** whose payload names the player.
//! 5. **Archive** objects under the player's prefix.
//! 6. **Rows**, last, in every database (the one the map gives the player, and any a move
//!    left them in): their sessions are read from them in step 1, so a run stopped before
//!    this step finds every session again.
//!
//! Every step repeats safely, so a run stopped anywhere is finished by the next; the next
//! says it resumed (`resumed`: the tombstone was there) and what was left.

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Who is erased: the id, the keyed hash the tombstone holds, and the bucket it names.
#[derive(Debug, Clone)]
pub struct Erasee {
    pub user_id: String,
    pub tag: String,
    pub bucket: String,
}

/// One database's rows of the player, by table, and its tombstone's time if it has one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DatabaseCounts {
    pub rows: BTreeMap<String, i64>,
    pub erased_at: Option<i64>,
}

/// Why an erasure stopped; the next run finishes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EraseFailure {
    /// A database failed: 503, retry.
    #[error("database {database}: {error}")]
    Database { database: String, error: String },
    /// R2 failed: 503, retry.
    #[error("the archive store: {0}")]
    Store(String),
    /// A session's actor could not be reached: 503, retry.
    #[error("session {session}'s actor: {error}")]
    Actor { session: String, error: String },
    /// No such player anywhere (404).
    #[error("no such player")]
    Unknown,
}

/// What an erasure needs from the world.
#[allow(async_fn_in_trait)] // The Workers are single-threaded; no Send bound is wanted.
pub trait ErasurePorts {
    /// Every database this Worker is bound to.
    fn databases(&self) -> Vec<String>;
    async fn counts(&self, db: &str, who: &Erasee) -> Result<DatabaseCounts, String>;
    async fn sessions(&self, db: &str, who: &Erasee) -> Result<Vec<String>, String>;
    async fn tombstone(&self, db: &str, who: &Erasee, at: i64) -> Result<(), String>;
    async fn erase_rows(&self, db: &str, who: &Erasee) -> Result<(), String>;
    async fn letters(&self, who: &Erasee) -> Result<i64, String>;
    async fn erase_letters(&self, who: &Erasee) -> Result<(), String>;
    async fn archive_keys(&self, who: &Erasee) -> Result<Vec<String>, String>;
    async fn delete_objects(&self, keys: &[String]) -> Result<(), String>;
    /// Deletes the session's actor storage and closes its sockets; how many it closed.
    async fn erase_actor(&self, session: &str) -> Result<usize, String>;
}

/// What an erasure found (and, unless a dry run, removed), place by place.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ErasureReport {
    pub user_id: String,
    pub dry_run: bool,
    /// The tombstone was there already: an earlier run got at least that far.
    pub resumed: bool,
    /// When the player was erased (the first run's time), unless a dry run.
    pub erased_at: Option<i64>,
    /// Each database's rows of the player, by table.
    pub databases: BTreeMap<String, BTreeMap<String, i64>>,
    /// The sessions whose actors are (or would be) erased.
    pub sessions: Vec<String>,
    /// Live sockets closed.
    pub sockets_closed: usize,
    pub dead_letters: i64,
    pub archive_objects: usize,
}

impl ErasureReport {
    /// Whether anything of the player was found.
    pub fn found_anything(&self) -> bool {
        self.databases
            .values()
            .flat_map(|t| t.values())
            .any(|&n| n > 0)
            || !self.sessions.is_empty()
            || self.dead_letters > 0
            || self.archive_objects > 0
    }
}

fn db_failed(database: &str) -> impl Fn(String) -> EraseFailure + '_ {
    move |error| EraseFailure::Database {
        database: database.to_owned(),
        error,
    }
}

/// Erases `who` (a dry run only counts), at `now_ms`.
pub async fn erase<P: ErasurePorts>(
    ports: &P,
    who: &Erasee,
    dry_run: bool,
    now_ms: i64,
) -> Result<ErasureReport, EraseFailure> {
    let mut report = ErasureReport {
        user_id: who.user_id.clone(),
        dry_run,
        ..ErasureReport::default()
    };
    let databases = ports.databases();
    let mut tombstone: Option<i64> = None;
    let mut sessions: BTreeSet<String> = BTreeSet::new();
    for db in &databases {
        let counts = ports.counts(db, who).await.map_err(db_failed(db))?;
        tombstone = match (tombstone, counts.erased_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        report.databases.insert(db.clone(), counts.rows);
        sessions.extend(ports.sessions(db, who).await.map_err(db_failed(db))?);
    }
    report.dead_letters = ports
        .letters(who)
        .await
        .map_err(db_failed(crate::shards::CONTROL))?;
    let keys = ports.archive_keys(who).await.map_err(EraseFailure::Store)?;
    report.archive_objects = keys.len();
    // A session whose row went to the archive is named by its objects' keys.
    let prefix = crate::archive::format::user_prefix(&who.user_id);
    sessions.extend(keys.iter().filter_map(|k| {
        k.strip_prefix(&prefix)
            .and_then(|rest| rest.split_once('/'))
            .map(|(session, _)| session.to_owned())
    }));
    report.sessions = sessions.into_iter().collect();
    report.resumed = tombstone.is_some();
    if !report.found_anything() && tombstone.is_none() {
        return Err(EraseFailure::Unknown);
    }
    if dry_run {
        return Ok(report);
    }
    let at = tombstone.unwrap_or(now_ms);
    report.erased_at = Some(at);
    for db in &databases {
        ports.tombstone(db, who, at).await.map_err(db_failed(db))?;
    }
    for session in &report.sessions {
        report.sockets_closed +=
            ports
                .erase_actor(session)
                .await
                .map_err(|error| EraseFailure::Actor {
                    session: session.clone(),
                    error,
                })?;
    }
    ports
        .erase_letters(who)
        .await
        .map_err(db_failed(crate::shards::CONTROL))?;
    ports
        .delete_objects(&keys)
        .await
        .map_err(EraseFailure::Store)?;
    for db in &databases {
        ports.erase_rows(db, who).await.map_err(db_failed(db))?;
    }
    Ok(report)
}
