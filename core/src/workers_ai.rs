//! The Workers AI reply engine's wire format: the input of a text-generation model run through
//! the `[ai]` binding (`env.AI.run(model, input)`), and the strict reading of its output.
//!
//! It asks the same conversation and answer contract as the OpenAI-compatible engine (`llm`).
//! Streamed ([`stream_input`], what the engine sends), the answer comes as server-sent events
//! of `{"response": "<more text>"}`, read by `reply_stream`; JSON mode is documented for
//! whole answers, so the streamed request relies on the prompt's contract, and the reader
//! takes a JSON object even wrapped in words. Whole ([`input`]), JSON mode's
//! `response_format` carries a JSON schema, and the model answers
//! `{ "response": { "reply", "score", "emotion" } }` (some models put the object in a string).
//!
//! The input is plain structs, not a `serde_json::Value`: the binding converts it with
//! `serde_wasm_bindgen`, which would turn a `Value`'s maps into JavaScript `Map`s that the
//! AI binding does not read.

use crate::engine::{Reply, ReplyInput};
use crate::llm::{
    conversation, parse_answer, parse_answer_text, ChatMessage, HISTORY_BUDGET_CHARS,
};
use crate::scoring::{MAX_RAW, MIN_RAW};
use serde::Serialize;
use serde_json::Value;

/// The model used when `WORKERS_AI_MODEL` is not set.
pub const DEFAULT_MODEL: &str = "@cf/meta/llama-3.1-8b-instruct";

/// What `env.AI.run(model, input)` is given.
#[derive(Debug, Clone, Serialize)]
pub struct AiInput {
    pub messages: Vec<ChatMessage>,
    pub max_tokens: u32,
    pub temperature: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResponseFormat {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub json_schema: AnswerSchema,
}

/// `{ "reply": string, "score": integer, "emotion": enum }`, all required.
#[derive(Debug, Clone, Serialize)]
pub struct AnswerSchema {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub properties: AnswerProperties,
    pub required: [&'static str; 3],
}

#[derive(Debug, Clone, Serialize)]
pub struct AnswerProperties {
    pub reply: Property,
    pub score: Property,
    pub emotion: Property,
}

#[derive(Debug, Clone, Serialize)]
pub struct Property {
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minimum: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum: Option<i32>,
    #[serde(rename = "enum", skip_serializing_if = "Option::is_none")]
    pub one_of: Option<[&'static str; 5]>,
}

impl Property {
    fn of(kind: &'static str) -> Self {
        Self {
            kind,
            minimum: None,
            maximum: None,
            one_of: None,
        }
    }
}

/// The input for one streamed reply: the same conversation, `stream: true`, no JSON mode.
pub fn stream_input(reply: &ReplyInput<'_>) -> AiInput {
    AiInput {
        response_format: None,
        stream: true,
        ..input(reply)
    }
}

/// The input for one whole reply, in JSON mode.
pub fn input(reply: &ReplyInput<'_>) -> AiInput {
    AiInput {
        messages: conversation(reply, HISTORY_BUDGET_CHARS),
        max_tokens: 300,
        temperature: 0.7,
        stream: false,
        response_format: Some(ResponseFormat {
            kind: "json_schema",
            json_schema: AnswerSchema {
                kind: "object",
                properties: AnswerProperties {
                    reply: Property::of("string"),
                    score: Property {
                        minimum: Some(MIN_RAW),
                        maximum: Some(MAX_RAW),
                        ..Property::of("integer")
                    },
                    emotion: Property {
                        one_of: Some(["joy", "happy", "neutral", "sad", "angry"]),
                        ..Property::of("string")
                    },
                },
                required: ["reply", "score", "emotion"],
            },
        }),
    }
}

/// Reads a model run's output into a reply, or says why it cannot.
pub fn parse_output(output: &Value) -> Result<Reply, String> {
    match output.get("response") {
        Some(answer @ Value::Object(_)) => parse_answer(answer, "workers-ai"),
        Some(Value::String(text)) => parse_answer_text(text, "workers-ai"),
        Some(_) => Err("the output's response is neither an object nor text".into()),
        None => Err("the output has no response".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::character::{Character, Locale};
    use crate::engine::HistoryTurn;
    use crate::scoring::Emotion;
    use serde_json::json;

    #[test]
    fn the_input_carries_the_conversation_and_the_schema() {
        let history = [HistoryTurn {
            user: "hi".into(),
            agent: "hello!".into(),
            score_raw: 2,
            emotion: Emotion::Happy,
        }];
        let reply = ReplyInput {
            character: Character::Sakura,
            locale: Locale::Ja,
            player_name: "Hana",
            history: &history,
            message: "元気？",
        };
        let v = serde_json::to_value(input(&reply)).unwrap();
        let messages = v["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 4);
        assert_eq!(messages[0]["role"], "system");
        assert!(messages[0]["content"].as_str().unwrap().contains("Hana"));
        assert_eq!(messages[1], json!({ "role": "user", "content": "hi" }));
        assert_eq!(messages[2]["role"], "assistant");
        assert_eq!(messages[3], json!({ "role": "user", "content": "元気？" }));
        assert_eq!(v["response_format"]["type"], "json_schema");
        let schema = &v["response_format"]["json_schema"];
        assert_eq!(schema["required"], json!(["reply", "score", "emotion"]));
        assert_eq!(schema["properties"]["score"]["minimum"], MIN_RAW);
        assert_eq!(schema["properties"]["emotion"]["enum"][4], "angry");
        assert!(schema["properties"]["reply"].get("enum").is_none());
        assert!(v.get("stream").is_none());
        let streamed = serde_json::to_value(stream_input(&reply)).unwrap();
        assert_eq!(streamed["stream"], true);
        assert!(streamed.get("response_format").is_none());
        assert_eq!(streamed["messages"], v["messages"]);
    }

    #[test]
    fn outputs_are_read_as_objects_or_text() {
        let r =
            parse_output(&json!({ "response": { "reply": "Hi", "score": 3, "emotion": "happy" } }))
                .unwrap();
        assert_eq!(
            (r.text.as_str(), r.score_raw, r.engine),
            ("Hi", 3, "workers-ai")
        );
        let r = parse_output(&json!({ "response": r#"{"reply":"Yo","score":-40}"# })).unwrap();
        assert_eq!((r.score_raw, r.emotion), (MIN_RAW, Emotion::Angry));
        for bad in [
            json!({}),
            json!({ "response": 5 }),
            json!({ "response": "plain words" }),
            json!({ "response": { "score": 1 } }),
            json!({ "result": { "response": "{}" } }),
        ] {
            assert!(parse_output(&bad).is_err(), "{bad}");
        }
    }
}
