//! The archiver's ports on native SQLite (the same statements D1 runs, a commit in one
//! transaction as D1's `batch` is) and an in-memory object store that can fail, lose a
//! write's answer, and pause between steps so that two runs interleave.

use super::consumer::Databases;
use crate::archive::format::{EventRow, MessageRow, SessionRow};
use crate::archive::ports::{
    ArchiveLedgers, Commit, ObjectReader, ObjectStore, OldTurns, PartCommit, SessionRef,
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

    async fn list(&self, prefix: &str) -> Result<Vec<String>, String> {
        self.step().await?;
        Ok(self
            .objects
            .borrow()
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect())
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

/// A `chat_sessions` row from its first seven columns (`sql::archive::SESSION_TAIL` adds one).
fn session_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRow> {
    Ok(SessionRow {
        id: r.get(0)?,
        user_id: r.get(1)?,
        character_type: r.get(2)?,
        username: r.get(3)?,
        locale: r.get(4)?,
        created_at: r.get(5)?,
        ended_at: r.get(6)?,
    })
}

/// Every row `statement` returns, by the id `id` gives it.
fn by_id<T>(
    conn: &rusqlite::Connection,
    statement: &str,
    row: fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    id: fn(&T) -> &String,
) -> Result<BTreeMap<String, T>, String> {
    let mut st = conn.prepare(statement).map_err(text)?;
    let rows = st
        .query_map([], row)
        .map_err(text)?
        .map(|r| r.map(|t| (id(&t).clone(), t)))
        .collect::<rusqlite::Result<_>>()
        .map_err(text);
    rows
}

impl ArchiveLedgers for Databases {
    async fn sessions(
        &self,
        db: &str,
        after: &(String, String),
        cutoff: i64,
        buckets: &[String],
        limit: usize,
    ) -> Result<Vec<SessionRef>, String> {
        let conn = self.db(db)?.borrow();
        let buckets = serde_json::to_string(buckets).expect("strings serialize");
        let mut st = conn
            .prepare_cached(sql::SESSIONS_TO_ARCHIVE)
            .map_err(text)?;
        let rows = st
            .query_map(
                rusqlite::params![after.0, after.1, cutoff, buckets, limit as i64],
                |r| {
                    Ok(SessionRef {
                        user_id: r.get(0)?,
                        session_id: r.get(1)?,
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
    ) -> Result<OldTurns, String> {
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
        let tail: Option<(SessionRow, usize)> = {
            let mut st = tx.prepare_cached(sql::SESSION_TAIL).map_err(text)?;
            let mut rows = st
                .query_map(
                    rusqlite::params![session.user_id, session.session_id, cutoff],
                    |r| Ok((session_row(r)?, r.get::<_, i64>(7)? as usize)),
                )
                .map_err(text)?;
            rows.next().transpose().map_err(text)?
        };
        tx.commit().map_err(text)?;
        let (session, session_messages) = tail.unzip();
        Ok(OldTurns {
            messages,
            events,
            session,
            session_messages: session_messages.unwrap_or(0),
        })
    }

    async fn commit(&self, db: &str, part: &PartCommit) -> Result<Commit, String> {
        let json = serde_json::to_string(part).expect("a part serializes");
        crate::d1_limits::check_value("an archive commit", json.len())?;
        let mut conn = self.db(db)?.borrow_mut();
        let tx = conn.transaction().map_err(text)?;
        let mut committed = false;
        for (i, statement) in sql::COMMIT.iter().enumerate() {
            if i == sql::COMMITTED_STATEMENT {
                committed = tx
                    .query_row(statement, [&json], |r| r.get(0))
                    .map_err(text)?;
            } else {
                tx.execute(statement, [&json]).map_err(text)?;
            }
        }
        tx.commit().map_err(text)?;
        Ok(if committed {
            Commit::Committed
        } else {
            Commit::Lost
        })
    }
}

/// Messages, point events and sessions by id.
pub type Tiers = (
    BTreeMap<String, MessageRow>,
    BTreeMap<String, EventRow>,
    BTreeMap<String, SessionRow>,
);

/// Every message and point event of a database's players across both tiers: D1's rows,
/// and the rows of every object in the store of those players, each id once.
pub fn both_tiers(dbs: &Databases, db: &str) -> Result<Tiers, String> {
    let conn = dbs.db(db)?.borrow();
    let mut messages = by_id(
        &conn,
        "SELECT id, user_id, session_id, role, content, score_raw, score_adjusted, emotion, created_at FROM chat_messages",
        message,
        |m| &m.id,
    )?;
    let mut events = by_id(
        &conn,
        "SELECT id, user_id, session_id, message_id, delta, reason, metadata_json, created_at FROM point_events",
        event,
        |e| &e.id,
    )?;
    let mut sessions = by_id(
        &conn,
        "SELECT id, user_id, character_type, username, locale, created_at, ended_at FROM chat_sessions",
        session_row,
        |s| &s.id,
    )?;
    let users: Vec<String> = conn
        .prepare("SELECT id FROM users")
        .map_err(text)?
        .query_map([], |r| r.get(0))
        .map_err(text)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(text)?;
    for user in users {
        let prefix = crate::archive::format::user_prefix(&user);
        let objects = dbs.archive.objects.borrow();
        for (_, bytes) in objects
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
        {
            let part = crate::archive::Part::decode(bytes).map_err(|e| e.to_string())?;
            take_once(&mut messages, part.messages, |m| &m.id)?;
            take_once(&mut events, part.events, |e| &e.id)?;
            // D1's row wins: an object a run did not commit may hold an older copy (its
            // `ended_at` may have changed since), never another player's.
            if let Some(row) = part.session {
                if let Some(held) = sessions.get(&row.id) {
                    if (&held.user_id, held.created_at) != (&row.user_id, row.created_at) {
                        return Err(format!("session {} differs between copies", row.id));
                    }
                    continue;
                }
                sessions.insert(row.id.clone(), row);
            }
        }
    }
    Ok((messages, events, sessions))
}

/// Adds `rows` to `held` by id; a row held already must be the same row.
fn take_once<T: PartialEq>(
    held: &mut BTreeMap<String, T>,
    rows: Vec<T>,
    id: impl Fn(&T) -> &String,
) -> Result<(), String> {
    for row in rows {
        match held.get(id(&row)) {
            Some(h) if *h != row => return Err(format!("row {} differs between copies", id(&row))),
            Some(_) => {}
            None => {
                held.insert(id(&row).clone(), row);
            }
        }
    }
    Ok(())
}

/// One page of a session's history over both tiers, as `GET /api/sessions/{id}/messages`
/// reads it: D1's newest `limit + 1` before the cursor, then the session's objects listed,
/// merged (`archive::history::merge_page`).
pub fn history_page(
    dbs: &Databases,
    db: &str,
    user: &str,
    session: &str,
    before: Option<(i64, String)>,
    limit: usize,
) -> Result<(Vec<MessageRow>, bool), String> {
    use crate::archive::history::{candidates, merge_page};
    let d1 = {
        let conn = dbs.db(db)?.borrow();
        let (at, id) = before.clone().unzip();
        let d1: Vec<MessageRow> = conn
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
        d1
    };
    // D1 first, the listing after: a message leaves D1 only once its object is written.
    let prefix = crate::archive::format::session_prefix(user, session);
    let keys = crate::native::actor::block_on(dbs.archive.list(&prefix))?;
    let parts = candidates(&keys, &prefix, before.as_ref().map(|(at, _)| *at));
    let before = before.as_ref().map(|(at, id)| (*at, id.as_str()));
    crate::native::actor::block_on(merge_page(&dbs.archive, d1, &parts, before, limit))
        .map_err(|e| e.to_string())
}
