//! The consumer's ports on native SQLite and in memory, so that the native tests drive the
//! real flows of `crate::consumer`: one SQLite database per binding (`DB_0` is the control
//! database too), queues that keep what was sent, deliveries that remember their verdict,
//! and a clock the test moves.

use crate::consumer::ports::{Clock, Control, Delivery, Ledgers, Queues, Stored, Write};
use crate::shards::{Override, OverrideRow, CONTROL};
use crate::sql;
use rusqlite::Connection;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

/// One SQLite database per binding, every migration applied.
pub struct Databases {
    pub dbs: BTreeMap<String, RefCell<Connection>>,
}

impl Databases {
    /// `DB_0` … `DB_{n-1}`, in memory.
    pub fn in_memory(n: usize) -> Result<Self, Box<dyn std::error::Error>> {
        let mut dbs = BTreeMap::new();
        for k in 0..n {
            dbs.insert(format!("DB_{k}"), RefCell::new(super::open_in_memory()?));
        }
        Ok(Self { dbs })
    }

    fn db(&self, binding: &str) -> Result<&RefCell<Connection>, String> {
        self.dbs
            .get(binding)
            .ok_or_else(|| format!("no binding {binding}"))
    }

    /// The control database.
    pub fn control(&self) -> std::cell::Ref<'_, Connection> {
        self.dbs[CONTROL].borrow()
    }
}

fn text(e: rusqlite::Error) -> String {
    e.to_string()
}

impl Ledgers for Databases {
    fn bindings(&self) -> Vec<String> {
        let mut names: Vec<String> = self.dbs.keys().cloned().collect();
        names.sort_by_key(|b| (b.len(), b.clone()));
        names
    }

    fn has(&self, binding: &str) -> bool {
        self.dbs.contains_key(binding)
    }

    async fn apply_turns(&self, binding: &str, write: &Write<'_>) -> Result<Stored, String> {
        crate::d1_limits::check_value("the batch's turns", write.json.len())?;
        super::store_chunk(&mut self.db(binding)?.borrow_mut(), write.json).map_err(text)
    }

    async fn applied_migration(&self, binding: &str) -> Result<Option<String>, String> {
        self.db(binding)?;
        // Native migrations are applied by `migrate`, which keeps no table of them: the
        // newest file is what every database here has.
        Ok(super::migration_files(&super::migrations_dir())
            .map_err(|e| e.to_string())?
            .last()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned()))
    }
}

impl Control for Databases {
    async fn overrides(&self) -> Result<Vec<Override>, String> {
        let db = self.db(CONTROL)?.borrow();
        let mut st = db
            .prepare_cached(sql::shards::SELECT_OVERRIDES)
            .map_err(text)?;
        let rows = st
            .query_map([], |r| {
                Ok(OverrideRow {
                    bucket: r.get(0)?,
                    binding: r.get(1)?,
                    moving: r.get(2)?,
                    ..OverrideRow::default()
                })
            })
            .map_err(text)?;
        rows.map(|r| r.map(|r| Override::from(&r)).map_err(text))
            .collect()
    }

    async fn report_databases(
        &self,
        reports: &[(String, Option<String>)],
        probe_at: i64,
    ) -> Result<(), String> {
        let mut db = self.db(CONTROL)?.borrow_mut();
        let tx = db.transaction().map_err(text)?;
        for (binding, migration) in reports {
            tx.execute(
                sql::shards::REPORT_CONSUMER_DATABASE,
                rusqlite::params![binding, migration, probe_at],
            )
            .map_err(text)?;
        }
        tx.commit().map_err(text)
    }

    async fn store_letters(&self, letters_json: &str, now_ms: i64) -> Result<(), String> {
        crate::d1_limits::check_value("the batch's dead letters", letters_json.len())?;
        self.db(CONTROL)?
            .borrow()
            .execute(sql::STORE_LETTERS, rusqlite::params![letters_json, now_ms])
            .map(|_| ())
            .map_err(text)
    }
}

/// Queues that keep what was sent, and can be told to refuse.
#[derive(Default)]
pub struct MemoryQueues {
    /// Bodies sent to the turn queue.
    pub turns: RefCell<Vec<String>>,
    /// Texts sent to the dead-letter queue.
    pub letters: RefCell<Vec<String>>,
    /// While set, every send fails.
    pub refusing: Cell<bool>,
}

impl MemoryQueues {
    fn accept(&self) -> Result<(), String> {
        if self.refusing.get() {
            Err("the queue refused the send".into())
        } else {
            Ok(())
        }
    }
}

impl Queues for MemoryQueues {
    async fn send_turns(&self, bodies: &[String]) -> Result<(), String> {
        self.accept()?;
        self.turns.borrow_mut().extend(bodies.iter().cloned());
        Ok(())
    }

    async fn send_letters(&self, texts: &[String]) -> Result<(), String> {
        self.accept()?;
        self.letters.borrow_mut().extend(texts.iter().cloned());
        Ok(())
    }
}

/// What a flow did with a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Acked,
    Retried { delay_seconds: u32 },
}

/// A queue message in memory, remembering every verdict it was given.
#[derive(Debug)]
pub struct Message {
    pub id: String,
    pub body: String,
    pub attempts: u32,
    pub sent_at: i64,
    pub verdicts: RefCell<Vec<Verdict>>,
}

impl Message {
    pub fn new(
        id: impl Into<String>,
        body: impl Into<String>,
        attempts: u32,
        sent_at: i64,
    ) -> Self {
        Self {
            id: id.into(),
            body: body.into(),
            attempts,
            sent_at,
            verdicts: RefCell::new(Vec::new()),
        }
    }

    /// The one verdict it was given; panics if it got none or several (a flow must give
    /// every message exactly one).
    pub fn verdict(&self) -> Verdict {
        let v = self.verdicts.borrow();
        assert_eq!(v.len(), 1, "message {} got verdicts {v:?}", self.id);
        v[0]
    }
}

impl Delivery for Message {
    fn id(&self) -> &str {
        &self.id
    }
    fn body(&self) -> &str {
        &self.body
    }
    fn attempts(&self) -> u32 {
        self.attempts
    }
    fn sent_at(&self) -> i64 {
        self.sent_at
    }
    fn ack(&self) {
        self.verdicts.borrow_mut().push(Verdict::Acked);
    }
    fn retry(&self, delay_seconds: u32) {
        self.verdicts
            .borrow_mut()
            .push(Verdict::Retried { delay_seconds });
    }
}

/// A clock the test sets, with a seeded generator for jitter and fault rates.
pub struct SeededClock {
    pub now: Cell<i64>,
    state: Cell<u64>,
}

impl SeededClock {
    pub fn new(now: i64, seed: u64) -> Self {
        Self {
            now: Cell::new(now),
            state: Cell::new(seed | 1),
        }
    }
}

impl Clock for SeededClock {
    fn now_ms(&self) -> i64 {
        self.now.get()
    }

    fn unit_random(&self) -> f64 {
        // xorshift64*: enough for jitter and fault rates, and repeatable from the seed.
        let mut x = self.state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state.set(x);
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The replay's ports (`crate::replay`) on the same databases and queue: what the admin
/// API's replay runs on D1 and the turn queue.
pub struct Replayer<'a> {
    pub dbs: &'a Databases,
    pub queues: &'a MemoryQueues,
    pub now: i64,
}

impl crate::replay::ReplayPorts for Replayer<'_> {
    type Error = String;

    async fn stored_turns(
        &self,
        binding: &str,
        turn_ids: &[&str],
    ) -> Result<Vec<crate::batch::StoredTurn>, String> {
        let ids: Vec<serde_json::Value> = turn_ids
            .iter()
            .map(|id| serde_json::json!({ "turn_id": id }))
            .collect();
        let db = self.dbs.db(binding)?.borrow();
        let mut st = db.prepare(sql::SELECT_STORED_TURNS).map_err(text)?;
        let rows = st
            .query_map([serde_json::Value::Array(ids).to_string()], |r| {
                Ok(crate::batch::StoredTurn {
                    id: r.get(0)?,
                    user_id: r.get(1)?,
                    session_id: r.get(2)?,
                    content: r.get(3)?,
                })
            })
            .map_err(text)?;
        rows.collect::<rusqlite::Result<_>>().map_err(text)
    }

    async fn requeue(&self, payloads: &[String]) -> Result<(), (usize, String)> {
        self.queues.send_turns(payloads).await.map_err(|e| (0, e))
    }

    async fn mark_replayed(&self, ids: &[String]) -> Result<(), String> {
        let ids = serde_json::to_string(ids).map_err(|e| e.to_string())?;
        self.dbs
            .control()
            .execute(sql::MARK_REPLAYED, rusqlite::params![ids, self.now])
            .map(|_| ())
            .map_err(text)
    }
}
