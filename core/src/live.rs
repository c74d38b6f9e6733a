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
use crate::ids::valid_idempotency_key;
use crate::refusal::Refusal;
use crate::request::MAX_BODY_BYTES;
use serde_json::{json, Value};

/// The largest frame a client may send, as an HTTP body.
pub const MAX_FRAME_BYTES: usize = MAX_BODY_BYTES;
/// Frame numbers a turn may use: player, deltas, the collapsed reply, and the last frame.
pub const FRAMES_PER_TURN: i64 = 1000;
const LAST: i64 = FRAMES_PER_TURN - 1;
const COLLAPSED: i64 = FRAMES_PER_TURN - 2;
/// Deltas numbered one by one; more are gathered into the one at `COLLAPSED - 1`.
const NUMBERED_DELTAS: i64 = FRAMES_PER_TURN - 4;

/// What a client asks over its socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    Turn {
        key: String,
        message: String,
        locale: Option<Locale>,
    },
    Stop {
        key: String,
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
            Some(Value::String(k)) if valid_idempotency_key(k) => k.clone(),
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
    deltas: i64,
}

impl TurnSeq {
    /// The numbers of a turn starting at `now_ms`, after a turn numbered from `last_base`.
    pub fn start(now_ms: i64, last_base: Option<i64>) -> Self {
        let base = (now_ms * FRAMES_PER_TURN).max(last_base.map_or(0, |b| b + FRAMES_PER_TURN));
        Self { base, deltas: 0 }
    }

    pub fn player(&self) -> i64 {
        self.base
    }

    /// The next delta's number, or `None` when the turn has numbered all it may: then the
    /// text waits for [`Self::rest`].
    pub fn delta(&mut self) -> Option<i64> {
        (self.deltas < NUMBERED_DELTAS).then(|| {
            self.deltas += 1;
            self.base + self.deltas
        })
    }

    /// The number of the delta that carries what did not get a number of its own.
    pub fn rest(&self) -> i64 {
        self.base + NUMBERED_DELTAS + 1
    }

    /// The turn's last frame: `done` or `error`.
    pub fn last(&self) -> i64 {
        self.base + LAST
    }
}

/// `{"type":"player","key","seq","message"}`. A turn sent without a key (over HTTP) has a
/// null `key` in its frames.
pub fn player_frame(key: Option<&str>, seq: i64, message: &str) -> String {
    json!({ "type": "player", "key": key, "seq": seq, "message": message }).to_string()
}

/// `{"type":"delta","key","seq","text"}`.
pub fn delta_frame(key: Option<&str>, seq: i64, text: &str) -> String {
    json!({ "type": "delta", "key": key, "seq": seq, "text": text }).to_string()
}

/// `{"type":"done","key","seq","answer"}`, with the answer's exact JSON (the body of
/// `POST /api/chat`) inside.
pub fn done_frame(key: Option<&str>, seq: i64, answer_json: &str) -> String {
    let answer: Value = serde_json::from_str(answer_json).unwrap_or(Value::Null);
    json!({ "type": "done", "key": key, "seq": seq, "answer": answer }).to_string()
}

/// `{"type":"error","key","seq","error":{"code","message"}}`; `key` is null for a frame
/// that could not be read.
pub fn error_frame(key: Option<&str>, seq: i64, code: &str, message: &str) -> String {
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

/// The frames of a finished turn as its actor can send them again from storage: the
/// message, the whole reply as one delta, and the answer.
pub fn finished_turn(
    base: i64,
    key: Option<&str>,
    message: &str,
    reply: &str,
    answer_json: &str,
) -> Vec<(i64, String)> {
    vec![
        (base, player_frame(key, base, message)),
        (base + COLLAPSED, delta_frame(key, base + COLLAPSED, reply)),
        (base + LAST, done_frame(key, base + LAST, answer_json)),
    ]
}

/// The `seq` of a frame this module made.
pub fn seq_of(frame: &str) -> Option<i64> {
    serde_json::from_str::<Value>(frame).ok()?["seq"].as_i64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frames_follow_the_http_rules() {
        assert_eq!(
            ClientFrame::parse(r#"{"type":"turn","key":"k1","message":" hi ","locale":"ja"}"#),
            Ok(ClientFrame::Turn {
                key: "k1".into(),
                message: "hi".into(),
                locale: Some(Locale::Ja)
            })
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"stop","key":"k1"}"#),
            Ok(ClientFrame::Stop { key: "k1".into() })
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
        let frames = finished_turn(t.base, Some("k"), "hi", "hello", r#"{"reply":"hello"}"#);
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
}
