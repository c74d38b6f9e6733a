//! The live socket's handlers of the session's actor: a ticket minted for the player, the
//! socket joined to the session (hibernatable), the turns it missed, and each frame it
//! sends (a turn, a stop, a ping), with the flood limit. The frames it receives are
//! `live`'s; the turn itself is `chat_core::turn`'s, as for every transport.

use super::live::{self, Attachment, Audience, LiveSink, Stop};
use super::{code_and_message, not_found, storage_error, turn_error, Actor, Started};
use crate::config::Config;
use crate::error::ApiError;
use chat_core::identity::Identity;
use chat_core::live::{finished_turn, ClientFrame};
use chat_core::refusal::Kind;
use chat_core::session::TurnAsk;
use chat_core::turn::{self, Begun};
use serde_json::json;
use std::collections::HashMap;
use std::rc::Rc;
use uuid::Uuid;
use worker::{Response, WebSocket, WebSocketIncomingMessage, WebSocketPair};
use worker_support::clock::now_ms;

impl Actor {
    /// Mints a ticket for the live socket, for `identity` if the session is theirs.
    pub(super) fn ticket(&self, identity: &Identity) -> Result<Response, ApiError> {
        let session = self
            .session()?
            .filter(|s| s.owned_by(identity.user_id()))
            .ok_or_else(not_found)?;
        let key = crate::sessions::id_key(&self.env).ok_or_else(|| {
            ApiError::Internal("SESSION_ID_KEY is not set: live tickets cannot be signed".into())
        })?;
        let mut random = [0u8; 16];
        random.copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        let now = now_ms();
        let (ticket, nonce, expires) =
            chat_core::ticket::mint(&session.id, key.as_bytes(), now, random);
        let identity_json =
            serde_json::to_string(identity).map_err(|e| ApiError::Internal(e.to_string()))?;
        self.store()
            .keep_ticket(&nonce, &identity_json, expires, now)
            .map_err(storage_error)?;
        Ok(Response::from_json(&json!({
            "ticket": ticket,
            "expiresAt": chat_core::time::to_rfc3339(expires),
        }))?
        .with_status(201))
    }

    /// Opens a live socket for a ticket the chat Worker checked: the ticket is used up, the
    /// socket joins the session (hibernatable), and gets what it missed after `after`.
    pub(super) fn connect(&self, query: &HashMap<String, String>) -> Result<Response, ApiError> {
        let unauthorized =
            |code: &'static str, message: &str| ApiError::unauthorized(code, message);
        let nonce = query.get("nonce").map(String::as_str).unwrap_or_default();
        if !self.open()? {
            return Err(unauthorized(
                "invalid_ticket",
                "this ticket opens no session",
            ));
        }
        let identity = self
            .store()
            .take_ticket(nonce, now_ms())
            .map_err(storage_error)?
            .ok_or_else(|| {
                unauthorized(
                    "ticket_used",
                    "this ticket was used already; ask for a new one",
                )
            })?;
        let identity: Identity = serde_json::from_str(&identity)
            .map_err(|e| ApiError::Internal(format!("a ticket's player: {e}")))?;
        let pair = WebSocketPair::new()?;
        let user = identity.user_id().to_string();
        self.state
            .accept_websocket_with_tags(&pair.server, &[&user]);
        // A number JavaScript holds exactly: attachments cross into JS.
        let socket = u32::from_le_bytes(
            uuid::Uuid::new_v4().as_bytes()[..4]
                .try_into()
                .unwrap_or([0; 4]),
        );
        pair.server
            .serialize_attachment(Attachment { socket, identity })?;
        if let Some(after) = query.get("after").and_then(|a| a.parse::<i64>().ok()) {
            for frame in self.missed(after)? {
                super::live::send_frame(&pair.server, &frame);
            }
        }
        Ok(Response::from_websocket(pair.client)?)
    }

    /// The frames after `after`: of the turn in progress and the last finished one, from
    /// memory, or after a restart the last finished turn rebuilt from storage.
    fn missed(&self, after: i64) -> Result<Vec<String>, ApiError> {
        if !self.frames.borrow().is_empty() {
            return Ok(self.frames.borrow().after(after));
        }
        let Some(last) = self.store().last_live_turn().map_err(storage_error)? else {
            return Ok(Vec::new());
        };
        let Some(answer) = last.answer else {
            return Ok(Vec::new());
        };
        Ok(finished_turn(
            last.base,
            last.key.as_deref(),
            &last.message,
            &last.reply,
            &answer,
        )
        .into_iter()
        .filter(|(seq, _)| *seq > after)
        .map(|(_, f)| f)
        .collect())
    }

    /// A frame from a live socket: a turn, a stop, or something to refuse.
    pub(super) async fn on_frame(&self, ws: WebSocket, message: WebSocketIncomingMessage) {
        let Ok(Some(attachment)) = ws.deserialize_attachment::<Attachment>() else {
            let _ = ws.close(Some(1011), Some("this socket has no player"));
            return;
        };
        let limit = Config::of(&self.env).live_frame_limit;
        if !self
            .flood
            .borrow_mut()
            .allow(attachment.socket, now_ms(), limit)
        {
            let _ = ws.close(
                Some(live::FLOOD_CLOSE_CODE),
                Some(format!(
                    "too many frames: at most {limit} in {} s",
                    live::FLOOD_WINDOW_MS / 1000
                )),
            );
            return;
        }
        let text = match message {
            WebSocketIncomingMessage::String(text) => text,
            WebSocketIncomingMessage::Binary(_) => {
                live::error_to(
                    &ws,
                    &self.frames,
                    None,
                    "invalid_body",
                    "frames are JSON text",
                );
                return;
            }
        };
        match ClientFrame::parse(&text) {
            Err(e) => live::error_to(&ws, &self.frames, None, e.code, &e.message),
            Ok(ClientFrame::Stop { key }) => match self.stops.borrow().get(&key) {
                Some(stop) => stop.stop(),
                None => live::error_to(
                    &ws,
                    &self.frames,
                    Some(&key),
                    "nothing_to_stop",
                    "no turn with this key is being written",
                ),
            },
            Ok(ClientFrame::Turn {
                key,
                message,
                locale,
            }) => {
                let ask = TurnAsk {
                    session_id: Uuid::nil(),
                    identity: attachment.identity,
                    message,
                    locale,
                    idempotency_key: Some(key.clone()),
                };
                if let Err(e) = self.socket_turn(&ws, ask).await {
                    let (code, message) = code_and_message(e);
                    live::error_to(&ws, &self.frames, Some(&key), code, &message);
                }
            }
        }
    }

    /// A turn asked over a socket: limited as every turn is, played one at a time with the
    /// session's other turns, told to every socket, and stoppable while the engine writes.
    async fn socket_turn(&self, ws: &WebSocket, mut ask: TurnAsk) -> Result<(), ApiError> {
        let session = self
            .session()?
            .filter(|s| s.owned_by(ask.identity.user_id()))
            .ok_or_else(not_found)?;
        ask.session_id = session.id;
        crate::rate_limit::check(&self.env, crate::rate_limit::Limiter::Turns, &ask.identity)
            .await?;
        let key = ask.idempotency_key.clone().unwrap_or_default();
        if self.stops.borrow().contains_key(&key) {
            return Err(ApiError::refused(
                Kind::Busy,
                "turn_in_progress",
                "a turn with this key is being written",
            ));
        }
        let Started {
            guard,
            play,
            store,
            begun,
        } = self.start_turn(&ask).await?;
        let mut sink = LiveSink::new(
            &self.state,
            &self.frames,
            Some(key.clone()),
            store.frame_base.clone(),
        );
        let outcome = match begun {
            Begun::Replay(answered) => {
                sink.audience = Audience::Socket(ws.clone());
                turn::replay(&answered, &ask, &mut sink);
                Ok(answered)
            }
            Begun::Play(session) => {
                let stop = Rc::new(Stop::default());
                self.stops.borrow_mut().insert(key.clone(), stop.clone());
                let outcome = play
                    .finish(&store, &ask, &session, &mut sink, stop.asked())
                    .await;
                self.stops.borrow_mut().remove(&key);
                outcome.map_err(|e| code_and_message(turn_error(e)))
            }
        };
        sink.end(&outcome);
        drop(sink);
        drop(guard);
        if let Ok(answered) = &outcome {
            self.after_turn(&ask, answered).await;
        }
        Ok(())
    }
}
