//! Reconcile, raw turn records, figures.

use crate::body;
use crate::db;
use crate::error::ApiError;
use crate::services::Services;
use chat_core::admin::{parse_raw_turns, parse_reconcile, MAX_ADMIN_BODY_BYTES};
use chat_core::time::to_rfc3339;
use serde_json::json;
use worker::{Request, Response};
use worker_support::clock::now_ms;

/// Recomputes `user_stats` from `point_events` and `chat_messages`, reports every user whose
/// snapshot drifted, and (unless `dryRun`) repairs them in the same atomic batch.
pub async fn reconcile(mut req: Request, services: &Services) -> Result<Response, ApiError> {
    let request = parse_reconcile(&body::read_json(&mut req, MAX_ADMIN_BODY_BYTES).await?)?;
    let dry_run = request.dry_run;
    let (span, drift, fixed) = db::reconcile(&services.db, &request, now_ms()).await?;
    // A full page may have more users after it; a short one is the last.
    let next_cursor = span
        .last_id
        .filter(|_| span.checked >= i64::from(request.limit));
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

pub async fn stats(services: &Services) -> Result<Response, ApiError> {
    let row = db::admin_stats(&services.db).await?;
    let by_class: serde_json::Value = row["pending_by_class"]
        .as_str()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_else(|| json!({}));
    Ok(Response::from_json(&json!({
        "users": row["users"],
        "sessions": row["sessions"],
        "turns": row["turns"],
        "totalPoints": row["total_points"],
        "deadLetters": {
            "pending": row["pending"],
            "replayed": row["replayed"],
            "discarded": row["discarded"],
            "pendingByClass": by_class,
        },
        "replayRuns": row["replay_runs"],
    }))?)
}
