//! The bindings and configuration of the chat Worker, read from `Env` in one place. (The
//! session actor reads its own: the engine and the turn queue are used only there.)

use crate::auth::Auth;
use crate::error::ApiError;
use chat_core::shards::CONTROL;
use uuid::Uuid;
use worker::{D1Database, Env, Queue};

/// The producer binding of the turn queue.
pub const TURNS: &str = "TURNS";

pub struct Services {
    /// The control database (`DB_0`): dead letters, replay runs, the bucket map's overrides.
    /// Players' rows are found through `shard_map`.
    pub control: D1Database,
    pub turns: Queue,
    pub auth: Auth,
    pub env: Env,
}

impl Services {
    pub fn from_env(env: &Env) -> Result<Self, ApiError> {
        Ok(Self {
            control: env.d1(CONTROL)?,
            turns: env.queue(TURNS)?,
            auth: Auth::from_env(env),
            env: env.clone(),
        })
    }

    /// The database holding `user`'s rows, for reading.
    pub async fn player_db(&self, user: Uuid) -> Result<D1Database, ApiError> {
        crate::shard_map::player_db(&self.env, user).await
    }

    /// The database holding `user`'s rows, for writing (refused while the bucket moves).
    pub async fn player_db_for_write(&self, user: Uuid) -> Result<D1Database, ApiError> {
        crate::shard_map::player_db_for_write(&self.env, user).await
    }

    /// Every database of the bucket map, with its binding.
    pub async fn all_dbs(&self) -> Result<Vec<(String, D1Database)>, ApiError> {
        crate::shard_map::all_dbs(&self.env).await
    }
}
