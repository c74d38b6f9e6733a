//! A player's erasure (`chat_core::privacy::erase::erase`), driven natively on two SQLite
//! databases, an in-memory R2 and actors in memory, stopped by a fault at every one of its
//! steps in turn and run again until it finishes. The erased player has turns in D1 and in
//! the archive, sessions whose row went to the archive, actors with open sockets and dead
//! letters; another player shares their databases.
//!
//! After every finished erasure: no table of any database, no archive object and no dead
//! letter holds the player's id; their actors are gone; the other player is untouched and
//! still balanced; the tombstone holds a keyed hash, not the id. Then every turn of the
//! erased player delivered again (still queued, retried, replayed) is refused and stored
//! nowhere, while a returning player's new turn is stored as a new player's.

mod common;

use chat_core::archive::run::{run_page, Limits, Plan, Step};
use chat_core::consumer::Settings;
use chat_core::identity::{AuthProvider, Identity};
use chat_core::live_map::MapCache;
use chat_core::native::actor::block_on;
use chat_core::native::consumer::{Databases, Handling, MemoryQueues, Message, SeededClock};
use chat_core::native::privacy::{Eraser, MemoryActor};
use chat_core::native::start_session;
use chat_core::privacy::erase::{erase, EraseFailure, Erasee};
use chat_core::privacy::ErasureKey;
use chat_core::record::{sample, TurnRecord};
use chat_core::shards::{bucket, bucket_prefix, ShardMap};
use std::cell::RefCell;
use std::collections::BTreeMap;
use uuid::Uuid;

const T0: i64 = 1_700_000_000_000;
const MAP: &str = "0-127=DB_0,128-255=DB_1";

struct World {
    dbs: Databases,
    actors: RefCell<BTreeMap<String, MemoryActor>>,
    clock: SeededClock,
    settings: Settings,
    cache: MapCache,
    key: ErasureKey,
}

impl World {
    fn new() -> Self {
        let key = ErasureKey::new("test-erasure-key").unwrap();
        Self {
            dbs: Databases::in_memory(2).unwrap(),
            actors: RefCell::new(BTreeMap::new()),
            clock: SeededClock::new(T0, 7),
            settings: Settings {
                shard_map: ShardMap::parse(MAP),
                erasure_key: Some(key.clone()),
                ..Settings::default()
            },
            cache: MapCache::default(),
            key,
        }
    }

    fn db_of(&self, user: &Uuid) -> String {
        ShardMap::parse(MAP).unwrap().binding(user).to_owned()
    }

    /// Delivers records through the consumer until each is acked; (applied, erased).
    fn deliver(&self, records: &[TurnRecord]) -> (usize, usize) {
        let d = common::deliver(&self.dbs, &self.clock, &self.settings, &self.cache, records);
        (d.applied, d.erased)
    }

    /// A player with `sessions` sessions of `turns` turns, and an actor per session.
    fn player(&self, name: &str, sessions: usize, turns: usize, at: i64) -> Vec<TurnRecord> {
        let identity = Identity::new(AuthProvider::X, name).unwrap();
        let db = self.db_of(&identity.user_id());
        let mut records = Vec::new();
        for s in 0..sessions {
            let mut random = [0u8; 10];
            random[0] = s as u8 + 1;
            for (i, b) in name.bytes().take(9).enumerate() {
                random[i + 1] = b;
            }
            let sid = uuid::Builder::from_unix_timestamp_millis((at + s as i64) as u64, &random)
                .into_uuid();
            start_session(&self.dbs.dbs[&db].borrow(), &identity, sid, at).unwrap();
            self.actors.borrow_mut().insert(
                sid.to_string(),
                MemoryActor {
                    holds: format!("turns of {}", identity.user_id()),
                    sockets: 1,
                },
            );
            for t in 0..turns {
                let n = (s * 100 + t) as u64 + name.len() as u64 * 10_000;
                records.push(sample(name, sid, n, at + 1_000 + (s * 100 + t) as i64));
            }
        }
        records
    }

    /// Archives every turn older than `cutoff`.
    fn archive(&self, cutoff: i64) {
        let plan = Plan {
            databases: vec![
                ("DB_0".into(), (0..128u8).map(bucket_prefix).collect()),
                ("DB_1".into(), (128..=255u8).map(bucket_prefix).collect()),
            ],
        };
        let mut cursor = None;
        loop {
            let step = Step {
                cursor: cursor.as_ref(),
                cutoff,
                dry_run: false,
                now_ms: cutoff,
                limits: Limits::default(),
            };
            let page = block_on(run_page(&self.dbs, &self.dbs.archive, &plan, &step)).unwrap();
            match page.next_cursor {
                Some(c) => {
                    cursor = chat_core::archive::cursor::ArchiveCursor::parse(
                        &c,
                        &["DB_0".into(), "DB_1".into()],
                    )
                }
                None => break,
            }
        }
    }

    /// Every place that names `user`: (place, count).
    fn places_naming(&self, user: &str) -> Vec<(String, i64)> {
        let mut found = Vec::new();
        for (name, db) in &self.dbs.dbs {
            let conn = db.borrow();
            let tables: Vec<String> = conn
                .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            for table in tables {
                let cols: Vec<String> = conn
                    .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
                    .unwrap()
                    .query_map([], |r| r.get(0))
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                let any: Vec<String> = cols
                    .iter()
                    .map(|c| format!("instr(CAST({c} AS TEXT), ?1) > 0"))
                    .collect();
                let n: i64 = conn
                    .query_row(
                        &format!("SELECT COUNT(*) FROM {table} WHERE {}", any.join(" OR ")),
                        [user],
                        |r| r.get(0),
                    )
                    .unwrap();
                if n > 0 {
                    found.push((format!("{name}.{table}"), n));
                }
            }
        }
        for (key, bytes) in self.dbs.archive.objects.borrow().iter() {
            let part = chat_core::archive::Part::decode(bytes).unwrap();
            if key.contains(user) || part.lines().contains(user) {
                found.push((format!("archive {key}"), 1));
            }
        }
        for (session, actor) in self.actors.borrow().iter() {
            if actor.holds.contains(user) {
                found.push((format!("actor {session}"), 1));
            }
        }
        found
    }

    fn balanced(&self, user: &Uuid) -> (i64, i64) {
        let conn = self.dbs.dbs[&self.db_of(user)].borrow();
        conn.query_row(
            "SELECT COALESCE((SELECT total_points FROM user_stats WHERE user_id = ?1), 0),
                    (SELECT COALESCE(SUM(points), 0) FROM archive_players WHERE user_id = ?1)
                  + (SELECT COALESCE(SUM(delta), 0) FROM point_events WHERE user_id = ?1)",
            [user.to_string()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    }
}

fn erasee(key: &ErasureKey, user: &Uuid) -> Erasee {
    Erasee {
        user_id: user.to_string(),
        tag: key.tag(user),
        bucket: bucket_prefix(bucket(user)),
    }
}

#[test]
fn an_erasure_stopped_at_any_step_finishes_and_nothing_comes_back() {
    let probe = World::new();
    // How many port calls a whole erasure makes: each is a place a run can stop.
    let steps = {
        let w = &probe;
        let records = w.player("gone", 2, 3, T0);
        w.deliver(&records);
        let eraser = Eraser::new(&w.dbs, &w.actors);
        let who = erasee(
            &w.key,
            &Identity::new(AuthProvider::X, "gone").unwrap().user_id(),
        );
        block_on(erase(&eraser, &who, false, T0 + 100_000)).unwrap();
        eraser.calls.get()
    };
    assert!(steps > 10);
    for stop in 1..=steps {
        let w = World::new();
        let gone = Identity::new(AuthProvider::X, "gone").unwrap().user_id();
        let stays = Identity::new(AuthProvider::X, "stays").unwrap().user_id();
        let old = w.player("gone", 3, 4, T0);
        let other = w.player("stays", 2, 3, T0);
        assert_eq!(w.deliver(&old).0, old.len());
        assert_eq!(w.deliver(&other).0, other.len());
        // Half their history archived (sessions' rows with their last turns), a dead letter
        // naming them, a later turn still to come.
        w.archive(T0 + 1_000 + 150);
        w.dbs
            .control()
            .execute(
                "INSERT INTO dead_letters (id, turn_id, payload, error_class, error_text, attempts,
                   first_failed_at, last_failed_at, status, replay_count, created_at, updated_at)
                 VALUES ('l1', ?1, ?2, 'transient', 'x', 6, 1, 1, 'pending', 0, 1, 1)",
                rusqlite::params![old[0].turn_id.to_string(), old[0].encode()],
            )
            .unwrap();
        let before_other = w.balanced(&stays);
        let other_rows = w.places_naming(&stays.to_string());
        assert!(!w.places_naming(&gone.to_string()).is_empty());

        let eraser = Eraser::new(&w.dbs, &w.actors);
        let who = erasee(&w.key, &gone);
        // A dry run counts and changes nothing.
        let dry = block_on(erase(&eraser, &who, true, T0 + 100_000)).unwrap();
        assert!(dry.found_anything() && !dry.resumed && dry.dead_letters == 1);
        assert!(dry.archive_objects > 0 && dry.sessions.len() == 3);
        assert!(!w.places_naming(&gone.to_string()).is_empty());

        eraser.calls.set(0);
        eraser.fail_at.set(Some(stop));
        let mut runs = 0;
        let report = loop {
            runs += 1;
            match block_on(erase(&eraser, &who, false, T0 + 100_000 + runs)) {
                Ok(r) => break r,
                Err(EraseFailure::Unknown) => {
                    panic!("stop {stop}: the player vanished half-erased")
                }
                Err(_) => assert!(runs < 3, "stop {stop}: the second run finishes"),
            }
        };
        // The first run that laid a tombstone set the time; a run after it keeps it.
        let at = report.erased_at.unwrap();
        assert!(
            at == T0 + 100_001 || at == T0 + 100_002,
            "stop {stop}: {at}"
        );
        if runs == 1 {
            assert!(!report.resumed);
        }
        let left = w.places_naming(&gone.to_string());
        assert!(left.is_empty(), "stop {stop}: still named in {left:?}");
        assert_eq!(
            w.places_naming(&stays.to_string()),
            other_rows,
            "stop {stop}: the other player untouched"
        );
        assert_eq!(w.balanced(&stays), before_other);
        // The tombstone: a keyed hash, in every database.
        for db in w.dbs.dbs.values() {
            let tag: String = db
                .borrow()
                .query_row("SELECT user_hash FROM erasures", [], |r| r.get(0))
                .unwrap();
            assert_eq!(tag, w.key.tag(&gone));
            let when: i64 = db
                .borrow()
                .query_row("SELECT erased_at FROM erasures", [], |r| r.get(0))
                .unwrap();
            assert_eq!(when, at);
        }
        // Nothing comes back: every old turn, delivered again, is refused.
        let (applied, erased) = w.deliver(&old);
        assert_eq!((applied, erased), (0, old.len()), "stop {stop}");
        assert!(w
            .places_naming(&gone.to_string())
            .iter()
            .all(|(p, _)| !p.contains("chat_messages")));
        // A letter of theirs arriving now (a turn that failed for good) is not stored.
        let letter = chat_core::dead_letter::Envelope::new(
            "late-letter",
            &old[1].encode(),
            chat_core::failure::FailureClass::Transient,
            "D1 down",
            6,
            T0,
            T0 + 400_000,
        );
        let queues = MemoryQueues::default();
        let message = Message::new("late-letter", letter.encode_within(usize::MAX), 1, T0);
        let report = block_on(chat_core::consumer::letters::archive(
            std::slice::from_ref(&message),
            &w.dbs,
            &queues,
            &w.clock,
            &w.settings,
        ));
        assert_eq!(report.stored, 1);
        assert_eq!(message.handling(), Handling::Acked);
        assert!(
            w.places_naming(&gone.to_string()).is_empty(),
            "stop {stop}: the letter was stored"
        );
        // Run again, an erasure finds nothing new and says it resumed.
        let again = block_on(erase(&eraser, &who, false, T0 + 200_000)).unwrap();
        assert!(again.resumed && !again.found_anything());
        // A returning player: the same identity's new turn (after the erasure) is a new
        // player's, stored with no history.
        let identity = Identity::new(AuthProvider::X, "gone").unwrap();
        let sid =
            uuid::Builder::from_unix_timestamp_millis((T0 + 300_000) as u64, &[9; 10]).into_uuid();
        start_session(
            &w.dbs.dbs[&w.db_of(&gone)].borrow(),
            &identity,
            sid,
            T0 + 300_000,
        )
        .unwrap();
        let fresh = sample("gone", sid, 777_777, T0 + 300_000);
        assert_eq!(w.deliver(std::slice::from_ref(&fresh)), (1, 0));
        let (total, ledger) = w.balanced(&gone);
        assert_eq!(
            (total, ledger),
            (
                i64::from(fresh.point_event.delta),
                i64::from(fresh.point_event.delta)
            )
        );
    }
    // An unknown player.
    let w = World::new();
    let eraser = Eraser::new(&w.dbs, &w.actors);
    let who = erasee(&w.key, &Uuid::from_u128(42));
    assert_eq!(
        block_on(erase(&eraser, &who, false, T0)),
        Err(EraseFailure::Unknown)
    );
}
