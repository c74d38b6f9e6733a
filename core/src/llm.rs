//! The optional LLM reply engine's wire format: an OpenAI-compatible chat-completions
//! request asking for a JSON answer `{ "reply", "score", "emotion" }`, and the strict
//! reading of the answer. The Worker does the HTTP call and falls back to the offline engine
//! on any error this module reports.

use crate::character::Locale;
use crate::engine::{Reply, ReplyInput};
use crate::record::MAX_REPLY_CHARS;
use crate::scoring::{clamp_raw, Emotion, MAX_RAW, MIN_RAW};
use serde_json::{json, Value};

/// The path asked on the configured base URL (e.g. `https://api.openai.com/v1`).
pub const COMPLETIONS_PATH: &str = "/chat/completions";

/// The request body for one reply.
pub fn request_body(model: &str, input: &ReplyInput<'_>) -> Value {
    let language = match input.locale {
        Locale::Ja => "Japanese",
        Locale::En => "English",
    };
    let system = format!(
        "You are {name}, a character in a dating game. Reply to the player in {language}, in one or two \
         sentences, in character. Then judge how the player's message makes {name} feel. Answer ONLY with a \
         JSON object: {{\"reply\": string, \"score\": integer from {MIN_RAW} (hostile) to {MAX_RAW} (delightful), \
         \"emotion\": one of \"joy\", \"happy\", \"neutral\", \"sad\", \"angry\"}}.",
        name = input.character.display_name(input.locale),
    );
    json!({
        "model": model,
        "messages": [
            { "role": "system", "content": system },
            { "role": "user", "content": input.message },
        ],
        "response_format": { "type": "json_object" },
        "temperature": 0.7,
        "max_tokens": 300,
    })
}

/// Reads a chat-completions response body into a reply, or says why it cannot.
pub fn parse_completion(body: &str) -> Result<Reply, String> {
    let value: Value =
        serde_json::from_str(body).map_err(|e| format!("the response is not JSON: {e}"))?;
    let content = value["choices"][0]["message"]["content"]
        .as_str()
        .ok_or("the response has no choices[0].message.content")?;
    let answer: Value =
        serde_json::from_str(content.trim()).map_err(|e| format!("the answer is not JSON: {e}"))?;
    let text = answer["reply"]
        .as_str()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or("the answer has no reply")?;
    if text.chars().count() > MAX_REPLY_CHARS {
        return Err(format!(
            "the reply is longer than {MAX_REPLY_CHARS} characters"
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
        engine: "llm",
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
        assert_eq!(body["messages"][1]["content"], "こんにちは");
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
        ] {
            assert!(parse_completion(&bad).is_err(), "{bad}");
        }
    }
}
