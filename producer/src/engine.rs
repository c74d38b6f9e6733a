//! The reply engine this Worker runs, chosen by `REPLY_ENGINE`. Every engine streams: the
//! reply's text goes to the turn's sink as it is written (`chat_core::engine::ReplyEngine`).
//! - `offline` (the default): deterministic, no network, handed out a piece at a time with
//!   `OFFLINE_STREAM_MS` before each (0: at once);
//! - `llm`: an OpenAI-compatible chat-completions endpoint (`LLM_BASE_URL`, `LLM_MODEL`, the
//!   secret `LLM_API_KEY`, `LLM_TIMEOUT_MS`), asked with `stream: true`;
//! - `workers-ai`: a Workers AI text model through the `[ai]` binding `AI`
//!   (`WORKERS_AI_MODEL`, `LLM_TIMEOUT_MS`), asked with `stream: true`.
//!
//! A streamed answer is read by `chat_core::reply_stream`: its server-sent events, the text
//! each adds, and the reply's characters pulled out of the JSON as they arrive; score and
//! emotion come from the whole answer at its end. Both remote engines send the session's
//! last turns and fall back to the offline engine on any failure (timeout, error, malformed
//! answer, missing binding) and log why; a fallback after some pieces were shown replaces
//! them (the turn's `done` carries the whole reply). Offline, the AI binding cannot reach
//! Cloudflare, so locally `workers-ai` always falls back.

use crate::config::{Config, AI};
use chat_core::engine::{Paced, Pause, Reply, ReplyEngine, ReplyInput};
use chat_core::llm::{parse_answer_text, parse_completion, request_body, COMPLETIONS_PATH};
use chat_core::reply_stream::{
    openai_fragment, workers_ai_fragment, EventStream, Fragment, ReplyText,
};
use chat_core::workers_ai;
use futures_util::{Stream, StreamExt};
use std::time::Duration;
use worker::{Ai, Delay, Env, Fetch, Headers, Method, Request, RequestInit};
use worker_support::deadline;

/// The runtime's timer, for the offline engine's pace.
#[derive(Debug, Clone, Copy, Default)]
pub struct WorkerPause;

impl Pause for WorkerPause {
    async fn pause(&self, ms: u64) {
        Delay::from(Duration::from_millis(ms)).await;
    }
}

pub enum Engine {
    Offline(Paced<WorkerPause>),
    Llm(LlmEngine),
    WorkersAi(WorkersAiEngine),
}

pub struct WorkersAiEngine {
    ai: Result<Ai, String>,
    model: String,
    timeout: Duration,
    fallback: Paced<WorkerPause>,
}

pub struct LlmEngine {
    base_url: String,
    model: String,
    api_key: Option<String>,
    timeout: Duration,
    fallback: Paced<WorkerPause>,
}

/// The offline engine at `OFFLINE_STREAM_MS` a piece (0, at once, unless set).
fn offline(config: &Config) -> Paced<WorkerPause> {
    Paced {
        piece_ms: config.offline_piece_ms,
        pause: WorkerPause,
    }
}

impl Engine {
    /// The engine `REPLY_ENGINE` names, with its settings.
    pub fn from_config(env: &Env, config: &Config) -> Self {
        match config.reply_engine.as_str() {
            "llm" => {}
            "workers-ai" => {
                return Self::WorkersAi(WorkersAiEngine {
                    ai: env.ai(AI).map_err(|e| format!("no usable AI binding: {e}")),
                    model: config.workers_ai_model.clone(),
                    timeout: config.llm_timeout,
                    fallback: offline(config),
                })
            }
            _ => return Self::Offline(offline(config)),
        }
        match (&config.llm_base_url, &config.llm_model) {
            (Some(base), Some(model)) => Self::Llm(LlmEngine {
                base_url: base.clone(),
                model: model.clone(),
                api_key: config.llm_api_key.clone(),
                timeout: config.llm_timeout,
                fallback: offline(config),
            }),
            _ => {
                tracing::error!(
                    "REPLY_ENGINE=llm needs LLM_BASE_URL and LLM_MODEL; using the offline engine"
                );
                Self::Offline(offline(config))
            }
        }
    }
}

impl ReplyEngine for Engine {
    async fn reply(&self, input: &ReplyInput<'_>, sink: &mut dyn FnMut(&str)) -> Reply {
        match self {
            Self::Offline(e) => e.reply(input, sink).await,
            Self::Llm(e) => e.reply(input, sink).await,
            Self::WorkersAi(e) => e.reply(input, sink).await,
        }
    }
}

/// Reads a streamed answer: each event's text goes to the answer, and the reply's
/// characters in it to `sink`; at the end, the whole answer is read strictly.
async fn read_stream(
    mut bytes: impl Stream<Item = worker::Result<Vec<u8>>> + Unpin,
    fragment: fn(&str) -> Result<Fragment, String>,
    engine: &'static str,
    sink: &mut dyn FnMut(&str),
) -> Result<Reply, String> {
    let mut events = EventStream::default();
    let mut reply = ReplyText::default();
    let mut answer = String::new();
    let mut take = |data: String, answer: &mut String| -> Result<bool, String> {
        match fragment(&data)? {
            Fragment::Text(t) => {
                let shown = reply.push(&t);
                if !shown.is_empty() {
                    sink(&shown);
                }
                answer.push_str(&t);
                Ok(false)
            }
            Fragment::Done => Ok(true),
            Fragment::Nothing => Ok(false),
        }
    };
    'read: while let Some(chunk) = bytes.next().await {
        let chunk = chunk.map_err(|e| format!("the stream broke: {e}"))?;
        for data in events.push(&chunk) {
            if take(data, &mut answer)? {
                break 'read;
            }
        }
    }
    if let Some(data) = events.finish() {
        take(data, &mut answer)?;
    }
    parse_answer_text(&answer, engine)
}

/// The remote engine's reply, or the offline engine's when it failed (and why, in the log).
async fn or_fallback(
    engine: &'static str,
    answer: Result<Reply, String>,
    input: &ReplyInput<'_>,
    fallback: &Paced<WorkerPause>,
    sink: &mut dyn FnMut(&str),
) -> Reply {
    match answer {
        Ok(reply) => reply,
        Err(reason) => {
            tracing::warn!(engine, reason = %reason, "reply engine failed; falling back to the offline engine");
            Reply {
                engine: "offline-fallback",
                ..fallback.reply(input, sink).await
            }
        }
    }
}

/// `call`'s result, or an error once `timeout` has passed.
async fn within<T>(
    timeout: Duration,
    call: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    deadline::within(timeout, call)
        .await
        .unwrap_or_else(|| Err(format!("no answer within {} ms", timeout.as_millis())))
}

impl LlmEngine {
    async fn ask(
        &self,
        input: &ReplyInput<'_>,
        sink: &mut dyn FnMut(&str),
    ) -> Result<Reply, String> {
        let headers = Headers::new();
        let set = |k: &str, v: &str| headers.set(k, v).map_err(|e| e.to_string());
        set("Content-Type", "application/json")?;
        set("Accept", "text/event-stream")?;
        if let Some(key) = &self.api_key {
            set("Authorization", &format!("Bearer {key}"))?;
        }
        let mut init = RequestInit::new();
        init.with_method(Method::Post)
            .with_headers(headers)
            .with_body(Some(request_body(&self.model, input).to_string().into()));
        let request =
            Request::new_with_init(&format!("{}{COMPLETIONS_PATH}", self.base_url), &init)
                .map_err(|e| format!("bad LLM_BASE_URL: {e}"))?;
        let call = async {
            let mut response = Fetch::Request(request)
                .send()
                .await
                .map_err(|e| format!("request failed: {e}"))?;
            let status = response.status_code();
            if !(200..300).contains(&status) {
                return Err(format!("the endpoint answered {status}"));
            }
            let streamed = response
                .headers()
                .get("Content-Type")
                .ok()
                .flatten()
                .is_some_and(|t| t.starts_with("text/event-stream"));
            if streamed {
                let bytes = response
                    .stream()
                    .map_err(|e| format!("unreadable response: {e}"))?;
                read_stream(bytes, openai_fragment, "llm", sink).await
            } else {
                // An endpoint that does not stream answers whole: one piece.
                let body = response
                    .text()
                    .await
                    .map_err(|e| format!("unreadable response: {e}"))?;
                let reply = parse_completion(&body)?;
                sink(&reply.text);
                Ok(reply)
            }
        };
        within(self.timeout, call).await
    }
}

impl ReplyEngine for LlmEngine {
    async fn reply(&self, input: &ReplyInput<'_>, sink: &mut dyn FnMut(&str)) -> Reply {
        let answer = self.ask(input, sink).await;
        or_fallback("llm", answer, input, &self.fallback, sink).await
    }
}

impl WorkersAiEngine {
    async fn ask(
        &self,
        input: &ReplyInput<'_>,
        sink: &mut dyn FnMut(&str),
    ) -> Result<Reply, String> {
        let ai = self.ai.as_ref().map_err(Clone::clone)?;
        let call = async {
            let bytes = ai
                .run_bytes(&self.model, workers_ai::stream_input(input))
                .await
                .map_err(|e| format!("the model run failed: {e}"))?;
            read_stream(bytes, workers_ai_fragment, "workers-ai", sink).await
        };
        within(self.timeout, call).await
    }
}

impl ReplyEngine for WorkersAiEngine {
    async fn reply(&self, input: &ReplyInput<'_>, sink: &mut dyn FnMut(&str)) -> Reply {
        let answer = self.ask(input, sink).await;
        or_fallback("workers-ai", answer, input, &self.fallback, sink).await
    }
}
