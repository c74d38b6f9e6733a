//! The optional LLM reply engine's wire format: an OpenAI-compatible chat-completions
//! request asking for a JSON answer `{ "reply", "score", "emotion" }`, with the session's
//! earlier turns as the conversation, and the strict reading of the answer. The Workers AI
//! engine (`workers_ai`) sends the same conversation and reads the same answer. The Worker does the HTTP call and falls back to the offline engine
//! on any error this module reports.

use crate::character::Locale;
use crate::engine::{HistoryTurn, Reply, ReplyInput};
use crate::record::{MAX_REPLY_BYTES, MAX_REPLY_CHARS};
use crate::scoring::{clamp_raw, Emotion, MAX_RAW, MIN_RAW};
use crate::text::without_controls;
use serde::Serialize;
use serde_json::{json, Value};

/// The path asked on the configured base URL (e.g. `https://api.openai.com/v1`).
pub const COMPLETIONS_PATH: &str = "/chat/completions";

/// The most characters of earlier turns sent with one request. The newest turns that fit are
/// sent; older ones are dropped whole, so the model never sees half a turn.
pub const HISTORY_BUDGET_CHARS: usize = 6000;

/// One message of a chat-completions conversation (OpenAI's and Workers AI's shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    pub role: &'static str,
    pub content: String,
}

impl ChatMessage {
    fn new(role: &'static str, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
}

/// Who the character is, whom it talks to, and the answer contract.
pub fn system_prompt(input: &ReplyInput<'_>) -> String {
    let language = match input.locale {
        Locale::Ja => "Japanese",
        Locale::En => "English",
    };
    format!(
        "You are {name}, a character in a dating game, talking with a player called {player}. Reply to the \
         player in {language}, in one or two sentences, in character, and remember what was said before. Then \
         judge how the player's last message makes {name} feel. Answer ONLY with a JSON object: \
         {{\"reply\": string, \"score\": integer from {MIN_RAW} (hostile) to {MAX_RAW} (delightful), \
         \"emotion\": one of \"joy\", \"happy\", \"neutral\", \"sad\", \"angry\"}}.",
        name = input.character.display_name(input.locale),
        player = input.player_name,
    )
}

/// How an earlier answer of the character is replayed to the model: in the same JSON shape it
/// is asked to answer in, so the conversation never teaches it another format.
pub fn assistant_content(turn: &HistoryTurn) -> String {
    json!({ "reply": turn.agent, "score": turn.score_raw, "emotion": turn.emotion.as_str() })
        .to_string()
}

/// The whole conversation for one reply: the system prompt, then the earlier turns as
/// alternating user and assistant messages (the newest that fit in `budget_chars`, in order),
/// then the player's new message.
pub fn conversation(input: &ReplyInput<'_>, budget_chars: usize) -> Vec<ChatMessage> {
    let mut kept = Vec::new();
    let mut used = 0;
    for turn in input.history.iter().rev() {
        let assistant = assistant_content(turn);
        let cost = turn.user.chars().count() + assistant.chars().count();
        if used + cost > budget_chars {
            break;
        }
        used += cost;
        kept.push((turn.user.as_str(), assistant));
    }
    let mut messages = Vec::with_capacity(2 * kept.len() + 2);
    messages.push(ChatMessage::new("system", system_prompt(input)));
    for (user, assistant) in kept.into_iter().rev() {
        messages.push(ChatMessage::new("user", user));
        messages.push(ChatMessage::new("assistant", assistant));
    }
    messages.push(ChatMessage::new("user", input.message));
    messages
}

/// The request body for one reply: streamed (server-sent events, read by
/// `reply_stream`), in JSON mode, which OpenAI-compatible endpoints keep while streaming.
pub fn request_body(model: &str, input: &ReplyInput<'_>) -> Value {
    json!({
        "model": model,
        "messages": conversation(input, HISTORY_BUDGET_CHARS),
        "response_format": { "type": "json_object" },
        "temperature": 0.7,
        "max_tokens": 300,
        "stream": true,
    })
}

/// Reads a chat-completions response body into a reply, or says why it cannot.
pub fn parse_completion(body: &str) -> Result<Reply, String> {
    let value: Value =
        serde_json::from_str(body).map_err(|e| format!("the response is not JSON: {e}"))?;
    let content = value["choices"][0]["message"]["content"]
        .as_str()
        .ok_or("the response has no choices[0].message.content")?;
    parse_answer_text(content, "llm")
}

/// Reads the model's answer text (a JSON object) into a reply made by `engine`. A model
/// asked without JSON mode (Workers AI cannot stream in it) may wrap the object in a word
/// or a code fence: then the text from its first `{` to its last `}` is read.
pub fn parse_answer_text(content: &str, engine: &'static str) -> Result<Reply, String> {
    let answer: Value = match serde_json::from_str(content.trim()) {
        Ok(v) => v,
        Err(e) => match (content.find('{'), content.rfind('}')) {
            (Some(a), Some(b)) if a < b => serde_json::from_str(&content[a..=b])
                .map_err(|_| format!("the answer is not JSON: {e}"))?,
            _ => return Err(format!("the answer is not JSON: {e}")),
        },
    };
    parse_answer(&answer, engine)
}

/// Reads the model's answer `{ "reply", "score", "emotion" }` strictly.
pub fn parse_answer(answer: &Value, engine: &'static str) -> Result<Reply, String> {
    // The model's text is outside text: control characters (other than line breaks) are
    // removed before it is stored or shown, as they are refused in the player's input.
    let text = answer["reply"]
        .as_str()
        .map(|t| without_controls(t, true))
        .ok_or("the answer has no reply")?;
    let text = text.trim();
    if text.is_empty() {
        return Err("the answer has no reply".into());
    }
    if text.chars().count() > MAX_REPLY_CHARS || text.len() > MAX_REPLY_BYTES {
        return Err(format!(
            "the reply is longer than {MAX_REPLY_CHARS} characters or {MAX_REPLY_BYTES} bytes"
        ));
    }
    let score = answer["score"]
        .as_f64()
        .filter(|s| s.is_finite())
        .ok_or("the answer has no numeric score")?;
    let score_raw = clamp_raw(score.round().clamp(-1000.0, 1000.0) as i32);
    let emotion = answer["emotion"]
        .as_str()
        .and_then(|e| Emotion::ALL.into_iter().find(|x| x.as_str() == e))
        .unwrap_or_else(|| Emotion::from_raw(score_raw));
    Ok(Reply {
        text: text.to_owned(),
        score_raw,
        emotion,
        engine,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::character::Character;

    fn completion(content: &str) -> String {
        json!({ "choices": [{ "message": { "role": "assistant", "content": content } }] })
            .to_string()
    }

    #[test]
    fn the_request_asks_for_json_in_character() {
        let input = ReplyInput {
            character: Character::Rin,
            locale: Locale::Ja,
            player_name: "Taro",
            history: &[],
            message: "こんにちは",
        };
        let body = request_body("gpt-test", &input);
        assert_eq!(body["model"], "gpt-test");
        assert_eq!(body["response_format"]["type"], "json_object");
        assert!(body["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("凛"));
        assert!(body["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("Japanese"));
        assert!(body["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("Taro"));
        assert_eq!(body["messages"][1]["content"], "こんにちは");
        assert_eq!(body["messages"].as_array().unwrap().len(), 2);
        assert_eq!(body["stream"], true);
    }

    fn turn(n: usize, chars: usize) -> HistoryTurn {
        HistoryTurn {
            user: format!("u{n}{}", "x".repeat(chars)),
            agent: format!("a{n}"),
            score_raw: n as i32 % 5,
            emotion: Emotion::Happy,
        }
    }

    #[test]
    fn earlier_turns_alternate_in_order_after_the_system_prompt() {
        let history: Vec<_> = (0..3).map(|n| turn(n, 0)).collect();
        let input = ReplyInput {
            character: Character::Sakura,
            locale: Locale::En,
            player_name: "Alice",
            history: &history,
            message: "and now?",
        };
        let m = conversation(&input, HISTORY_BUDGET_CHARS);
        let roles: Vec<_> = m.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [
                "system",
                "user",
                "assistant",
                "user",
                "assistant",
                "user",
                "assistant",
                "user"
            ]
        );
        assert_eq!(m[1].content, "u0");
        assert_eq!(
            serde_json::from_str::<Value>(&m[2].content).unwrap(),
            json!({ "reply": "a0", "score": 0, "emotion": "happy" })
        );
        assert_eq!(m[5].content, "u2");
        assert_eq!(m[7].content, "and now?");
    }

    #[test]
    fn the_budget_drops_the_oldest_turns_whole() {
        let history: Vec<_> = (0..10).map(|n| turn(n, 100)).collect();
        let input = ReplyInput {
            character: Character::Kai,
            locale: Locale::En,
            player_name: "Bob",
            history: &history,
            message: "hi",
        };
        let per_turn = 102 + assistant_content(&history[0]).chars().count();
        let m = conversation(&input, 3 * per_turn);
        assert_eq!(m.len(), 1 + 2 * 3 + 1, "three turns fit");
        assert!(m[1].content.starts_with("u7"), "the newest three: 7, 8, 9");
        assert!(m[5].content.starts_with("u9"));
        assert_eq!(conversation(&input, 0).len(), 2, "no budget, no history");
    }

    #[test]
    fn answers_are_read_strictly() {
        let r = parse_completion(&completion(
            r#"{"reply":"Hi!","score":4,"emotion":"happy"}"#,
        ))
        .unwrap();
        assert_eq!(
            (r.text.as_str(), r.score_raw, r.emotion),
            ("Hi!", 4, Emotion::Happy)
        );
        let r = parse_completion(&completion(
            r#"{"reply":"Wow","score":99.4,"emotion":"ecstatic"}"#,
        ))
        .unwrap();
        assert_eq!(
            (r.score_raw, r.emotion),
            (10, Emotion::Joy),
            "clamped, emotion from the score"
        );
        for bad in [
            "not json".to_owned(),
            json!({ "choices": [] }).to_string(),
            completion("plain words"),
            completion(r#"{"score":1}"#),
            completion(r#"{"reply":"  ","score":1}"#),
            completion(r#"{"reply":"x","score":"high"}"#),
            completion(
                &json!({ "reply": "a".repeat(MAX_REPLY_CHARS + 1), "score": 1 }).to_string(),
            ),
            // Fewer characters than the cap, more bytes than it allows.
            completion(
                &json!({ "reply": "あ".repeat(MAX_REPLY_BYTES / 3 + 1), "score": 1 }).to_string(),
            ),
            completion(r#"{"reply":"\u0000\u0007 ","score":1}"#),
            completion("{ not json }"),
        ] {
            assert!(parse_completion(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_object_wrapped_in_words_is_read() {
        let r = parse_answer_text(
            "Sure!\n```json\n{\"reply\":\"Hey\",\"score\":2,\"emotion\":\"happy\"}\n```",
            "workers-ai",
        )
        .unwrap();
        assert_eq!((r.text.as_str(), r.score_raw), ("Hey", 2));
    }

    #[test]
    fn control_characters_are_stripped_from_replies() {
        let r = parse_completion(&completion(
            r#"{"reply":"Hi\u0000 there\u001b[31m!\nBye\tnow","score":2}"#,
        ))
        .unwrap();
        assert_eq!(r.text, "Hi there[31m!\nBye\tnow");
    }
}
