//! `GET /api/leaderboard?limit=1..100`: the top players by `total_points`, across every
//! database. Each database gives its own top `limit` (from its `leaders` table, kept by the consumer)
//! among the buckets the live map gives it, so a bucket's copy during a move, or its old copy
//! before the purge, never shows a player twice; the pages are merged: highest total first,
//! ties broken by user id. A database that fails is left out and named (`partial`,
//! `missing`): one database's outage does not take the leaderboard from everyone.

use crate::databases::database;
use crate::error::ApiError;
use crate::services::Services;
use chat_core::request::leaderboard_limit;
use chat_core::shards::{merge_leaders, Leader};
use chat_core::sql::leaders::LEADERBOARD;
use futures_util::future::join_all;
use serde_json::json;
use worker::{Request, Response};
use worker_support::d1::Metered;

pub async fn top(req: Request, services: &Services) -> Result<Response, ApiError> {
    services.auth.resolve(&req).await?;
    let url = req.url()?;
    let pairs: Vec<_> = url.query_pairs().collect();
    let limit = leaderboard_limit(pairs.iter().map(|(k, v)| (k.as_ref(), v.as_ref())))?;
    let map = services.map().await?;
    let bindings = map.bindings();
    let pages = join_all(bindings.iter().map(|&binding| {
        let buckets = map.prefixes_json(binding, false);
        async move {
            let db = database(&services.env, binding).map_err(|e| format!("{e:?}"))?;
            db.prepare(LEADERBOARD)
                .bind(&[limit.into(), buckets.into()])
                .map_err(|e| e.to_string())?
                .metered_all()
                .await
                .and_then(|r| r.results::<Leader>())
                .map_err(|e| e.to_string())
        }
    }))
    .await;
    let mut missing = Vec::new();
    let mut found = Vec::new();
    for (binding, page) in bindings.iter().zip(pages) {
        match page {
            Ok(rows) => found.push(rows),
            Err(error) => {
                tracing::error!(database = binding, error = %error, "leaderboard: a database did not answer; answering without it");
                missing.push(*binding);
            }
        }
    }
    let leaders: Vec<_> = merge_leaders(found, limit as usize)
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            json!({
                "rank": i + 1,
                "userId": l.user_id,
                "displayName": l.display_name.or(l.x_username.map(|x| format!("@{x}"))),
                "totalPoints": l.total_points,
                "intimacyLevel": l.intimacy_level,
            })
        })
        .collect();
    Ok(Response::from_json(&json!({
        "leaders": leaders,
        "partial": !missing.is_empty(),
        "missing": missing,
    }))?)
}
