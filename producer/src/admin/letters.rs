//! Dead letters: list and filter, show one, replay (dry run first), discard.
//!
//! A replay re-queues the original turn record on the turn queue. That is safe because the
//! consumer is idempotent: a turn already stored is a duplicate and changes nothing. Letters
//! whose payload is invalid, or that conflict with a stored turn, are reported and left
//! pending: queueing them again would only make another dead letter.

use crate::body;
use crate::db::{self, LetterRow};
use crate::error::ApiError;
use crate::services::Services;
use chat_core::admin::{
    ActionRequest, Cursor, LetterStatus, ListQuery, Selection, MAX_ADMIN_BODY_BYTES,
};
use chat_core::batch::StoredTurn;
use chat_core::ids::time_ordered;
use chat_core::replay::{self, Letter, ReplayPorts};
use chat_core::time::to_rfc3339;
use serde_json::{json, Value};
use worker::{Request, Response};
use worker_support::clock::{now_ms, random10};

fn letter_json(l: &LetterRow) -> Value {
    let mut v = json!({
        "id": l.id,
        "turnId": l.turn_id,
        "class": l.error_class,
        "error": l.error_text,
        "attempts": l.attempts,
        "firstFailedAt": to_rfc3339(l.first_failed_at),
        "lastFailedAt": to_rfc3339(l.last_failed_at),
        "status": l.status,
        "replayCount": l.replay_count,
    });
    if let Some(p) = &l.payload {
        v["payload"] = p.clone().into();
    }
    v
}

pub async fn list(req: Request, services: &Services) -> Result<Response, ApiError> {
    let url = req.url()?;
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let query = ListQuery::parse(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
    let rows = db::list_letters(
        &services.control()?,
        &query.filter,
        query.limit,
        query.cursor.as_ref(),
        false,
    )
    .await?;
    let next = (rows.len() == query.limit as usize)
        .then(|| rows.last().map(next_cursor))
        .flatten();
    let letters: Vec<Value> = rows.iter().map(letter_json).collect();
    Ok(Response::from_json(
        &json!({ "letters": letters, "nextCursor": next }),
    )?)
}

pub async fn show(services: &Services, id: &str) -> Result<Response, ApiError> {
    let rows = db::letters_by_ids(&services.control()?, &[id.to_owned()]).await?;
    let letter = rows
        .first()
        .ok_or_else(|| ApiError::not_found("letter_not_found", "no dead letter with this id"))?;
    Ok(Response::from_json(&letter_json(letter))?)
}

/// The letters a replay or discard names, at most `limit`, and where a filter's next call
/// goes on (when this one filled its limit).
async fn select(
    services: &Services,
    request: &ActionRequest,
) -> Result<(Vec<LetterRow>, Option<String>), ApiError> {
    let mut rows = match &request.selection {
        Selection::Ids(ids) => db::letters_by_ids(&services.control()?, ids).await?,
        Selection::Filter(f) => {
            db::list_letters(
                &services.control()?,
                f,
                request.limit,
                request.cursor.as_ref(),
                true,
            )
            .await?
        }
    };
    rows.truncate(request.limit as usize);
    let next = match &request.selection {
        Selection::Filter(_) if rows.len() == request.limit as usize => {
            rows.last().map(next_cursor)
        }
        _ => None,
    };
    Ok((rows, next))
}

/// The cursor that goes on after `last` (letters are ordered by last failure, then id).
fn next_cursor(last: &LetterRow) -> String {
    Cursor {
        after_failed_at: last.last_failed_at,
        after_id: last.id.clone(),
    }
    .encode()
}

fn selection_json(s: &Selection) -> String {
    match s {
        Selection::Ids(ids) => json!({ "ids": ids }).to_string(),
        Selection::Filter(f) => json!({ "filter": f }).to_string(),
    }
}

pub async fn replay(mut req: Request, services: &Services) -> Result<Response, ApiError> {
    let started = now_ms();
    let request = ActionRequest::parse(
        &body::read_json(&mut req, MAX_ADMIN_BODY_BYTES).await?,
        Some(LetterStatus::Pending),
    )?;
    let (letters, next) = select(services, &request).await?;

    // The run itself is `chat_core::replay`'s: judge, re-queue what would apply, mark it.
    let map = crate::shard_map::live(&services.env).await?;
    let borrowed: Vec<Letter<'_>> = letters
        .iter()
        .map(|l| Letter {
            id: &l.id,
            turn_id: l.turn_id.as_deref(),
            payload: l.payload.as_deref(),
        })
        .collect();
    let run = replay::replay(&borrowed, &map, request.dry_run, &Ports(services)).await?;
    let counts = run.counts;
    let run_id = request
        .run_id
        .clone()
        .unwrap_or_else(|| time_ordered(started, random10()).to_string());
    db::record_replay_run(
        &services.control()?,
        &run_id,
        started,
        now_ms(),
        request.dry_run,
        &selection_json(&request.selection),
        &counts,
    )
    .await?;
    if let Some(e) = run.failure {
        return Err(ApiError::QueueUnavailable(format!(
            "replay run {run_id} stopped after {} letters: {e}",
            counts.requeued
        )));
    }
    tracing::info!(run_id = %run_id, dry_run = request.dry_run, letters = counts.letters, requeued = counts.requeued, "replay");
    let results: Vec<Value> = letters
        .iter()
        .zip(&run.letters)
        .map(|(l, j)| {
            json!({ "id": l.id, "turnId": l.turn_id, "class": l.error_class, "verdict": j.verdict.as_str(), "reason": j.reason, "requeued": j.requeued })
        })
        .collect();
    Ok(Response::from_json(
        &json!({ "runId": run_id, "dryRun": request.dry_run, "counts": counts, "letters": results, "nextCursor": next }),
    )?)
}

/// The replay's ports over this Worker's bindings.
struct Ports<'a>(&'a Services);

impl ReplayPorts for Ports<'_> {
    type Error = ApiError;

    async fn archived_turns(
        &self,
        lookups: &[chat_core::archive::Lookup],
    ) -> Result<Vec<StoredTurn>, ApiError> {
        let store =
            worker_support::r2::R2Store::from_env(&self.0.env).map_err(ApiError::Internal)?;
        chat_core::archive::stored_turns(&store, lookups)
            .await
            .map_err(ApiError::ArchiveUnavailable)
    }

    async fn stored_turns(
        &self,
        binding: &str,
        turn_ids: &[&str],
    ) -> Result<Vec<StoredTurn>, ApiError> {
        db::stored_turns(&crate::databases::database(&self.0.env, binding)?, turn_ids).await
    }

    async fn requeue(&self, payloads: &[String]) -> Result<(), (usize, String)> {
        worker_support::queue::send_texts(&self.0.turns, payloads)
            .await
            .map_err(|(sent, e)| (sent, e.to_string()))
    }

    async fn mark_replayed(&self, ids: &[String]) -> Result<(), ApiError> {
        db::mark_letters(&self.0.control()?, ids, LetterStatus::Replayed, now_ms())
            .await
            .map(|_| ())
    }
}

pub async fn discard(mut req: Request, services: &Services) -> Result<Response, ApiError> {
    let request = ActionRequest::parse(
        &body::read_json(&mut req, MAX_ADMIN_BODY_BYTES).await?,
        None,
    )?;
    let (letters, next) = select(services, &request).await?;
    let ids: Vec<String> = letters
        .iter()
        .filter(|l| l.status != "discarded")
        .map(|l| l.id.clone())
        .collect();
    let discarded = if request.dry_run || ids.is_empty() {
        0
    } else {
        db::mark_letters(
            &services.control()?,
            &ids,
            LetterStatus::Discarded,
            now_ms(),
        )
        .await?
    };
    tracing::info!(
        dry_run = request.dry_run,
        matched = ids.len(),
        discarded,
        "discard"
    );
    Ok(Response::from_json(
        &json!({ "dryRun": request.dry_run, "matched": ids, "discarded": discarded, "nextCursor": next }),
    )?)
}
