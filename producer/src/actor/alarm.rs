//! The actor's alarm: it drops answers once they expire (`session::ANSWER_KEEP_MS`) and
//! tickets that expired, and is set again for the next. It is the runner's alarm port
//! (`chat_core::turn::Alarm`): a turn makes sure it is set when it binds an answer, before
//! the send, so an answer's storage is freed however its turn was completed (the answer
//! itself expires for every retry when it is read). A Durable Object has one alarm, each
//! `setAlarm` is billed as a row written and each run as a request: the instance remembers
//! the time it set, leaves an alarm that frees the answer within a day of its expiry
//! (`session::alarm_to_set`), and after a run sets the next at least a day away
//! (`session::next_sweep`), so an alarm runs about once a day per session that plays.

use super::Actor;
use chat_core::session::{alarm_to_set, ANSWER_KEEP_MS};
use chat_core::turn::Alarm;
use worker_support::clock::now_ms;

/// The runner's alarm port, over the actor's.
pub struct ActorAlarm<'a>(pub &'a Actor);

impl Alarm for ActorAlarm<'_> {
    async fn expire_by(&self, at_ms: i64) {
        self.0.alarm_by(at_ms).await;
    }
}

impl Actor {
    /// Makes sure the alarm runs by `at`, or within a day of it.
    pub async fn alarm_by(&self, at: i64) {
        let storage = self.state.storage();
        let known = match self.alarm.get() {
            Some(known) => known,
            None => match storage.get_alarm().await {
                Ok(known) => known,
                Err(e) => {
                    tracing::error!(error = %e, "reading the actor's alarm failed");
                    None
                }
            },
        };
        let Some(at) = alarm_to_set(known, at) else {
            self.alarm.set(Some(known));
            return;
        };
        match storage.set_alarm(at - now_ms()).await {
            Ok(()) => {
                self.alarm.set(Some(Some(at)));
                // Billed as a row written, and it will run once: a request then.
                worker_support::usage::count(|u| {
                    u.actor_rows_written += 1;
                    u.actor_alarms_set += 1;
                });
            }
            Err(e) => tracing::error!(error = %e, "setting the actor's alarm failed"),
        }
    }

    /// The alarm's work at `now`: answers that expired and tickets that expired dropped;
    /// answers when it is due next. Expired tickets are also dropped whenever a ticket is
    /// minted, and at most `MAX_LIVE_TICKETS` are held, so a day's wait bounds nothing.
    pub fn ring(&self, now: i64) -> Result<Option<i64>, chat_core::turn::StoreError> {
        let store = self.store();
        let next_answer = store.expire_answers(now)?;
        let next_ticket = store.prune_tickets(now)?;
        Ok(match (next_answer, next_ticket) {
            (Some(a), Some(t)) => Some(a.min(t + ANSWER_KEEP_MS)),
            (a, t) => a.or(t.map(|t| t + ANSWER_KEEP_MS)),
        })
    }
}
