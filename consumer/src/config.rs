//! The consumer's bindings, queue names and settings, read from `Env` in one place.

use crate::faults::FaultSwitch;
use chat_core::backoff::Backoff;
use worker::Env;

/// The D1 database binding (shared with the chat Worker).
pub const DB: &str = "DB";
/// The producer binding of the dead-letter queue.
pub const DEAD_LETTERS: &str = "DEAD_LETTERS";
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
        Self {
            max_retries: number(env, "TURN_MAX_RETRIES", 5),
            letter_max_retries: number(env, "LETTER_MAX_RETRIES", 100),
            backoff: Backoff {
                base_seconds: number(env, "RETRY_BASE_SECONDS", defaults.base_seconds),
                max_seconds: number(env, "RETRY_MAX_SECONDS", defaults.max_seconds),
            },
            faults,
        }
    }
}
