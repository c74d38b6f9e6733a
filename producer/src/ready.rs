//! `GET /readyz`: whether every database this Worker is bound to has the migrations the
//! Workers run on (`sql::SERVING_MIGRATIONS`: schema 1 or 2) and the tables of this round
//! (`sql::NEEDED_TABLES`, which a schema-1 database is given by hand), whether or not the bucket map
//! uses it yet. A database that lacks one (a new `DB_k` bound before `wrangler d1
//! migrations apply` reached it), or does not answer, makes this 503 with its name, before
//! any move to it or turn for it could fail. A move's target needs schema 2 besides (the
//! move steps check it).

use crate::databases::database;
use crate::error::ApiError;
use chat_core::sql::{
    APPLIED_MIGRATION, BY_HAND_ON_SCHEMA_ONE, LATEST_MIGRATION, NEEDED_TABLES, SCHEMA_CHECK,
    SERVING_MIGRATIONS,
};
use serde::Deserialize;
use serde_json::json;
use worker::{Env, Response};
use worker_support::d1::Metered;
use worker_support::env::database_bindings;

#[derive(Deserialize)]
struct Applied {
    name: String,
}

/// The newest migration applied to `binding`, or why it cannot be read.
pub async fn applied_migration(env: &Env, binding: &str) -> Result<Option<String>, String> {
    let db = database(env, binding).map_err(|e| format!("{e:?}"))?;
    db.prepare(APPLIED_MIGRATION)
        .metered_first::<Applied>()
        .await
        .map(|row| row.map(|r| r.name))
        .map_err(|e| e.to_string())
}

#[derive(Deserialize)]
struct Schema {
    name: Option<String>,
    tables: usize,
}

/// The newest migration applied to `binding` and whether it has the archive's table.
async fn schema(env: &Env, binding: &str) -> Result<(Option<String>, bool), String> {
    let db = database(env, binding).map_err(|e| format!("{e:?}"))?;
    let row = db
        .prepare(SCHEMA_CHECK.as_str())
        .metered_first::<Schema>()
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.map_or((None, false), |r| (r.name, r.tables == NEEDED_TABLES.len())))
}

pub async fn check(env: &Env) -> Result<Response, ApiError> {
    let mut databases = serde_json::Map::new();
    let mut missing = Vec::new();
    let mut bound = database_bindings(env);
    // The map may name a binding this Worker lacks: that is a failure too.
    if let Ok(map) = crate::shard_map::live(env).await {
        for b in map.bindings() {
            if !bound.iter().any(|x| x == b) {
                bound.push(b.to_owned());
            }
        }
    }
    for binding in bound {
        match schema(env, &binding).await {
            Ok((applied, archive)) => {
                // Schema 1 serves too: a database holding turns keeps it until its
                // buckets move to a database at schema 2 (docs/operations.md).
                if !applied
                    .as_deref()
                    .is_some_and(|a| SERVING_MIGRATIONS.contains(&a))
                {
                    missing.push(format!(
                        "{binding} has {} (needs {} or {LATEST_MIGRATION})",
                        applied.as_deref().unwrap_or("no migrations"),
                        SERVING_MIGRATIONS[0]
                    ));
                } else if !archive {
                    missing.push(format!(
                        "{binding} lacks a table of {NEEDED_TABLES:?} (wrangler d1 execute {binding} --file migrations/X for each of {BY_HAND_ON_SCHEMA_ONE:?})"
                    ));
                }
                databases.insert(binding, json!(applied));
            }
            Err(error) => {
                missing.push(format!("{binding} does not answer"));
                tracing::error!(database = %binding, error = %error, "readyz: a database does not answer");
                databases.insert(binding, serde_json::Value::Null);
            }
        }
    }
    if missing.is_empty() {
        return Ok(Response::from_json(
            &json!({ "ok": true, "databases": databases }),
        )?);
    }
    tracing::error!(missing = %missing.join("; "), "a database is not ready: run wrangler d1 migrations apply on each, and check the bindings");
    Ok(Response::from_json(&json!({
        "ok": false,
        "error": {
            "code": "migrations_missing",
            "message": format!("every bound database must answer with every migration: {}", missing.join("; ")),
        },
        "databases": databases,
    }))?
    .with_status(503))
}
