//! The bindings a request of the chat Worker uses, and its sign-in, built from `Env` and the
//! isolate's [`Config`]. (The session actor builds its engine and turn queue itself: only it
//! uses them.)

use crate::auth::Auth;
use crate::config::{Config, TURNS};
use crate::databases::database;
use crate::error::ApiError;
use chat_core::shards::{ShardMap, CONTROL};
use std::rc::Rc;
use uuid::Uuid;
use worker::{D1Database, Env, Queue};

pub struct Services {
    pub turns: Queue,
    pub auth: Auth,
    pub env: Env,
}

/// A database with its binding, so that its failures name it.
pub struct Db {
    pub binding: String,
    pub db: D1Database,
}

impl Services {
    pub fn from_env(env: &Env) -> Result<Self, ApiError> {
        Ok(Self {
            turns: env.queue(TURNS)?,
            auth: Auth::from_config(&Config::of(env)),
            env: env.clone(),
        })
    }

    /// The control database (`DB_0`): dead letters, replay runs, the bucket map's overrides.
    pub fn control(&self) -> Result<D1Database, ApiError> {
        database(&self.env, CONTROL)
    }

    /// The database holding `user`'s rows, for reading.
    pub async fn player_db(&self, user: Uuid) -> Result<Db, ApiError> {
        let binding = crate::shard_map::player_binding(&self.env, user).await?;
        Ok(Db {
            db: database(&self.env, &binding)?,
            binding,
        })
    }

    /// The database holding `user`'s rows, for writing (refused while the bucket moves).
    pub async fn player_db_for_write(&self, user: Uuid) -> Result<Db, ApiError> {
        let binding = crate::shard_map::player_binding_for_write(&self.env, user).await?;
        Ok(Db {
            db: database(&self.env, &binding)?,
            binding,
        })
    }

    /// The live map this isolate routes with.
    pub async fn map(&self) -> Result<Rc<ShardMap>, ApiError> {
        crate::shard_map::live(&self.env).await
    }
}
