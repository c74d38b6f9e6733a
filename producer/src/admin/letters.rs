//! Dead letters: list and filter, show one, replay (dry run first), discard.
//!
//! A replay re-queues the original turn record on the turn queue. That is safe because the
//! consumer is idempotent: a turn already stored is a duplicate and changes nothing. Letters
//! whose payload is invalid, or that conflict with a stored turn, are reported and left
//! pending: queueing them again would only make another dead letter.

use crate::body;
use crate::db::{self, LetterRow, ReplayCounts};
use crate::error::ApiError;
use crate::services::Services;
use chat_core::admin::{
    ActionRequest, Cursor, LetterStatus, ListQuery, Selection, MAX_ADMIN_BODY_BYTES,
};
use chat_core::dead_letter::{verdict, Verdict};
use chat_core::ids::time_ordered;
use chat_core::record::TurnRecord;
use chat_core::time::to_rfc3339;
use serde_json::{json, Value};
use std::collections::HashMap;
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

    // Judge every letter against what its player's database holds now. A payload that is
    // not a record has no player, and its verdict is "invalid" whatever is stored.
    let map = crate::shard_map::live(&services.env).await?;
    let mut by_db: HashMap<&str, Vec<&str>> = HashMap::new();
    for l in &letters {
        let record = l
            .payload
            .as_deref()
            .and_then(|p| TurnRecord::decode(p).ok());
        if let (Some(turn), Some(record)) = (l.turn_id.as_deref(), record) {
            by_db
                .entry(map.binding(&record.user.id))
                .or_default()
                .push(turn);
        }
    }
    let mut stored = Vec::new();
    for (binding, turn_ids) in by_db {
        stored.extend(
            db::stored_turns(
                &crate::databases::database(&services.env, binding)?,
                &turn_ids,
            )
            .await?,
        );
    }
    let stored: HashMap<&str, _> = stored.iter().map(|s| (s.id.as_str(), s)).collect();
    let mut counts = ReplayCounts {
        letters: letters.len(),
        ..Default::default()
    };
    let judged: Vec<(Verdict, String)> = letters
        .iter()
        .map(|l| {
            let payload = l.payload.as_deref().unwrap_or_default();
            let (v, reason) = verdict(
                payload,
                l.turn_id.as_deref().and_then(|t| stored.get(t).copied()),
            );
            match v {
                Verdict::WouldApply => counts.would_apply += 1,
                Verdict::AlreadyApplied => counts.already_applied += 1,
                Verdict::Conflict => counts.conflicts += 1,
                Verdict::Invalid => counts.invalid += 1,
            }
            (v, reason)
        })
        .collect();

    // A real run re-queues what can be stored, then marks exactly what was sent.
    let mut requeued = vec![false; letters.len()];
    let mut failure = None;
    if !request.dry_run {
        let chosen: Vec<usize> = (0..letters.len())
            .filter(|&i| judged[i].0.replayable())
            .collect();
        let texts: Vec<String> = chosen
            .iter()
            .map(|&i| letters[i].payload.clone().unwrap_or_default())
            .collect();
        let sent = match worker_support::queue::send_texts(&services.turns, &texts).await {
            Ok(()) => texts.len(),
            Err((sent, e)) => {
                failure = Some(e.to_string());
                sent
            }
        };
        let ids: Vec<String> = chosen[..sent]
            .iter()
            .map(|&i| letters[i].id.clone())
            .collect();
        if !ids.is_empty() {
            db::mark_letters(&services.control()?, &ids, LetterStatus::Replayed, now_ms()).await?;
        }
        chosen[..sent].iter().for_each(|&i| requeued[i] = true);
        counts.requeued = sent;
    }
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
    if let Some(e) = failure {
        return Err(ApiError::QueueUnavailable(format!(
            "replay run {run_id} stopped after {} letters: {e}",
            counts.requeued
        )));
    }
    tracing::info!(run_id = %run_id, dry_run = request.dry_run, letters = counts.letters, requeued = counts.requeued, "replay");
    let results: Vec<Value> = letters
        .iter()
        .zip(&judged)
        .zip(&requeued)
        .map(|((l, (v, reason)), r)| {
            json!({ "id": l.id, "turnId": l.turn_id, "class": l.error_class, "verdict": v.as_str(), "reason": reason, "requeued": r })
        })
        .collect();
    Ok(Response::from_json(
        &json!({ "runId": run_id, "dryRun": request.dry_run, "counts": counts, "letters": results, "nextCursor": next }),
    )?)
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
