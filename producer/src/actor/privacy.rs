//! What a session's actor holds, for its player's export, and its erasure: every row of its
//! storage deleted (`deleteAll`), its alarm with it, and its live sockets closed.

use super::Actor;
use crate::error::ApiError;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use worker::Response;

/// The close code a live socket gets when its player is erased.
const ERASED_CLOSE_CODE: u16 = 1008;

impl Actor {
    /// Every row of every table of the actor's storage, by table (none when no session was
    /// ever started here: reading `sqlite_master` creates nothing).
    pub fn export(&self) -> Result<Response, ApiError> {
        #[derive(Deserialize)]
        struct Name {
            name: String,
        }
        let store = self.store();
        let tables: Vec<String> = store
            .rows::<Name>(chat_core::sql::actor::EXISTING_TABLES, vec![])
            .map_err(super::open::storage_error)?
            .into_iter()
            .map(|n| n.name)
            .filter(|n| !n.starts_with("_cf_") && !n.starts_with("sqlite_"))
            .collect();
        let mut holds = Map::new();
        for table in tables {
            let rows: Vec<Value> = store
                .rows(&format!("SELECT * FROM \"{table}\""), vec![])
                .map_err(super::open::storage_error)?;
            holds.insert(table, Value::Array(rows));
        }
        Ok(Response::from_json(&Value::Object(holds))?)
    }

    /// Deletes everything the actor holds and closes its sockets. A later call finds no
    /// session here, and D1 no longer holds one to adopt: 404, and nothing is created.
    pub async fn erase(&self) -> Result<Response, ApiError> {
        let sockets = self.state.get_websockets();
        for ws in &sockets {
            let _ = ws.close(Some(ERASED_CLOSE_CODE), Some("erased"));
        }
        self.state.storage().delete_alarm().await?;
        self.state.storage().delete_all().await?;
        self.ready.set(false);
        self.alarm.set(Some(None));
        // The frames a reconnect would get hold the replies: gone with the rest.
        *self.memory.frames.borrow_mut() = chat_core::live::FrameLog::default();
        Ok(Response::from_json(
            &json!({ "socketsClosed": sockets.len() }),
        )?)
    }
}
