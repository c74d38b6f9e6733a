//! The archiver's ports on native SQLite (the same statements D1 runs, a commit in one
//! transaction as D1's `batch` is) and an in-memory object store that can fail, lose a
//! write's answer, and pause between steps so that two runs interleave.

use super::consumer::Databases;
use crate::archive::format::{EventRow, MessageRow};
use crate::archive::ports::{
    ArchiveLedgers, Commit, ObjectReader, ObjectStore, PartCommit, SessionRef,
};
use crate::sql::archive as sql;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// R2 in memory.
#[derive(Default)]
pub struct MemoryStore {
    pub objects: RefCell<BTreeMap<String, Vec<u8>>>,
    /// Every call fails while set (R2 down).
    pub down: Cell<bool>,
    /// The next `put` stores its object, then fails (the answer lost).
    pub lose_next_put_answer: Cell<bool>,
    /// Each call yields once to the executor first, so that two runs joined together take
    /// turns step by step.
    pub interleave: Cell<bool>,
    pub puts: Cell<usize>,
    pub gets: Cell<usize>,
}

/// A future that is pending once.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

impl MemoryStore {
    async fn step(&self) -> Result<(), String> {
        if self.interleave.get() {
            YieldOnce(false).await;
        }
        if self.down.get() {
            return Err("injected fault: the object store is down".into());
        }
        Ok(())
    }
}

impl ObjectReader for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.step().await?;
        self.gets.set(self.gets.get() + 1);
        Ok(self.objects.borrow().get(key).cloned())
    }
}

impl ObjectStore for MemoryStore {
    async fn put(&self, key: &str, bytes: &[u8]) -> Result<(), String> {
        self.step().await?;
        self.puts.set(self.puts.get() + 1);
        self.objects
            .borrow_mut()
            .insert(key.to_owned(), bytes.to_vec());
        if self.lose_next_put_answer.replace(false) {
            return Err("injected fault after the write".into());
        }
        Ok(())
    }
}

fn text(e: rusqlite::Error) -> String {
    e.to_string()
}

fn message(r: &rusqlite::Row<'_>) -> rusqlite::Result<MessageRow> {
    Ok(MessageRow {
        id: r.get(0)?,
        user_id: r.get(1)?,
        session_id: r.get(2)?,
        role: r.get(3)?,
        content: r.get(4)?,
        score_raw: r.get(5)?,
        score_adjusted: r.get(6)?,
        emotion: r.get(7)?,
        created_at: r.get(8)?,
    })
}

fn event(r: &rusqlite::Row<'_>) -> rusqlite::Result<EventRow> {
    Ok(EventRow {
        id: r.get(0)?,
        user_id: r.get(1)?,
        session_id: r.get(2)?,
        message_id: r.get(3)?,
        delta: r.get(4)?,
        reason: r.get(5)?,
        metadata_json: r.get(6)?,
        created_at: r.get(7)?,
    })
}

impl ArchiveLedgers for Databases {
    async fn sessions(
        &self,
        db: &str,
        after: &str,
        cutoff: i64,
        buckets: &[String],
        limit: usize,
    ) -> Result<Vec<SessionRef>, String> {
        let conn = self.db(db)?.borrow();
        let buckets = serde_json::to_string(buckets).expect("strings serialize");
        let bound = crate::archive::cursor::v7_floor(cutoff);
        let mut st = conn
            .prepare_cached(sql::SESSIONS_TO_ARCHIVE)
            .map_err(text)?;
        let rows = st
            .query_map(
                rusqlite::params![after, bound, cutoff, buckets, limit as i64],
                |r| {
                    Ok(SessionRef {
                        session_id: r.get(0)?,
                        user_id: r.get(1)?,
                    })
                },
            )
            .map_err(text)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(text);
        rows
    }

    async fn old_turns(
        &self,
        db: &str,
        session: &SessionRef,
        cutoff: i64,
        after: Option<(i64, String)>,
        limit: usize,
    ) -> Result<(Vec<MessageRow>, Vec<EventRow>), String> {
        let mut conn = self.db(db)?.borrow_mut();
        let tx = conn.transaction().map_err(text)?;
        let (at, id) = after.unzip();
        let params = rusqlite::params![
            session.user_id,
            session.session_id,
            cutoff,
            limit as i64,
            at,
            id
        ];
        let messages = tx
            .prepare_cached(sql::OLD_TURN_MESSAGES)
            .map_err(text)?
            .query_map(params, message)
            .map_err(text)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(text)?;
        let events = tx
            .prepare_cached(sql::OLD_TURN_EVENTS)
            .map_err(text)?
            .query_map(params, event)
            .map_err(text)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(text)?;
        tx.commit().map_err(text)?;
        Ok((messages, events))
    }

    async fn commit(&self, db: &str, part: &PartCommit) -> Result<Commit, String> {
        let json = serde_json::to_string(part).expect("a part serializes");
        crate::d1_limits::check_value("an archive commit", json.len())?;
        let mut conn = self.db(db)?.borrow_mut();
        let tx = conn.transaction().map_err(text)?;
        let [insert, messages, events, committed] = sql::COMMIT;
        let inserted = tx.execute(insert, [&json]).map_err(text)?;
        tx.execute(messages, [&json]).map_err(text)?;
        tx.execute(events, [&json]).map_err(text)?;
        let exists: bool = tx
            .query_row(committed, [&json], |r| r.get(0))
            .map_err(text)?;
        tx.commit().map_err(text)?;
        Ok(match (inserted, exists) {
            (1, _) => Commit::Committed,
            (_, true) => Commit::AlreadyCommitted,
            _ => Commit::Lost,
        })
    }
}

/// Every message and point event of a player across both tiers, by id: D1's rows and the
/// rows of every committed object (an id in two places counts twice).
pub fn both_tiers(dbs: &Databases, db: &str) -> Result<(Vec<MessageRow>, Vec<EventRow>), String> {
    let conn = dbs.db(db)?.borrow();
    let mut messages: Vec<MessageRow> = conn
        .prepare("SELECT id, user_id, session_id, role, content, score_raw, score_adjusted, emotion, created_at FROM chat_messages")
        .map_err(text)?
        .query_map([], message)
        .map_err(text)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(text)?;
    let mut events: Vec<EventRow> = conn
        .prepare("SELECT id, user_id, session_id, message_id, delta, reason, metadata_json, created_at FROM point_events")
        .map_err(text)?
        .query_map([], event)
        .map_err(text)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(text)?;
    let keys: Vec<String> = conn
        .prepare("SELECT key FROM archive_parts")
        .map_err(text)?
        .query_map([], |r| r.get(0))
        .map_err(text)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(text)?;
    for key in keys {
        let bytes = dbs
            .archive
            .objects
            .borrow()
            .get(&key)
            .cloned()
            .ok_or_else(|| format!("committed object {key} is missing"))?;
        let part = crate::archive::Part::decode(&bytes).map_err(|e| e.to_string())?;
        messages.extend(part.messages);
        events.extend(part.events);
    }
    Ok((messages, events))
}

/// One page of a session's history over both tiers, as `GET /api/sessions/{id}/messages`
/// reads it: D1's newest `limit + 1` before the cursor and the session's objects, in one
/// snapshot, merged (`archive::history::merge_page`).
pub fn history_page(
    dbs: &Databases,
    db: &str,
    user: &str,
    session: &str,
    before: Option<(i64, String)>,
    limit: usize,
) -> Result<(Vec<MessageRow>, bool), String> {
    use crate::archive::history::{merge_page, PartRef};
    let (d1, parts) = {
        let mut conn = dbs.db(db)?.borrow_mut();
        let tx = conn.transaction().map_err(text)?;
        let (at, id) = before.clone().unzip();
        let d1: Vec<MessageRow> = tx
            .prepare_cached(crate::sql::SELECT_SESSION_MESSAGES)
            .map_err(text)?
            .query_map(
                rusqlite::params![user, session, at, id, (limit + 1) as i64],
                |r| {
                    Ok(MessageRow {
                        id: r.get(0)?,
                        user_id: user.to_owned(),
                        session_id: session.to_owned(),
                        role: r.get(1)?,
                        content: r.get(2)?,
                        score_raw: r.get(3)?,
                        score_adjusted: r.get(4)?,
                        emotion: r.get(5)?,
                        created_at: r.get(6)?,
                    })
                },
            )
            .map_err(text)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(text)?;
        let parts: Vec<PartRef> = tx
            .prepare_cached(&sql::SESSION_PARTS)
            .map_err(text)?
            .query_map(
                rusqlite::params![user, session, at, sql::PARTS_PER_PAGE],
                |r| {
                    Ok(PartRef {
                        key: r.get(0)?,
                        first_at: r.get(3)?,
                        last_at: r.get(4)?,
                    })
                },
            )
            .map_err(text)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(text)?;
        tx.commit().map_err(text)?;
        (d1, parts)
    };
    let before = before.as_ref().map(|(at, id)| (*at, id.as_str()));
    crate::native::actor::block_on(merge_page(&dbs.archive, d1, &parts, before, limit))
        .map_err(|e| e.to_string())
}
