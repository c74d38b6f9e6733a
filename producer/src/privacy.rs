//! A player's data, exported or erased, everywhere it lives: the erasure's ports over D1,
//! R2 and the session actors (the flow is `chat_core::privacy::erase`), and the export
//! (`chat_core::privacy::export`) over the same places.
//!
//! - `GET /api/me/export` (the signed-in player) and `GET /api/players/{id}/export` (the
//!   signed-in player's own id only: another's is 404), `GET /admin/players/{id}/export`;
//! - `POST /admin/players/{id}/erase` with `{ "dryRun": bool }`.

use crate::body;
use crate::databases::{database, failed};
use crate::error::ApiError;
use crate::services::Services;
use chat_core::admin::MAX_ADMIN_BODY_BYTES;
use chat_core::archive::format::{user_prefix, EventRow, MessageRow, SessionRow};
use chat_core::archive::ports::ObjectReader;
use chat_core::domain::SessionId;
use chat_core::privacy::erase::{
    erase as run_erase, DatabaseCounts, EraseFailure, Erasee, ErasurePorts,
};
use chat_core::privacy::export::{lines, Gathered};
use chat_core::shards::{bucket, bucket_prefix, CONTROL};
use chat_core::sql::privacy as sql;
use serde_json::Value;
use std::collections::BTreeSet;
use uuid::Uuid;
use worker::wasm_bindgen::JsValue;
use worker::{Env, Request, Response};
use worker_support::clock::now_ms;
use worker_support::d1::{metered_batch, Metered};
use worker_support::r2::R2Store;

/// A player id from a path: a hyphenated UUID, or 400.
pub fn parse_user(text: &str) -> Result<Uuid, ApiError> {
    Uuid::try_parse(text)
        .ok()
        .filter(|_| text.len() == 36)
        .ok_or_else(|| ApiError::invalid("invalid_user_id", "the user id must be a UUID"))
}

fn not_found() -> ApiError {
    ApiError::not_found("player_not_found", "no player with this id")
}

struct Ports<'a> {
    env: &'a Env,
    store: R2Store,
}

fn text(e: impl std::fmt::Debug) -> String {
    format!("{e:?}")
}

impl ErasurePorts for Ports<'_> {
    fn databases(&self) -> Vec<String> {
        worker_support::env::database_bindings(self.env)
    }

    async fn counts(&self, db: &str, who: &Erasee) -> Result<DatabaseCounts, String> {
        let d1 = database(self.env, db).map_err(text)?;
        let row: Option<Value> = d1
            .prepare(sql::PLAYER_COUNTS.as_str())
            .bind(&[who.user_id.as_str().into(), who.tag.as_str().into()])
            .map_err(text)?
            .metered_first()
            .await
            .map_err(text)?;
        let row = row.unwrap_or_default();
        Ok(DatabaseCounts {
            rows: sql::PLAYER_TABLES
                .iter()
                .map(|(t, _)| ((*t).to_owned(), row[*t].as_f64().unwrap_or(0.0) as i64))
                .collect(),
            erased_at: row["erased_at"].as_f64().map(|t| t as i64),
        })
    }

    async fn sessions(&self, db: &str, who: &Erasee) -> Result<Vec<String>, String> {
        #[derive(serde::Deserialize)]
        struct Row {
            session_id: String,
        }
        let d1 = database(self.env, db).map_err(text)?;
        let rows: Vec<Row> = d1
            .prepare(sql::PLAYER_SESSIONS)
            .bind(&[who.user_id.as_str().into()])
            .map_err(text)?
            .metered_all()
            .await
            .map_err(text)?
            .results()
            .map_err(text)?;
        Ok(rows.into_iter().map(|r| r.session_id).collect())
    }

    async fn tombstone(&self, db: &str, who: &Erasee, at: i64) -> Result<(), String> {
        let d1 = database(self.env, db).map_err(text)?;
        d1.prepare(sql::TOMBSTONE)
            .bind(&[
                who.tag.as_str().into(),
                who.bucket.as_str().into(),
                JsValue::from_f64(at as f64),
            ])
            .map_err(text)?
            .metered_run()
            .await
            .map(|_| ())
            .map_err(text)
    }

    async fn erase_rows(&self, db: &str, who: &Erasee) -> Result<(), String> {
        let d1 = database(self.env, db).map_err(text)?;
        let param = [JsValue::from_str(&who.user_id)];
        let statements = sql::ERASE_ROWS
            .iter()
            .map(|s| d1.prepare(s.as_str()).bind(&param))
            .collect::<worker::Result<Vec<_>>>()
            .map_err(text)?;
        metered_batch(&d1, statements)
            .await
            .map(|_| ())
            .map_err(text)
    }

    async fn letters(&self, who: &Erasee) -> Result<i64, String> {
        #[derive(serde::Deserialize)]
        struct Row {
            letters: i64,
        }
        let d1 = database(self.env, CONTROL).map_err(text)?;
        let row: Option<Row> = d1
            .prepare(sql::PLAYER_LETTERS)
            .bind(&[who.user_id.as_str().into()])
            .map_err(text)?
            .metered_first()
            .await
            .map_err(text)?;
        Ok(row.map_or(0, |r| r.letters))
    }

    async fn erase_letters(&self, who: &Erasee) -> Result<(), String> {
        let d1 = database(self.env, CONTROL).map_err(text)?;
        d1.prepare(sql::ERASE_LETTERS)
            .bind(&[who.user_id.as_str().into()])
            .map_err(text)?
            .metered_run()
            .await
            .map(|_| ())
            .map_err(text)
    }

    async fn archive_keys(&self, who: &Erasee) -> Result<Vec<String>, String> {
        self.store.list(&user_prefix(&who.user_id)).await
    }

    async fn delete_objects(&self, keys: &[String]) -> Result<(), String> {
        self.store.delete(keys).await
    }

    async fn erase_actor(&self, session: &str) -> Result<usize, String> {
        let id =
            SessionId::parse(session).ok_or_else(|| format!("{session} is not a session id"))?;
        crate::actor::client::erase(self.env, id)
            .await
            .map_err(text)
    }
}

/// `POST /admin/players/{id}/erase`.
pub async fn erase(
    mut req: Request,
    services: &Services,
    user: &str,
) -> Result<Response, ApiError> {
    let user = parse_user(user)?;
    let body = body::read_json(&mut req, MAX_ADMIN_BODY_BYTES).await?;
    let dry_run = parse_dry_run(&body)?;
    let key = crate::config::Config::of(&services.env)
        .erasure_key
        .clone()
        .ok_or_else(|| {
            ApiError::Internal("ERASURE_KEY is not set: no player can be erased (wrangler secret put ERASURE_KEY, in both Workers)".into())
        })?;
    let ports = Ports {
        env: &services.env,
        store: R2Store::from_env(&services.env).map_err(ApiError::Internal)?,
    };
    let who = Erasee {
        user_id: user.to_string(),
        tag: key.tag(&user),
        bucket: bucket_prefix(bucket(&user)),
    };
    match run_erase(&ports, &who, dry_run, now_ms()).await {
        Ok(report) => {
            tracing::info!(
                dry_run,
                resumed = report.resumed,
                sessions = report.sessions.len(),
                letters = report.dead_letters,
                objects = report.archive_objects,
                "player erasure"
            );
            Ok(Response::from_json(&report)?)
        }
        Err(EraseFailure::Unknown) => Err(not_found()),
        Err(EraseFailure::Database { database, error }) => Err(ApiError::DatabaseUnavailable(
            format!("{database}: {error}"),
        )),
        Err(EraseFailure::Store(e)) => Err(ApiError::ArchiveUnavailable(e)),
        Err(EraseFailure::Actor { session, error }) => {
            Err(ApiError::SessionUnavailable(format!("{session}: {error}")))
        }
    }
}

/// `{ "dryRun": bool }` (an empty body is not a dry run).
fn parse_dry_run(body: &[u8]) -> Result<bool, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(false);
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| ApiError::invalid("invalid_body", "the body must be a JSON object"))?;
    match value.get("dryRun") {
        None | Some(Value::Null) if value.is_object() => Ok(false),
        Some(Value::Bool(b)) if value.is_object() => Ok(*b),
        _ => Err(ApiError::invalid(
            "invalid_body",
            "the body must be { \"dryRun\": true | false }",
        )),
    }
}

/// Everything held on `user`, as JSON lines; 404 if nothing is.
pub async fn export(services: &Services, user: Uuid) -> Result<Response, ApiError> {
    let db = services.player_db(user).await?;
    let fail = failed(&db.binding);
    let id: JsValue = user.to_string().into();
    let statements = [
        sql::EXPORT_PROFILE,
        sql::EXPORT_STATS,
        sql::EXPORT_SESSIONS,
        sql::EXPORT_MESSAGES,
        sql::EXPORT_EVENTS,
    ]
    .iter()
    .map(|s| db.db.prepare(*s).bind(std::slice::from_ref(&id)))
    .collect::<worker::Result<Vec<_>>>()?;
    let results = metered_batch(&db.db, statements).await.map_err(&fail)?;
    let first = |i: usize| -> Result<Option<Value>, ApiError> {
        Ok(results[i]
            .results::<Value>()
            .map_err(&fail)?
            .into_iter()
            .next())
    };
    let profile = first(0)?;
    let stats = first(1)?;
    let sessions: Vec<SessionRow> = results[2].results().map_err(&fail)?;
    let messages: Vec<MessageRow> = results[3].results().map_err(&fail)?;
    let events: Vec<EventRow> = results[4].results().map_err(&fail)?;
    let store = R2Store::from_env(&services.env).map_err(ApiError::Internal)?;
    let prefix = user_prefix(&user.to_string());
    let keys = store
        .list(&prefix)
        .await
        .map_err(ApiError::ArchiveUnavailable)?;
    let mut archived = Vec::new();
    for key in &keys {
        archived.push(chat_core::archive::read_part(&store, key).await?);
    }
    if profile.is_none() && sessions.is_empty() && messages.is_empty() && archived.is_empty() {
        return Err(not_found());
    }
    let mut session_ids: BTreeSet<String> = sessions.iter().map(|s| s.id.clone()).collect();
    session_ids.extend(messages.iter().map(|m| m.session_id.clone()));
    session_ids.extend(archived.iter().map(|p| p.header.session_id.clone()));
    let mut actors = Vec::new();
    for s in session_ids {
        let Some(id) = SessionId::parse(&s) else {
            continue;
        };
        actors.push((s, crate::actor::client::export(&services.env, id).await?));
    }
    let text = lines(
        &user.to_string(),
        &chat_core::time::to_rfc3339(now_ms()).unwrap_or_default(),
        Gathered {
            profile,
            stats,
            sessions,
            messages,
            events,
            archived,
            actors,
        },
    );
    let mut response = Response::ok(text)?;
    let headers = response.headers_mut();
    headers.set("Content-Type", "application/x-ndjson; charset=utf-8")?;
    headers.set(
        "Content-Disposition",
        &format!("attachment; filename=\"chat-export-{user}.jsonl\""),
    )?;
    Ok(response)
}

/// `GET /api/me/export` and `GET /api/players/{id}/export`: the signed-in player's own data;
/// another player's id is "not found", as an unknown one is.
pub async fn export_mine(
    req: Request,
    services: &Services,
    asked: Option<&str>,
) -> Result<Response, ApiError> {
    let identity = services.auth.resolve(&req).await?;
    if let Some(asked) = asked {
        if parse_user(asked)? != identity.user_id() {
            return Err(not_found());
        }
    }
    export(services, identity.user_id()).await
}
