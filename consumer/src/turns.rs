//! A batch of the turn queue.
//!
//! 1. Decode every message. A permanent failure (undecodable, unknown version, invalid) is
//!    dead-lettered at once.
//!    A move's probe is answered here: the databases this Worker reaches are reported in the
//!    control database.
//! 2. Route each turn by its player's bucket, with the live bucket map (`SHARD_MAP` and the
//!    control database's overrides, kept per isolate for `SHARD_MAP_CACHE_SECONDS`). When the
//!    control database cannot be read, the last map read (or `SHARD_MAP`) routes on, so
//!    that the other databases' players are stored: each database refuses the writes of a
//!    bucket it has fenced, so a stale map can only send a turn where it is refused and
//!    held, never where it would be lost. A turn is held, too, when its bucket is moving,
//!    when its database refused it, or when this Worker has no binding for that database:
//!    held turns are retried with backoff, and on their last delivery sent again as fresh
//!    messages, so waiting never makes a dead letter.
//! 3. Write each database's turns concurrently. In each database the turns are cut into
//!    chunks whose JSON stays well under D1's 2 MB value limit (`batch::turn_chunks`; a
//!    typical batch is one chunk), and each chunk stores the first delivery of each of its
//!    turn ids in ONE atomic D1 batch (see `store`).
//! 4. Judge every delivery against what was stored before: applied and duplicates are acked;
//!    a conflict (a turn id reused for a different turn) is dead-lettered.
//! 5. If a chunk's write failed, each of its messages is retried with exponential backoff and
//!    jitter, or, on its last attempt, dead-lettered with the error. One bad message, one
//!    failed chunk or one failed database never holds back the rest of the batch.
//!
//! Dead letters go to the dead-letter queue in an envelope with their class and error, and
//! their message is acked only once that send succeeded: nothing is dropped.

use crate::config::{Config, CONTROL, DEAD_LETTERS, TURNS};
use crate::incoming::Incoming;
use crate::store;
use chat_core::batch::{is_fenced, judge, turn_chunks, Outcome};
use chat_core::d1_limits::MAX_BOUND_JSON_BYTES;
use chat_core::dead_letter::Envelope;
use chat_core::failure::{on_transient, FailureClass, TransientAction};
use chat_core::faults::Fault;
use chat_core::probe::Probe;
use chat_core::record::TurnRecord;
use chat_core::shards::ShardMap;
use futures_util::future::join_all;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use worker::Env;
use worker_support::clock::{now_ms, unit_random};
use worker_support::queue::send_texts;

/// Counts for the batch's log line (and for each database's part of it).
#[derive(Default)]
struct Tally {
    applied: usize,
    duplicate: usize,
    conflict: usize,
    invalid: usize,
    retried: usize,
    held: usize,
    dead_lettered: usize,
    chunks: usize,
    statements: usize,
    d1_ms: i64,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.applied += other.applied;
        self.duplicate += other.duplicate;
        self.conflict += other.conflict;
        self.retried += other.retried;
        self.chunks += other.chunks;
        self.statements += other.statements;
        self.d1_ms = self.d1_ms.max(other.d1_ms);
    }
}

/// A decoded delivery.
type Valid<'a> = (&'a Incoming, TurnRecord);
/// Dead letters to send, with their messages.
type Letters<'a> = Vec<(&'a Incoming, Envelope)>;

fn letter(m: &Incoming, class: FailureClass, error: &str, first_failed_at: i64) -> Envelope {
    Envelope::new(
        &m.id,
        &m.body,
        class,
        error,
        m.attempts,
        first_failed_at,
        now_ms(),
    )
}

pub async fn consume(messages: Vec<Incoming>, env: &Env, config: &Config) {
    let started = now_ms();
    let mut tally = Tally::default();
    let mut letters: Letters<'_> = Vec::new();

    let mut valid: Vec<Valid<'_>> = Vec::new();
    let mut probes: Vec<(&Incoming, Probe)> = Vec::new();
    for m in &messages {
        if let Some(probe) = Probe::parse(&m.body) {
            probes.push((m, probe));
            continue;
        }
        match TurnRecord::decode(&m.body) {
            Ok(record) => valid.push((m, record)),
            Err(e) => {
                tally.invalid += 1;
                letters.push((
                    m,
                    letter(m, FailureClass::from(&e), &e.to_string(), now_ms()),
                ));
            }
        }
    }

    // Turns a test fault holds back fail alone, as if their write had failed.
    let now = now_ms();
    let (faulted, valid): (Vec<_>, Vec<_>) = valid
        .into_iter()
        .partition(|(m, r)| config.faults.holds_back(r, m.attempts, now));
    if !faulted.is_empty() {
        let faulted: Vec<&Valid<'_>> = faulted.iter().collect();
        failed(
            &faulted,
            "injected fault before the write (this turn only)",
            config,
            &mut tally,
            &mut letters,
        );
    }

    for (m, probe) in &probes {
        answer_probe(env, config, m, probe).await;
    }

    let mut per_database: BTreeMap<String, Vec<&Valid<'_>>> = BTreeMap::new();
    let mut held: Vec<&Incoming> = Vec::new();
    if !valid.is_empty() {
        match live_map(env, config).await {
            Ok(map) => {
                for delivery in &valid {
                    let user = delivery.1.user.id;
                    if map.is_moving(&user) {
                        held.push(delivery.0);
                    } else {
                        per_database
                            .entry(map.binding(&user).to_owned())
                            .or_default()
                            .push(delivery);
                    }
                }
            }
            Err(error) => {
                tracing::error!(error = %error, "the bucket map cannot be read; retrying the batch");
                let all: Vec<&Valid<'_>> = valid.iter().collect();
                failed(&all, &error, config, &mut tally, &mut letters);
            }
        }
    }

    let written = join_all(
        per_database
            .iter()
            .map(|(binding, deliveries)| write_database(env, config, binding, deliveries)),
    )
    .await;
    let mut databases: Vec<String> = Vec::new();
    for ((binding, deliveries), (part, part_letters, part_held)) in per_database.iter().zip(written)
    {
        databases.push(format!(
            "{binding}:{} received, {} applied, {} retried, {} held",
            deliveries.len(),
            part.applied,
            part.retried,
            part_held.len()
        ));
        tally.add(&part);
        letters.extend(part_letters);
        held.extend(part_held);
    }
    tally.held = held.len();
    hold(env, config, &held).await;

    tally.dead_lettered = letters.len();
    if !letters.is_empty() {
        dead_letter(env, config, &letters).await;
    }
    tracing::info!(
        queue = crate::config::TURN_QUEUE,
        received = messages.len(),
        probes = probes.len(),
        applied = tally.applied,
        duplicate = tally.duplicate,
        conflict = tally.conflict,
        invalid = tally.invalid,
        dead_lettered = tally.dead_lettered,
        retried = tally.retried,
        held = tally.held,
        databases = %databases.join("; "),
        chunks = tally.chunks,
        statements = tally.statements,
        d1_ms = tally.d1_ms,
        total_ms = now_ms() - started,
        "turn batch"
    );
}

thread_local! {
    /// The live map and when it goes stale (epoch ms).
    static MAP: RefCell<Option<(i64, Rc<ShardMap>)>> = const { RefCell::new(None) };
}

/// The live bucket map: `SHARD_MAP` with the control database's overrides, read at most once
/// per `SHARD_MAP_CACHE_SECONDS`. If the control database cannot be read, the last map read
/// goes on routing, or `SHARD_MAP` itself: no map is trusted for writes (fences are), so a
/// stale one can only delay a moved bucket's turns, and the other databases' turns are
/// stored meanwhile. See docs/design.md, "A failing database stops only its own players".
async fn live_map(env: &Env, config: &Config) -> Result<Rc<ShardMap>, String> {
    let now = now_ms();
    let cached = MAP.with_borrow(|m| m.clone());
    if let Some((until, map)) = &cached {
        if now < *until {
            return Ok(map.clone());
        }
    }
    let base = config.shard_map.clone()?;
    let read = async {
        if config.faults.database_down(CONTROL, now) {
            return Err("injected fault: database DB_0 is down".to_owned());
        }
        let control = env.d1(CONTROL).map_err(|e| e.to_string())?;
        store::shard_overrides(&control)
            .await
            .map_err(|e| format!("reading the bucket map's overrides: {e}"))
    };
    let map = match read.await {
        Ok(overrides) => Rc::new(base.with_overrides(&overrides)?),
        Err(error) => {
            tracing::warn!(error = %error, cached = cached.is_some(), "the control database is unreadable: routing with the last bucket map read (or SHARD_MAP); fenced databases refuse what a stale map misroutes, and those turns wait");
            match cached {
                Some((_, map)) => map,
                None => Rc::new(base),
            }
        }
    };
    MAP.set(Some((now + config.map_cache_ms, map.clone())));
    Ok(map)
}

/// Answers a move's probe: reports every database this Worker is bound to, with the newest
/// migration applied to each, in the control database. Acked once reported; retried if the
/// control database cannot take the report.
async fn answer_probe(env: &Env, config: &Config, m: &Incoming, probe: &Probe) {
    let mut reports = Vec::new();
    for binding in worker_support::env::database_bindings(env) {
        let migration = if config.faults.database_down(&binding, now_ms()) {
            None
        } else {
            match env.d1(&binding) {
                Ok(db) => store::applied_migration(&db).await.ok().flatten(),
                Err(_) => None,
            }
        };
        reports.push((binding, migration));
    }
    let reported = if config.faults.database_down(CONTROL, now_ms()) {
        Err(worker::Error::RustError(
            "injected fault: database DB_0 is down".into(),
        ))
    } else {
        match env.d1(CONTROL) {
            Ok(control) => store::report_databases(&control, &reports, probe.requested_at).await,
            Err(e) => Err(e),
        }
    };
    match reported {
        Ok(()) => {
            tracing::info!(databases = ?reports, "answered a move's probe");
            m.ack();
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not answer a move's probe; retrying it");
            m.retry(config.backoff.delay_seconds(m.attempts, unit_random()));
        }
    }
}

/// Writes one database's deliveries, chunk by chunk; returns its counts, its dead letters,
/// and the deliveries to hold: those the database refused (a fenced bucket), or all of them
/// when this Worker has no binding for it.
async fn write_database<'a>(
    env: &Env,
    config: &Config,
    binding: &str,
    deliveries: &[&'a Valid<'a>],
) -> (Tally, Letters<'a>, Vec<&'a Incoming>) {
    let mut tally = Tally::default();
    let mut letters: Letters<'a> = Vec::new();
    if env.d1(binding).is_err() {
        // A database the chat Worker routes to but this Worker is not bound to: a deploy is
        // missing a binding. Waiting loses nothing; a dead letter would need a replay.
        tracing::error!(alert = true, database = binding, turns = deliveries.len(), "the bucket map names a database this Worker has no binding for: its turns wait in the queue; bind it in consumer/wrangler.toml and deploy");
        return (tally, letters, deliveries.iter().map(|d| d.0).collect());
    }
    let mut held: Vec<&'a Incoming> = Vec::new();
    for chunk in turn_chunks(deliveries, |d| &d.1, MAX_BOUND_JSON_BYTES) {
        tally.chunks += 1;
        let deliveries: Vec<&Valid<'a>> = chunk.deliveries.iter().map(|&i| deliveries[i]).collect();
        let fault = config.faults.write(
            deliveries.iter().map(|(m, r)| (r, m.attempts)),
            unit_random(),
        );
        let d1_started = now_ms();
        let outcome = if config.faults.database_down(binding, d1_started) {
            Err(worker::Error::RustError(format!(
                "injected fault: database {binding} is down"
            )))
        } else {
            match (fault, env.d1(binding)) {
                (Fault::BeforeWrite, _) => Err(worker::Error::RustError(
                    "injected fault before the write".into(),
                )),
                (_, Err(e)) => Err(e),
                (_, Ok(db)) => store::apply_turns(&db, &chunk.json).await,
            }
        };
        tally.d1_ms += now_ms() - d1_started;
        let outcome = match (fault, outcome) {
            (Fault::AfterWrite, Ok(_)) => Err(worker::Error::RustError(
                "injected fault after the write".into(),
            )),
            (_, outcome) => outcome,
        };
        match outcome {
            Ok(stored) => {
                tally.statements += stored.statements;
                // A fenced bucket's turns were not written here: they wait for the map that
                // sends them to the bucket's home.
                let (fenced, deliveries): (Vec<&Valid<'a>>, Vec<&Valid<'a>>) = deliveries
                    .into_iter()
                    .partition(|d| is_fenced(&stored.fenced, &d.1.user.id));
                held.extend(fenced.iter().map(|d| d.0));
                let mut applied = 0;
                for ((m, r), o) in deliveries.iter().map(|d| (d.0, &d.1)).zip(judge(
                    &deliveries,
                    |d| &d.1,
                    &stored.before,
                )) {
                    match o {
                        Outcome::Applied => applied += 1,
                        Outcome::Duplicate => tally.duplicate += 1,
                        Outcome::Conflict => {
                            tally.conflict += 1;
                            let error =
                                format!("turn {} is stored with a different turn", r.turn_id);
                            letters.push((m, letter(m, FailureClass::Conflict, &error, now_ms())));
                            continue;
                        }
                    }
                    m.ack();
                }
                tally.applied += applied;
                if applied != stored.inserted {
                    tracing::error!(
                        database = binding,
                        judged = applied,
                        inserted = stored.inserted,
                        "applied counts disagree"
                    );
                }
            }
            Err(e) => {
                let error = e.to_string();
                tracing::warn!(database = binding, error = %error, turns = deliveries.len(), "D1 batch failed");
                failed(&deliveries, &error, config, &mut tally, &mut letters);
            }
        }
    }
    (tally, letters, held)
}

/// Deliveries whose write failed: each is retried with backoff, or dead-lettered as
/// transient on its last attempt.
fn failed<'a>(
    deliveries: &[&Valid<'a>],
    error: &str,
    config: &Config,
    tally: &mut Tally,
    letters: &mut Letters<'a>,
) {
    for (m, _) in deliveries.iter().copied() {
        match on_transient(
            m.attempts,
            config.max_retries,
            &config.backoff,
            unit_random(),
        ) {
            TransientAction::Retry { delay_seconds } => {
                tally.retried += 1;
                m.retry(delay_seconds);
            }
            TransientAction::DeadLetter => {
                letters.push((m, letter(m, FailureClass::Transient, error, m.sent_at)));
            }
        }
    }
}

/// Turns that wait (a moving or fenced bucket, a database without a binding here) stay in
/// the queue: retried with backoff, and on their last delivery (where a retry would let the
/// queue dead-letter them) sent again as fresh messages and acked. Waiting never makes a
/// dead letter.
async fn hold(env: &Env, config: &Config, held: &[&Incoming]) {
    let (last, wait): (Vec<&Incoming>, Vec<&Incoming>) =
        held.iter().partition(|m| m.attempts > config.max_retries);
    for m in wait {
        m.retry(config.backoff.delay_seconds(m.attempts, unit_random()));
    }
    if last.is_empty() {
        return;
    }
    let texts: Vec<String> = last.iter().map(|m| m.body.clone()).collect();
    let sent = match env.queue(TURNS) {
        Ok(queue) => send_texts(&queue, &texts).await.map_err(|(_, e)| e),
        Err(e) => Err(e),
    };
    match sent {
        Ok(()) => {
            last.iter().for_each(|m| m.ack());
            tracing::warn!(
                turns = last.len(),
                "turns of a moving bucket re-queued after their last delivery"
            );
        }
        Err(e) => {
            tracing::error!(alert = true, error = %e, turns = last.len(), "turns of a moving bucket could not be re-queued; the queue may dead-letter them (replay them after the move)");
            last.iter()
                .for_each(|m| m.retry(config.backoff.delay_seconds(m.attempts, 0.5)));
        }
    }
}

/// Sends the letters to the dead-letter queue, then acks their messages; if the send fails
/// they are retried instead, so a letter is never lost.
async fn dead_letter(env: &Env, config: &Config, letters: &[(&Incoming, Envelope)]) {
    for (m, e) in letters {
        tracing::warn!(message_id = %m.id, class = e.class.as_str(), error = %e.error, "dead-lettering");
    }
    let envelopes: Vec<Envelope> = letters.iter().map(|(_, e)| e.clone()).collect();
    let sent = match env.queue(DEAD_LETTERS) {
        Ok(queue) => store::send_letters(&queue, &envelopes).await,
        Err(e) => Err(e),
    };
    match sent {
        Ok(()) => letters.iter().for_each(|(m, _)| m.ack()),
        Err(e) => {
            tracing::error!(error = %e, letters = letters.len(), "dead-letter queue send failed; retrying");
            letters.iter().for_each(|(m, _)| {
                m.retry(config.backoff.delay_seconds(m.attempts, unit_random()))
            });
        }
    }
}
