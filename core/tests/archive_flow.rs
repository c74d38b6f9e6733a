//! The archive's real flows (`chat_core::archive::run::run_page`, the consumer's `consume`
//! and the history merge), driven natively on two SQLite databases and an in-memory R2
//! through hundreds of rounds: new turns, redeliveries of turns long archived, late turns
//! whose time falls inside an archived range, archive runs with a cutoff that moves, and
//! faults at every step of a run: R2 down, a write whose answer is lost, D1 failing before
//! or after a commit, a run stopped between any two steps, and two runs at once.
//!
//! After every round: every turn applied is stored exactly once across the two tiers (its
//! two messages and its point event), nothing else is stored, and every player's
//! `user_stats.total_points` equals the points they were told, which equals their archived
//! points plus their events still in D1. History walks back through both tiers with every
//! message once, oldest first within a page, even while a run goes on between two pages.
//! The seed is printed; `SEED=n` repeats a run.

mod common;

use chat_core::archive::cursor::ArchiveCursor;
use chat_core::archive::format::MessageRow;
use chat_core::archive::ports::{ArchiveLedgers, Commit, OldTurns, PartCommit, SessionRef};
use chat_core::archive::run::{run_page, ArchiveFailure, Limits, Plan, Step};
use chat_core::clock::Clock;
use chat_core::consumer::Settings;
use chat_core::identity::{AuthProvider, Identity};
use chat_core::live_map::MapCache;
use chat_core::native::actor::block_on;
use chat_core::native::archive::{both_tiers, history_page};
use chat_core::native::consumer::{Databases, SeededClock};
use chat_core::native::start_session;
use chat_core::record::{sample, TurnRecord};
use chat_core::shards::{bucket, bucket_prefix, ShardMap};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

const T0: i64 = 1_700_000_000_000;
const MAP: &str = "0-127=DB_0,128-255=DB_1";
const DAY: i64 = 86_400_000;

/// The databases as the archiver sees them, failing where the test says.
struct FaultyLedgers<'a> {
    inner: &'a Databases,
    /// Each call fails with this probability.
    fail_rate: Cell<f64>,
    /// Commits that fail after their batch ran (the answer lost).
    lose_commit_answer: Cell<bool>,
    rng: std::cell::RefCell<StdRng>,
}

impl FaultyLedgers<'_> {
    fn roll(&self, step: &str) -> Result<(), String> {
        let p = self.fail_rate.get();
        if p > 0.0 && self.rng.borrow_mut().gen_bool(p) {
            return Err(format!("injected fault: D1 failed at {step}"));
        }
        Ok(())
    }
}

impl ArchiveLedgers for FaultyLedgers<'_> {
    async fn sessions(
        &self,
        db: &str,
        after: &(String, String),
        cutoff: i64,
        buckets: &[String],
        limit: usize,
    ) -> Result<Vec<SessionRef>, String> {
        self.roll("sessions")?;
        self.inner.sessions(db, after, cutoff, buckets, limit).await
    }
    async fn old_turns(
        &self,
        db: &str,
        session: &SessionRef,
        cutoff: i64,
        after: Option<(i64, String)>,
        limit: usize,
    ) -> Result<OldTurns, String> {
        self.roll("old turns")?;
        self.inner
            .old_turns(db, session, cutoff, after, limit)
            .await
    }
    async fn commit(&self, db: &str, part: &PartCommit) -> Result<Commit, String> {
        self.roll("commit")?;
        let done = self.inner.commit(db, part).await?;
        if self.lose_commit_answer.get() && self.rng.borrow_mut().gen_bool(0.3) {
            return Err("injected fault: the commit ran, its answer was lost".into());
        }
        Ok(done)
    }
}

struct Player {
    name: String,
    user: String,
    sessions: Vec<Uuid>,
}

struct Sim {
    rng: StdRng,
    dbs: Databases,
    clock: SeededClock,
    settings: Settings,
    cache: MapCache,
    players: Vec<Player>,
    /// Every turn applied, by turn id: its record.
    applied: BTreeMap<Uuid, TurnRecord>,
    next_n: u64,
    map: ShardMap,
}

impl Sim {
    fn new(seed: u64) -> Self {
        let dbs = Databases::in_memory(2).unwrap();
        let map = ShardMap::parse(MAP).unwrap();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut players = Vec::new();
        for p in 0..8 {
            let name = format!("p{p}");
            let identity = Identity::new(AuthProvider::X, &name).unwrap();
            let user = identity.user_id();
            let db = map.binding(&user).to_owned();
            let mut sessions = Vec::new();
            for s in 0..rng.gen_range(1..=3) {
                let at = T0 + (p * 10 + s) as i64;
                let id =
                    uuid::Builder::from_unix_timestamp_millis(at as u64, &rng.gen()).into_uuid();
                start_session(&dbs.dbs[&db].borrow(), &identity, id, at).unwrap();
                sessions.push(id);
            }
            players.push(Player {
                name,
                user: user.to_string(),
                sessions,
            });
        }
        Self {
            rng,
            dbs,
            clock: SeededClock::new(T0 + 1_000, seed),
            settings: Settings {
                shard_map: ShardMap::parse(MAP),
                ..Settings::default()
            },
            cache: MapCache::default(),
            players,
            applied: BTreeMap::new(),
            next_n: 1,
            map,
        }
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Delivers records through the consumer until each is acked: how many were applied.
    fn deliver(&mut self, records: &[TurnRecord]) -> usize {
        common::deliver(&self.dbs, &self.clock, &self.settings, &self.cache, records).applied
    }

    fn new_turn(&mut self, at: i64) -> TurnRecord {
        let p = self.rng.gen_range(0..self.players.len());
        let s = self.rng.gen_range(0..self.players[p].sessions.len());
        let n = self.next_n;
        self.next_n += 1;
        sample(&self.players[p].name, self.players[p].sessions[s], n, at)
    }

    fn plan(&self) -> Plan {
        let mut databases: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for b in 0..=255u8 {
            let user = Uuid::from_bytes([b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            databases
                .entry(self.map.binding(&user).to_owned())
                .or_default()
                .push(bucket_prefix(bucket(&user)));
        }
        Plan {
            databases: databases.into_iter().collect(),
        }
    }

    /// One archive run to its end (or its first failure): the pages as an operator's
    /// `chat-admin archive run` sends them.
    async fn run(&self, ledgers: &FaultyLedgers<'_>, cutoff: i64) -> Result<usize, ArchiveFailure> {
        let plan = self.plan();
        let limits = Limits {
            sessions: 2,
            turns: 3,
            parts: 4,
        };
        let mut cursor: Option<ArchiveCursor> = None;
        let mut parts = 0;
        loop {
            let step = Step {
                cursor: cursor.as_ref(),
                cutoff,
                dry_run: false,
                now_ms: self.now(),
                limits,
            };
            let page = run_page(ledgers, &self.dbs.archive, &plan, &step).await?;
            parts += page.parts;
            match page.next_cursor {
                None => return Ok(parts),
                Some(c) => cursor = ArchiveCursor::parse(&c, &["DB_0".into(), "DB_1".into()]),
            }
        }
    }

    /// Every turn applied is in one tier or both (an object a run did not commit may repeat
    /// rows), identical wherever it is, and nothing else is; every turn is counted once
    /// (D1's rows plus what `archive_players` counts); every ledger balances.
    fn check(&self) {
        let mut messages = BTreeMap::new();
        let mut events = BTreeMap::new();
        let mut sessions = BTreeMap::new();
        for db in ["DB_0", "DB_1"] {
            let (m, e, s) = both_tiers(&self.dbs, db).unwrap();
            messages.extend(m);
            events.extend(e);
            sessions.extend(s);
        }
        // Every session's row is in D1 or went to an object with its last turns: not both.
        let started: BTreeSet<String> = self
            .players
            .iter()
            .flat_map(|p| p.sessions.iter().map(|s| s.to_string()))
            .collect();
        assert_eq!(sessions.keys().cloned().collect::<BTreeSet<_>>(), started);
        let mut expected_messages = BTreeSet::new();
        let mut expected_events = BTreeSet::new();
        let mut points: BTreeMap<String, i64> = BTreeMap::new();
        let mut turns: BTreeMap<String, i64> = BTreeMap::new();
        for r in self.applied.values() {
            expected_messages.insert(r.turn_id.to_string());
            expected_messages.insert(r.agent_message.id.to_string());
            expected_events.insert(r.point_event.id.to_string());
            *points.entry(r.user.id.to_string()).or_default() += i64::from(r.point_event.delta);
            *turns.entry(r.user.id.to_string()).or_default() += 1;
            let stored = &messages[&r.turn_id.to_string()];
            assert_eq!(
                stored.content, r.user_message.content,
                "the turn's words, wherever it is"
            );
        }
        assert_eq!(
            messages.keys().cloned().collect::<BTreeSet<_>>(),
            expected_messages
        );
        assert_eq!(
            events.keys().cloned().collect::<BTreeSet<_>>(),
            expected_events
        );
        // Reconcile finds no drift: totals, levels and last-message times span both tiers.
        let every: Vec<String> = (0..=255u8).map(bucket_prefix).collect();
        let every = serde_json::to_string(&every).unwrap();
        for db in ["DB_0", "DB_1"] {
            let conn = self.dbs.dbs[db].borrow();
            let drifted: Vec<String> = conn
                .prepare(&chat_core::sql::SELECT_DRIFT)
                .unwrap()
                .query_map(rusqlite::params!["", 10_000, every], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert!(
                drifted.is_empty(),
                "{db}: reconcile sees drift in {drifted:?}"
            );
            let scratch: i64 = conn
                .query_row("SELECT COUNT(*) FROM archive_commits", [], |r| r.get(0))
                .unwrap();
            assert_eq!(
                scratch, 0,
                "the commit's scratch table is empty between batches"
            );
        }
        for p in &self.players {
            let db = self
                .map
                .binding(&Uuid::parse_str(&p.user).unwrap())
                .to_owned();
            let conn = self.dbs.dbs[&db].borrow();
            let row: (i64, i64, i64, i64, i64, i64, i64) = conn
                .query_row(
                    "SELECT COALESCE((SELECT total_points FROM user_stats WHERE user_id = ?1), 0),
                            (SELECT COALESCE(SUM(points), 0) FROM archive_players WHERE user_id = ?1),
                            (SELECT COALESCE(SUM(delta), 0) FROM point_events WHERE user_id = ?1),
                            (SELECT COALESCE(SUM(point_events), 0) FROM archive_players WHERE user_id = ?1),
                            (SELECT COUNT(*) FROM point_events WHERE user_id = ?1),
                            (SELECT COALESCE(SUM(messages), 0) FROM archive_players WHERE user_id = ?1),
                            (SELECT COUNT(*) FROM chat_messages WHERE user_id = ?1)",
                    [&p.user],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)),
                )
                .unwrap();
            let (
                stored,
                archived,
                hot,
                archived_events,
                hot_events,
                archived_messages,
                hot_messages,
            ) = row;
            let told = points.get(&p.user).copied().unwrap_or(0);
            let played = turns.get(&p.user).copied().unwrap_or(0);
            assert_eq!(
                stored, told,
                "{}: the total is what the player was told",
                p.name
            );
            assert_eq!(
                stored,
                archived + hot,
                "{}: the ledger balances across tiers",
                p.name
            );
            assert_eq!(
                archived_events + hot_events,
                played,
                "{}: each turn counted once",
                p.name
            );
            assert_eq!(
                archived_messages + hot_messages,
                2 * played,
                "{}: each message once",
                p.name
            );
        }
    }

    /// The messages of the turns applied in `session`: (created_at, id), oldest first.
    fn messages_of(&self, session: Uuid) -> Vec<(i64, String)> {
        let mut v: Vec<(i64, String)> = self
            .applied
            .values()
            .filter(|r| r.session_id == session)
            .flat_map(|r| {
                [
                    (r.user_message.created_at, r.turn_id.to_string()),
                    (r.agent_message.created_at, r.agent_message.id.to_string()),
                ]
            })
            .collect();
        v.sort();
        v
    }

    /// Walks a session's history back, page by page, with `between` run before each page
    /// after the first; returns the messages oldest first.
    fn walk(
        &self,
        p: &Player,
        session: Uuid,
        limit: usize,
        between: &mut dyn FnMut(),
    ) -> Vec<MessageRow> {
        let db = self
            .map
            .binding(&Uuid::parse_str(&p.user).unwrap())
            .to_owned();
        let mut before: Option<(i64, String)> = None;
        let mut out: Vec<MessageRow> = Vec::new();
        loop {
            let (page, more) = history_page(
                &self.dbs,
                &db,
                &p.user,
                &session.to_string(),
                before.clone(),
                limit,
            )
            .unwrap();
            assert!(page.len() <= limit);
            assert!(
                page.windows(2)
                    .all(|w| (w[0].created_at, &w[0].id) < (w[1].created_at, &w[1].id)),
                "oldest first"
            );
            let oldest = page.first().map(|m| (m.created_at, m.id.clone()));
            out.splice(0..0, page);
            if !more {
                return out;
            }
            before = oldest;
            between();
        }
    }
}

#[test]
fn every_turn_is_stored_once_across_both_tiers_through_faults_and_races() {
    let seed = common::seed();
    let mut sim = Sim::new(seed);
    let ledgers_rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let mut failures = 0;
    let mut archived_turns = 0;
    let mut late = 0;
    let mut redelivered_archived = 0;
    for round in 0..120 {
        // A day passes; some turns are played.
        sim.clock.now.set(sim.now() + DAY / 4);
        let now = sim.now();
        let fresh: Vec<TurnRecord> = (0..sim.rng.gen_range(1..8))
            .map(|k| sim.new_turn(now + k))
            .collect();
        let applied = sim.deliver(&fresh);
        assert_eq!(applied, fresh.len());
        for r in fresh {
            sim.applied.insert(r.turn_id, r);
        }
        // Old turns delivered again (a retry, a replayed dead letter), archived or not.
        if !sim.applied.is_empty() && sim.rng.gen_bool(0.5) {
            let all: Vec<TurnRecord> = sim.applied.values().cloned().collect();
            let again: Vec<TurnRecord> = (0..sim.rng.gen_range(1..6))
                .map(|_| all[sim.rng.gen_range(0..all.len())].clone())
                .collect();
            let archived_before: usize = again.iter().filter(|r| !in_d1(&sim, r)).count();
            redelivered_archived += archived_before;
            assert_eq!(
                sim.deliver(&again),
                0,
                "a turn delivered again is never applied again"
            );
        }
        // A late turn: never delivered before, its time inside what may be archived.
        if round > 10 && sim.rng.gen_bool(0.3) {
            let at = T0 + sim.rng.gen_range(0..(now - T0));
            let r = sim.new_turn(at);
            assert_eq!(
                sim.deliver(std::slice::from_ref(&r)),
                1,
                "a late turn is applied once"
            );
            sim.applied.insert(r.turn_id, r);
            late += 1;
        }
        // An archive run, faults and all.
        let ledgers = FaultyLedgers {
            inner: &sim.dbs,
            fail_rate: Cell::new(if sim.rng.gen_bool(0.3) { 0.2 } else { 0.0 }),
            lose_commit_answer: Cell::new(sim.rng.gen_bool(0.3)),
            rng: std::cell::RefCell::new(StdRng::seed_from_u64(
                ledgers_rng.clone().gen::<u64>() ^ round,
            )),
        };
        let store = &sim.dbs.archive;
        store.down.set(sim.rng.gen_bool(0.1));
        store.lose_next_put_answer.set(sim.rng.gen_bool(0.2));
        let cutoff = now - sim.rng.gen_range(0..3 * DAY);
        let parts_before = parts(&sim);
        let twice = sim.rng.gen_bool(0.25);
        store.interleave.set(twice);
        let results = if twice {
            let (a, b) = block_on(futures_util::future::join(
                sim.run(&ledgers, cutoff),
                sim.run(&ledgers, cutoff),
            ));
            vec![a, b]
        } else {
            vec![block_on(sim.run(&ledgers, cutoff))]
        };
        store.interleave.set(false);
        for r in results {
            match r {
                Ok(parts) => archived_turns += parts,
                Err(_) => failures += 1,
            }
        }
        if store.down.get() {
            assert_eq!(
                parts(&sim),
                parts_before,
                "R2 down: nothing committed, nothing deleted"
            );
        }
        store.down.set(false);
        store.lose_next_put_answer.set(false);
        sim.check();
    }
    // Everything archives once the faults stop, and reads back whole.
    let ledgers = FaultyLedgers {
        inner: &sim.dbs,
        fail_rate: Cell::new(0.0),
        lose_commit_answer: Cell::new(false),
        rng: std::cell::RefCell::new(StdRng::seed_from_u64(seed)),
    };
    block_on(sim.run(&ledgers, sim.now() + DAY)).unwrap();
    sim.check();
    for db in ["DB_0", "DB_1"] {
        let n: i64 = sim.dbs.dbs[db]
            .borrow()
            .query_row("SELECT COUNT(*) FROM chat_messages", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0, "{db}: every turn older than the cutoff left D1");
        let sessions: i64 = sim.dbs.dbs[db]
            .borrow()
            .query_row("SELECT COUNT(*) FROM chat_sessions", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            sessions, 0,
            "{db}: each session's row went with its last turns"
        );
    }
    // Redelivered now, every turn is recognised in the archive.
    let all: Vec<TurnRecord> = sim.applied.values().cloned().collect();
    assert_eq!(sim.deliver(&all), 0);
    sim.check();
    // History reads whole across the tiers.
    for p in &sim.players {
        for &s in &p.sessions {
            let expected: Vec<String> = sim.messages_of(s).into_iter().map(|(_, id)| id).collect();
            let got: Vec<String> = sim
                .walk(p, s, 3, &mut || {})
                .into_iter()
                .map(|m| m.id)
                .collect();
            assert_eq!(got, expected, "{} {s}", p.name);
        }
    }
    let objects = sim.dbs.archive.objects.borrow().len() as i64;
    println!(
        "seed {seed}: {} turns, {late} late, {redelivered_archived} archived turns delivered again, {archived_turns} objects committed, {} left uncommitted by faults and races, {failures} runs stopped by faults",
        sim.applied.len(),
        objects - parts(&sim)
    );
    assert!(
        failures > 0 && late > 0 && redelivered_archived > 0,
        "the faults and races happened"
    );
}

fn parts(sim: &Sim) -> i64 {
    sim.dbs
        .dbs
        .values()
        .map(|c| {
            c.borrow()
                .query_row(
                    "SELECT COALESCE(SUM(objects), 0) FROM archive_players",
                    [],
                    |r| r.get::<_, i64>(0),
                )
                .unwrap()
        })
        .sum()
}

fn in_d1(sim: &Sim, r: &TurnRecord) -> bool {
    sim.dbs.dbs.values().any(|c| {
        c.borrow()
            .query_row(
                "SELECT COUNT(*) FROM chat_messages WHERE id = ?1",
                [r.turn_id.to_string()],
                |row| row.get::<_, i64>(0),
            )
            .unwrap()
            > 0
    })
}

#[test]
fn history_reads_whole_while_a_run_archives_between_pages() {
    let seed = common::seed();
    let mut sim = Sim::new(seed);
    let now = sim.now();
    let turns: Vec<TurnRecord> = (0..60).map(|k| sim.new_turn(now + k * 1_000)).collect();
    sim.deliver(&turns);
    for r in turns {
        sim.applied.insert(r.turn_id, r);
    }
    sim.clock.now.set(now + 100_000);
    let ledgers = FaultyLedgers {
        inner: &sim.dbs,
        fail_rate: Cell::new(0.0),
        lose_commit_answer: Cell::new(false),
        rng: std::cell::RefCell::new(StdRng::seed_from_u64(seed)),
    };
    for p in &sim.players {
        for &s in &p.sessions {
            let expected = sim.messages_of(s);
            // Between two pages, a run archives a little more each time, from the oldest.
            let mut cut = now;
            let mut between = || {
                cut += 7_000;
                block_on(sim.run(&ledgers, cut)).unwrap();
            };
            let got: Vec<(i64, String)> = sim
                .walk(p, s, 4, &mut between)
                .into_iter()
                .map(|m| (m.created_at, m.id))
                .collect();
            assert_eq!(got, expected, "{} {s}", p.name);
        }
    }
    sim.check();
}
