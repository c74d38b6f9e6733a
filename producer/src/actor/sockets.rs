//! A live socket's frames in the session's actor: each frame it sends (a turn, a stop),
//! and its close. A socket's turn goes through the runner as every transport's does
//! (`Actor::run_turn`); what is only a socket's is here: its sign-in checked on each turn,
//! its stop, the flood limit, and its refusals, numbered by the session's frame log so that
//! a socket never sees a number go back. Opening one is `tickets`'.

use super::live::{self, Attachment, LiveSink, Stop, POLICY_CLOSE_CODE};
use super::Actor;
use crate::config::Config;
use crate::error::ApiError;
use chat_core::domain::IdempotencyKey;
use chat_core::identity::SignIn;
use chat_core::live::ClientFrame;
use chat_core::refusal::{Kind, Refusal};
use chat_core::session::TurnAsk;
use chat_core::turn::Failed;
use std::rc::Rc;
use worker::{WebSocket, WebSocketIncomingMessage};
use worker_support::clock::now_ms;

impl Actor {
    /// Tells one socket a refusal, numbered after everything it was sent; a socket refused
    /// more often than a turn has numbers for is closed instead.
    fn refuse(&self, ws: &WebSocket, key: Option<&IdempotencyKey>, refusal: &Refusal) {
        if !self.memory.frames.borrow().knows_base() {
            // A fresh instance numbers after the last turn in storage, as a turn would.
            use chat_core::turn::SessionStore;
            match self.store().last_frame_base() {
                Ok(base) => self.memory.frames.borrow_mut().restore(base),
                Err(e) => tracing::error!(error = %e.0, "reading the last frame base failed"),
            }
        }
        let frame = self
            .memory
            .frames
            .borrow_mut()
            .refusal(now_ms(), key, refusal);
        match frame {
            Some(frame) => live::send_frame(ws, &frame.to_json()),
            None => {
                let _ = ws.close(
                    Some(POLICY_CLOSE_CODE),
                    Some("too many refused frames during one turn"),
                );
            }
        }
    }

    /// A frame from a live socket: a turn, a stop, or something to refuse.
    pub async fn on_frame(&self, ws: WebSocket, message: WebSocketIncomingMessage) {
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
                Some(POLICY_CLOSE_CODE),
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
                let refusal = Refusal::invalid("invalid_body", "frames are JSON text");
                return self.refuse(&ws, None, &refusal);
            }
        };
        match ClientFrame::parse(&text) {
            Err(refusal) => self.refuse(&ws, None, &refusal),
            Ok(ClientFrame::Stop { key }) => {
                let stop = self.stops.borrow().get(&key).cloned();
                match stop {
                    Some(stop) => stop.stop(),
                    None => self.refuse(
                        &ws,
                        Some(&key),
                        &Refusal::invalid(
                            "nothing_to_stop",
                            "no turn with this key is being written",
                        ),
                    ),
                }
            }
            Ok(ClientFrame::Turn {
                key,
                message,
                locale,
            }) => {
                if let Err(refusal) = self
                    .socket_turn(&ws, attachment.sign_in, key.clone(), message, locale)
                    .await
                {
                    self.refuse(&ws, Some(&key), &refusal);
                }
            }
        }
    }

    /// A turn asked over a socket: its sign-in must still hold and its player be under the
    /// turn limit; then it runs as any turn does, stoppable while the engine writes.
    /// Answers the refusal to tell the socket, if the runner did not tell it already.
    async fn socket_turn(
        &self,
        ws: &WebSocket,
        sign_in: SignIn,
        key: IdempotencyKey,
        message: String,
        locale: Option<chat_core::character::Locale>,
    ) -> Result<(), Refusal> {
        let internal = |e: ApiError| e.into_refusal();
        if !sign_in.holds_at(now_ms()) {
            let refusal = Refusal::unauthorized(
                "sign_in_expired",
                "this socket's sign-in expired; sign in again and open a new socket",
            );
            self.refuse(ws, Some(&key), &refusal);
            let _ = ws.close(Some(POLICY_CLOSE_CODE), Some("sign_in_expired"));
            return Ok(());
        }
        let session = self.session().map_err(internal)?.ok_or_else(|| {
            Refusal::not_found(
                "session_not_found",
                "no session with this id for this player",
            )
        })?;
        crate::rate_limit::check(
            &self.env,
            crate::rate_limit::Limiter::Turns,
            &sign_in.identity,
        )
        .await
        .map_err(internal)?;
        if self.stops.borrow().contains_key(&key) {
            return Err(Refusal::new(
                Kind::Busy,
                "turn_in_progress",
                "a turn with this key is being written",
            ));
        }
        let ask = TurnAsk {
            session_id: session.id,
            identity: sign_in.identity,
            message,
            locale,
            idempotency_key: Some(key.clone()),
        };
        let stop = Rc::new(Stop::default());
        self.stops.borrow_mut().insert(key.clone(), stop.clone());
        let outcome = self
            .run_turn(
                &ask,
                &mut LiveSink::socket(&self.state, ws.clone()),
                stop.asked(),
            )
            .await;
        self.stops.borrow_mut().remove(&key);
        match outcome {
            Ok(_) | Err(Failed { told: true, .. }) => Ok(()),
            Err(Failed { error, told: false }) => Err(internal(ApiError::from(error))),
        }
    }

    /// A client closed its socket: the close is answered at once with the client's code
    /// (RFC 6455; where the runtime already answered, this changes nothing), and the socket
    /// leaves the session.
    pub fn on_close(&self, ws: &WebSocket, code: usize) {
        if let Ok(Some(a)) = ws.deserialize_attachment::<Attachment>() {
            self.flood.borrow_mut().forget(a.socket);
        }
        let _ = ws.close(Some(echo_code(code)), Some("closed by the client"));
    }
}

/// The code to answer a client's close with: its own, unless it is one that may not be
/// sent (1005: no code was given; 1006 and 1015 are never on the wire), then 1000.
fn echo_code(code: usize) -> u16 {
    let code = u16::try_from(code).unwrap_or(0);
    if matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
        code
    } else {
        1000
    }
}
