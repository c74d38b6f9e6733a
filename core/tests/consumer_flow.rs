//! The consumer's real flows (`chat_core::consumer::turns::consume` and
//! `letters::archive`), driven natively through thousands of deliveries on three SQLite
//! databases, with a queue model that behaves as Cloudflare's does (a retry after
//! `max_retries` moves a message to the dead-letter queue; a letter retried on its last
//! delivery is dropped), at-least-once redeliveries, duplicate sends, poison, random write
//! failures before and after the write, one database's outage, a control-database outage,
//! an archive outage, a bucket move with a stale cached map, and the operator's replays.
//!
//! Every invariant is checked at the end: each valid turn stored exactly once, in its
//! bucket's home; every player's points equal to the ledger; every poison message in the
//! archive with its class; nothing dropped, nothing left in a queue, and every delivery
//! handled exactly once (acked or retried). The seed is printed; `SEED=n` repeats a run.

mod common;

use chat_core::backoff::Backoff;
use chat_core::clock::Clock;
use chat_core::consumer::faulty::Faulty;
use chat_core::consumer::letters::archive;
use chat_core::consumer::turns::{consume, Ports};
use chat_core::consumer::{Event, Settings};
use chat_core::dead_letter::Verdict as Judgement;
use chat_core::faults::Faults;
use chat_core::identity::{AuthProvider, Identity};
use chat_core::live_map::MapCache;
use chat_core::move_steps;
use chat_core::native::actor::block_on;
use chat_core::native::consumer::{
    Databases, Handling, MemoryQueues, Message, MoveFailure, Mover, Replayer, SeededClock,
};
use chat_core::native::start_session;
use chat_core::record::{sample, TurnRecord};
use chat_core::replay::{replay, Letter};
use chat_core::shards::{bucket, CopyCursor, ShardMap};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

const T0: i64 = 1_700_000_000_000;
const BASE: &str = "0-99=DB_0,100-199=DB_1,200-255=DB_2";
const STEP_MS: i64 = 1_000;

/// A message in the model queue.
struct Queued {
    id: String,
    body: String,
    attempts: u32,
    sent_at: i64,
    visible_at: i64,
}

/// The queued messages as the runtime delivers them.
fn messages_of(batch: &[Queued]) -> Vec<Message> {
    batch
        .iter()
        .map(|q| Message::new(&q.id, &q.body, q.attempts, q.sent_at))
        .collect()
}

struct Sim {
    rng: StdRng,
    dbs: Databases,
    queues: MemoryQueues,
    clock: SeededClock,
    settings: Settings,
    cache: MapCache,
    faults: Faults,
    turns: Vec<Queued>,
    letters: Vec<Queued>,
    next_id: u64,
    deliveries: usize,
    dropped_letters: usize,
    /// Deliveries held (a moving or fenced bucket), and batches routed without the control
    /// database.
    held: usize,
    stale_routes: usize,
    /// Letters sent again on their last delivery (the archive outage outlasting them).
    letters_requeued: usize,
}

impl Sim {
    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    fn enqueue(&mut self, letters: bool, body: String, attempts: u32, sent_at: i64, delay_s: u32) {
        self.next_id += 1;
        let q = Queued {
            id: format!("m{}", self.next_id),
            body,
            attempts,
            sent_at,
            visible_at: self.now() + i64::from(delay_s) * 1000,
        };
        if letters {
            self.letters.push(q)
        } else {
            self.turns.push(q)
        }
    }

    /// Takes up to `max` visible messages of one queue.
    fn take(&mut self, letters: bool, max: usize) -> Vec<Queued> {
        let now = self.now();
        let queue = if letters {
            &mut self.letters
        } else {
            &mut self.turns
        };
        let mut taken = Vec::new();
        let mut i = 0;
        while i < queue.len() && taken.len() < max {
            if queue[i].visible_at <= now {
                taken.push(queue.swap_remove(i));
            } else {
                i += 1;
            }
        }
        taken
    }

    /// The databases behind the fault switch as it stands now.
    fn faulty(&self) -> Faulty<'_, &Databases, SeededClock> {
        Faulty {
            inner: &self.dbs,
            faults: &self.faults,
            clock: &self.clock,
        }
    }

    /// One batch of each queue through the real flows, then the queue's own rules.
    fn step(&mut self) {
        self.clock.now.set(self.now() + STEP_MS);
        let size = self.rng.gen_range(1..=25);
        let batch = self.take(false, size);
        if !batch.is_empty() {
            let messages = messages_of(&batch);
            let faulty = self.faulty();
            let ports = Ports {
                ledgers: &faulty,
                control: &faulty,
                queues: &self.queues,
                clock: &self.clock,
            };
            let report = block_on(consume(&messages, &ports, &self.settings, &self.cache));
            self.held += report.held;
            self.stale_routes += report
                .events
                .iter()
                .filter(|e| matches!(e, Event::ControlUnreadable { .. }))
                .count();
            self.deliveries += messages.len();
            self.settle(false, batch, &messages);
        }
        let size = self.rng.gen_range(1..=10);
        let batch = self.take(true, size);
        if !batch.is_empty() {
            let messages = messages_of(&batch);
            let faulty = self.faulty();
            let report = block_on(archive(
                &messages,
                &faulty,
                &self.queues,
                &self.clock,
                &self.settings,
            ));
            self.letters_requeued += report.requeued;
            self.deliveries += messages.len();
            self.settle(true, batch, &messages);
        }
        // What the flows sent becomes fresh messages.
        let now = self.now();
        let turns = self.queues.turns.take();
        let letters = self.queues.letters.take();
        for body in turns {
            self.enqueue(false, body, 1, now, 0);
        }
        for body in letters {
            self.enqueue(true, body, 1, now, 0);
        }
    }

    /// The queue's rules for each handling: acked is gone (but at-least-once: now and then
    /// delivered again), retried comes back later, or past `max_retries` moves to the
    /// dead-letter queue (turns) or is dropped (letters).
    fn settle(&mut self, letters: bool, batch: Vec<Queued>, messages: &[Message]) {
        let max = if letters {
            self.settings.letter_max_retries
        } else {
            self.settings.max_retries
        };
        for (q, m) in batch.into_iter().zip(messages) {
            match m.handling() {
                Handling::Acked => {
                    if self.rng.gen_bool(0.02) {
                        let again = Queued {
                            attempts: q.attempts + 1,
                            visible_at: self.now(),
                            ..q
                        };
                        self.push(letters, again);
                    }
                }
                Handling::Retried { delay_seconds } => {
                    if q.attempts > max {
                        if letters {
                            self.dropped_letters += 1;
                        } else {
                            // The queue moves it to the dead-letter queue as it is.
                            let id = q.id.clone();
                            self.letters.push(Queued {
                                id,
                                attempts: 1,
                                visible_at: self.now(),
                                ..q
                            });
                        }
                    } else {
                        let again = Queued {
                            attempts: q.attempts + 1,
                            visible_at: self.now() + i64::from(delay_seconds.min(30)) * 1000,
                            ..q
                        };
                        self.push(letters, again);
                    }
                }
            }
        }
    }

    fn push(&mut self, letters: bool, q: Queued) {
        if letters {
            self.letters.push(q)
        } else {
            self.turns.push(q)
        }
    }

    /// The admin API's move steps, on these databases at this clock.
    fn mover(&self) -> Mover<'_, SeededClock> {
        Mover {
            dbs: &self.dbs,
            base: ShardMap::parse(BASE).unwrap(),
            clock: &self.clock,
            map_cache_seconds: (self.settings.map_cache_ms / 1000) as u32,
        }
    }
}

/// The live map as the control database has it.
fn live_map(sim: &Sim, base: &ShardMap) -> ShardMap {
    let overrides = block_on(chat_core::consumer::ports::Control::overrides(&sim.dbs)).unwrap();
    base.clone().with_overrides(&overrides).unwrap()
}

/// What a replay would say of `payload` now.
fn replay_verdict(sim: &Sim, base: &ShardMap, payload: &str) -> Judgement {
    let turn_id = TurnRecord::decode(payload)
        .ok()
        .map(|r| r.turn_id.to_string());
    let letters = [Letter {
        id: "check",
        turn_id: turn_id.as_deref(),
        payload: Some(payload),
    }];
    let replayer = Replayer {
        dbs: &sim.dbs,
        queues: &sim.queues,
        now: sim.now(),
    };
    block_on(replay(&letters, &live_map(sim, base), true, &replayer))
        .unwrap()
        .letters[0]
        .verdict
}

/// The archive's letters: id, turn id, class, payload, status.
type Archived = (String, Option<String>, String, String, String);

fn archive_of(sim: &Sim) -> Vec<Archived> {
    let c = sim.dbs.control();
    let mut st = c
        .prepare("SELECT id, turn_id, error_class, payload, status FROM dead_letters ORDER BY id")
        .unwrap();
    st.query_map([], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    })
    .unwrap()
    .collect::<rusqlite::Result<_>>()
    .unwrap()
}

#[test]
fn the_consumer_loop_keeps_every_promise_through_faults_moves_and_replays() {
    let seed = common::seed();
    let mut sim = Sim {
        rng: StdRng::seed_from_u64(seed),
        dbs: Databases::in_memory(3).unwrap(),
        queues: MemoryQueues::default(),
        clock: SeededClock::new(T0, seed),
        settings: Settings {
            max_retries: 3,
            letter_max_retries: 3,
            backoff: Backoff {
                base_seconds: 1,
                max_seconds: 8,
            },
            shard_map: ShardMap::parse(BASE),
            map_cache_ms: 5_000,
            // Every row carries its player's erasure tag, as deployed; nobody is erased.
            erasure_key: chat_core::privacy::ErasureKey::new("consumer-flow"),
        },
        cache: MapCache::default(),
        faults: Faults::parse("markers,before=0.1,after=0.1").unwrap(),
        turns: Vec::new(),
        letters: Vec::new(),
        next_id: 0,
        deliveries: 0,
        dropped_letters: 0,
        held: 0,
        stale_routes: 0,
        letters_requeued: 0,
    };
    let base = ShardMap::parse(BASE).unwrap();

    // Players in every database, each with a session in its home.
    let mut players: Vec<(Identity, Uuid)> = Vec::new();
    for i in 0..48 {
        let identity = Identity::new(AuthProvider::X, &format!("player-{i}")).unwrap();
        let session = Uuid::from_u128(sim.rng.gen());
        let home = base.binding(&identity.user_id()).to_owned();
        start_session(&sim.dbs.dbs[&home].borrow(), &identity, session, T0).unwrap();
        players.push((identity, session));
    }
    // The bucket that moves: one of DB_1's players', to DB_2.
    let mover = players
        .iter()
        .map(|(p, _)| bucket(&p.user_id()))
        .find(|b| base.binding_of_bucket(*b) == "DB_1")
        .expect("a player in DB_1");

    let mut sent: BTreeMap<Uuid, TurnRecord> = BTreeMap::new();
    let mut poison: Vec<(String, &'static str)> = Vec::new();
    let mut n = 0u64;
    let steps = 900;
    for step in 0..steps {
        let now = sim.now();
        // The phases: DB_2 down long enough to exhaust retries, the control database down,
        // the archive failing past every retry, and a bucket move.
        match step {
            150 => sim.faults.down = vec![("DB_2".into(), now + 60_000)],
            300 => sim.faults.down = vec![("DB_0".into(), now + 25_000)],
            160 => sim.faults.letters_until = Some(now + 60_000),
            // The move, with the admin API's own steps (`chat_core::move_steps`): a hold,
            // a copy once every isolate has seen it, a flip, and a purge of the old copy
            // once every isolate has seen the flip.
            500 => {
                let held = block_on(move_steps::hold(&sim.mover(), mover, Some("DB_2"))).unwrap();
                assert_eq!(held.binding, "DB_1");
                // Too early to copy: an isolate may still route with the old map.
                let early = block_on(move_steps::copy(&sim.mover(), mover, "DB_2", None, 7));
                assert!(
                    matches!(early, Err(MoveFailure::Refused(r)) if r.code == "grace_not_elapsed")
                );
            }
            510 => {
                let mut cursor: Option<CopyCursor> = None;
                loop {
                    let page = block_on(move_steps::copy(
                        &sim.mover(),
                        mover,
                        "DB_2",
                        cursor.as_ref(),
                        7,
                    ))
                    .unwrap();
                    match page.next {
                        Some(next) => cursor = Some(next),
                        None => break,
                    }
                }
            }
            560 => {
                let flipped = block_on(move_steps::flip(&sim.mover(), mover, "DB_2")).unwrap();
                assert_eq!(flipped.moved_from, "DB_1");
            }
            600 => loop {
                let purged = block_on(move_steps::purge(&sim.mover(), mover, 5)).unwrap();
                if purged.done {
                    break;
                }
            },
            _ => {}
        }
        // While the bucket is held, its players keep playing: their turns must wait.
        if (500..560).contains(&step) {
            if let Some((p, s)) = players.iter().find(|(p, _)| bucket(&p.user_id()) == mover) {
                n += 1;
                let record = sample(p.provider_user_id.as_str(), *s, n, now + n as i64);
                sim.enqueue(false, record.encode(), 1, now, 0);
                sent.insert(record.turn_id, record);
            }
        }
        // The chat Worker's sends: new turns, sometimes sent twice; now and then poison.
        if step < 700 {
            for _ in 0..sim.rng.gen_range(0..10) {
                n += 1;
                let (p, s) = &players[sim.rng.gen_range(0..players.len())];
                let record = sample(p.provider_user_id.as_str(), *s, n, now + n as i64);
                let body = record.encode();
                sim.enqueue(false, body.clone(), 1, now, 0);
                if sim.rng.gen_bool(0.1) {
                    sim.enqueue(false, body, 1, now, 0);
                }
                sent.insert(record.turn_id, record);
            }
            if sim.rng.gen_bool(0.02) {
                let body = format!("{{\"v\":1,\"garbage\":{step}}}");
                poison.push((body.clone(), "invalid"));
                sim.enqueue(false, body, 1, now, 0);
            }
            if sim.rng.gen_bool(0.01) && !sent.is_empty() {
                // A turn id reused for a different turn.
                // Only of a stored turn: otherwise either version may arrive first and win.
                let k = sim.rng.gen_range(0..sent.len());
                let mut other = sent.values().nth(k).unwrap().clone();
                let stored = sim.dbs.dbs.values().any(|db| {
                    db.borrow()
                        .query_row(
                            "SELECT COUNT(*) FROM point_events WHERE id = ?1",
                            [other.point_event.id.to_string()],
                            |r| r.get::<_, i64>(0),
                        )
                        .unwrap()
                        > 0
                });
                if !stored {
                    sim.step();
                    continue;
                }
                other.user_message.content = format!("something else {step}");
                let body = other.encode();
                poison.push((body.clone(), "conflict"));
                sim.enqueue(false, body, 1, now, 0);
            }
        }
        sim.step();
    }

    // Drain, with every fault cleared, then replay the archive as the operator does, with
    // the admin API's own flow (`chat_core::replay`): every letter is judged against where
    // its player lives now, and what would apply goes back on the queue. Drain again.
    sim.faults = Faults::default();
    let drain = |sim: &mut Sim| {
        for _ in 0..2_000 {
            if sim.turns.is_empty() && sim.letters.is_empty() {
                return;
            }
            sim.step();
        }
        panic!("the queues never drained");
    };
    drain(&mut sim);
    let replay_all = |sim: &Sim, dry_run: bool| {
        let archived = archive_of(sim);
        let letters: Vec<Letter<'_>> = archived
            .iter()
            .filter(|(_, _, _, _, status)| status == "pending")
            .map(|(id, turn_id, _, payload, _)| Letter {
                id,
                turn_id: turn_id.as_deref(),
                payload: Some(payload),
            })
            .collect();
        let replayer = Replayer {
            dbs: &sim.dbs,
            queues: &sim.queues,
            now: sim.now(),
        };
        block_on(replay(&letters, &live_map(sim, &base), dry_run, &replayer)).unwrap()
    };
    let run = replay_all(&sim, false);
    let replayed = run.counts.requeued;
    // What would apply and what is already there go back (a duplicate changes nothing);
    // conflicts and invalid payloads stay pending.
    assert_eq!(
        run.counts.requeued,
        run.counts.would_apply + run.counts.already_applied
    );
    assert!(
        run.counts.would_apply > 0,
        "the outage left turns to replay"
    );
    let turns = sim.queues.turns.take();
    let now = sim.now();
    for body in turns {
        sim.enqueue(false, body, 1, now, 0);
    }
    drain(&mut sim);
    let archived = archive_of(&sim);
    // What is still pending has nothing left to apply: a replay never counts twice.
    let again = replay_all(&sim, true);
    assert_eq!(again.counts.would_apply, 0, "{:?}", again.counts);

    // Each valid turn once, in its bucket's home under the final map.
    let map = base
        .clone()
        .with_overrides(
            &block_on(chat_core::consumer::ports::Control::overrides(&sim.dbs)).unwrap(),
        )
        .unwrap();
    let mut total_by_user: BTreeMap<String, i64> = BTreeMap::new();
    for record in sent.values() {
        let home = map.binding(&record.user.id);
        for (binding, db) in &sim.dbs.dbs {
            let count: i64 = db
                .borrow()
                .query_row(
                    "SELECT COUNT(*) FROM point_events WHERE id = ?1",
                    [record.point_event.id.to_string()],
                    |r| r.get(0),
                )
                .unwrap();
            // The move's source was purged: each turn is in its home only.
            let expected = i64::from(binding == home);
            assert_eq!(
                count, expected,
                "turn {} in {binding} (home {home})",
                record.turn_id
            );
        }
        *total_by_user.entry(record.user.id.to_string()).or_default() +=
            i64::from(record.point_event.delta);
    }
    // Every player's snapshot equals the ledger of their home.
    for (p, _) in &players {
        let id = p.user_id();
        let home = &sim.dbs.dbs[map.binding(&id)];
        let (ledger, snapshot): (i64, i64) = home
            .borrow()
            .query_row(
                "SELECT (SELECT COALESCE(SUM(delta), 0) FROM point_events WHERE user_id = ?1),
                        (SELECT COALESCE(MAX(total_points), 0) FROM user_stats WHERE user_id = ?1)",
                [id.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        let expected = total_by_user.get(&id.to_string()).copied().unwrap_or(0);
        assert_eq!(
            ledger, expected,
            "player {id}: the ledger holds every turn once"
        );
        assert_eq!(
            snapshot, ledger,
            "player {id}: the snapshot equals the ledger"
        );
    }
    // Every poison message archived with its class; nothing dropped or left behind.
    // A poison message may first fail as transient (its database down): then either a
    // replay made a letter of its own class, or the replay judged it as that class and left
    // it pending (a conflict or an invalid payload is never queued again).
    let classes: BTreeSet<(String, String, String)> = archived
        .iter()
        .map(|(_, _, class, payload, status)| (payload.clone(), class.clone(), status.clone()))
        .collect();
    for (body, kind) in &poison {
        let of_body: Vec<(&str, &str)> = classes
            .iter()
            .filter(|(p, _, _)| p == body)
            .map(|(_, c, s)| (c.as_str(), s.as_str()))
            .collect();
        let wanted: &[&str] = match *kind {
            "conflict" => &["conflict"],
            _ => &["undecodable", "unknown_version", "invalid"],
        };
        let verdict = match *kind {
            "conflict" => Judgement::Conflict,
            _ => Judgement::Invalid,
        };
        let judged_pending = of_body
            .iter()
            .any(|&(c, s)| s == "pending" && c == "transient");
        assert!(
            of_body.iter().any(|(c, _)| wanted.contains(c))
                || (judged_pending && replay_verdict(&sim, &base, body) == verdict),
            "poison {body} archived as {of_body:?}"
        );
    }
    assert_eq!(sim.dropped_letters, 0, "no letter dropped");
    assert!(sim.turns.is_empty() && sim.letters.is_empty());
    assert!(replayed > 0, "the outage made dead letters to replay");
    assert!(sim.deliveries > 3_000, "{} deliveries", sim.deliveries);
    assert!(sim.held > 0, "the move held its bucket's turns");
    assert!(sim.stale_routes > 0, "the control outage was routed around");
    assert!(
        sim.letters_requeued > 0,
        "the archive outage outlasted some letters' retries"
    );
    println!(
        "{} turns, {} poison, {} deliveries, {} held, {} routed without the control database, {} letters re-queued, {} archived, {} replayed",
        sent.len(),
        poison.len(),
        sim.deliveries,
        sim.held,
        sim.stale_routes,
        sim.letters_requeued,
        archived.len(),
        replayed
    );
}
