//! The session's live socket (`GET /api/sessions/{id}/live`): the frames a client sends, the
//! frames the session's actor sends to every socket of the session, and the frame numbers
//! that let a client reconnect where it left off.
//!
//! Every frame is JSON text. A client sends
//! `{"type":"turn","key","message","locale"?}` or `{"type":"stop","key"}`; the actor sends
//! `player`, `delta`, `done` and `error` frames, each with the turn's `key` and a `seq`.
//!
//! **Frame numbers.** `seq` increases through the session, across reconnects and instance
//! restarts, without a write per frame: a turn's frames are numbered from a base taken from
//! the clock when the turn starts (`now_ms * 1000`, and at least 1000 past the last turn's
//! base), `player` at the base, the deltas after it, and `done` or `error` at base + 999.
//! The base is stored with the turn, so the last finished turn can be sent again after the
//! actor restarted: its message, its whole reply as one delta (base + 998), and its answer.

use crate::character::Locale;
use crate::domain::IdempotencyKey;
use crate::refusal::Refusal;
use crate::request::MAX_BODY_BYTES;
use serde_json::{json, Value};

/// The largest frame a client may send, as an HTTP body.
pub const MAX_FRAME_BYTES: usize = MAX_BODY_BYTES;
/// Frame numbers a turn may use: player, deltas, the collapsed reply, and the last frame.
pub const FRAMES_PER_TURN: i64 = 1000;
const LAST: i64 = FRAMES_PER_TURN - 1;
const COLLAPSED: i64 = FRAMES_PER_TURN - 2;
/// Numbers a turn hands out one by one, to its deltas and to the refusals sent while it
/// runs; past them a turn's text waits for the one at `COLLAPSED - 1`.
const NUMBERED: i64 = FRAMES_PER_TURN - 4;
/// Of those, the ones deltas may take: the rest are kept for refusals, so that a socket
/// refused while a long reply is written still gets a number above everything it saw.
const NUMBERED_DELTAS: i64 = NUMBERED - 96;
/// Refusals kept for reconnecting sockets between two turns, newest last.
const KEPT_ASIDE: usize = 32;
/// What a client asks over its socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    Turn {
        key: IdempotencyKey,
        message: String,
        locale: Option<Locale>,
    },
    Stop {
        key: IdempotencyKey,
    },
}

fn bad(code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal::invalid(code, message)
}

impl ClientFrame {
    /// Reads a client's frame with the HTTP API's rules: the same message limits, and the
    /// `Idempotency-Key` rules for `key`, which every frame must carry.
    pub fn parse(text: &str) -> Result<Self, Refusal> {
        if text.len() > MAX_FRAME_BYTES {
            return Err(crate::request::too_large(MAX_FRAME_BYTES));
        }
        let value: Value = serde_json::from_str(text)
            .map_err(|e| bad("malformed_json", format!("the frame is not JSON: {e}")))?;
        let Some(frame) = value.as_object() else {
            return Err(bad("invalid_body", "a frame is a JSON object"));
        };
        let key = match frame.get("key") {
            None | Some(Value::Null) => {
                return Err(bad("missing_field", "every frame needs a 'key'"))
            }
            Some(Value::String(k)) if IdempotencyKey::parse(k.as_str()).is_ok() => {
                IdempotencyKey::parse(k.as_str()).expect("checked just above")
            }
            Some(_) => {
                return Err(bad(
                    "invalid_idempotency_key",
                    "'key' must be 1 to 128 visible ASCII characters",
                ))
            }
        };
        match frame.get("type").and_then(Value::as_str) {
            Some("turn") => {
                // The message and locale follow `POST /api/chat`'s rules exactly.
                let mut body = frame.clone();
                body.remove("type");
                body.remove("key");
                body.insert("sessionId".into(), json!(uuid::Uuid::nil()));
                let turn = crate::request::ChatTurn::parse(
                    serde_json::to_string(&body).unwrap_or_default().as_bytes(),
                )?;
                Ok(Self::Turn {
                    key,
                    message: turn.message,
                    locale: turn.locale,
                })
            }
            Some("stop") => Ok(Self::Stop { key }),
            Some(other) => Err(bad(
                "unknown_frame",
                format!("frames are of type 'turn' or 'stop', not {other:?}"),
            )),
            None => Err(bad("missing_field", "every frame needs a 'type'")),
        }
    }
}

/// The frame numbers of one turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TurnSeq {
    pub base: i64,
    /// Numbers handed out after `player`.
    given: i64,
}

impl TurnSeq {
    /// The numbers of a turn starting at `now_ms`, after a turn numbered from `last_base`.
    pub fn start(now_ms: i64, last_base: Option<i64>) -> Self {
        let base = (now_ms * FRAMES_PER_TURN).max(last_base.map_or(0, |b| b + FRAMES_PER_TURN));
        Self { base, given: 0 }
    }

    pub fn player(&self) -> i64 {
        self.base
    }

    /// The next delta's number, or `None` when deltas have numbered all they may: then the
    /// text waits for [`Self::rest`].
    pub fn delta(&mut self) -> Option<i64> {
        (self.given < NUMBERED_DELTAS).then(|| self.take())
    }

    /// The next number for a frame sent aside while the turn runs (a refusal to one socket),
    /// or `None` when the turn has given every number it may.
    pub fn aside(&mut self) -> Option<i64> {
        (self.given < NUMBERED).then(|| self.take())
    }

    fn take(&mut self) -> i64 {
        self.given += 1;
        self.base + self.given
    }

    /// The number of the delta that carries what did not get a number of its own.
    pub fn rest(&self) -> i64 {
        self.base + NUMBERED + 1
    }

    /// The turn's last frame: `done` or `error`.
    pub fn last(&self) -> i64 {
        self.base + LAST
    }
}

/// A frame the session's actor sends: JSON text with the turn's `key` and a `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The player's message: the turn is being answered.
    Player {
        key: Option<IdempotencyKey>,
        seq: i64,
        message: String,
    },
    /// More of the reply, in order.
    Delta {
        key: Option<IdempotencyKey>,
        seq: i64,
        text: String,
    },
    /// The answer: the exact JSON body of `POST /api/chat`.
    Done {
        key: Option<IdempotencyKey>,
        seq: i64,
        answer: String,
    },
    /// The turn, or a frame, was refused.
    Error {
        key: Option<IdempotencyKey>,
        seq: i64,
        code: &'static str,
        message: String,
    },
}

impl Frame {
    pub fn seq(&self) -> i64 {
        match self {
            Self::Player { seq, .. }
            | Self::Delta { seq, .. }
            | Self::Done { seq, .. }
            | Self::Error { seq, .. } => *seq,
        }
    }

    /// The frame as a socket receives it.
    pub fn to_json(&self) -> String {
        match self {
            Self::Player { key, seq, message } => player_frame(key.as_ref(), *seq, message),
            Self::Delta { key, seq, text } => delta_frame(key.as_ref(), *seq, text),
            Self::Done { key, seq, answer } => done_frame(key.as_ref(), *seq, answer),
            Self::Error {
                key,
                seq,
                code,
                message,
            } => error_frame(key.as_ref(), *seq, code, message),
        }
    }

    /// The frame as an event of a streamed `POST /api/chat` (the player's message is not
    /// one: the client sent it).
    pub fn to_sse(&self) -> Option<String> {
        match self {
            Self::Player { .. } => None,
            Self::Delta { text, .. } => Some(sse_delta(text)),
            Self::Done { answer, .. } => Some(sse_event("done", answer)),
            Self::Error { code, message, .. } => Some(sse_error(code, message)),
        }
    }
}

/// What a reconnecting socket may have missed, and the numbers of every frame the session
/// sends: the frames of the turn running and of the last finished one, and the refusals
/// sent since. One per session's actor, in memory (after a restart the last finished turn
/// is rebuilt from storage, [`finished_turn`]).
///
/// Every frame takes its number here, so that whatever a socket receives, a played turn's
/// frames, a key's replay or a refusal of its own, is numbered above all it received
/// before: a refusal sent while a turn runs takes the turn's next number, and the turn's
/// later frames come after it.
#[derive(Debug, Default)]
pub struct FrameLog {
    /// Frames kept for reconnects, in number order, each marked when it was sent aside.
    kept: Vec<(i64, String, bool)>,
    /// The base of the newest numbers handed out, once known in this instance.
    last_base: Option<i64>,
    /// Whether `last_base` was read from storage (or numbers were handed out) here.
    known: bool,
    /// The turn running now.
    running: Option<TurnSeq>,
    /// The base of the last turn played: its frames and everything after are kept.
    last_turn: Option<i64>,
}

impl FrameLog {
    /// Whether this instance knows where the numbers stand (else read it from storage and
    /// [`Self::restore`] it).
    pub fn knows_base(&self) -> bool {
        self.known
    }

    /// Where the numbers stand after a restart: the newest turn's base in storage.
    pub fn restore(&mut self, stored: Option<i64>) {
        if !self.known {
            self.last_base = self.last_base.max(stored);
            self.known = true;
        }
    }

    /// A played turn starts: its numbers. The frames before the last finished turn are
    /// dropped.
    pub fn begin_turn(&mut self, now_ms: i64) -> TurnSeq {
        let seq = TurnSeq::start(now_ms, self.last_base);
        match self.last_turn {
            Some(previous) => self.kept.retain(|(n, _, _)| *n >= previous),
            None => self.kept.clear(),
        }
        self.last_base = Some(seq.base);
        self.known = true;
        self.last_turn = Some(seq.base);
        self.running = Some(seq);
        seq
    }

    /// The running turn's next delta number (`None`: its text waits for the last delta).
    pub fn delta(&mut self) -> Option<i64> {
        self.running.as_mut().and_then(TurnSeq::delta)
    }

    /// The running turn's numbers.
    pub fn running(&self) -> Option<TurnSeq> {
        self.running
    }

    /// The running turn ended (its last frame is kept).
    pub fn end_turn(&mut self) {
        self.running = None;
    }

    /// Numbers for frames sent aside from the session's turns, to the one who asked (a key's
    /// replay), while no turn runs: a span of their own after everything sent.
    pub fn aside_turn(&mut self, now_ms: i64) -> TurnSeq {
        let seq = TurnSeq::start(now_ms, self.last_base);
        self.last_base = Some(seq.base);
        self.known = true;
        seq
    }

    /// A number for one frame sent aside (a refusal to one socket): the running turn's next
    /// one, or a span of its own when none runs. `None` when the running turn has given all
    /// its numbers: the socket that asks that often is closed instead.
    pub fn aside(&mut self, now_ms: i64) -> Option<i64> {
        match self.running.as_mut() {
            Some(turn) => turn.aside(),
            None => Some(self.aside_turn(now_ms).last()),
        }
    }

    /// Keeps a frame for reconnecting sockets.
    pub fn keep(&mut self, frame: &Frame, aside: bool) {
        self.kept.push((frame.seq(), frame.to_json(), aside));
        self.kept.sort_by_key(|(n, _, _)| *n);
        if aside && self.kept.iter().filter(|k| k.2).count() > KEPT_ASIDE {
            if let Some(oldest) = self.kept.iter().position(|k| k.2) {
                self.kept.remove(oldest);
            }
        }
    }

    /// A refusal for one socket, numbered and kept: the frame to send, or `None` when the
    /// running turn has no number left for it.
    pub fn refusal(
        &mut self,
        now_ms: i64,
        key: Option<&IdempotencyKey>,
        refusal: &Refusal,
    ) -> Option<Frame> {
        let frame = Frame::Error {
            key: key.cloned(),
            seq: self.aside(now_ms)?,
            code: refusal.code,
            message: refusal.message.clone(),
        };
        self.keep(&frame, true);
        Some(frame)
    }

    /// The kept frames numbered after `after`, oldest first.
    pub fn after(&self, after: i64) -> Vec<String> {
        self.kept
            .iter()
            .filter(|(n, _, _)| *n > after)
            .map(|(_, f, _)| f.clone())
            .collect()
    }

    /// Whether this instance has kept anything (after a restart it has not: the last
    /// finished turn is rebuilt from storage).
    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    /// How many frames are kept (bounded: a turn's, the last one's, and a few refusals).
    pub fn len(&self) -> usize {
        self.kept.len()
    }
}

/// `{"type":"player","key","seq","message"}`. A turn sent without a key (over HTTP) has a
/// null `key` in its frames.
pub fn player_frame(key: Option<&IdempotencyKey>, seq: i64, message: &str) -> String {
    json!({ "type": "player", "key": key, "seq": seq, "message": message }).to_string()
}

/// `{"type":"delta","key","seq","text"}`.
pub fn delta_frame(key: Option<&IdempotencyKey>, seq: i64, text: &str) -> String {
    json!({ "type": "delta", "key": key, "seq": seq, "text": text }).to_string()
}

/// `{"type":"done","key","seq","answer"}`, with the answer's exact JSON (the body of
/// `POST /api/chat`) inside.
pub fn done_frame(key: Option<&IdempotencyKey>, seq: i64, answer_json: &str) -> String {
    let answer: Value = serde_json::from_str(answer_json).unwrap_or(Value::Null);
    json!({ "type": "done", "key": key, "seq": seq, "answer": answer }).to_string()
}

/// `{"type":"error","key","seq","error":{"code","message"}}`; `key` is null for a frame
/// that could not be read.
pub fn error_frame(key: Option<&IdempotencyKey>, seq: i64, code: &str, message: &str) -> String {
    json!({
        "type": "error",
        "key": key,
        "seq": seq,
        "error": { "code": code, "message": message },
    })
    .to_string()
}

/// One server-sent event of `POST /api/chat` with `Accept: text/event-stream`: `delta`
/// (`{"text"}`), `done` (the plain request's answer, byte for byte) or `error`
/// (`{"error":{"code","message"}}`). `data` is one line of JSON.
pub fn sse_event(name: &str, data: &str) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// The `data` of an SSE `delta` event.
pub fn sse_delta(text: &str) -> String {
    sse_event("delta", &json!({ "text": text }).to_string())
}

/// The `data` of an SSE `error` event.
pub fn sse_error(code: &str, message: &str) -> String {
    sse_event(
        "error",
        &json!({ "error": { "code": code, "message": message } }).to_string(),
    )
}

/// A whole turn in three frames, numbered from `base`: the message, the whole reply as one
/// delta, and the answer. A key's replay is sent so, and the last finished turn is rebuilt
/// so from storage after the actor restarted (with the numbers its clients saw: `player`
/// and `done` keep theirs, and the reply comes whole in place of its pieces).
pub fn whole_turn(
    base: i64,
    key: Option<&IdempotencyKey>,
    message: &str,
    reply: &str,
    answer_json: &str,
) -> [Frame; 3] {
    [
        Frame::Player {
            key: key.cloned(),
            seq: base,
            message: message.to_owned(),
        },
        Frame::Delta {
            key: key.cloned(),
            seq: base + COLLAPSED,
            text: reply.to_owned(),
        },
        Frame::Done {
            key: key.cloned(),
            seq: base + LAST,
            answer: answer_json.to_owned(),
        },
    ]
}

/// [`whole_turn`] as JSON, with the numbers.
pub fn finished_turn(
    base: i64,
    key: Option<&IdempotencyKey>,
    message: &str,
    reply: &str,
    answer_json: &str,
) -> Vec<(i64, String)> {
    whole_turn(base, key, message, reply, answer_json)
        .iter()
        .map(|f| (f.seq(), f.to_json()))
        .collect()
}

/// The `seq` of a frame this module made.
pub fn seq_of(frame: &str) -> Option<i64> {
    serde_json::from_str::<Value>(frame).ok()?["seq"].as_i64()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> IdempotencyKey {
        IdempotencyKey::parse(k).unwrap()
    }

    #[test]
    fn client_frames_follow_the_http_rules() {
        assert_eq!(
            ClientFrame::parse(r#"{"type":"turn","key":"k1","message":" hi ","locale":"ja"}"#),
            Ok(ClientFrame::Turn {
                key: key("k1"),
                message: "hi".into(),
                locale: Some(Locale::Ja)
            })
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"stop","key":"k1"}"#),
            Ok(ClientFrame::Stop { key: key("k1") })
        );
        let code = |t: &str| ClientFrame::parse(t).unwrap_err().code;
        assert_eq!(code("not json"), "malformed_json");
        assert_eq!(code("[1]"), "invalid_body");
        assert_eq!(code(r#"{"type":"turn","message":"hi"}"#), "missing_field");
        assert_eq!(
            code(r#"{"type":"turn","key":"a b","message":"hi"}"#),
            "invalid_idempotency_key"
        );
        assert_eq!(code(r#"{"type":"dance","key":"k"}"#), "unknown_frame");
        assert_eq!(code(r#"{"key":"k"}"#), "missing_field");
        assert_eq!(
            code(r#"{"type":"turn","key":"k","message":"   "}"#),
            "empty_field"
        );
        let long = format!(
            r#"{{"type":"turn","key":"k","message":"{}"}}"#,
            "a".repeat(2001)
        );
        assert_eq!(code(&long), "field_too_long");
        let huge = format!(
            r#"{{"type":"turn","key":"k","message":"{}"}}"#,
            "a".repeat(40_000)
        );
        assert_eq!(code(&huge), "body_too_large");
        assert_eq!(
            code(r#"{"type":"turn","key":"k","message":"a\u0007"}"#),
            "invalid_field"
        );
    }

    #[test]
    fn frame_numbers_increase_through_turns_and_restarts() {
        let mut t = TurnSeq::start(1_000, None);
        assert_eq!(t.player(), 1_000_000);
        let deltas: Vec<i64> = std::iter::from_fn(|| t.delta()).collect();
        assert_eq!(deltas.len() as i64, NUMBERED_DELTAS);
        assert!(deltas.windows(2).all(|w| w[0] < w[1]));
        assert!(*deltas.last().unwrap() < t.rest() && t.rest() < t.base + COLLAPSED);
        assert!(t.base + COLLAPSED < t.last());
        // The next turn in the same millisecond still numbers after this one.
        let next = TurnSeq::start(1_000, Some(t.base));
        assert!(next.player() > t.last());
        // After a restart the clock alone keeps them increasing.
        assert!(TurnSeq::start(1_001, None).player() > t.last());
        let frames = finished_turn(
            t.base,
            Some(&key("k")),
            "hi",
            "hello",
            r#"{"reply":"hello"}"#,
        );
        let seqs: Vec<i64> = frames
            .iter()
            .map(|(s, f)| {
                assert_eq!(seq_of(f), Some(*s));
                *s
            })
            .collect();
        assert_eq!(seqs, [t.player(), t.base + COLLAPSED, t.last()]);
        let done: Value = serde_json::from_str(&frames[2].1).unwrap();
        assert_eq!(
            done["answer"]["reply"], "hello",
            "the answer is embedded as JSON"
        );
    }

    fn numbers(frames: &[String]) -> Vec<i64> {
        frames.iter().map(|f| seq_of(f).unwrap()).collect()
    }

    #[test]
    fn a_refusal_while_a_turn_runs_is_numbered_inside_it() {
        let mut log = FrameLog::default();
        log.restore(None);
        let turn = log.begin_turn(1_000);
        let player = Frame::Player {
            key: Some(key("k")),
            seq: turn.player(),
            message: "hi".into(),
        };
        log.keep(&player, false);
        let first = log.delta().unwrap();
        log.keep(
            &Frame::Delta {
                key: Some(key("k")),
                seq: first,
                text: "a".into(),
            },
            false,
        );
        // A socket is refused now: its error comes after the delta it saw...
        let refused = log
            .refusal(
                5_000,
                Some(&key("other")),
                &Refusal::invalid("nothing_to_stop", "x"),
            )
            .unwrap();
        assert!(refused.seq() > first);
        // ...and before everything the turn sends after it, its end included.
        let next = log.delta().unwrap();
        assert!(next > refused.seq());
        let last = log.running().unwrap().last();
        assert!(last > next);
        log.keep(
            &Frame::Done {
                key: Some(key("k")),
                seq: last,
                answer: "{}".into(),
            },
            false,
        );
        log.end_turn();
        // A socket that reconnects after the refusal gets the rest of the turn, done included.
        let missed = log.after(refused.seq());
        assert_eq!(numbers(&missed), [last]);
        assert_eq!(
            numbers(&log.after(0)),
            [turn.player(), first, refused.seq(), last]
        );
        // A refusal between turns comes after the turn, and the next turn after it.
        let between = log.aside(1_000).unwrap();
        assert!(between > last);
        assert!(log.begin_turn(1_000).player() > between);
    }

    #[test]
    fn a_restarted_log_numbers_after_what_storage_says() {
        let mut log = FrameLog::default();
        assert!(!log.knows_base());
        log.restore(Some(9_000_000));
        assert!(log.knows_base());
        assert!(log.begin_turn(1).player() >= 9_001_000);
        // A second restore changes nothing once the numbers are known.
        log.restore(Some(0));
        assert!(log.begin_turn(1).player() >= 9_002_000);
    }

    #[test]
    fn only_the_last_finished_turn_and_a_few_refusals_are_kept() {
        let mut log = FrameLog::default();
        log.restore(None);
        for turn in 0..3 {
            let t = log.begin_turn(1_000 + turn);
            log.keep(
                &Frame::Player {
                    key: None,
                    seq: t.player(),
                    message: format!("{turn}"),
                },
                false,
            );
            log.end_turn();
        }
        assert_eq!(
            log.len(),
            2,
            "the last two turns' frames: the finished one and the newest"
        );
        for _ in 0..100 {
            log.refusal(2_000, None, &Refusal::invalid("bad", "bad"))
                .unwrap();
        }
        assert_eq!(log.len(), 2 + KEPT_ASIDE);
    }

    #[test]
    fn a_turn_keeps_numbers_for_refusals_past_its_deltas() {
        let mut t = TurnSeq::start(1, None);
        while t.delta().is_some() {}
        let mut aside = Vec::new();
        while let Some(n) = t.aside() {
            aside.push(n);
        }
        assert_eq!(aside.len() as i64, NUMBERED - NUMBERED_DELTAS);
        assert!(*aside.last().unwrap() < t.rest() && t.rest() < t.last());
    }
}
