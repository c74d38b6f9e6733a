//! The session's live side, in its actor: where a turn's frames go for each transport, a
//! player's stop, the flood limit, and what a live socket carries across hibernation. The
//! frames, their numbers and what a reconnect missed are `chat_core::live`'s.
//!
//! - [`LiveSink`]: the runner's sink for each transport. A played turn's frames go to every
//!   socket of the session whatever the transport asked; a key's replay goes to who asked
//!   only; a streamed HTTP turn also gets them as events of its response.
//! - [`Stop`]: a stop a socket asked for, which the turn's engine race hears.
//! - [`Flood`]: frames per socket per window; a socket that floods is closed.

use chat_core::identity::SignIn;
use chat_core::live::Frame;
use chat_core::turn::{Audience, TurnSink};
use futures_channel::mpsc::UnboundedSender;
use futures_channel::oneshot;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::task::{Poll, Waker};
use worker::{State, WebSocket};

/// A socket's close code when it breaks the rules (floods, or its sign-in expired): policy
/// violation.
pub const POLICY_CLOSE_CODE: u16 = 1008;
/// Frames a socket may send per window unless `LIVE_FRAME_LIMIT` says otherwise: a player
/// types far slower, and turns are limited per minute anyway.
pub const FLOOD_FRAMES: u32 = 20;
pub const FLOOD_WINDOW_MS: i64 = 10_000;

/// Sends `frame` to every socket of the session.
pub fn broadcast(state: &State, frame: &str) {
    for ws in state.get_websockets() {
        send_frame(&ws, frame);
    }
}

/// Sends `frame` to one socket (best effort: a closed socket is the client's to reopen), and
/// counts it in the usage meter.
pub fn send_frame(ws: &WebSocket, frame: &str) {
    worker_support::usage::count(|u| u.ws_messages_out += 1);
    let _ = ws.send_with_str(frame);
}

/// The runner's sink, for one transport.
pub struct LiveSink<'a> {
    state: &'a State,
    /// The socket that asked (a socket's turn).
    asker: Option<WebSocket>,
    /// The response's events (a streamed HTTP turn).
    events: Option<UnboundedSender<Vec<u8>>>,
    /// Told once the turn is answered (a streamed HTTP turn starts its response then).
    answering: Option<oneshot::Sender<bool>>,
}

impl<'a> LiveSink<'a> {
    /// Plain HTTP: the answer is the response's body; the session's sockets see the turn.
    pub fn http(state: &'a State) -> Self {
        Self {
            state,
            asker: None,
            events: None,
            answering: None,
        }
    }

    /// Server-sent events: the turn's frames are events of the response too, which starts
    /// when the turn is answered (`answering` hears whether it is a replay).
    pub fn events(
        state: &'a State,
        events: UnboundedSender<Vec<u8>>,
        answering: oneshot::Sender<bool>,
    ) -> Self {
        Self {
            state,
            asker: None,
            events: Some(events),
            answering: Some(answering),
        }
    }

    /// A socket's turn: a replay goes to that socket only.
    pub fn socket(state: &'a State, asker: WebSocket) -> Self {
        Self {
            state,
            asker: Some(asker),
            events: None,
            answering: None,
        }
    }
}

impl TurnSink for LiveSink<'_> {
    fn frame(&mut self, to: Audience, frame: &Frame) {
        match (to, &self.asker) {
            (Audience::Session, _) => broadcast(self.state, &frame.to_json()),
            (Audience::Asker, Some(ws)) => send_frame(ws, &frame.to_json()),
            (Audience::Asker, None) => {}
        }
        if let (Some(events), Some(event)) = (&self.events, frame.to_sse()) {
            let _ = events.unbounded_send(event.into_bytes());
        }
    }

    fn answering(&mut self, replayed: bool) {
        if let Some(tx) = self.answering.take() {
            let _ = tx.send(replayed);
        }
    }
}

/// A stop asked for a turn in progress: the turn's engine race waits on it.
#[derive(Default)]
pub struct Stop {
    stopped: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Stop {
    pub fn stop(&self) {
        self.stopped.set(true);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// Ready once the stop is asked.
    pub async fn asked(self: Rc<Self>) {
        std::future::poll_fn(|cx| {
            if self.stopped.get() {
                Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

/// Frames per socket in the current window.
#[derive(Default)]
pub struct Flood {
    seen: HashMap<u32, (i64, u32)>,
}

impl Flood {
    /// Counts a frame of socket `id` at `now_ms`; false once it passed `limit` frames in
    /// the window.
    pub fn allow(&mut self, id: u32, now_ms: i64, limit: u32) -> bool {
        let entry = self.seen.entry(id).or_insert((now_ms, 0));
        if now_ms - entry.0 >= FLOOD_WINDOW_MS {
            *entry = (now_ms, 0);
        }
        entry.1 += 1;
        entry.1 <= limit
    }

    pub fn forget(&mut self, id: u32) {
        self.seen.remove(&id);
    }
}

/// What a live socket carries across hibernation: which socket it is, and the sign-in of
/// its ticket (whose, and until when it may play).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Attachment {
    pub socket: u32,
    pub sign_in: SignIn,
}
