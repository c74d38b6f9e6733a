//! Opening a session's actor: its storage upgraded in place to the current schema, a
//! session started (or adopted from D1, for a session started before the actors existed or
//! whose start was lost), and what an operator sees of it.
//!
//! Storage is created only when a session starts (or is adopted): a request for a session
//! id that does not exist reads `sqlite_master`, answers 404, and leaves nothing.

use super::store::{ActorStore, Counts};
use super::Actor;
use crate::databases::database;
use crate::db;
use crate::error::ApiError;
use chat_core::domain::SessionId;
use chat_core::session::{SessionRow, SessionState};
use chat_core::sql::actor as sql;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;
use worker::Response;

pub fn storage_error(e: chat_core::turn::StoreError) -> ApiError {
    ApiError::Internal(format!("the actor's storage: {}", e.0))
}

impl Actor {
    pub fn store(&self) -> ActorStore {
        ActorStore::new(self.state.storage().sql())
    }

    /// Opens the storage: upgrades an older schema in place, and answers whether a session
    /// was ever started here. It writes nothing when none was: reading `sqlite_master`
    /// creates no table.
    pub fn open(&self) -> Result<bool, ApiError> {
        if self.ready.get() {
            return Ok(true);
        }
        #[derive(Deserialize)]
        struct Name {
            name: String,
        }
        #[derive(Deserialize)]
        struct Version {
            schema_version: i64,
        }
        let store = self.store();
        let tables: Vec<String> = store
            .rows::<Name>(sql::EXISTING_TABLES, vec![])
            .map_err(storage_error)?
            .into_iter()
            .map(|n| n.name)
            .collect();
        let version = if tables.iter().any(|t| t == "actor_meta") {
            store
                .rows::<Version>(sql::SELECT_VERSION, vec![])
                .map_err(storage_error)?
                .first()
                .map(|v| v.schema_version)
        } else {
            None
        };
        match sql::schema(&tables, version).map_err(ApiError::Internal)? {
            sql::Schema::Empty => return Ok(false),
            sql::Schema::Ready => {}
            sql::Schema::Upgrade(steps) => {
                for step in steps {
                    store.exec(step, vec![]).map_err(storage_error)?;
                }
                tracing::info!(to = sql::SCHEMA_VERSION, "session actor storage upgraded");
            }
        }
        self.ready.set(true);
        Ok(true)
    }

    pub fn start(&self, s: &SessionState) -> Result<(), ApiError> {
        // Upgrade first: the schema's `CREATE TABLE IF NOT EXISTS` would leave an old table
        // as it is.
        self.open()?;
        self.store().start(s).map_err(storage_error)?;
        self.ready.set(true);
        Ok(())
    }

    pub fn session(&self) -> Result<Option<SessionState>, ApiError> {
        if !self.open()? {
            return Ok(None);
        }
        use chat_core::turn::SessionStore;
        self.store().session().map_err(storage_error)
    }

    /// Makes sure the storage holds session `id`, adopting it from D1 when this actor has
    /// never seen it. The row is looked for in the asking player's database (a session of
    /// another player is not theirs to play, and the turn runner refuses them anyway). An
    /// unknown id writes nothing anywhere. Who may play is the runner's to check, once.
    pub async fn hold_session(&self, id: SessionId, player: Uuid) -> Result<(), ApiError> {
        if self.session()?.is_some() {
            return Ok(());
        }
        let binding = crate::shard_map::player_binding(&self.env, player).await?;
        let db = crate::services::Db {
            db: database(&self.env, &binding)?,
            binding,
        };
        let Some(row) = db::find_session(&db, id.uuid()).await? else {
            return Ok(());
        };
        let adopted = SessionRow::into_state(row).map_err(ApiError::Internal)?;
        self.start(&adopted)?;
        tracing::info!(session_id = %id, "session actor adopted its session from D1");
        Ok(())
    }

    /// What the actor holds, for operators (`GET /admin/sessions/{id}`).
    pub async fn describe(&self) -> Result<Response, ApiError> {
        let session = self.session()?.ok_or_else(|| {
            ApiError::not_found(
                "session_not_found",
                "no session with this id for this player",
            )
        })?;
        // Read past the usage meter: an operator's look is not part of any turn's cost (the
        // cost benchmark asks every actor for this between its marks).
        let counts: Counts = self.state.storage().sql().exec(sql::COUNTS, None)?.one()?;
        let alarm = self.state.storage().get_alarm().await?;
        Ok(Response::from_json(&json!({
            "session": session,
            "turnsHeld": counts.turns_held,
            "turnsUnconfirmed": counts.turns_unconfirmed,
            "keysHeld": counts.keys_held,
            "answersHeld": counts.answers_held,
            "ticketsHeld": counts.tickets_held,
            "alarmAt": alarm.map(chat_core::time::to_rfc3339),
            "turnsWaiting": self.memory.gate.waiting(),
            "liveSockets": self.state.get_websockets().len(),
            "framesKept": self.memory.frames.borrow().len(),
            "storageBytes": self.state.storage().sql().database_size(),
            "wasmMemoryBytes": worker_support::memory::wasm_memory_bytes(),
        }))?)
    }
}
