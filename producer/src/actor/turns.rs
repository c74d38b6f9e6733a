//! A session's turns over HTTP, plain or streamed: each gives the turn runner
//! (`chat_core::turn::Runner`) its sink and no stop, and answers what the runner answers.
//! The socket's turns are `sockets`'; all three go through [`Actor::run_turn`].

use super::alarm::ActorAlarm;
use super::live::LiveSink;
use super::meter::Billed;
use super::queue::ActorQueue;
use super::Actor;
use crate::config::Config;
use crate::engine::Engine;
use crate::error::ApiError;
use chat_core::session::TurnAsk;
use chat_core::turn::{Answered, Failed, Runner, TurnError, TurnSink};
use futures_util::StreamExt;
use std::future::Future;
use std::rc::Rc;
use worker::Response;
use worker_support::clock::WorkerClock;

/// Set on a `POST /api/chat` answer that repeats an earlier one for the same key.
pub const REPLAYED_HEADER: &str = "Idempotent-Replayed";

impl Actor {
    /// Runs one turn through the runner, over this actor's ports: the one way any transport
    /// plays a turn.
    pub async fn run_turn(
        &self,
        ask: &TurnAsk,
        sink: &mut dyn TurnSink,
        stop: impl Future<Output = ()>,
    ) -> Result<Answered, Failed> {
        let config = Config::of(&self.env);
        let keep = config.history_turns.clone().map_err(|e| Failed {
            error: TurnError::Store(e),
            told: false,
        })?;
        let store = self.store();
        let queue = ActorQueue::for_message(&self.env, &ask.message);
        let engine = Engine::from_config(&self.env, &config);
        let runner = Runner {
            store: &store,
            queue: &queue,
            engine: &engine,
            clock: &WorkerClock,
            alarm: &ActorAlarm(self),
            memory: &self.memory,
            keep,
        };
        runner.run(ask, sink, stop).await
    }

    /// A turn over HTTP: plain JSON, or SSE events as it is written.
    pub async fn http_turn(self: Rc<Self>, ask: TurnAsk, sse: bool) -> Result<Response, ApiError> {
        self.hold_session(ask.session_id, ask.identity.user_id())
            .await?;
        if sse {
            return self.streamed_turn(ask).await;
        }
        let answered = self
            .run_turn(
                &ask,
                &mut LiveSink::http(&self.state),
                std::future::pending(),
            )
            .await
            .map_err(|failed| ApiError::from(failed.error))?;
        let mut response = json_text(answered.body)?;
        if answered.replayed {
            response.headers_mut().set(REPLAYED_HEADER, "true")?;
        }
        Ok(response)
    }

    /// SSE: the response starts once the turn is answered (a refusal before that keeps its
    /// plain JSON answer and status), and the turn writes its events as it goes on.
    async fn streamed_turn(self: Rc<Self>, ask: TurnAsk) -> Result<Response, ApiError> {
        let (events, body) = futures_channel::mpsc::unbounded::<Vec<u8>>();
        let (answering, answered) = futures_channel::oneshot::channel::<bool>();
        let (refused, refusal) = futures_channel::oneshot::channel::<ApiError>();
        let actor = self.clone();
        worker::wasm_bindgen_futures::spawn_local(async move {
            // The answer goes on after the response: the actor is still active (billed).
            let _active = actor.active(Billed::Nothing);
            let mut sink = LiveSink::events(&actor.state, events, answering);
            let outcome = actor
                .run_turn(&ask, &mut sink, std::future::pending())
                .await;
            if let Err(Failed { error, told: false }) = outcome {
                let _ = refused.send(ApiError::from(error));
            }
        });
        // The turn is answered, or else (its sink gone unanswered) it was refused before.
        match answered.await {
            Ok(replayed) => {
                let mut response = Response::from_stream(body.map(Ok::<Vec<u8>, worker::Error>))?;
                let headers = response.headers_mut();
                headers.set("Content-Type", "text/event-stream; charset=utf-8")?;
                headers.set("Cache-Control", "no-cache")?;
                if replayed {
                    headers.set(REPLAYED_HEADER, "true")?;
                }
                Ok(response)
            }
            Err(_) => Err(refusal.await.unwrap_or_else(|_| {
                ApiError::Internal("a streamed turn ended without an answer or a refusal".into())
            })),
        }
    }
}

/// A JSON response whose body is exactly `body`.
pub fn json_text(body: String) -> Result<Response, ApiError> {
    let mut response = Response::ok(body)?;
    response
        .headers_mut()
        .set("Content-Type", "application/json")?;
    Ok(response)
}
