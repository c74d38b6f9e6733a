//! The turn queue as the runner's queue (`chat_core::turn::TurnQueue`), with the local
//! build's faults around the send.

use crate::config::TURNS;
use chat_core::record::TurnRecord;
use chat_core::turn::{Attempt, TurnQueue};
use worker::{Env, MessageBuilder, QueueContentType};

/// The turn queue. In the local build the fault switch can reset the actor right after a
/// turn's first send (`[fault:reset]`): the instance panics, which makes worker 0.8 start
/// the wasm instance afresh on the next request, so that only what was written survives.
/// (`ctx.abort()` would be the runtime's own reset, but it stops the wasm code mid-flight
/// and leaves the isolate's futures hanging.) It can also refuse a turn's first send
/// (`[fault:send-fails]`).
pub struct ActorQueue {
    pub env: Env,
    pub reset_after_first_send: bool,
    pub fail_first_send: bool,
}

impl ActorQueue {
    /// The queue for a turn saying `message` (its fault markers, in the local build).
    pub fn for_message(env: &Env, message: &str) -> Self {
        Self {
            env: env.clone(),
            reset_after_first_send: crate::faults::resets_after_send(env, message),
            fail_first_send: crate::faults::fails_first_send(env, message),
        }
    }
}

impl TurnQueue for ActorQueue {
    async fn send(&self, record: &TurnRecord, attempt: Attempt) -> Result<(), String> {
        if self.fail_first_send && attempt == Attempt::First {
            return Err("injected fault: the queue refused the turn's first send".into());
        }
        let body = record.encode();
        let bytes = body.len();
        let message = MessageBuilder::new(body)
            .content_type(QueueContentType::Text)
            .build();
        self.env
            .queue(TURNS)
            .map_err(|e| e.to_string())?
            .send(message)
            .await
            .map_err(|e| e.to_string())?;
        worker_support::usage::count(|u| u.sent([bytes]));
        if self.reset_after_first_send && attempt == Attempt::First {
            panic!("injected fault: the session actor is reset between the queue send and the confirmation");
        }
        Ok(())
    }
}
