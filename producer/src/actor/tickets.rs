//! Opening a live socket in the session's actor: a ticket minted for a signed-in player,
//! the socket joined to the session (hibernatable) when it has room, and the frames it
//! missed. Every limit here is a refusal before anything is written or upgraded.

use super::live::{self, Attachment};
use super::open::storage_error;
use super::Actor;
use crate::error::ApiError;
use chat_core::domain::IdempotencyKey;
use chat_core::identity::{Identity, SignIn};
use chat_core::live::finished_turn;
use chat_core::refusal::{Kind, Refusal};
use chat_core::session::ANSWER_KEEP_MS;
use serde_json::json;
use std::collections::HashMap;
use worker::{Response, WebSocketPair};
use worker_support::clock::now_ms;

/// Tickets a session holds at once (each is a row until used or expired): enough for a
/// player's tabs reconnecting, and a bound on what a client that only asks can write.
pub const MAX_LIVE_TICKETS: i64 = 8;
/// Sockets a session keeps open at once: every `delta` goes to each of them.
pub const MAX_SOCKETS: usize = 8;

/// What a client waits before asking again when a session holds all it may.
const FULL_RETRY_AFTER: u32 = 10;

fn full(code: &'static str, message: &str) -> ApiError {
    ApiError::Refused(Refusal::new(Kind::TooMany, code, message).retry_after(FULL_RETRY_AFTER))
}

impl Actor {
    /// Mints a ticket for the live socket, for `sign_in`'s player if the session is theirs.
    pub async fn ticket(&self, sign_in: &SignIn) -> Result<Response, ApiError> {
        let session = self
            .session()?
            .filter(|s| s.owned_by(sign_in.identity.user_id()))
            .ok_or_else(|| {
                ApiError::not_found(
                    "session_not_found",
                    "no session with this id for this player",
                )
            })?;
        let key = crate::sessions::id_key(&self.env).ok_or_else(|| {
            ApiError::Internal("SESSION_ID_KEY is not set: live tickets cannot be signed".into())
        })?;
        let store = self.store();
        let now = now_ms();
        if store.live_tickets(now).map_err(storage_error)? >= MAX_LIVE_TICKETS {
            return Err(full(
                "too_many_tickets",
                &format!("this session holds {MAX_LIVE_TICKETS} unused tickets; use one, or wait for them to expire"),
            ));
        }
        let mut random = [0u8; 16];
        random.copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        let (ticket, nonce, expires) =
            chat_core::ticket::mint(&session.id.uuid(), key.as_bytes(), now, random);
        let sign_in_json =
            serde_json::to_string(sign_in).map_err(|e| ApiError::Internal(e.to_string()))?;
        store
            .keep_ticket(&nonce, &sign_in_json, expires, now)
            .map_err(storage_error)?;
        // A ticket never used is dropped by the next mint, or by the alarm within a day.
        self.alarm_by(expires + ANSWER_KEEP_MS).await;
        Ok(Response::from_json(&json!({
            "ticket": ticket,
            "expiresAt": chat_core::time::to_rfc3339(expires),
        }))?
        .with_status(201))
    }

    /// Opens a live socket for a ticket the chat Worker checked: the socket joins the
    /// session (hibernatable) if it has room, the ticket is used up, and the socket gets
    /// what it missed after `after`.
    pub fn connect(&self, query: &HashMap<String, String>) -> Result<Response, ApiError> {
        let unauthorized =
            |code: &'static str, message: &str| ApiError::unauthorized(code, message);
        let nonce = query.get("nonce").map(String::as_str).unwrap_or_default();
        if !self.open()? {
            return Err(unauthorized(
                "invalid_ticket",
                "this ticket opens no session",
            ));
        }
        // Refused before the ticket is used: the client may keep it for when there is room.
        if self.state.get_websockets().len() >= MAX_SOCKETS {
            return Err(full(
                "too_many_sockets",
                &format!("this session has {MAX_SOCKETS} live sockets open; close one first"),
            ));
        }
        let ticketed = self
            .store()
            .take_ticket(nonce, now_ms())
            .map_err(storage_error)?
            .ok_or_else(|| {
                unauthorized(
                    "ticket_used",
                    "this ticket was used already; ask for a new one",
                )
            })?;
        let sign_in = serde_json::from_str::<SignIn>(&ticketed)
            .or_else(|_| {
                // A ticket minted before tickets kept the sign-in's end.
                serde_json::from_str::<Identity>(&ticketed).map(|identity| SignIn {
                    identity,
                    valid_until: None,
                })
            })
            .map_err(|e| ApiError::Internal(format!("a ticket's sign-in: {e}")))?;
        let pair = WebSocketPair::new()?;
        let user = sign_in.identity.user_id().to_string();
        let tags = vec![worker::wasm_bindgen::JsValue::from(user)];
        // The runtime refuses past its own limit of sockets per object: a refusal, not a
        // panic that would reset the actor.
        self.raw
            .accept_websocket_with_tags(pair.server.as_ref(), tags)
            .map_err(|e| {
                tracing::warn!(error = ?e, "the runtime refused a live socket");
                full(
                    "too_many_sockets",
                    "this session cannot take another live socket now",
                )
            })?;
        // A number JavaScript holds exactly: attachments cross into JS.
        let socket = u32::from_le_bytes(
            uuid::Uuid::new_v4().as_bytes()[..4]
                .try_into()
                .unwrap_or([0; 4]),
        );
        pair.server
            .serialize_attachment(Attachment { socket, sign_in })?;
        if let Some(after) = query.get("after").and_then(|a| a.parse::<i64>().ok()) {
            for frame in self.missed(after)? {
                live::send_frame(&pair.server, &frame);
            }
        }
        Ok(Response::from_websocket(pair.client)?)
    }

    /// The frames after `after`: of the turn in progress and the last finished one (and the
    /// refusals since), from memory, or after a restart the last finished turn rebuilt from
    /// storage.
    fn missed(&self, after: i64) -> Result<Vec<String>, ApiError> {
        if !self.memory.frames.borrow().is_empty() {
            return Ok(self.memory.frames.borrow().after(after));
        }
        let Some(last) = self.store().last_live_turn().map_err(storage_error)? else {
            return Ok(Vec::new());
        };
        let Some(answer) = last.answer else {
            return Ok(Vec::new());
        };
        let key = last.key.and_then(|k| IdempotencyKey::parse(k).ok());
        Ok(
            finished_turn(last.base, key.as_ref(), &last.message, &last.reply, &answer)
                .into_iter()
                .filter(|(seq, _)| *seq > after)
                .map(|(_, f)| f)
                .collect(),
        )
    }
}
