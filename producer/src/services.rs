//! The bindings and configuration of the chat Worker, read from `Env` in one place. (The
//! session actor reads its own: the engine and the turn queue are used only there.)

use crate::auth::Auth;
use crate::error::ApiError;
use worker::{D1Database, Env, Queue};

/// The D1 database binding (both Workers share it).
pub const DB: &str = "DB";
/// The producer binding of the turn queue.
pub const TURNS: &str = "TURNS";

pub struct Services {
    pub db: D1Database,
    pub turns: Queue,
    pub auth: Auth,
}

impl Services {
    pub fn from_env(env: &Env) -> Result<Self, ApiError> {
        Ok(Self {
            db: env.d1(DB)?,
            turns: env.queue(TURNS)?,
            auth: Auth::from_env(env),
        })
    }
}
