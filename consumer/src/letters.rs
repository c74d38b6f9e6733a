//! A batch of the dead-letter queue → the `dead_letters` table, one statement per chunk of
//! at most 256 KB (a batch of large letters would pass D1's 2 MB value limit). A letter
//! delivered twice is stored once (its id is the failed message's id). If D1 fails, the
//! failed chunk's letters are retried with backoff (the dead-letter queue has a generous
//! `max_retries`). On a letter's last delivery the queue would drop it, since nothing stands
//! behind the dead-letter queue: the letter is sent again as a fresh message, its envelope
//! keeping its id, and the old one is acked, with an alerting log line. A D1 outage of any
//! length then delays letters but never loses one.

use crate::config::{Config, CONTROL, DEAD_LETTERS};
use crate::incoming::Incoming;
use crate::store;
use chat_core::d1_limits::{json_chunks, MAX_BOUND_JSON_BYTES};
use chat_core::dead_letter::Envelope;
use chat_core::failure::{letter_action, LetterAction};
use worker::Env;
use worker_support::clock::{now_ms, unit_random};
use worker_support::queue::send_texts;

pub async fn consume(messages: Vec<Incoming>, env: &Env, config: &Config) {
    let started = now_ms();
    let now = now_ms();
    let letters: Vec<Envelope> = messages
        .iter()
        .map(|m| Envelope::from_queue_body(&m.id, &m.body, m.attempts, m.sent_at, now))
        .collect();
    // Letters of up to 120 KB each: a batch of them can pass D1's 2 MB value limit, so each
    // chunk is written alone, and only a failed chunk's letters are retried.
    let mut failed: Vec<usize> = Vec::new();
    let mut chunks = 0;
    for chunk in json_chunks(&letters, MAX_BOUND_JSON_BYTES) {
        chunks += 1;
        let stored =
            if config.faults.fails_letters(now) || config.faults.database_down(CONTROL, now) {
                Err(worker::Error::RustError(
                    "injected fault: the dead-letter store is failing".into(),
                ))
            } else {
                match env.d1(CONTROL) {
                    Ok(db) => store::store_letters(&db, &chunk.json, now).await,
                    Err(e) => Err(e),
                }
            };
        match stored {
            Ok(()) => chunk.items.iter().for_each(|&i| messages[i].ack()),
            Err(e) => {
                tracing::error!(error = %e, letters = chunk.items.len(), "storing dead letters failed; retrying");
                failed.extend(chunk.items);
            }
        }
    }
    let (last, retry): (Vec<_>, Vec<_>) = failed
        .iter()
        .map(|&i| (&messages[i], &letters[i]))
        .partition(|(m, _)| {
            letter_action(m.attempts, config.letter_max_retries) == LetterAction::Requeue
        });
    retry
        .iter()
        .for_each(|(m, _)| m.retry(config.backoff.delay_seconds(m.attempts, unit_random())));
    let requeued = requeue(env, &last).await;
    tracing::info!(
        queue = crate::config::DEAD_LETTER_QUEUE,
        received = messages.len(),
        stored = messages.len() - failed.len(),
        requeued,
        chunks,
        total_ms = now_ms() - started,
        "dead-letter batch"
    );
}

/// Sends the letters on their last delivery again as fresh messages, then acks them; returns
/// how many went. If the send fails they are retried, which on a last delivery the queue may
/// treat as dropping them: the log says so, loudly.
async fn requeue(env: &Env, last: &[(&Incoming, &Envelope)]) -> usize {
    if last.is_empty() {
        return 0;
    }
    let texts: Vec<String> = last
        .iter()
        .map(|(_, letter)| letter.encode_within(Envelope::MAX_BYTES))
        .collect();
    let sent = match env.queue(DEAD_LETTERS) {
        Ok(queue) => send_texts(&queue, &texts).await.map_err(|(_, e)| e),
        Err(e) => Err(e),
    };
    match sent {
        Ok(()) => {
            last.iter().for_each(|(m, _)| m.ack());
            tracing::error!(
                alert = true,
                letters = last.len(),
                ids = ?last.iter().map(|(_, l)| l.message_id.as_str()).collect::<Vec<_>>(),
                "dead letters re-queued after their last delivery: D1 has been failing for all of the dead-letter queue's retries"
            );
            last.len()
        }
        Err(e) => {
            tracing::error!(
                alert = true,
                error = %e,
                letters = last.len(),
                "dead letters could not be re-queued on their last delivery and may be dropped"
            );
            last.iter().for_each(|(m, _)| m.retry(0));
            0
        }
    }
}
