//! One page of an archive run: one database, up to [`Limits::sessions`] sessions, each
//! session's turns older than the cutoff in objects of up to [`Limits::turns`] turns.
//!
//! Each object goes through three steps, and a run killed between any two is finished by
//! the next one:
//! 1. **Write** the object to R2 under a key hashed from its rows. Written again, the same
//!    rows make the same key and the same bytes.
//! 2. **Read it back** and compare the bytes. Nothing is deleted for an object that cannot
//!    be read, so R2 down deletes nothing.
//! 3. **Commit** in one D1 batch, only if every row the object holds is still in the
//!    database (and the bucket is not fenced by a move, and the session's row, if taken, is
//!    unchanged): the rows deleted, and what they hold added to the player's row. Two runs
//!    that read the same rows write the same key, and the second commit changes nothing;
//!    two runs that read different rows (a late turn came between) race, the loser's guard
//!    fails and it changes nothing. Every row leaves D1 once, with the one commit that
//!    counts it. The loser's object holds only rows that another object holds too; readers
//!    take a row once by its id.

use super::cursor::ArchiveCursor;
use super::format::Part;
use super::ports::{ArchiveLedgers, Commit, ObjectStore, OldTurns, PartCommit, SessionRef};
use serde::Serialize;
use uuid::Uuid;

/// How much one page does: bounded so that a page stays well inside a Worker invocation's
/// subrequests (an object is two D1 batches, its write and its read back).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub sessions: usize,
    pub turns: usize,
    /// Objects per page, at most.
    pub parts: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            sessions: 50,
            turns: 200,
            parts: 100,
        }
    }
}

/// Which databases a run visits, in order, and the buckets of each it may archive: the ones
/// the live map gives it and that are not moving.
#[derive(Debug, Clone)]
pub struct Plan {
    pub databases: Vec<(String, Vec<String>)>,
}

impl Plan {
    /// Every database of `map`, in order, each with the buckets it holds that are not
    /// moving: a bucket that is moving is archived once its move ends.
    pub fn of(map: &crate::shards::ShardMap) -> Self {
        Self {
            databases: map
                .bindings()
                .into_iter()
                .map(|b| {
                    let buckets = map
                        .buckets_of(b)
                        .into_iter()
                        .filter(|&k| !map.bucket_is_moving(k))
                        .map(crate::shards::bucket_prefix)
                        .collect();
                    (b.to_owned(), buckets)
                })
                .collect(),
        }
    }

    pub fn bindings(&self) -> Vec<String> {
        self.databases.iter().map(|(b, _)| b.clone()).collect()
    }
}

/// A database a page skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub database: String,
    pub error: String,
}

/// What one page did (`POST /admin/archive`'s answer). A dry run counts what it would do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PageReport {
    pub database: String,
    pub sessions: usize,
    pub parts: usize,
    pub turns: usize,
    pub messages: usize,
    pub point_events: usize,
    pub points: i64,
    /// Compressed bytes written (or that would be).
    pub bytes: usize,
    /// Sessions whose row went with their last turns.
    pub session_rows: usize,
    /// Objects not committed: their rows had been archived by another commit first.
    pub lost: usize,
    pub skipped: Vec<Skipped>,
    pub dry_run: bool,
    /// Where the next page starts; `None` when the run is done.
    pub next_cursor: Option<String>,
}

/// Why a page stopped before it could say where to go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveFailure {
    /// R2 failed, or an object read back differs: nothing of it was deleted. Retry later.
    #[error("the archive store failed: {0}")]
    Store(String),
}

/// What one page is asked to do.
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    /// Where the run stands (`None`: the first database's start).
    pub cursor: Option<&'a ArchiveCursor>,
    /// Turns older than this (ms) are archived.
    pub cutoff: i64,
    pub dry_run: bool,
    pub now_ms: i64,
    pub limits: Limits,
}

/// Runs one page of a run.
pub async fn run_page<L: ArchiveLedgers, S: ObjectStore>(
    ledgers: &L,
    store: &S,
    plan: &Plan,
    step: &Step<'_>,
) -> Result<PageReport, ArchiveFailure> {
    let Step {
        cursor,
        cutoff,
        dry_run,
        limits,
        ..
    } = *step;
    let index = match cursor {
        Some(c) => plan
            .databases
            .iter()
            .position(|(b, _)| *b == c.database)
            .unwrap_or(plan.databases.len()),
        None => 0,
    };
    let mut report = PageReport {
        dry_run,
        ..PageReport::default()
    };
    let Some((db, buckets)) = plan.databases.get(index) else {
        return Ok(report);
    };
    report.database = db.clone();
    let next_database = || {
        plan.databases.get(index + 1).map(|(b, _)| {
            ArchiveCursor {
                database: b.clone(),
                after: None,
            }
            .encode()
        })
    };
    let after = cursor
        .and_then(|c| c.after)
        .map(|(u, s)| (u.to_string(), s.to_string()))
        .unwrap_or_default();
    let sessions = match ledgers
        .sessions(db, &after, cutoff, buckets, limits.sessions)
        .await
    {
        Ok(s) => s,
        Err(error) => {
            report.skipped.push(Skipped {
                database: db.clone(),
                error,
            });
            report.next_cursor = next_database();
            return Ok(report);
        }
    };
    let full = sessions.len() == limits.sessions;
    let mut done: Option<&SessionRef> = None;
    for session in &sessions {
        match archive_session(ledgers, store, db, session, step, &mut report).await? {
            SessionEnd::Done => done = Some(session),
            SessionEnd::PageFull => {
                // Go on from this session next page (what is done of it is gone from D1).
                report.next_cursor = Some(cursor_after(db, done));
                return Ok(report);
            }
            SessionEnd::DatabaseFailed(error) => {
                report.skipped.push(Skipped {
                    database: db.clone(),
                    error,
                });
                report.next_cursor = next_database();
                return Ok(report);
            }
        }
        report.sessions += 1;
    }
    report.next_cursor = if full {
        Some(cursor_after(db, done))
    } else {
        next_database()
    };
    Ok(report)
}

fn cursor_after(db: &str, done: Option<&SessionRef>) -> String {
    ArchiveCursor {
        database: db.to_owned(),
        after: done.and_then(|s| {
            Some((
                Uuid::try_parse(&s.user_id).ok()?,
                Uuid::try_parse(&s.session_id).ok()?,
            ))
        }),
    }
    .encode()
}

enum SessionEnd {
    Done,
    PageFull,
    DatabaseFailed(String),
}

async fn archive_session<L: ArchiveLedgers, S: ObjectStore>(
    ledgers: &L,
    store: &S,
    db: &str,
    session: &SessionRef,
    step: &Step<'_>,
    report: &mut PageReport,
) -> Result<SessionEnd, ArchiveFailure> {
    let Step {
        cutoff,
        dry_run,
        now_ms,
        limits,
        ..
    } = *step;
    let mut after: Option<(i64, String)> = None;
    loop {
        if report.parts >= limits.parts {
            return Ok(SessionEnd::PageFull);
        }
        let OldTurns {
            messages,
            events,
            session: row,
            session_messages,
        } = match ledgers
            .old_turns(db, session, cutoff, after.clone(), limits.turns)
            .await
        {
            Ok(rows) => rows,
            Err(e) => return Ok(SessionEnd::DatabaseFailed(e)),
        };
        // The session's row goes with its last messages in D1 (not in a dry run's later
        // objects, whose earlier rows were counted, not moved).
        let takes_row = after.is_none() && row.is_some() && session_messages == messages.len();
        let ended_at = row.as_ref().and_then(|r| r.ended_at);
        let Some(part) = Part::new(messages, events, row.filter(|_| takes_row)) else {
            return Ok(SessionEnd::Done);
        };
        let last_turn = part
            .messages
            .iter()
            .filter(|m| m.role == "user")
            .map(|m| (m.created_at, m.id.clone()))
            .max();
        let whole = part.header.turns < limits.turns;
        let (key, bytes) = part.encode();
        if dry_run {
            count(report, &part, bytes.len());
            // Nothing is deleted: the next object starts after this one's last turn.
            after = last_turn;
        } else {
            store
                .put(&key, &bytes)
                .await
                .map_err(|e| ArchiveFailure::Store(format!("writing {key}: {e}")))?;
            match store.get(&key).await {
                Ok(Some(back)) if back == bytes => {}
                Ok(Some(_)) => {
                    return Err(ArchiveFailure::Store(format!("{key} read back differs")))
                }
                Ok(None) => return Err(ArchiveFailure::Store(format!("{key} read back missing"))),
                Err(e) => return Err(ArchiveFailure::Store(format!("reading {key} back: {e}"))),
            }
            let commit = PartCommit {
                key,
                user_id: part.header.user_id.clone(),
                session_id: part.header.session_id.clone(),
                first_at: part.header.first_at,
                last_at: part.header.last_at,
                turns: part.header.turns,
                messages: part.header.messages,
                point_events: part.header.point_events,
                points: part.header.points,
                bytes: bytes.len(),
                archived_at: now_ms,
                message_ids: part.messages.iter().map(|m| m.id.clone()).collect(),
                event_ids: part.events.iter().map(|e| e.id.clone()).collect(),
                session_archived: u8::from(part.session.is_some()),
                session_ended_at: ended_at,
            };
            match ledgers.commit(db, &commit).await {
                Ok(Commit::Committed) => count(report, &part, bytes.len()),
                // Archived by another commit (or changed): the rest waits for the next run.
                Ok(Commit::Lost) => {
                    report.lost += 1;
                    return Ok(SessionEnd::Done);
                }
                Err(e) => return Ok(SessionEnd::DatabaseFailed(e)),
            }
            // The rows are gone from D1 (or another run's): read from the start again.
            after = None;
        }
        if whole {
            return Ok(SessionEnd::Done);
        }
    }
}

fn count(report: &mut PageReport, part: &Part, bytes: usize) {
    report.parts += 1;
    report.session_rows += usize::from(part.session.is_some());
    report.turns += part.header.turns;
    report.messages += part.header.messages;
    report.point_events += part.header.point_events;
    report.points += part.header.points;
    report.bytes += bytes;
}
