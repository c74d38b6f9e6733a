//! Every D1 call of the chat Worker. The SQL itself lives in `chat_core::sql`, shared with the
//! native tests. D1 binds no 64-bit integers, so times go in as JavaScript numbers (< 2^53).

use crate::databases::failed;
use crate::error::ApiError;
use crate::services::Db;
use chat_core::admin::{Cursor, LetterFilter, LetterStatus, ReconcileRequest};
use chat_core::batch::{user_json, StoredTurn};
use chat_core::identity::Identity;
use chat_core::request::NewSession;
use chat_core::sql;
use serde::Deserialize;
use uuid::Uuid;
use worker::wasm_bindgen::JsValue;
use worker::D1Database;
use worker_support::d1::{metered_batch, Metered};

/// A row of `chat_sessions`: the same columns as the actor's own `session` row.
pub use chat_core::session::SessionRow;

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

/// Upserts the player and inserts the session, atomically. Returns false, having written
/// nothing, when this database has fenced the player's bucket (it is moving, or this
/// isolate's map is stale).
pub async fn create_session(
    db: &Db,
    identity: &Identity,
    session_id: Uuid,
    session: &NewSession,
    now_ms: i64,
) -> Result<bool, ApiError> {
    let fail = failed(&db.binding);
    let upsert = db
        .db
        .prepare(sql::UPSERT_USERS)
        .bind(&[text(user_json(identity, now_ms))])
        .map_err(&fail)?;
    let insert = db
        .db
        .prepare(sql::INSERT_SESSION)
        .bind(&[
            text(session_id),
            text(identity.user_id()),
            text(session.character.as_str()),
            text(&session.username),
            text(session.locale.as_str()),
            number(now_ms),
        ])
        .map_err(&fail)?;
    let results = metered_batch(&db.db, vec![upsert, insert])
        .await
        .map_err(&fail)?;
    let inserted = results
        .get(1)
        .and_then(|r| r.meta().ok().flatten())
        .and_then(|m| m.changes)
        .unwrap_or(0);
    Ok(inserted == 1)
}

pub async fn find_session(db: &Db, id: Uuid) -> Result<Option<SessionRow>, ApiError> {
    let fail = failed(&db.binding);
    db.db
        .prepare(sql::SELECT_SESSION)
        .bind(&[text(id)])
        .map_err(&fail)?
        .metered_first()
        .await
        .map_err(&fail)
}

pub async fn read_stats(db: &Db, user_id: Uuid) -> Result<Option<StatsRow>, ApiError> {
    let fail = failed(&db.binding);
    db.db
        .prepare(sql::SELECT_STATS)
        .bind(&[text(user_id)])
        .map_err(&fail)?
        .metered_first()
        .await
        .map_err(&fail)
}

// ---- Admin -------------------------------------------------------------------------------

/// A row of `dead_letters` (`payload` only where the query selects it).
#[derive(Debug, Deserialize)]
pub struct LetterRow {
    pub id: String,
    pub turn_id: Option<String>,
    pub error_class: String,
    pub error_text: String,
    pub attempts: i64,
    pub first_failed_at: i64,
    pub last_failed_at: i64,
    pub status: String,
    pub replay_count: i64,
    #[serde(default)]
    pub payload: Option<String>,
}

fn opt_text(s: Option<&str>) -> JsValue {
    s.map_or(JsValue::NULL, JsValue::from_str)
}

fn opt_number(n: Option<i64>) -> JsValue {
    n.map_or(JsValue::NULL, number)
}

/// Letters matching `filter`, oldest failure first, after `cursor`; with payloads if `full`.
pub async fn list_letters(
    db: &D1Database,
    filter: &LetterFilter,
    limit: u32,
    cursor: Option<&Cursor>,
    full: bool,
) -> Result<Vec<LetterRow>, ApiError> {
    let query = if full {
        sql::LIST_LETTERS_FULL.as_str()
    } else {
        sql::LIST_LETTERS.as_str()
    };
    let result = db
        .prepare(query)
        .bind(&[
            opt_text(filter.status.map(|s| s.as_str())),
            opt_text(filter.class.map(|c| c.as_str())),
            opt_text(filter.q.as_deref()),
            opt_number(filter.from),
            opt_number(filter.to),
            opt_number(cursor.map(|c| c.after_failed_at)),
            opt_text(cursor.map(|c| c.after_id.as_str())),
            number(i64::from(limit)),
        ])?
        .metered_all()
        .await?;
    Ok(result.results()?)
}

/// Letters by id, with payloads.
pub async fn letters_by_ids(db: &D1Database, ids: &[String]) -> Result<Vec<LetterRow>, ApiError> {
    let ids = serde_json::to_string(ids).map_err(|e| ApiError::Internal(e.to_string()))?;
    let result = db
        .prepare(sql::LETTERS_BY_IDS.as_str())
        .bind(&[text(ids)])?
        .metered_all()
        .await?;
    Ok(result.results()?)
}

/// What is stored under these turn ids.
pub async fn stored_turns(db: &D1Database, turn_ids: &[&str]) -> Result<Vec<StoredTurn>, ApiError> {
    if turn_ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<_> = turn_ids
        .iter()
        .map(|id| serde_json::json!({ "turn_id": id }))
        .collect();
    let result = db
        .prepare(sql::SELECT_STORED_TURNS)
        .bind(&[text(serde_json::Value::Array(rows))])?
        .metered_all()
        .await?;
    Ok(result.results()?)
}

/// Sets the status of the letters `ids`: replayed (counting the replay) or discarded.
/// Returns how many letters changed.
pub async fn mark_letters(
    db: &D1Database,
    ids: &[String],
    status: LetterStatus,
    now_ms: i64,
) -> Result<usize, ApiError> {
    let statement = match status {
        LetterStatus::Replayed => sql::MARK_REPLAYED,
        LetterStatus::Discarded => sql::DISCARD_LETTERS,
        LetterStatus::Pending => {
            return Err(ApiError::Internal(
                "letters are never marked pending".into(),
            ))
        }
    };
    let ids = serde_json::to_string(ids).map_err(|e| ApiError::Internal(e.to_string()))?;
    let result = db
        .prepare(statement)
        .bind(&[text(ids), number(now_ms)])?
        .metered_run()
        .await?;
    Ok(result.meta()?.and_then(|m| m.changes).unwrap_or(0))
}

use chat_core::replay::ReplayCounts;

pub async fn record_replay_run(
    db: &D1Database,
    run_id: &str,
    started_ms: i64,
    finished_ms: i64,
    dry_run: bool,
    filter_json: &str,
    c: &ReplayCounts,
) -> Result<(), ApiError> {
    let n = |v: usize| number(v as i64);
    db.prepare(sql::RECORD_REPLAY_RUN)
        .bind(&[
            text(run_id),
            number(started_ms),
            number(finished_ms),
            number(i64::from(dry_run)),
            text(filter_json),
            n(c.letters),
            n(c.requeued),
            n(c.would_apply),
            n(c.already_applied),
            n(c.conflicts),
            n(c.invalid),
        ])?
        .metered_run()
        .await?;
    Ok(())
}

/// A user whose snapshot drifted from the ledger.
#[derive(Debug, Deserialize)]
pub struct DriftRow {
    pub user_id: String,
    pub stored_total: Option<i64>,
    pub ledger_total: i64,
    pub stored_level: Option<i64>,
    pub expected_level: i64,
    pub stored_last: Option<i64>,
    pub expected_last: Option<i64>,
}

/// One page of a reconcile: how many users it checked and the last of them.
#[derive(Debug, Deserialize)]
pub struct PageSpan {
    pub checked: i64,
    pub last_id: Option<String>,
}

/// One page of users: its span, its drifted users and, unless `dry_run`, their repair, in one
/// atomic batch.
/// `buckets` is a JSON array of the bucket prefixes to check (`ShardMap::prefixes_json`).
pub async fn reconcile(
    db: &D1Database,
    request: &ReconcileRequest,
    buckets: &str,
    now_ms: i64,
) -> Result<(PageSpan, Vec<DriftRow>, usize), ApiError> {
    let page = || {
        [
            opt_text(request.after.as_deref()),
            number(i64::from(request.limit)),
            text(buckets),
        ]
    };
    let mut statements = vec![
        db.prepare(sql::USER_PAGE_SPAN.as_str()).bind(&page())?,
        db.prepare(sql::SELECT_DRIFT.as_str()).bind(&page())?,
    ];
    if !request.dry_run {
        // The repair changes totals outside a batch: the leaderboard table is rebuilt when
        // it did.
        statements.push(
            db.prepare(sql::MARK_LEADERS_IF_DRIFT.as_str())
                .bind(&page())?,
        );
        let [after, limit, buckets] = page();
        statements.push(db.prepare(sql::FIX_DRIFT.as_str()).bind(&[
            after,
            limit,
            buckets,
            number(now_ms),
        ])?);
        for statement in sql::leaders::REBUILD_MARKED {
            statements.push(db.prepare(statement));
        }
    }
    let results = metered_batch(db, statements).await?;
    let span: PageSpan = results
        .first()
        .map(|r| r.results())
        .transpose()?
        .and_then(|rows: Vec<PageSpan>| rows.into_iter().next())
        .ok_or_else(|| ApiError::Internal("the page span returned no row".into()))?;
    let drift: Vec<DriftRow> = results
        .get(1)
        .map(|r| r.results())
        .transpose()?
        .unwrap_or_default();
    let fixed = results
        .get(3)
        .and_then(|r| r.meta().ok().flatten())
        .and_then(|m| m.changes)
        .unwrap_or(0);
    Ok((span, drift, fixed))
}

/// One database's player figures for `GET /admin/stats`, counting only the buckets of
/// `buckets` (a JSON array of prefixes).
pub async fn player_stats(db: &D1Database, buckets: &str) -> worker::Result<serde_json::Value> {
    let row: Option<serde_json::Value> = db
        .prepare(sql::PLAYER_STATS)
        .bind(&[text(buckets)])?
        .metered_first()
        .await?;
    row.ok_or_else(|| worker::Error::RustError("the stats query returned no row".into()))
}

/// The control database's figures for `GET /admin/stats`: dead letters and replay runs.
pub async fn control_stats(db: &D1Database) -> worker::Result<serde_json::Value> {
    let row: Option<serde_json::Value> = db.prepare(sql::CONTROL_STATS).metered_first().await?;
    row.ok_or_else(|| worker::Error::RustError("the stats query returned no row".into()))
}
