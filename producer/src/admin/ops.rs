//! Reconcile, raw turn records, figures.

use crate::body;
use crate::databases::database;
use crate::db;
use crate::error::ApiError;
use crate::services::Services;
use chat_core::admin::{parse_raw_turns, parse_reconcile, reconcile, MAX_ADMIN_BODY_BYTES};
use chat_core::time::to_rfc3339;
use serde_json::json;
use worker::{Request, Response};
use worker_support::clock::now_ms;

/// Recomputes `user_stats` from `point_events` and `chat_messages`, reports every user whose
/// snapshot drifted, and (unless `dryRun`) repairs them in the same atomic batch.
pub async fn reconcile(mut req: Request, services: &Services) -> Result<Response, ApiError> {
    let mut request = parse_reconcile(&body::read_json(&mut req, MAX_ADMIN_BODY_BYTES).await?)?;
    let dry_run = request.dry_run;
    // One database at a time, in the map's order (`chat_core::admin::reconcile`). Each
    // database is checked for the buckets the map gives it and that are not moving, so a
    // copy in progress or left behind is never "repaired", nor a player checked twice.
    let map = crate::shard_map::refresh(&services.env).await?;
    let dbs = map.bindings();
    let page = reconcile::page(&dbs, request.after.as_deref())?;
    let binding = page.binding.clone();
    request.after = page.after.clone();
    let buckets = map.prefixes_json(&binding, true);
    let (span, drift, fixed) = db::reconcile(
        &database(&services.env, &binding)?,
        &request,
        &buckets,
        now_ms(),
    )
    .await?;
    let next_cursor = reconcile::next_cursor(
        &dbs,
        &page,
        span.checked,
        request.limit,
        span.last_id.clone(),
    );
    let drifted: Vec<_> = drift
        .iter()
        .map(|d| {
            json!({
                "userId": d.user_id,
                "storedTotal": d.stored_total,
                "ledgerTotal": d.ledger_total,
                "storedLevel": d.stored_level,
                "expectedLevel": d.expected_level,
                "storedLastMessageAt": d.stored_last.and_then(to_rfc3339),
                "expectedLastMessageAt": d.expected_last.and_then(to_rfc3339),
            })
        })
        .collect();
    tracing::info!(
        dry_run,
        checked = span.checked,
        drifted = drifted.len(),
        fixed,
        "reconcile"
    );
    Ok(Response::from_json(&json!({
        "dryRun": dry_run,
        "database": binding,
        "checked": span.checked,
        "drifted": drifted,
        "fixed": fixed,
        "nextCursor": next_cursor,
    }))?)
}

/// Queues raw turn records exactly as given, for operators and tests that need a duplicate,
/// a poison message or an old record version on the queue.
pub async fn enqueue_turns(mut req: Request, services: &Services) -> Result<Response, ApiError> {
    let texts = parse_raw_turns(&body::read_json(&mut req, MAX_ADMIN_BODY_BYTES).await?)?;
    worker_support::queue::send_texts(&services.turns, &texts)
        .await
        .map_err(|(sent, e)| {
            ApiError::QueueUnavailable(format!("{sent} of {} records queued: {e}", texts.len()))
        })?;
    Ok(Response::from_json(&json!({ "queued": texts.len() }))?)
}

/// Users, sessions, turns and points of every database, each counting only the buckets the
/// live map gives it (a copy during a move, or one not purged yet, is never counted twice),
/// and the dead letters of the control database. A database that fails is left out and
/// named (`partial`, `missing`).
/// Whether any database of the map holds session `id`.
pub async fn session_in_d1(services: &Services, id: uuid::Uuid) -> Result<bool, ApiError> {
    let map = services.map().await?;
    for binding in map.bindings() {
        let db = crate::services::Db {
            db: database(&services.env, binding)?,
            binding: binding.to_owned(),
        };
        if db::find_session(&db, id).await?.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

pub async fn stats(services: &Services) -> Result<Response, ApiError> {
    let map = services.map().await?;
    let mut databases = Vec::new();
    let mut missing: Vec<String> = Vec::new();
    let (mut users, mut sessions, mut turns, mut points) = (0, 0, 0, 0);
    for binding in map.bindings() {
        let row = match database(&services.env, binding) {
            Ok(db) => db::player_stats(&db, &map.prefixes_json(binding, false))
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(format!("{e:?}")),
        };
        let row = match row {
            Ok(row) => row,
            Err(error) => {
                tracing::error!(database = binding, error = %error, "admin stats: a database did not answer");
                missing.push(binding.to_owned());
                continue;
            }
        };
        let n = |k: &str| row[k].as_i64().unwrap_or(0);
        users += n("users");
        sessions += n("sessions");
        turns += n("turns");
        points += n("total_points");
        databases.push(json!({ "binding": binding, "users": n("users"), "sessions": n("sessions"), "turns": n("turns"), "totalPoints": n("total_points") }));
    }
    let control = match services.control() {
        Ok(db) => db::control_stats(&db).await.map_err(|e| e.to_string()),
        Err(e) => Err(format!("{e:?}")),
    };
    let (dead_letters, replay_runs) = match control {
        Ok(row) => {
            let by_class: serde_json::Value = row["pending_by_class"]
                .as_str()
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or_else(|| json!({}));
            (
                json!({
                    "pending": row["pending"],
                    "replayed": row["replayed"],
                    "discarded": row["discarded"],
                    "pendingByClass": by_class,
                }),
                row["replay_runs"].clone(),
            )
        }
        Err(error) => {
            tracing::error!(error = %error, "admin stats: the control database did not answer");
            let control = chat_core::shards::CONTROL.to_owned();
            if !missing.contains(&control) {
                missing.push(control);
            }
            (serde_json::Value::Null, serde_json::Value::Null)
        }
    };
    Ok(Response::from_json(&json!({
        "users": users,
        "sessions": sessions,
        "turns": turns,
        "totalPoints": points,
        "databases": databases,
        "deadLetters": dead_letters,
        "replayRuns": replay_runs,
        "partial": !missing.is_empty(),
        "missing": missing,
    }))?)
}
