//! `GET /api/me/stats`: the player's snapshot from `user_stats` (zeros before the first turn
//! is stored).

use crate::db;
use crate::error::ApiError;
use crate::services::Services;
use chat_core::time::to_rfc3339;
use serde_json::json;
use worker::{Request, Response};

pub async fn mine(req: Request, services: &Services) -> Result<Response, ApiError> {
    let identity = services.auth.resolve(&req).await?;
    let db = services.player_db(identity.user_id()).await?;
    let stats = db::read_stats(&db, identity.user_id()).await?;
    let (total, level, last) = stats.map_or((0, 0, None), |s| {
        (s.total_points, s.intimacy_level, s.last_message_at)
    });
    Ok(Response::from_json(&json!({
        // The player's own id, so that a client can find itself on the leaderboard.
        "userId": identity.user_id(),
        "totalPoints": total,
        "intimacyLevel": level,
        "lastMessageAt": last.and_then(to_rfc3339),
    }))?)
}
