//! The reply engine this Worker runs, chosen by `REPLY_ENGINE`:
//! - `offline` (the default): deterministic, no network;
//! - `llm`: an OpenAI-compatible chat-completions endpoint (`LLM_BASE_URL`, `LLM_MODEL`, the
//!   secret `LLM_API_KEY`, `LLM_TIMEOUT_MS`);
//! - `workers-ai`: a Workers AI text model through the `[ai]` binding `AI`
//!   (`WORKERS_AI_MODEL`, `LLM_TIMEOUT_MS`).
//!
//! Both remote engines send the session's last turns and fall back to the offline engine on
//! any failure (timeout, error, malformed answer, missing binding) and log why. Offline, the
//! AI binding cannot reach Cloudflare, so locally `workers-ai` always falls back.

use chat_core::engine::{OfflineEngine, Reply, ReplyEngine, ReplyInput};
use chat_core::llm::{parse_completion, request_body, COMPLETIONS_PATH};
use chat_core::workers_ai;
use std::time::Duration;
use worker::{Ai, Env, Fetch, Headers, Method, Request, RequestInit};
use worker_support::deadline;
use worker_support::env::var;

pub enum Engine {
    Offline(OfflineEngine),
    Llm(LlmEngine),
    WorkersAi(WorkersAiEngine),
}

/// The `[ai]` binding's name.
pub const AI: &str = "AI";

pub struct WorkersAiEngine {
    ai: Result<Ai, String>,
    model: String,
    timeout: Duration,
}

pub struct LlmEngine {
    base_url: String,
    model: String,
    api_key: Option<String>,
    timeout: Duration,
}

fn timeout(env: &Env) -> Duration {
    Duration::from_millis(
        var(env, "LLM_TIMEOUT_MS")
            .and_then(|t| t.parse().ok())
            .unwrap_or(8000),
    )
}

impl Engine {
    pub fn from_env(env: &Env) -> Self {
        match var(env, "REPLY_ENGINE").as_deref() {
            Some("llm") => {}
            Some("workers-ai") => {
                return Self::WorkersAi(WorkersAiEngine {
                    ai: env.ai(AI).map_err(|e| format!("no usable AI binding: {e}")),
                    model: var(env, "WORKERS_AI_MODEL")
                        .filter(|m| !m.is_empty())
                        .unwrap_or_else(|| workers_ai::DEFAULT_MODEL.into()),
                    timeout: timeout(env),
                })
            }
            _ => return Self::Offline(OfflineEngine),
        }
        match (var(env, "LLM_BASE_URL"), var(env, "LLM_MODEL")) {
            (Some(base), Some(model)) if !base.is_empty() && !model.is_empty() => {
                Self::Llm(LlmEngine {
                    base_url: base.trim_end_matches('/').to_owned(),
                    model,
                    api_key: var(env, "LLM_API_KEY").filter(|k| !k.is_empty()),
                    timeout: timeout(env),
                })
            }
            _ => {
                tracing::error!(
                    "REPLY_ENGINE=llm needs LLM_BASE_URL and LLM_MODEL; using the offline engine"
                );
                Self::Offline(OfflineEngine)
            }
        }
    }
}

impl ReplyEngine for Engine {
    async fn reply(&self, input: &ReplyInput<'_>) -> Reply {
        match self {
            Self::Offline(e) => e.reply(input).await,
            Self::Llm(e) => e.reply(input).await,
            Self::WorkersAi(e) => e.reply(input).await,
        }
    }
}

impl LlmEngine {
    async fn ask(&self, input: &ReplyInput<'_>) -> Result<Reply, String> {
        let headers = Headers::new();
        let set = |k: &str, v: &str| headers.set(k, v).map_err(|e| e.to_string());
        set("Content-Type", "application/json")?;
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
            let body = response
                .text()
                .await
                .map_err(|e| format!("unreadable response: {e}"))?;
            if !(200..300).contains(&status) {
                return Err(format!("the endpoint answered {status}"));
            }
            parse_completion(&body)
        };
        within(self.timeout, call).await
    }
}

/// The remote engine's reply, or the offline engine's when it failed (and why, in the log).
async fn or_fallback(
    engine: &'static str,
    answer: Result<Reply, String>,
    input: &ReplyInput<'_>,
) -> Reply {
    match answer {
        Ok(reply) => reply,
        Err(reason) => {
            tracing::warn!(engine, reason = %reason, "reply engine failed; falling back to the offline engine");
            Reply {
                engine: "offline-fallback",
                ..OfflineEngine.reply(input).await
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

impl ReplyEngine for LlmEngine {
    async fn reply(&self, input: &ReplyInput<'_>) -> Reply {
        or_fallback("llm", self.ask(input).await, input).await
    }
}

impl WorkersAiEngine {
    async fn ask(&self, input: &ReplyInput<'_>) -> Result<Reply, String> {
        let ai = self.ai.as_ref().map_err(Clone::clone)?;
        let call = async {
            let output: serde_json::Value = ai
                .run(&self.model, workers_ai::input(input))
                .await
                .map_err(|e| format!("the model run failed: {e}"))?;
            workers_ai::parse_output(&output)
        };
        within(self.timeout, call).await
    }
}

impl ReplyEngine for WorkersAiEngine {
    async fn reply(&self, input: &ReplyInput<'_>) -> Reply {
        or_fallback("workers-ai", self.ask(input).await, input).await
    }
}
