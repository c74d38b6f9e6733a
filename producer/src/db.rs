//! Every D1 call of the chat Worker. The SQL itself lives in `chat_core::sql`, shared with the
//! native tests. D1 binds no 64-bit integers, so times go in as JavaScript numbers (< 2^53).

use crate::error::ApiError;
use chat_core::batch::user_json;
use chat_core::identity::Identity;
use chat_core::request::NewSession;
use chat_core::sql;
use serde::Deserialize;
use uuid::Uuid;
use worker::wasm_bindgen::JsValue;
use worker::D1Database;

/// A row of `chat_sessions`.
#[derive(Debug, Deserialize)]
pub struct SessionRow {
    pub user_id: String,
    pub character_type: String,
    pub locale: String,
    pub created_at: i64,
    pub ended_at: Option<i64>,
}

/// A row of `user_stats`.
#[derive(Debug, Deserialize)]
pub struct StatsRow {
    pub total_points: i64,
    pub intimacy_level: i64,
    pub last_message_at: Option<i64>,
}

/// A row of `chat_messages`.
#[derive(Debug, Deserialize)]
pub struct MessageRow {
    pub id: String,
    pub role: String,
    pub content: String,
    pub score_raw: Option<i64>,
    pub score_adjusted: Option<i64>,
    pub emotion: Option<String>,
    pub created_at: i64,
}

fn text(s: impl ToString) -> JsValue {
    JsValue::from(s.to_string())
}

fn number(n: i64) -> JsValue {
    JsValue::from(n as f64)
}

/// Upserts the player and inserts the session, atomically.
pub async fn create_session(
    db: &D1Database,
    identity: &Identity,
    session_id: Uuid,
    session: &NewSession,
    now_ms: i64,
) -> Result<(), ApiError> {
    let upsert = db
        .prepare(sql::UPSERT_USERS)
        .bind(&[text(user_json(identity, now_ms))])?;
    let insert = db.prepare(sql::INSERT_SESSION).bind(&[
        text(session_id),
        text(identity.user_id()),
        text(session.character.as_str()),
        text(&session.username),
        text(session.locale.as_str()),
        number(now_ms),
    ])?;
    db.batch(vec![upsert, insert]).await?;
    Ok(())
}

pub async fn find_session(db: &D1Database, id: Uuid) -> Result<Option<SessionRow>, ApiError> {
    Ok(db
        .prepare(sql::SELECT_SESSION)
        .bind(&[text(id)])?
        .first(None)
        .await?)
}

pub async fn read_stats(db: &D1Database, user_id: Uuid) -> Result<Option<StatsRow>, ApiError> {
    Ok(db
        .prepare(sql::SELECT_STATS)
        .bind(&[text(user_id)])?
        .first(None)
        .await?)
}

pub async fn list_messages(
    db: &D1Database,
    user_id: Uuid,
    session_id: Uuid,
    limit: u32,
) -> Result<Vec<MessageRow>, ApiError> {
    let result = db
        .prepare(sql::SELECT_SESSION_MESSAGES)
        .bind(&[text(user_id), text(session_id), number(i64::from(limit))])?
        .all()
        .await?;
    Ok(result.results()?)
}
