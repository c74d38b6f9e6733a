//! The consumer's ports on native SQLite and in memory, so that the native tests drive the
//! real flows of `crate::consumer`: one SQLite database per binding (`DB_0` is the control
//! database too), queues that keep what was sent, deliveries that remember how they were handled,
//! and a clock the test moves.

use crate::clock::Clock;
use crate::consumer::ports::{Control, Delivery, Ledgers, Queues, Stored, Write};
use crate::shards::{Override, OverrideRow, CONTROL};
use crate::sql;
use rusqlite::Connection;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

/// One SQLite database per binding, every migration applied.
pub struct Databases {
    pub dbs: BTreeMap<String, RefCell<Connection>>,
    /// The archive (R2) their older turns move to.
    pub archive: super::archive::MemoryStore,
}

impl Databases {
    /// `DB_0` … `DB_{n-1}`, in memory.
    pub fn in_memory(n: usize) -> Result<Self, Box<dyn std::error::Error>> {
        let mut dbs = BTreeMap::new();
        for k in 0..n {
            dbs.insert(format!("DB_{k}"), RefCell::new(super::open_in_memory()?));
        }
        Ok(Self {
            dbs,
            archive: Default::default(),
        })
    }

    pub(crate) fn db(&self, binding: &str) -> Result<&RefCell<Connection>, String> {
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

    async fn archived_turns(
        &self,
        lookups: &[crate::archive::Lookup],
    ) -> Result<Vec<crate::batch::StoredTurn>, String> {
        crate::archive::stored_turns(&self.archive, lookups).await
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
pub enum Handling {
    Acked,
    Retried { delay_seconds: u32 },
}

/// A queue message in memory, remembering every handling it was given.
#[derive(Debug)]
pub struct Message {
    pub id: String,
    pub body: String,
    pub attempts: u32,
    pub sent_at: i64,
    pub handled: RefCell<Vec<Handling>>,
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
            handled: RefCell::new(Vec::new()),
        }
    }

    /// The one handling it was given; panics if it got none or several (a flow must give
    /// every message exactly one).
    pub fn handling(&self) -> Handling {
        let v = self.handled.borrow();
        assert_eq!(v.len(), 1, "message {} was handled {v:?}", self.id);
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
        self.handled.borrow_mut().push(Handling::Acked);
    }
    fn retry(&self, delay_seconds: u32) {
        self.handled
            .borrow_mut()
            .push(Handling::Retried { delay_seconds });
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

    fn random10(&self) -> [u8; 10] {
        let mut out = [0u8; 10];
        for pair in out.chunks_mut(2) {
            let n = (self.unit_random() * 65_536.0) as u16;
            pair.copy_from_slice(&n.to_be_bytes());
        }
        out
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

    async fn archived_turns(
        &self,
        lookups: &[crate::archive::Lookup],
    ) -> Result<Vec<crate::batch::StoredTurn>, String> {
        crate::archive::stored_turns(&self.dbs.archive, lookups).await
    }

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

/// Why a move step on SQLite failed: refused by its rules, or by SQLite.
#[derive(Debug, Clone, PartialEq)]
pub enum MoveFailure {
    Refused(crate::refusal::Refusal),
    Storage(String),
}

impl From<crate::refusal::Refusal> for MoveFailure {
    fn from(r: crate::refusal::Refusal) -> Self {
        Self::Refused(r)
    }
}

fn storage(e: impl std::fmt::Display) -> MoveFailure {
    MoveFailure::Storage(e.to_string())
}

/// The move steps' ports (`crate::move_steps`) on the same databases: what the admin API's
/// `/admin/shards/*` runs on D1.
pub struct Mover<'a, T> {
    pub dbs: &'a Databases,
    /// `SHARD_MAP`.
    pub base: crate::shards::ShardMap,
    pub clock: &'a T,
    /// The chat isolates' map cache, in seconds (the grace is derived from it).
    pub map_cache_seconds: u32,
}

impl<T: Clock> crate::move_steps::MovePorts for Mover<'_, T> {
    type Error = MoveFailure;

    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    fn grace_ms(&self) -> i64 {
        crate::moves::grace_ms(self.map_cache_seconds)
    }

    async fn map(&self) -> Result<std::rc::Rc<crate::shards::ShardMap>, MoveFailure> {
        let overrides = Control::overrides(self.dbs).await.map_err(storage)?;
        Ok(std::rc::Rc::new(
            self.base
                .clone()
                .with_overrides(&overrides)
                .map_err(storage)?,
        ))
    }

    async fn row(&self, bucket: u8) -> Result<Option<OverrideRow>, MoveFailure> {
        let db = self.dbs.control();
        let mut st = db.prepare(sql::shards::SELECT_OVERRIDES).map_err(storage)?;
        let rows = st
            .query_map([], |r| {
                Ok(OverrideRow {
                    bucket: r.get(0)?,
                    binding: r.get(1)?,
                    moving: r.get(2)?,
                    moved_from: r.get(3)?,
                    held_at: r.get(4)?,
                    copy_to: r.get(5)?,
                    flipped_at: r.get(6)?,
                })
            })
            .map_err(storage)?;
        for row in rows {
            let row = row.map_err(storage)?;
            if row.bucket == bucket {
                return Ok(Some(row));
            }
        }
        Ok(None)
    }

    async fn change_map(
        &self,
        bucket: u8,
        change: crate::move_steps::MapChange<'_>,
        at: i64,
    ) -> Result<(), MoveFailure> {
        use crate::move_steps::MapChange;
        use rusqlite::params;
        let db = self.dbs.control();
        match change {
            MapChange::Hold { binding } => {
                db.execute(sql::shards::HOLD_BUCKET, params![bucket, binding, at])
            }
            MapChange::CopyStarted { to } => {
                db.execute(sql::shards::COPY_STARTED, params![bucket, to, at])
            }
            MapChange::Flip { to, from } => {
                db.execute(sql::shards::FLIP_BUCKET, params![bucket, to, from, at])
            }
            MapChange::Release => db.execute(sql::shards::RELEASE_BUCKET, params![bucket, at]),
            MapChange::PurgedSource => db.execute(sql::shards::PURGED_SOURCE, params![bucket, at]),
            MapChange::PurgedCopy => db.execute(sql::shards::PURGED_COPY, params![bucket, at]),
        }
        .map(|_| ())
        .map_err(storage)
    }

    async fn fence(
        &self,
        binding: &str,
        bucket: u8,
        reason: Option<&str>,
        at: i64,
    ) -> Result<(), MoveFailure> {
        let db = self.dbs.db(binding).map_err(storage)?.borrow();
        super::fence(&db, bucket, reason, at).map_err(storage)
    }

    async fn fenced(&self, binding: &str, bucket: u8) -> Result<bool, MoveFailure> {
        let db = self.dbs.db(binding).map_err(storage)?.borrow();
        let n: i64 = db
            .query_row(
                "SELECT COUNT(*) FROM bucket_fences WHERE bucket = ?1",
                [crate::shards::bucket_prefix(bucket)],
                |r| r.get(0),
            )
            .map_err(storage)?;
        Ok(n > 0)
    }

    async fn check_target(&self, to: &str) -> Result<(), MoveFailure> {
        // Every native database has every migration, and the native consumer reaches them
        // all: only an unbound target is refused.
        self.dbs.db(to).map(|_| ()).map_err(|e| {
            MoveFailure::Refused(crate::refusal::Refusal::invalid("unknown_database", e))
        })
    }

    async fn copy_page(
        &self,
        from: &str,
        to: &str,
        bucket: u8,
        cursor: &crate::shards::CopyCursor,
        limit: u32,
    ) -> Result<(usize, Option<(String, String)>), MoveFailure> {
        let source = self.dbs.db(from).map_err(storage)?.borrow();
        let target = self.dbs.db(to).map_err(storage)?.borrow();
        let table = &sql::shards::TABLES[cursor.table];
        let (_, hi) = sql::shards::bucket_range(bucket);
        let (rows, n, last_user, last_key): (String, usize, Option<String>, Option<String>) =
            source
                .query_row(
                    &table.export_page(),
                    rusqlite::params![cursor.user, cursor.key, hi, i64::from(limit)],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .map_err(storage)?;
        if n > 0 {
            target
                .execute(&table.import_page(), [rows])
                .map_err(storage)?;
        }
        Ok((n, last_user.zip(last_key)))
    }

    async fn summary(
        &self,
        binding: &str,
        bucket: u8,
    ) -> Result<crate::shards::BucketSummary, MoveFailure> {
        let db = self.dbs.db(binding).map_err(storage)?.borrow();
        super::bucket_summary(&db, bucket).map_err(storage)
    }

    async fn purge_page(
        &self,
        binding: &str,
        bucket: u8,
        limit: u32,
    ) -> Result<usize, MoveFailure> {
        let db = self.dbs.db(binding).map_err(storage)?.borrow();
        super::purge_page(&db, bucket, limit as usize).map_err(storage)
    }

    async fn rebuild_leaders(&self, binding: &str) -> Result<(), MoveFailure> {
        let db = self.dbs.db(binding).map_err(storage)?.borrow();
        super::rebuild_leaders(&db).map_err(storage)
    }
}
