//! The erasure's ports on native SQLite (the same statements D1 runs), the in-memory R2 of
//! `native::archive`, and session actors in memory, each call able to fail on purpose, so
//! that a test can stop an erasure between any two steps.

use super::consumer::Databases;
use crate::archive::ports::ObjectReader;
use crate::privacy::erase::{DatabaseCounts, Erasee, ErasurePorts};
use crate::sql::privacy as sql;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

/// A session actor in memory: what its storage holds (text), and its open sockets.
#[derive(Debug, Clone, Default)]
pub struct MemoryActor {
    pub holds: String,
    pub sockets: usize,
}

/// The erasure's ports; `fail_at` makes the n-th call (counting from 1) fail, once.
pub struct Eraser<'a> {
    pub dbs: &'a Databases,
    pub actors: &'a RefCell<BTreeMap<String, MemoryActor>>,
    pub calls: Cell<usize>,
    pub fail_at: Cell<Option<usize>>,
}

impl<'a> Eraser<'a> {
    pub fn new(dbs: &'a Databases, actors: &'a RefCell<BTreeMap<String, MemoryActor>>) -> Self {
        Self {
            dbs,
            actors,
            calls: Cell::new(0),
            fail_at: Cell::new(None),
        }
    }

    fn step(&self) -> Result<(), String> {
        let n = self.calls.get() + 1;
        self.calls.set(n);
        if self.fail_at.get() == Some(n) {
            self.fail_at.set(None);
            return Err(format!("injected fault at call {n}"));
        }
        Ok(())
    }
}

fn text(e: rusqlite::Error) -> String {
    e.to_string()
}

impl ErasurePorts for Eraser<'_> {
    fn databases(&self) -> Vec<String> {
        self.dbs.dbs.keys().cloned().collect()
    }

    async fn counts(&self, db: &str, who: &Erasee) -> Result<DatabaseCounts, String> {
        self.step()?;
        let conn = self.dbs.db(db)?.borrow();
        conn.query_row(&sql::PLAYER_COUNTS, [&who.user_id, &who.tag], |r| {
            let mut rows = BTreeMap::new();
            for (i, (table, _)) in sql::PLAYER_TABLES.iter().enumerate() {
                rows.insert((*table).to_owned(), r.get::<_, i64>(i)?);
            }
            Ok(DatabaseCounts {
                rows,
                erased_at: r.get(sql::PLAYER_TABLES.len())?,
            })
        })
        .map_err(text)
    }

    async fn sessions(&self, db: &str, who: &Erasee) -> Result<Vec<String>, String> {
        self.step()?;
        let conn = self.dbs.db(db)?.borrow();
        let rows = conn
            .prepare(sql::PLAYER_SESSIONS)
            .map_err(text)?
            .query_map([&who.user_id], |r| r.get(0))
            .map_err(text)?
            .collect::<rusqlite::Result<Vec<String>>>()
            .map_err(text);
        rows
    }

    async fn tombstone(&self, db: &str, who: &Erasee, at: i64) -> Result<(), String> {
        self.step()?;
        let conn = self.dbs.db(db)?.borrow();
        conn.execute(sql::TOMBSTONE, rusqlite::params![who.tag, who.bucket, at])
            .map(|_| ())
            .map_err(text)
    }

    async fn erase_rows(&self, db: &str, who: &Erasee) -> Result<(), String> {
        self.step()?;
        let mut conn = self.dbs.db(db)?.borrow_mut();
        let tx = conn.transaction().map_err(text)?;
        for statement in sql::ERASE_ROWS.iter() {
            tx.execute(statement, [&who.user_id]).map_err(text)?;
        }
        tx.commit().map_err(text)
    }

    async fn letters(&self, who: &Erasee) -> Result<i64, String> {
        self.step()?;
        self.dbs
            .control()
            .query_row(sql::PLAYER_LETTERS, [&who.user_id], |r| r.get(0))
            .map_err(text)
    }

    async fn erase_letters(&self, who: &Erasee) -> Result<(), String> {
        self.step()?;
        self.dbs
            .control()
            .execute(sql::ERASE_LETTERS, [&who.user_id])
            .map(|_| ())
            .map_err(text)
    }

    async fn archive_keys(&self, who: &Erasee) -> Result<Vec<String>, String> {
        self.step()?;
        self.dbs
            .archive
            .list(&crate::archive::format::user_prefix(&who.user_id))
            .await
    }

    async fn delete_objects(&self, keys: &[String]) -> Result<(), String> {
        self.step()?;
        let mut objects = self.dbs.archive.objects.borrow_mut();
        for k in keys {
            objects.remove(k);
        }
        Ok(())
    }

    async fn erase_actor(&self, session: &str) -> Result<usize, String> {
        self.step()?;
        Ok(self
            .actors
            .borrow_mut()
            .remove(session)
            .map_or(0, |a| a.sockets))
    }
}
