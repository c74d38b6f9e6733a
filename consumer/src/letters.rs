//! A batch of the dead-letter queue → the `dead_letters` table, in one statement. A letter
//! delivered twice is stored once (its id is the failed message's id). If D1 fails, the
//! batch is retried with backoff (the dead-letter queue has a generous `max_retries`): a
//! letter is never dropped.

use crate::config::{Config, DB};
use crate::incoming::Incoming;
use crate::store;
use chat_core::dead_letter::Envelope;
use worker::Env;
use worker_support::clock::{now_ms, unit_random};

pub async fn consume(messages: Vec<Incoming>, env: &Env, config: &Config) {
    let started = now_ms();
    let now = now_ms();
    let letters: Vec<Envelope> = messages
        .iter()
        .map(|m| Envelope::from_queue_body(&m.id, &m.body, m.attempts, m.sent_at, now))
        .collect();
    let stored = match env.d1(DB) {
        Ok(db) => store::store_letters(&db, &letters, now).await,
        Err(e) => Err(e),
    };
    let ok = stored.is_ok();
    match stored {
        Ok(()) => messages.iter().for_each(Incoming::ack),
        Err(e) => {
            tracing::error!(error = %e, letters = letters.len(), "storing dead letters failed; retrying");
            messages
                .iter()
                .for_each(|m| m.retry(config.backoff.delay_seconds(m.attempts, unit_random())));
        }
    }
    tracing::info!(
        queue = crate::config::DEAD_LETTER_QUEUE,
        received = messages.len(),
        stored = if ok { letters.len() } else { 0 },
        total_ms = now_ms() - started,
        "dead-letter batch"
    );
}
