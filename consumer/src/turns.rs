//! A batch of the turn queue.
//!
//! 1. Decode every message. A permanent failure (undecodable, unknown version, invalid) is
//!    dead-lettered at once.
//! 2. Route each turn by its player's bucket, with the live bucket map (`SHARD_MAP` and the
//!    control database's overrides, read once per batch). A turn whose bucket is moving is
//!    held: retried with backoff, and on its last delivery sent again as a fresh message, so
//!    a move never dead-letters it.
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
use chat_core::batch::{judge, turn_chunks, Outcome};
use chat_core::d1_limits::MAX_BOUND_JSON_BYTES;
use chat_core::dead_letter::Envelope;
use chat_core::failure::{on_transient, FailureClass, TransientAction};
use chat_core::faults::Fault;
use chat_core::record::TurnRecord;
use chat_core::shards::ShardMap;
use futures_util::future::join_all;
use std::collections::BTreeMap;
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
    for m in &messages {
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
    tally.held = held.len();
    hold(env, config, &held).await;

    let written = join_all(
        per_database
            .iter()
            .map(|(binding, deliveries)| write_database(env, config, binding, deliveries)),
    )
    .await;
    let mut databases: Vec<String> = Vec::new();
    for ((binding, deliveries), (part, part_letters)) in per_database.iter().zip(written) {
        databases.push(format!(
            "{binding}:{} received, {} applied, {} retried",
            deliveries.len(),
            part.applied,
            part.retried
        ));
        tally.add(&part);
        letters.extend(part_letters);
    }

    tally.dead_lettered = letters.len();
    if !letters.is_empty() {
        dead_letter(env, config, &letters).await;
    }
    tracing::info!(
        queue = crate::config::TURN_QUEUE,
        received = messages.len(),
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

/// The live bucket map: `SHARD_MAP` with the control database's overrides.
async fn live_map(env: &Env, config: &Config) -> Result<ShardMap, String> {
    let base = config.shard_map.clone()?;
    let control = env.d1(CONTROL).map_err(|e| e.to_string())?;
    let overrides = store::shard_overrides(&control)
        .await
        .map_err(|e| format!("reading the bucket map's overrides: {e}"))?;
    base.with_overrides(&overrides)
}

/// Writes one database's deliveries, chunk by chunk; returns its counts and dead letters.
async fn write_database<'a>(
    env: &Env,
    config: &Config,
    binding: &str,
    deliveries: &[&'a Valid<'a>],
) -> (Tally, Letters<'a>) {
    let mut tally = Tally::default();
    let mut letters: Letters<'a> = Vec::new();
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
    (tally, letters)
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

/// Turns of a moving bucket wait in the queue: retried with backoff, and on their last
/// delivery (where a retry would let the queue dead-letter them) sent again as fresh
/// messages and acked. A move never makes a dead letter.
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
