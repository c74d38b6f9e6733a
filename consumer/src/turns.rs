//! A batch of the turn queue.
//!
//! 1. Decode every message. A permanent failure (undecodable, unknown version, invalid) is
//!    dead-lettered at once.
//! 2. Cut the valid deliveries into chunks whose JSON stays well under D1's 2 MB value limit
//!    (`batch::turn_chunks`; a typical batch is one chunk), and store the first delivery of
//!    each turn id of a chunk in ONE atomic D1 batch (see `store`).
//! 3. Judge every delivery against what was stored before: applied and duplicates are acked;
//!    a conflict (a turn id reused for a different turn) is dead-lettered.
//! 4. If a chunk's write failed, each of its messages is retried with exponential backoff and
//!    jitter, or, on its last attempt, dead-lettered with the error. One bad message, or one
//!    failed chunk, never holds back the rest of the batch.
//!
//! Dead letters go to the dead-letter queue in an envelope with their class and error, and
//! their message is acked only once that send succeeded: nothing is dropped.

use crate::config::{Config, DB, DEAD_LETTERS};
use crate::incoming::Incoming;
use crate::store;
use chat_core::batch::{judge, turn_chunks, Outcome};
use chat_core::d1_limits::MAX_BOUND_JSON_BYTES;
use chat_core::dead_letter::Envelope;
use chat_core::failure::{on_transient, FailureClass, TransientAction};
use chat_core::faults::Fault;
use chat_core::record::TurnRecord;
use worker::Env;
use worker_support::clock::{now_ms, unit_random};

/// Counts for the batch's log line.
#[derive(Default)]
struct Tally {
    applied: usize,
    duplicate: usize,
    conflict: usize,
    invalid: usize,
    retried: usize,
    dead_lettered: usize,
    chunks: usize,
    statements: usize,
    d1_ms: i64,
}

/// A decoded delivery.
type Valid<'a> = (&'a Incoming, TurnRecord);

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
    let mut letters: Vec<(&Incoming, Envelope)> = Vec::new();

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
    let (held, valid): (Vec<_>, Vec<_>) = valid
        .into_iter()
        .partition(|(m, r)| config.faults.holds_back(r, m.attempts, now));
    if !held.is_empty() {
        let held: Vec<&Valid<'_>> = held.iter().collect();
        failed(
            &held,
            "injected fault before the write (this turn only)",
            config,
            &mut tally,
            &mut letters,
        );
    }

    for chunk in turn_chunks(&valid, |(_, r)| r, MAX_BOUND_JSON_BYTES) {
        tally.chunks += 1;
        let deliveries: Vec<&Valid<'_>> = chunk.deliveries.iter().map(|&i| &valid[i]).collect();
        let fault = config.faults.write(
            deliveries.iter().map(|(m, r)| (r, m.attempts)),
            unit_random(),
        );
        let d1_started = now_ms();
        let outcome = match (fault, env.d1(DB)) {
            (Fault::BeforeWrite, _) => Err(worker::Error::RustError(
                "injected fault before the write".into(),
            )),
            (_, Err(e)) => Err(e),
            (_, Ok(db)) => store::apply_turns(&db, &chunk.json).await,
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
                        judged = applied,
                        inserted = stored.inserted,
                        "applied counts disagree"
                    );
                }
            }
            Err(e) => {
                let error = e.to_string();
                tracing::warn!(error = %error, turns = deliveries.len(), "D1 batch failed");
                failed(&deliveries, &error, config, &mut tally, &mut letters);
            }
        }
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
        chunks = tally.chunks,
        statements = tally.statements,
        d1_ms = tally.d1_ms,
        total_ms = now_ms() - started,
        "turn batch"
    );
}

/// Deliveries whose write failed: each is retried with backoff, or dead-lettered as
/// transient on its last attempt.
fn failed<'a>(
    deliveries: &[&Valid<'a>],
    error: &str,
    config: &Config,
    tally: &mut Tally,
    letters: &mut Vec<(&'a Incoming, Envelope)>,
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
