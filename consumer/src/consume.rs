//! One queue batch of turn records: decode each message, set aside duplicates and
//! conflicts, store every valid turn in ONE atomic D1 batch, then ack or retry per message.
//!
//! A message that cannot be decoded never holds back the valid ones: it is retried on its
//! own (after `max_retries` the queue moves it to the dead-letter queue).

use crate::store;
use chat_core::batch::{dedupe, turns_json};
use chat_core::record::TurnRecord;
use worker::{Env, MessageBatch, MessageExt, RawMessage};
use worker_support::clock::now_ms;

/// A message with its decoded record.
struct Decoded {
    message: RawMessage,
    record: TurnRecord,
}

/// The queue body as text: the chat Worker sends JSON text; anything else is serialized so
/// the decoder can say what is wrong with it.
fn body_text(message: &RawMessage) -> String {
    let body = message.body();
    body.as_string().unwrap_or_else(|| {
        worker::js_sys::JSON::stringify(&body)
            .ok()
            .and_then(|s| s.as_string())
            .unwrap_or_default()
    })
}

pub async fn turns(batch: &MessageBatch<serde_json::Value>, env: &Env) {
    let started = now_ms();
    let mut decoded = Vec::new();
    let mut undecodable = 0usize;
    for message in batch.raw_iter() {
        match TurnRecord::decode(&body_text(&message)) {
            Ok(record) => decoded.push(Decoded { message, record }),
            Err(e) => {
                undecodable += 1;
                tracing::warn!(message_id = %message.id(), class = e.class(), error = %e, "refused turn record");
                message.retry();
            }
        }
    }
    let received = decoded.len() + undecodable;
    let split = dedupe(decoded, |d| &d.record);
    for d in &split.conflicts {
        tracing::warn!(message_id = %d.message.id(), turn_id = %d.record.turn_id, "turn id reused for a different turn");
        d.message.retry();
    }

    let (mut applied, mut statements, mut retried, mut d1_ms) = (0, 0, 0, 0);
    if !split.unique.is_empty() {
        let json = turns_json(split.unique.iter().map(|d| &d.record));
        let d1_started = now_ms();
        let outcome = match env.d1(crate::DB) {
            Ok(db) => store::apply_turns(&db, &json).await,
            Err(e) => Err(e),
        };
        d1_ms = now_ms() - d1_started;
        let settled = split.unique.iter().chain(&split.duplicates);
        match outcome {
            Ok(stored) => {
                applied = stored.applied;
                statements = stored.statements;
                settled.for_each(|d| d.message.ack());
            }
            Err(e) => {
                tracing::error!(error = %e, turns = split.unique.len(), "D1 batch failed; retrying its messages");
                retried = split.unique.len() + split.duplicates.len();
                settled.for_each(|d| d.message.retry());
            }
        }
    }
    let stored_or_retried = if retried > 0 {
        0
    } else {
        split.unique.len() + split.duplicates.len()
    };
    tracing::info!(
        queue = %batch.queue(),
        received,
        applied,
        duplicate = stored_or_retried.saturating_sub(applied),
        conflict = split.conflicts.len(),
        undecodable,
        retried = retried + undecodable + split.conflicts.len(),
        statements,
        d1_ms,
        total_ms = now_ms() - started,
        "turn batch"
    );
}
