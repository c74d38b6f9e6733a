//! A batch of the dead-letter queue → the control database's `dead_letters` table, one
//! statement per chunk under D1's value limit (a batch of large letters would pass it). A
//! letter delivered twice is stored once (its id is the failed message's id). If the write
//! fails, the failed chunk's letters are retried with backoff (the dead-letter queue has a
//! generous `max_retries`). On a letter's last delivery the queue would drop it, since
//! nothing stands behind the dead-letter queue: the letter is sent again as a fresh
//! message, its envelope keeping its id, and the old one is acked, with an alerting event.
//! An outage of any length then delays letters but never loses one.

use super::ports::{Control, Delivery, Queues};
use super::{Event, Settings};
use crate::clock::Clock;
use crate::d1_limits::{json_chunks, MAX_BOUND_JSON_BYTES};
use crate::dead_letter::Envelope;
use crate::failure::{letter_action, LetterAction};

/// What a batch of letters did.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub received: usize,
    pub stored: usize,
    pub retried: usize,
    pub requeued: usize,
    pub chunks: usize,
    pub events: Vec<Event>,
}

/// Handles one batch of the dead-letter queue: every letter is stored and acked, retried,
/// or sent again, before this returns.
pub async fn archive<D, C, Q, T>(
    messages: &[D],
    control: &C,
    queues: &Q,
    clock: &T,
    settings: &Settings,
) -> Report
where
    D: Delivery,
    C: Control,
    Q: Queues,
    T: Clock,
{
    let now = clock.now_ms();
    let letters: Vec<Envelope> = messages
        .iter()
        .map(|m| {
            let mut letter =
                Envelope::from_queue_body(m.id(), m.body(), m.attempts(), m.sent_at(), now);
            // An erased player's turn is not stored as a letter either (`sql::STORE_LETTERS`).
            if let Ok(record) = crate::record::TurnRecord::decode(&letter.payload) {
                letter.erasure_tag = settings.erasure_tag(&record.user.id);
                letter.turn_at = Some(record.user_message.created_at);
            }
            letter
        })
        .collect();
    let mut report = Report {
        received: messages.len(),
        ..Report::default()
    };
    let mut failed: Vec<usize> = Vec::new();
    for chunk in json_chunks(&letters, MAX_BOUND_JSON_BYTES) {
        report.chunks += 1;
        match control.store_letters(&chunk.json, now).await {
            Ok(()) => chunk.items.iter().for_each(|&i| messages[i].ack()),
            Err(error) => {
                report.events.push(Event::LettersUnstored {
                    error,
                    letters: chunk.items.len(),
                });
                failed.extend(chunk.items);
            }
        }
    }
    report.stored = messages.len() - failed.len();
    let (last, retry): (Vec<_>, Vec<_>) = failed
        .iter()
        .map(|&i| (&messages[i], &letters[i]))
        .partition(|(m, _)| {
            letter_action(m.attempts(), settings.letter_max_retries) == LetterAction::Requeue
        });
    report.retried = retry.len();
    for (m, _) in retry {
        super::retry_later(m, settings, clock);
    }
    if !last.is_empty() {
        let texts: Vec<String> = last
            .iter()
            .map(|(_, letter)| letter.encode_within(Envelope::MAX_BYTES))
            .collect();
        match queues.send_letters(&texts).await {
            Ok(()) => {
                last.iter().for_each(|(m, _)| m.ack());
                report.requeued = last.len();
                report.events.push(Event::LettersRequeued {
                    ids: last.iter().map(|(_, l)| l.message_id.clone()).collect(),
                });
            }
            Err(error) => {
                report.events.push(Event::LettersMayDrop {
                    error,
                    letters: last.len(),
                });
                last.iter().for_each(|(m, _)| m.retry(0));
            }
        }
    }
    report
}
