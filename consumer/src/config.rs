//! The consumer's bindings, queue names and settings, read from `Env` once per batch in one
//! place.

use chat_core::backoff::Backoff;
use chat_core::consumer::Settings;
use chat_core::shards::ShardMap;
use worker::Env;

/// The producer binding of the dead-letter queue.
pub const DEAD_LETTERS: &str = "DEAD_LETTERS";
/// The producer binding of the turn queue: held turns go back on it on their last delivery.
pub const TURNS: &str = "TURNS";
/// The queues this Worker consumes; batches are routed on these names.
pub const TURN_QUEUE: &str = "chat-turns";
pub const DEAD_LETTER_QUEUE: &str = "chat-turns-dlq";

pub struct Config {
    pub settings: Settings,
    /// Test-only fault injection (`FAULTS`): only the local build has it.
    #[cfg(feature = "local")]
    pub faults: chat_core::faults::Faults,
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
        let shard_map = worker_support::env::var(env, "SHARD_MAP")
            .ok_or_else(|| "SHARD_MAP is not set".to_owned())
            .and_then(|spec| ShardMap::parse(&spec).map_err(|e| format!("SHARD_MAP: {e}")));
        let settings = Settings {
            // Kept equal to wrangler.toml's `max_retries` of each queue.
            max_retries: number(env, "TURN_MAX_RETRIES", 5),
            letter_max_retries: number(env, "LETTER_MAX_RETRIES", 100),
            backoff: Backoff {
                base_seconds: number(env, "RETRY_BASE_SECONDS", defaults.base_seconds),
                max_seconds: number(env, "RETRY_MAX_SECONDS", defaults.max_seconds),
            },
            shard_map,
            map_cache_ms: i64::from(number(env, "SHARD_MAP_CACHE_SECONDS", 5).min(300)) * 1000,
            // A secret (`wrangler secret put ERASURE_KEY -c consumer/wrangler.toml`), the
            // same as the chat Worker's.
            erasure_key: worker_support::env::var(env, "ERASURE_KEY")
                .and_then(|k| chat_core::privacy::ErasureKey::new(&k))
                .or_else(|| {
                    tracing::error!("ERASURE_KEY is not set: an erased player's late turns cannot be refused (wrangler secret put ERASURE_KEY -c consumer/wrangler.toml, the chat Worker's value)");
                    None
                }),
        };
        Self {
            settings,
            #[cfg(feature = "local")]
            faults: faults(env),
        }
    }
}

/// The local build's `FAULTS` (see `chat_core::faults`).
#[cfg(feature = "local")]
fn faults(env: &Env) -> chat_core::faults::Faults {
    use chat_core::faults::Faults;
    let spec = worker_support::env::var(env, "FAULTS").unwrap_or_default();
    let faults = Faults::parse(&spec).unwrap_or_else(|e| {
        tracing::error!(error = %e, "FAULTS is malformed; fault injection stays off");
        Faults::default()
    });
    if !faults.is_off() {
        tracing::warn!(spec = %spec, "fault injection is ON (local testing only)");
    }
    faults
}

/// The deployable build has no switch at all: `FAULTS` is ignored, with an error in the log
/// so that whoever set it knows.
#[cfg(not(feature = "local"))]
pub fn warn_if_faults_set(env: &Env) {
    if worker_support::env::var(env, "FAULTS").is_some_and(|s| !s.trim().is_empty()) {
        tracing::error!(
            "FAULTS is set but ignored: fault injection exists only in the local build (cargo feature `local`)"
        );
    }
}
