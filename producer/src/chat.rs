//! `POST /api/chat`, the hot path: authenticate the player, validate the request, and hand the
//! turn to its session's actor (`actor`), whose answer is the client's. The actor asks the
//! engine, awaits the queue's `send` of one turn record and answers; nothing here or there
//! writes D1, so a 200 means the turn is durably queued and the consumer stores it once.
//!
//! With `Accept: text/event-stream` the answer is server-sent events as the reply is
//! written (`delta`, then `done` with the plain answer, or `error`); every refusal known
//! before the turn starts keeps its plain JSON answer and status.

use crate::actor;
use crate::body;
use crate::error::ApiError;
use crate::rate_limit::{self, Limiter};
use crate::services::Services;
use chat_core::domain::IdempotencyKey;
use chat_core::request::ChatTurn;
use chat_core::request::MAX_BODY_BYTES;
use chat_core::session::TurnAsk;
use worker::{Env, Request, Response};

pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";

pub async fn post(mut req: Request, env: &Env, services: &Services) -> Result<Response, ApiError> {
    let identity = services.auth.resolve(&req).await?;
    let key = idempotency_key(&req)?;
    let turn = ChatTurn::parse(&body::read_json(&mut req, MAX_BODY_BYTES).await?)?;
    rate_limit::check(env, Limiter::Turns, &identity).await?;
    crate::sessions::reachable(env, services, &identity, turn.session_id).await?;
    actor::client::turn(
        env,
        &TurnAsk {
            session_id: turn.session_id,
            identity,
            message: turn.message,
            locale: turn.locale,
            idempotency_key: key,
        },
        wants_events(&req),
    )
    .await
}

/// Whether the client asked for server-sent events.
fn wants_events(req: &Request) -> bool {
    req.headers().get("Accept").ok().flatten().is_some_and(|a| {
        a.split(',')
            .any(|t| t.trim().starts_with("text/event-stream"))
    })
}

fn idempotency_key(req: &Request) -> Result<Option<IdempotencyKey>, ApiError> {
    req.headers()
        .get(IDEMPOTENCY_KEY_HEADER)
        .ok()
        .flatten()
        .map(|key| {
            IdempotencyKey::parse(key).map_err(|_| {
                ApiError::invalid(
                    "invalid_idempotency_key",
                    "Idempotency-Key must be 1 to 128 visible ASCII characters",
                )
            })
        })
        .transpose()
}
