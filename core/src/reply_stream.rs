//! The reply's text pulled out of a model's answer while the answer streams.
//!
//! Both remote engines ask for one JSON object, `{"reply", "score", "emotion"}`, with the
//! reply first (the prompt says so, and the schema lists it first). Streamed, the answer
//! arrives as server-sent events, each adding a fragment of the JSON text; cut anywhere,
//! even inside a UTF-8 character or an escape sequence. Three small readers, each fed as
//! bytes arrive and each tested on answers cut at every byte:
//!
//! - [`EventStream`]: the bytes of a `text/event-stream` → the `data` of each event;
//! - [`openai_fragment`] and [`workers_ai_fragment`]: an event's data → the text it adds to
//!   the answer (OpenAI's `choices[0].delta.content`, Workers AI's `response`);
//! - [`ReplyText`]: the answer's text, fragment by fragment → the reply's characters, decoded
//!   from JSON, as soon as they are complete.
//!
//! Score and emotion come with the end of the answer, read strictly from the whole text
//! (`llm::parse_answer_text`). Why JSON and not a plain-text reply followed by a trailer:
//! see docs/design.md, "Replies streamed as they are written".

/// The `data` of each event of a server-sent event stream, fed as bytes arrive.
#[derive(Debug, Default)]
pub struct EventStream {
    /// Bytes after the last complete line.
    partial: Vec<u8>,
    /// The data lines of the event being read.
    data: Vec<String>,
}

impl EventStream {
    /// Feeds `bytes`; returns the data of every event they complete, in order. A line is
    /// decoded only once whole, so a UTF-8 character cut between chunks is never split.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.partial.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line[..line.len() - 1]);
            let line = line.strip_suffix('\r').unwrap_or(&line);
            if line.is_empty() {
                if !self.data.is_empty() {
                    events.push(self.data.join("\n"));
                    self.data.clear();
                }
            } else if let Some(value) = line.strip_prefix("data:") {
                self.data
                    .push(value.strip_prefix(' ').unwrap_or(value).to_owned());
            }
            // Comments (`:`), `event:`, `id:` and `retry:` lines carry no answer text.
        }
        events
    }

    /// The data of an event the stream ended without closing.
    pub fn finish(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.partial);
        if !rest.is_empty() {
            let line = String::from_utf8_lossy(&rest);
            if let Some(value) = line.trim_end_matches('\r').strip_prefix("data:") {
                self.data
                    .push(value.strip_prefix(' ').unwrap_or(value).to_owned());
            }
        }
        (!self.data.is_empty()).then(|| std::mem::take(&mut self.data).join("\n"))
    }
}

/// What one event of a streamed answer means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fragment {
    /// More of the answer's text.
    Text(String),
    /// The end of the answer (`[DONE]`).
    Done,
    /// Nothing for the answer (a role announcement, usage figures, a keep-alive).
    Nothing,
}

/// An event of an OpenAI-compatible chat-completions stream.
pub fn openai_fragment(data: &str) -> Result<Fragment, String> {
    fragment(data, |v| v["choices"][0]["delta"]["content"].as_str())
}

/// An event of a Workers AI text-generation stream.
pub fn workers_ai_fragment(data: &str) -> Result<Fragment, String> {
    fragment(data, |v| v["response"].as_str())
}

fn fragment(
    data: &str,
    text: impl for<'a> Fn(&'a serde_json::Value) -> Option<&'a str>,
) -> Result<Fragment, String> {
    let data = data.trim();
    if data == "[DONE]" {
        return Ok(Fragment::Done);
    }
    let value: serde_json::Value =
        serde_json::from_str(data).map_err(|e| format!("a streamed event is not JSON: {e}"))?;
    if let Some(error) = value.get("error").filter(|e| !e.is_null()) {
        return Err(format!("the stream reported an error: {error}"));
    }
    Ok(match text(&value) {
        Some(t) if !t.is_empty() => Fragment::Text(t.to_owned()),
        _ => Fragment::Nothing,
    })
}

/// Where the reader is in the answer's JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum At {
    /// Before the answer's opening `{` (a model may write a word or a code fence first).
    #[default]
    Before,
    /// Inside the object, outside any string.
    Object,
    /// Inside a string that is not the reply (a key, or another value).
    OtherString,
    /// Inside the reply's string: its characters are the reply.
    Reply,
    /// After the reply's closing quote: nothing more to stream.
    After,
}

/// The reply's text, decoded from the answer's JSON as its fragments arrive.
#[derive(Debug, Default)]
pub struct ReplyText {
    at: At,
    /// Objects and arrays open, once inside the answer.
    depth: u32,
    /// The last complete string at depth 1, and whether a `:` followed it (it was a key).
    last_string: String,
    string: String,
    key: Option<String>,
    /// An escape sequence being read (after its `\`).
    escape: Option<String>,
    /// The high half of a UTF-16 surrogate pair, waiting for its low half.
    high_surrogate: Option<u16>,
    /// Whether any non-space character of the reply was given out (leading spaces are not).
    started: bool,
}

impl ReplyText {
    /// Feeds a fragment of the answer's text; returns the reply's characters it completes.
    pub fn push(&mut self, fragment: &str) -> String {
        let mut out = String::new();
        for c in fragment.chars() {
            self.step(c, &mut out);
        }
        out
    }

    /// Whether the reply's string has closed.
    pub fn finished(&self) -> bool {
        self.at == At::After
    }

    fn step(&mut self, c: char, out: &mut String) {
        match self.at {
            At::Before => {
                if c == '{' {
                    self.at = At::Object;
                    self.depth = 1;
                }
            }
            At::After => {}
            At::Object => match c {
                '"' => {
                    self.string.clear();
                    // A string right after `"reply":` at the top level is the reply.
                    self.at = if self.depth == 1 && self.key.as_deref() == Some("reply") {
                        At::Reply
                    } else {
                        At::OtherString
                    };
                }
                ':' if self.depth == 1 => {
                    self.key = Some(std::mem::take(&mut self.last_string));
                }
                ',' if self.depth == 1 => self.key = None,
                '{' | '[' => self.depth += 1,
                '}' | ']' => self.depth = self.depth.saturating_sub(1),
                _ => {}
            },
            At::OtherString => {
                if let Some(esc) = &mut self.escape {
                    esc.push(c);
                    if esc.len() == 1 && esc != "u" || esc.len() == 5 {
                        self.escape = None;
                    }
                } else if c == '\\' {
                    self.escape = Some(String::new());
                } else if c == '"' {
                    self.last_string = std::mem::take(&mut self.string);
                    self.at = At::Object;
                } else {
                    self.string.push(c);
                }
            }
            At::Reply => {
                if let Some(esc) = &mut self.escape {
                    esc.push(c);
                    let done = match esc.as_str() {
                        "u" => false,
                        e if e.starts_with('u') => e.len() == 5,
                        _ => true,
                    };
                    if done {
                        let esc = self.escape.take().unwrap_or_default();
                        self.unescape(&esc, out);
                    }
                } else if c == '\\' {
                    self.escape = Some(String::new());
                } else if c == '"' {
                    self.at = At::After;
                } else {
                    self.emit(c, out);
                }
            }
        }
    }

    fn unescape(&mut self, esc: &str, out: &mut String) {
        let c = match esc {
            "n" => '\n',
            "t" => '\t',
            "r" => '\r',
            "b" => '\u{8}',
            "f" => '\u{c}',
            "/" => '/',
            "\\" => '\\',
            "\"" => '"',
            u if u.starts_with('u') => {
                let Ok(unit) = u16::from_str_radix(&u[1..], 16) else {
                    return;
                };
                match (self.high_surrogate.take(), unit) {
                    (None, 0xD800..=0xDBFF) => {
                        self.high_surrogate = Some(unit);
                        return;
                    }
                    (Some(high), 0xDC00..=0xDFFF) => {
                        let code = 0x10000
                            + ((u32::from(high) - 0xD800) << 10)
                            + (u32::from(unit) - 0xDC00);
                        char::from_u32(code).unwrap_or('\u{FFFD}')
                    }
                    (_, unit) => char::from_u32(u32::from(unit)).unwrap_or('\u{FFFD}'),
                }
            }
            _ => return,
        };
        self.emit(c, out);
    }

    /// Gives out one character of the reply, as the stored reply will have it: control
    /// characters other than line breaks and tabs are dropped, and so are leading spaces.
    fn emit(&mut self, c: char, out: &mut String) {
        if c.is_control() && c != '\n' && c != '\t' {
            return;
        }
        if !self.started && c.is_whitespace() {
            return;
        }
        self.started = true;
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const REPLY: &str = "Hi \"you\" \\ there\nsmile 😀 ü 嬉しい\ttab";

    fn answer() -> String {
        // serde escapes quotes, backslash and controls; the emoji is written as a
        // surrogate pair escape too, as some models do.
        json!({ "reply": REPLY, "score": 4, "emotion": "joy" })
            .to_string()
            .replace('😀', "\\ud83d\\ude00")
    }

    fn openai_stream(answer: &str, fragment_chars: usize) -> Vec<u8> {
        let chars: Vec<char> = answer.chars().collect();
        let mut out = String::from(": keep-alive\n\n");
        out.push_str(&format!(
            "data: {}\n\n",
            json!({ "choices": [{ "delta": { "role": "assistant" } }] })
        ));
        for piece in chars.chunks(fragment_chars) {
            let piece: String = piece.iter().collect();
            out.push_str(&format!(
                "data: {}\r\n\r\n",
                json!({ "choices": [{ "delta": { "content": piece } }] })
            ));
        }
        out.push_str("data: [DONE]\n\n");
        out.into_bytes()
    }

    fn read(chunks: &[&[u8]], fragment: fn(&str) -> Result<Fragment, String>) -> (String, bool) {
        let mut events = EventStream::default();
        let mut reply = ReplyText::default();
        let mut text = String::new();
        let mut done = false;
        for chunk in chunks {
            for data in events.push(chunk) {
                match fragment(&data).unwrap() {
                    Fragment::Text(t) => text.push_str(&reply.push(&t)),
                    Fragment::Done => done = true,
                    Fragment::Nothing => {}
                }
            }
        }
        (text, done)
    }

    fn expected() -> String {
        crate::text::without_controls(REPLY, true)
    }

    #[test]
    fn an_openai_stream_cut_at_every_byte_gives_the_reply() {
        for fragment_chars in [1, 3, 7, 1000] {
            let bytes = openai_stream(&answer(), fragment_chars);
            for cut in 0..=bytes.len() {
                let (text, done) = read(&[&bytes[..cut], &bytes[cut..]], openai_fragment);
                assert_eq!(
                    text,
                    expected(),
                    "fragments of {fragment_chars}, cut at {cut}"
                );
                assert!(done);
            }
        }
    }

    #[test]
    fn the_answer_text_cut_at_every_character_gives_the_reply() {
        let answer = answer();
        let chars: Vec<char> = answer.chars().collect();
        for a in 0..chars.len() {
            for b in [a, (a + 5).min(chars.len())] {
                let mut reply = ReplyText::default();
                let mut text = String::new();
                for part in [&chars[..a], &chars[a..b], &chars[b..]] {
                    text.push_str(&reply.push(&part.iter().collect::<String>()));
                }
                assert_eq!(text, expected(), "cut at {a} and {b}");
                assert!(reply.finished());
            }
        }
    }

    #[test]
    fn a_workers_ai_stream_without_json_mode_is_read_too() {
        let answer = format!("Sure! ```json\n{}\n```", answer());
        let mut body = String::new();
        for c in answer.chars() {
            body.push_str(&format!(
                "data: {}\n\n",
                json!({ "response": c.to_string() })
            ));
        }
        body.push_str("data: [DONE]\n\n");
        let bytes = body.into_bytes();
        for cut in (0..bytes.len()).step_by(7) {
            let (text, done) = read(&[&bytes[..cut], &bytes[cut..]], workers_ai_fragment);
            assert_eq!(text, expected());
            assert!(done);
        }
    }

    #[test]
    fn the_reply_is_found_wherever_it_stands_and_only_it_streams() {
        let mut r = ReplyText::default();
        let text = r.push(
            r#"{"score": 3, "meta": {"reply": "nested, not it"}, "emotion": "x:\"reply\"", "reply": "  it"}"#,
        );
        assert_eq!(text, "it");
        let mut r = ReplyText::default();
        assert_eq!(r.push(r#"{"reply":"\u0007bell\u0000"}"#), "bell");
        let mut r = ReplyText::default();
        assert_eq!(r.push(r#"{"score":1}"#), "");
        assert!(!r.finished());
    }

    #[test]
    fn stream_errors_and_noise_are_told_apart() {
        assert_eq!(openai_fragment("[DONE]"), Ok(Fragment::Done));
        assert_eq!(
            openai_fragment(r#"{"choices":[{"delta":{}}]}"#),
            Ok(Fragment::Nothing)
        );
        assert!(openai_fragment("not json").is_err());
        assert!(openai_fragment(r#"{"error":{"message":"overloaded"}}"#).is_err());
        assert_eq!(
            workers_ai_fragment(r#"{"response":"hi","p":"abc"}"#),
            Ok(Fragment::Text("hi".into()))
        );
        let mut s = EventStream::default();
        assert!(s.push(b"data: {\"a\":").is_empty());
        assert_eq!(s.finish(), Some("{\"a\":".into()));
        let mut s = EventStream::default();
        assert_eq!(s.push(b"data: one\ndata: two\n\n"), ["one\ntwo"]);
    }
}
