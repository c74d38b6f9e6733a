//! The session's live side, in its actor: the frames every socket of the session sees, the
//! SSE answer of a streamed HTTP turn, a player's stop, and what a reconnecting socket
//! missed. The frames and their numbers are `chat_core::live`'s.
//!
//! - [`LiveSink`]: a turn's events as frames to every socket (`player`, `delta`, `done` or
//!   `error`), and, for an SSE request, as events of its response.
//! - [`Frames`]: the frames of the turn in progress and of the last finished one, kept in
//!   memory for reconnecting sockets (after a restart, the last finished turn is rebuilt
//!   from storage).
//! - [`Stop`]: a stop a socket asked for, which the turn's engine race hears.
//! - [`Flood`]: frames per socket per window; a socket that floods is closed.

use chat_core::live::{
    delta_frame, done_frame, error_frame, player_frame, sse_delta, sse_error, sse_event, TurnSeq,
};
use chat_core::turn::{Answered, TurnSink};
use futures_channel::mpsc::UnboundedSender;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::task::{Poll, Waker};
use worker::{State, WebSocket};

/// A socket's close code when it floods: policy violation.
pub const FLOOD_CLOSE_CODE: u16 = 1008;
/// Frames a socket may send per window unless `LIVE_FRAME_LIMIT` says otherwise: a player
/// types far slower, and turns are limited per minute anyway.
pub const FLOOD_FRAMES: u32 = 20;
pub const FLOOD_WINDOW_MS: i64 = 10_000;

/// The frames a reconnecting socket may have missed, numbered.
#[derive(Default)]
pub struct Frames {
    pub previous: Vec<(i64, String)>,
    pub current: Vec<(i64, String)>,
    /// The base of the newest turn's frames, once known in this instance.
    pub last_base: Option<i64>,
}

impl Frames {
    /// The frames numbered after `after`, oldest first.
    pub fn after(&self, after: i64) -> Vec<String> {
        self.previous
            .iter()
            .chain(&self.current)
            .filter(|(seq, _)| *seq > after)
            .map(|(_, f)| f.clone())
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.previous.is_empty() && self.current.is_empty()
    }
}

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

/// A turn's events, told to every socket of the session (and to an SSE response).
pub struct LiveSink<'a> {
    pub state: &'a State,
    pub frames: &'a RefCell<Frames>,
    pub key: Option<String>,
    /// The turn's frame numbers, from its `begin`.
    seq: Option<TurnSeq>,
    /// Text of deltas past the numbered ones, sent at the end.
    rest: String,
    /// The base written with the turn's row (the store reads it).
    pub frame_base: Rc<Cell<Option<i64>>>,
    /// The SSE response's body, for a streamed HTTP turn.
    pub sse: Option<UnboundedSender<Vec<u8>>>,
    /// Who hears the frames.
    pub audience: Audience,
}

/// Who hears a turn's frames.
pub enum Audience {
    /// Every socket of the session; the frames are kept for reconnects.
    Session,
    /// One socket only (a key's replay, asked over that socket).
    Socket(WebSocket),
    /// No socket (a key's replay, asked over HTTP).
    Nobody,
}

impl<'a> LiveSink<'a> {
    pub fn new(
        state: &'a State,
        frames: &'a RefCell<Frames>,
        key: Option<String>,
        frame_base: Rc<Cell<Option<i64>>>,
    ) -> Self {
        Self {
            state,
            frames,
            key,
            seq: None,
            rest: String::new(),
            frame_base,
            sse: None,
            audience: Audience::Session,
        }
    }

    fn tell(&self, seq: i64, frame: String) {
        match &self.audience {
            Audience::Session => {
                broadcast(self.state, &frame);
                self.frames.borrow_mut().current.push((seq, frame));
            }
            Audience::Socket(ws) => {
                send_frame(ws, &frame);
            }
            Audience::Nobody => {}
        }
    }

    fn write_sse(&self, event: String) {
        if let Some(tx) = &self.sse {
            let _ = tx.unbounded_send(event.into_bytes());
        }
    }

    /// Ends the turn: what did not get a number of its own, then `done` or `error` (to the
    /// sockets and the SSE response).
    pub fn end(&mut self, outcome: &Result<Answered, (&'static str, String)>) {
        let seq = self.seq.unwrap_or_else(|| {
            let last = self.frames.borrow().last_base;
            TurnSeq::start(worker_support::clock::now_ms(), last)
        });
        let key = self.key.as_deref();
        if !self.rest.is_empty() {
            let text = std::mem::take(&mut self.rest);
            self.tell(seq.rest(), delta_frame(key, seq.rest(), &text));
        }
        let frame = match outcome {
            Ok(answered) => {
                self.write_sse(sse_event("done", &answered.body));
                done_frame(key, seq.last(), &answered.body)
            }
            Err((code, message)) => {
                self.write_sse(sse_error(code, message));
                error_frame(key, seq.last(), code, message)
            }
        };
        self.tell(seq.last(), frame);
    }
}

impl TurnSink for LiveSink<'_> {
    fn begin(&mut self, message: &str) {
        let mut frames = self.frames.borrow_mut();
        let seq = TurnSeq::start(worker_support::clock::now_ms(), frames.last_base);
        frames.last_base = Some(seq.base);
        if matches!(self.audience, Audience::Session) {
            frames.previous = std::mem::take(&mut frames.current);
        }
        drop(frames);
        self.frame_base.set(Some(seq.base));
        self.seq = Some(seq);
        self.tell(
            seq.player(),
            player_frame(self.key.as_deref(), seq.player(), message),
        );
    }

    fn delta(&mut self, text: &str) {
        self.write_sse(sse_delta(text));
        let Some(seq) = self.seq.as_mut() else {
            return;
        };
        match seq.delta() {
            Some(n) => {
                let frame = delta_frame(self.key.as_deref(), n, text);
                self.tell(n, frame);
            }
            None => self.rest.push_str(text),
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

/// What a live socket carries across hibernation: which socket it is, and whose.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Attachment {
    pub socket: u32,
    pub identity: chat_core::identity::Identity,
}

/// An `error` frame for one socket, numbered after everything the session sent.
pub fn error_to(
    ws: &WebSocket,
    frames: &RefCell<Frames>,
    key: Option<&str>,
    code: &str,
    message: &str,
) {
    let mut f = frames.borrow_mut();
    let seq = TurnSeq::start(worker_support::clock::now_ms(), f.last_base);
    f.last_base = Some(seq.base);
    send_frame(ws, &error_frame(key, seq.last(), code, message));
}
