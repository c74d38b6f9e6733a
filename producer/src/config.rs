//! Every binding name and every variable or secret of the chat Worker, in one place. The
//! variables are read once per isolate into one typed [`Config`] (they cannot change while
//! an isolate lives), so a request reads none of them, and no other file names one.

use chat_core::shards::ShardMap;
use std::rc::Rc;
use std::time::Duration;
use worker::Env;

/// The turn queue (producer binding).
pub const TURNS: &str = "TURNS";
/// The session actors' Durable Object namespace.
pub const SESSIONS: &str = "SESSIONS";
/// The Workers AI binding (`REPLY_ENGINE=workers-ai`).
pub const AI: &str = "AI";
/// The rate limiting bindings: turns, session starts, and live-socket tickets.
pub const TURN_LIMITER: &str = "TURN_LIMITER";
pub const SESSION_LIMITER: &str = "SESSION_LIMITER";
pub const TICKET_LIMITER: &str = "TICKET_LIMITER";
/// The archive's job queue (producer and consumer binding of this Worker).
pub const ARCHIVE_JOBS: &str = "ARCHIVE_JOBS";
/// The secret holding the admin token.
pub const ADMIN_TOKEN: &str = "ADMIN_TOKEN";

/// The chat Worker's settings, as its variables and secrets give them.
#[derive(Debug, Clone)]
pub struct Config {
    /// `AUTH_MODE`: `privy` (the default), `x` or `dev`.
    pub auth_mode: String,
    /// `ALLOW_DEV_AUTH=local-only`: what the local build needs beside `AUTH_MODE=dev`.
    #[cfg(feature = "local")]
    pub allow_dev_auth: bool,
    /// `X_API_BASE`, `X_CACHE_SECONDS`, `X_TIMEOUT_MS` (`AUTH_MODE=x`).
    pub x_api_base: String,
    pub x_cache_ms: i64,
    pub x_timeout: Duration,
    /// `PRIVY_APP_ID`, `PRIVY_VERIFICATION_KEY`, `PRIVY_VERIFIER`, `PRIVY_TOKEN_CACHE`.
    pub privy: worker_support::privy_auth::PrivySettings,
    /// `SESSION_ID_KEY`: the secret session ids are tagged with.
    pub session_id_key: Option<String>,
    /// The `ERASURE_KEY` secret: an erasure's tombstone holds the player's id hashed under it
    /// (the consumer has the same secret). Without it no player can be erased.
    pub erasure_key: Option<chat_core::privacy::ErasureKey>,
    /// `REPLY_ENGINE`: `offline` (the default), `llm` or `workers-ai`.
    pub reply_engine: String,
    /// `WORKERS_AI_MODEL`, or the default model.
    pub workers_ai_model: String,
    /// `LLM_BASE_URL` (without a trailing slash), `LLM_MODEL`, `LLM_API_KEY`.
    pub llm_base_url: Option<String>,
    pub llm_model: Option<String>,
    pub llm_api_key: Option<String>,
    /// `LLM_TIMEOUT_MS` (8 s): how long an engine may take before the offline reply.
    pub llm_timeout: Duration,
    /// `OFFLINE_STREAM_MS` (0, at most 2,000): the offline engine's pause per piece.
    pub offline_piece_ms: u64,
    /// `SHARD_MAP`, or why it is unusable.
    pub shard_map: Result<ShardMap, String>,
    /// `SHARD_MAP_CACHE_SECONDS` (5, at most 300): how long an isolate keeps the live map.
    pub map_cache_seconds: u32,
    /// `SESSION_HISTORY_TURNS`: the turns an actor keeps, or why the setting is unusable.
    pub history_turns: Result<u32, String>,
    /// `HOT_DAYS` (30, at most 36,500): the archiver's Cron Trigger moves turns older than
    /// this out of D1 into R2 (0: every turn, for tests).
    pub hot_days: u32,
    /// `LIVE_FRAME_LIMIT`: frames a live socket may send per window before it is closed.
    pub live_frame_limit: u32,
    /// `LIVE_ORIGINS`: the other pages' origins that may open a live socket.
    pub live_origins: Vec<String>,
    /// `TURN_RATE_LIMIT=off` turns the per-player limits off (local runs and benchmarks).
    pub rate_limits: bool,
    /// `FAULTS`: the local build's fault switch (`chat_core::faults`); the deployable build
    /// has no switch, and does not read it.
    #[cfg(feature = "local")]
    pub faults: String,
    /// The `ADMIN_TOKEN` secret.
    pub admin_token: Option<String>,
}

/// Defaults of the numbers above.
const MAP_CACHE_SECONDS: u32 = 5;
/// The longest a map may be cached.
pub const MAX_MAP_CACHE_SECONDS: u32 = 300;

thread_local! {
    static CONFIG: std::cell::OnceCell<Rc<Config>> = const { std::cell::OnceCell::new() };
}

impl Config {
    /// The isolate's settings, read from `env` the first time.
    pub fn of(env: &Env) -> Rc<Config> {
        CONFIG.with(|c| c.get_or_init(|| Rc::new(Self::read(env))).clone())
    }

    fn read(env: &Env) -> Self {
        let var = |name: &str| worker_support::env::var(env, name);
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let number = |name: &str| var(name).and_then(|v| v.trim().parse::<u64>().ok());
        Self {
            auth_mode: set("AUTH_MODE").unwrap_or_else(|| "privy".into()),
            #[cfg(feature = "local")]
            allow_dev_auth: var("ALLOW_DEV_AUTH").as_deref() == Some("local-only"),
            x_api_base: set("X_API_BASE")
                .unwrap_or_else(|| "https://api.x.com".into())
                .trim_end_matches('/')
                .to_owned(),
            x_cache_ms: var("X_CACHE_SECONDS")
                .and_then(|s| s.trim().parse::<i64>().ok())
                .unwrap_or(60)
                .max(0)
                * 1000,
            x_timeout: Duration::from_millis(number("X_TIMEOUT_MS").unwrap_or(5000)),
            privy: worker_support::privy_auth::PrivySettings::from_env(env),
            session_id_key: set("SESSION_ID_KEY"),
            erasure_key: set("ERASURE_KEY").and_then(|k| chat_core::privacy::ErasureKey::new(&k)),
            reply_engine: set("REPLY_ENGINE").unwrap_or_else(|| "offline".into()),
            workers_ai_model: set("WORKERS_AI_MODEL")
                .unwrap_or_else(|| chat_core::workers_ai::DEFAULT_MODEL.into()),
            llm_base_url: set("LLM_BASE_URL").map(|b| b.trim_end_matches('/').to_owned()),
            llm_model: set("LLM_MODEL"),
            llm_api_key: set("LLM_API_KEY"),
            llm_timeout: Duration::from_millis(number("LLM_TIMEOUT_MS").unwrap_or(8000)),
            offline_piece_ms: number("OFFLINE_STREAM_MS").unwrap_or(0).min(2_000),
            shard_map: ShardMap::parse(&var("SHARD_MAP").unwrap_or_default())
                .map_err(|e| format!("SHARD_MAP: {e}")),
            map_cache_seconds: number("SHARD_MAP_CACHE_SECONDS").map_or(MAP_CACHE_SECONDS, |s| {
                s.min(u64::from(MAX_MAP_CACHE_SECONDS)) as u32
            }),
            history_turns: chat_core::session::history_turns(
                var("SESSION_HISTORY_TURNS").as_deref(),
            ),
            hot_days: number("HOT_DAYS").map_or(30, |d| d.min(36_500) as u32),
            live_frame_limit: number("LIVE_FRAME_LIMIT")
                .map_or(crate::actor::live::FLOOD_FRAMES, |n| {
                    n.min(u64::from(u32::MAX)) as u32
                }),
            live_origins: var("LIVE_ORIGINS")
                .unwrap_or_default()
                .split(',')
                .map(|o| o.trim().trim_end_matches('/').to_owned())
                .filter(|o| !o.is_empty())
                .collect(),
            rate_limits: var("TURN_RATE_LIMIT").as_deref() != Some("off"),
            #[cfg(feature = "local")]
            faults: var("FAULTS").unwrap_or_default(),
            admin_token: env.secret(ADMIN_TOKEN).map(|s| s.to_string()).ok(),
        }
    }
}
