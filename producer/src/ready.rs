//! `GET /readyz`: whether every database of the bucket map has every migration. A database
//! that lacks one (a new `DB_k` bound before `wrangler d1 migrations apply` reached it)
//! answers 503 here with its name, before any turn for it fails in the consumer.

use crate::error::ApiError;
use crate::shard_map;
use chat_core::sql::{APPLIED_MIGRATION, LATEST_MIGRATION};
use serde::Deserialize;
use serde_json::json;
use worker::{Env, Response};

#[derive(Deserialize)]
struct Applied {
    name: String,
}

pub async fn check(env: &Env) -> Result<Response, ApiError> {
    let mut databases = serde_json::Map::new();
    let mut missing = Vec::new();
    for (binding, db) in shard_map::all_dbs(env).await? {
        let applied = match db.prepare(APPLIED_MIGRATION).first::<Applied>(None).await {
            Ok(row) => row.map(|r| r.name),
            Err(_) => None,
        };
        if applied.as_deref() != Some(LATEST_MIGRATION) {
            missing.push(format!(
                "{binding} has {} (needs {LATEST_MIGRATION})",
                applied.as_deref().unwrap_or("no migrations")
            ));
        }
        databases.insert(binding, json!(applied));
    }
    if missing.is_empty() {
        return Ok(Response::from_json(
            &json!({ "ok": true, "databases": databases }),
        )?);
    }
    tracing::error!(missing = %missing.join("; "), "a database lacks migrations: run wrangler d1 migrations apply on each");
    Ok(Response::from_json(&json!({
        "ok": false,
        "error": {
            "code": "migrations_missing",
            "message": format!("apply the migrations to every database: {}", missing.join("; ")),
        },
        "databases": databases,
    }))?
    .with_status(503))
}
