//! `GET /api/leaderboard?limit=1..100`: the top players by `total_points`, across every
//! database. Each database gives its own top `limit` (through the `user_stats_points` index),
//! and the pages are merged: highest total first, ties broken by user id.

use crate::error::ApiError;
use crate::services::Services;
use chat_core::request::leaderboard_limit;
use chat_core::shards::{merge_leaders, Leader};
use chat_core::sql::shards::LEADERBOARD;
use futures_util::future::try_join_all;
use serde_json::json;
use worker::{Request, Response};

pub async fn top(req: Request, services: &Services) -> Result<Response, ApiError> {
    services.auth.resolve(&req).await?;
    let url = req.url()?;
    let pairs: Vec<_> = url.query_pairs().collect();
    let limit = leaderboard_limit(pairs.iter().map(|(k, v)| (k.as_ref(), v.as_ref())))?;
    let dbs = services.all_dbs().await?;
    let pages = try_join_all(dbs.iter().map(|(_, db)| async move {
        let rows = db
            .prepare(LEADERBOARD)
            .bind(&[limit.into()])?
            .all()
            .await?
            .results::<Leader>()?;
        Ok::<_, ApiError>(rows)
    }))
    .await?;
    let leaders: Vec<_> = merge_leaders(pages, limit as usize)
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
    Ok(Response::from_json(&json!({ "leaders": leaders }))?)
}
