//! The bindings and configuration of the chat Worker, read from `Env` in one place.

use crate::auth::AuthMode;
use crate::error::ApiError;
use worker::{D1Database, Env, Queue};

/// The D1 database binding (both Workers share it).
pub const DB: &str = "DB";
/// The producer binding of the turn queue.
pub const TURNS: &str = "TURNS";
/// Which auth resolver runs: see `auth::AuthMode`.
pub const AUTH_MODE: &str = "AUTH_MODE";

pub struct Services {
    pub db: D1Database,
    pub turns: Queue,
    pub auth: AuthMode,
}

impl Services {
    pub fn from_env(env: &Env) -> Result<Self, ApiError> {
        let mode = env
            .var(AUTH_MODE)
            .map(|v| v.to_string())
            .unwrap_or_default();
        Ok(Self {
            db: env.d1(DB)?,
            turns: env.queue(TURNS)?,
            auth: AuthMode::parse(&mode),
        })
    }
}
