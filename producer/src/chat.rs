//! `POST /api/chat`, the hot path: read the session, ask the reply engine, await the queue's
//! `send` of one turn record, answer. No D1 write here: a 200 means the turn is durably
//! queued, and the consumer stores it exactly once.

use crate::body;
use crate::error::ApiError;
use crate::services::Services;
use crate::session_cache;
use crate::sessions;
use chat_core::character::{Character, Locale};
use chat_core::engine::{ReplyEngine, ReplyInput};
use chat_core::ids::{valid_idempotency_key, TurnIds};
use chat_core::record::{TurnInput, TurnRecord};
use chat_core::request::ChatTurn;
use chat_core::request::MAX_BODY_BYTES;
use serde_json::json;
use worker::{MessageBuilder, QueueContentType, Request, Response};
use worker_support::clock::{now_ms, random10};

pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";

pub async fn post(mut req: Request, services: &Services) -> Result<Response, ApiError> {
    let identity = services.auth.resolve(&req).await?;
    let key = idempotency_key(&req)?;
    let turn = ChatTurn::parse(&body::read_json(&mut req, MAX_BODY_BYTES).await?)?;
    let session = sessions::for_turn(services, &identity, turn.session_id).await?;
    if session.ended_at.is_some() {
        return Err(ApiError::Conflict {
            code: "session_ended",
            message: "the game in this session is over; start a new session".into(),
        });
    }
    let character = Character::parse(&session.character_type).ok_or_else(|| {
        ApiError::Internal(format!(
            "session has unknown character {}",
            session.character_type
        ))
    })?;
    let locale = turn
        .locale
        .or_else(|| Locale::parse(&session.locale))
        .unwrap_or(Locale::En);

    let message_at = now_ms();
    let reply = services
        .engine
        .reply(&ReplyInput {
            character,
            locale,
            message: &turn.message,
        })
        .await;
    let ids = match &key {
        // The same key in the same session names the same turn, on every retry.
        Some(key) => TurnIds::keyed(turn.session_id, session.created_at, key),
        None => TurnIds::random(message_at, random10()),
    };
    let record = TurnRecord::build(TurnInput {
        ids,
        session_id: turn.session_id,
        identity: &identity,
        character,
        locale,
        message: &turn.message,
        message_at,
        reply: &reply,
        reply_at: now_ms(),
        idempotency_key: key.as_deref(),
    });
    send(services, &record).await?;
    if record.game_over {
        session_cache::end(turn.session_id, record.user_message.created_at);
    }
    Ok(Response::from_json(&json!({
        "reply": record.agent_message.content,
        "score": record.score.adjusted,
        "emotion": record.agent_message.emotion,
        "isGameOver": record.game_over,
        "messageId": record.turn_id,
    }))?)
}

fn idempotency_key(req: &Request) -> Result<Option<String>, ApiError> {
    match req.headers().get(IDEMPOTENCY_KEY_HEADER).ok().flatten() {
        None => Ok(None),
        Some(key) if valid_idempotency_key(&key) => Ok(Some(key)),
        Some(_) => Err(ApiError::invalid(
            "invalid_idempotency_key",
            "Idempotency-Key must be 1 to 128 visible ASCII characters",
        )),
    }
}

/// Puts the record on the turn queue as JSON text, which the consumer decodes (and, when it
/// cannot, keeps verbatim as a dead letter).
async fn send(services: &Services, record: &TurnRecord) -> Result<(), ApiError> {
    let message = MessageBuilder::new(record.encode())
        .content_type(QueueContentType::Text)
        .build();
    services
        .turns
        .send(message)
        .await
        .map_err(|e| ApiError::QueueUnavailable(e.to_string()))
}
