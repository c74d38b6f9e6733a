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
    let mut request = parse_reconcile(&body::read_json(&mut req, MAX_ADMIN_BODY_BYTES).await?)?;
    let dry_run = request.dry_run;
    // The cursor is `DB_k/<last user id>`: one database at a time, in the map's order.
    let dbs = services.all_dbs().await?;
    let (binding, after) = match request.after.as_deref() {
        None => (dbs[0].0.clone(), None),
        Some(cursor) => match cursor.split_once('/') {
            Some((b, a)) => (b.to_owned(), Some(a.to_owned()).filter(|a| !a.is_empty())),
            None => (dbs[0].0.clone(), Some(cursor.to_owned())),
        },
    };
    let at = dbs.iter().position(|(b, _)| *b == binding).ok_or_else(|| {
        ApiError::invalid(
            "invalid_cursor",
            format!("the cursor names {binding:?}, which the bucket map does not use"),
        )
    })?;
    request.after = after;
    let (span, drift, fixed) = db::reconcile(&dbs[at].1, &request, now_ms()).await?;
    // A full page may have more users after it; a short one ends this database.
    let next_cursor = match span
        .last_id
        .filter(|_| span.checked >= i64::from(request.limit))
    {
        Some(last) => Some(format!("{binding}/{last}")),
        None => dbs.get(at + 1).map(|(next, _)| format!("{next}/")),
    };
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

pub async fn stats(services: &Services) -> Result<Response, ApiError> {
    // Players' figures are summed over every database; the letters live in the control one.
    let mut databases = Vec::new();
    let (mut users, mut sessions, mut turns, mut points) = (0, 0, 0, 0);
    for (binding, db) in services.all_dbs().await? {
        let row = db::admin_stats(&db).await?;
        let n = |k: &str| row[k].as_i64().unwrap_or(0);
        users += n("users");
        sessions += n("sessions");
        turns += n("turns");
        points += n("total_points");
        databases.push(json!({ "binding": binding, "users": n("users"), "sessions": n("sessions"), "turns": n("turns"), "totalPoints": n("total_points") }));
    }
    let row = db::admin_stats(&services.control).await?;
    let by_class: serde_json::Value = row["pending_by_class"]
        .as_str()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_else(|| json!({}));
    Ok(Response::from_json(&json!({
        "users": users,
        "sessions": sessions,
        "turns": turns,
        "totalPoints": points,
        "databases": databases,
        "deadLetters": {
            "pending": row["pending"],
            "replayed": row["replayed"],
            "discarded": row["discarded"],
            "pendingByClass": by_class,
        },
        "replayRuns": row["replay_runs"],
    }))?)
}
