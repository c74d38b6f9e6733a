//! The reply engine this Worker runs, chosen by `REPLY_ENGINE`: `offline` (the default) or
//! `llm`, an OpenAI-compatible chat-completions endpoint (`LLM_BASE_URL`, `LLM_MODEL`, the
//! secret `LLM_API_KEY`, `LLM_TIMEOUT_MS`). The LLM engine falls back to the offline engine
//! on any failure (timeout, HTTP error, malformed answer) and logs why.

use chat_core::engine::{OfflineEngine, Reply, ReplyEngine, ReplyInput};
use chat_core::llm::{parse_completion, request_body, COMPLETIONS_PATH};
use futures_util::future::{select, Either};
use std::time::Duration;
use worker::{Delay, Env, Fetch, Headers, Method, Request, RequestInit};
use worker_support::env::var;

pub enum Engine {
    Offline(OfflineEngine),
    Llm(LlmEngine),
}

pub struct LlmEngine {
    base_url: String,
    model: String,
    api_key: Option<String>,
    timeout: Duration,
}

impl Engine {
    pub fn from_env(env: &Env) -> Self {
        if var(env, "REPLY_ENGINE").as_deref() != Some("llm") {
            return Self::Offline(OfflineEngine);
        }
        match (var(env, "LLM_BASE_URL"), var(env, "LLM_MODEL")) {
            (Some(base), Some(model)) if !base.is_empty() && !model.is_empty() => {
                Self::Llm(LlmEngine {
                    base_url: base.trim_end_matches('/').to_owned(),
                    model,
                    api_key: var(env, "LLM_API_KEY").filter(|k| !k.is_empty()),
                    timeout: Duration::from_millis(
                        var(env, "LLM_TIMEOUT_MS")
                            .and_then(|t| t.parse().ok())
                            .unwrap_or(8000),
                    ),
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
        let timeout = Delay::from(self.timeout);
        match select(Box::pin(call), Box::pin(timeout)).await {
            Either::Left((result, _)) => result,
            Either::Right(_) => Err(format!("no answer within {} ms", self.timeout.as_millis())),
        }
    }
}

impl ReplyEngine for LlmEngine {
    async fn reply(&self, input: &ReplyInput<'_>) -> Reply {
        match self.ask(input).await {
            Ok(reply) => reply,
            Err(reason) => {
                tracing::warn!(reason = %reason, "LLM engine failed; falling back to the offline engine");
                Reply {
                    engine: "offline-fallback",
                    ..OfflineEngine.reply(input).await
                }
            }
        }
    }
}
