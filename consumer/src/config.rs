//! The consumer's bindings, queue names and settings, read from `Env` in one place.

use crate::faults::FaultSwitch;
use chat_core::backoff::Backoff;
use chat_core::shards::ShardMap;
use worker::Env;

/// The control database (dead letters, the bucket map's live part); it holds players too.
pub use chat_core::shards::CONTROL;
/// The producer binding of the dead-letter queue.
pub const DEAD_LETTERS: &str = "DEAD_LETTERS";
/// The producer binding of the turn queue: held turns go back on it on their last delivery.
pub const TURNS: &str = "TURNS";
/// The queues this Worker consumes; batches are routed on these names.
pub const TURN_QUEUE: &str = "chat-turns";
pub const DEAD_LETTER_QUEUE: &str = "chat-turns-dlq";

pub struct Config {
    /// The turn queue's `max_retries` (`TURN_MAX_RETRIES`, kept equal to wrangler.toml's).
    pub max_retries: u32,
    /// The dead-letter queue's `max_retries` (`LETTER_MAX_RETRIES`, kept equal too).
    pub letter_max_retries: u32,
    pub backoff: Backoff,
    /// Test-only fault injection (`FAULTS`): only the local build has it.
    pub faults: FaultSwitch,
    /// `SHARD_MAP`, the bucket map before the control database's overrides, or why it is
    /// unusable (then every turn batch is retried, and the log says why).
    pub shard_map: Result<ShardMap, String>,
    /// How long an isolate keeps the live map before reading the overrides again
    /// (`SHARD_MAP_CACHE_SECONDS`). A stale map is safe: fenced databases refuse what it
    /// misroutes, and those turns wait.
    pub map_cache_ms: i64,
}

fn number(env: &Env, name: &str, default: u32) -> u32 {
    env.var(name)
        .ok()
        .and_then(|v| v.to_string().trim().parse().ok())
        .unwrap_or(default)
}

impl Config {
    pub fn from_env(env: &Env) -> Self {
        let defaults = Backoff::default();
        let faults = FaultSwitch::from_env(env);
        let shard_map = worker_support::env::var(env, "SHARD_MAP")
            .ok_or_else(|| "SHARD_MAP is not set".to_owned())
            .and_then(|spec| ShardMap::parse(&spec).map_err(|e| format!("SHARD_MAP: {e}")));
        Self {
            max_retries: number(env, "TURN_MAX_RETRIES", 5),
            letter_max_retries: number(env, "LETTER_MAX_RETRIES", 100),
            backoff: Backoff {
                base_seconds: number(env, "RETRY_BASE_SECONDS", defaults.base_seconds),
                max_seconds: number(env, "RETRY_MAX_SECONDS", defaults.max_seconds),
            },
            faults,
            shard_map,
            map_cache_ms: i64::from(number(env, "SHARD_MAP_CACHE_SECONDS", 5).min(300)) * 1000,
        }
    }
}
