//! The bucket map and bucket moves, under `/admin/shards` (`chat-admin shards` drives them).
//! What each step may do is decided by `chat_core::moves`; this module runs those decisions
//! against the bindings.
//!
//! - `GET /admin/shards`: the live map, every bucket's move state, the databases this Worker
//!   is bound to, and `mapCacheSeconds`, the longest a chat isolate keeps the map (a move's
//!   grace must be longer).
//! - `POST hold {bucket, to?}`: fences the bucket in its database (from now on that database
//!   refuses the bucket's writes, whatever map a writer holds), then marks it moving, so its
//!   turns wait in the queue. With `to`, the target is checked first: bound here, fully
//!   migrated, and reachable by the consumer (asked over the turn queue).
//! - `POST copy {bucket, to, cursor?, limit?}`: once every isolate has seen the hold, upserts
//!   one page of the bucket's rows into `to`, and says where to go on.
//! - `POST verify {bucket, to}`: rows per table and point sums on both sides.
//! - `POST flip {bucket, to}`: verifies, then maps the bucket to `to` and lifts `to`'s fence
//!   (if the bucket lived there before). The old database keeps its fence for good.
//! - `POST purge {bucket, limit?}`: once every isolate has seen the flip, deletes one page of
//!   the old copy; after a release, of the abandoned copy. `done` when none is left.
//! - `POST release {bucket}`: gives up a held move: the bucket's turns go through where it
//!   is; a copy it started is left to `purge`.
//!
//! Every step reads and writes the control database's `shard_buckets`, never a variable, so
//! a move needs no redeploy and no restart.

use crate::body;
use crate::databases::{database, failed};
use crate::error::ApiError;
use crate::services::Services;
use crate::shard_map;
use chat_core::admin::{parse_shard_request, ShardRequest, MAX_ADMIN_BODY_BYTES};
use chat_core::d1_limits::check_value;
use chat_core::move_steps::{self, MapChange, MovePorts};
use chat_core::moves::{self, ConsumerCheck, ConsumerReport};
use chat_core::probe::Probe;
use chat_core::refusal::{Kind, Refusal};
use chat_core::shards::{bucket_prefix, BucketSummary, CopyCursor, OverrideRow, ShardMap, CONTROL};
use chat_core::sql::shards::{self as sql, bucket_range, TABLES};
use chat_core::sql::LATEST_MIGRATION;
use serde::Deserialize;
use serde_json::json;
use std::rc::Rc;
use worker::wasm_bindgen::JsValue;
use worker::{D1Database, Request, Response};
use worker_support::clock::now_ms;
use worker_support::d1::metered_batch;
use worker_support::d1::Metered;

async fn request(req: &mut Request, needs_to: bool) -> Result<ShardRequest, ApiError> {
    Ok(parse_shard_request(
        &body::read_json(req, MAX_ADMIN_BODY_BYTES).await?,
        needs_to,
    )?)
}

/// The bucket's row in the control database, if it has one.
async fn row(services: &Services, bucket: u8) -> Result<Option<OverrideRow>, ApiError> {
    Ok(shard_map::override_rows(&services.control()?)
        .await?
        .into_iter()
        .find(|r| r.bucket == bucket))
}

fn grace_ms(services: &Services) -> i64 {
    moves::grace_ms(shard_map::cache_seconds(&services.env))
}

/// Runs one statement on `db` (named `binding` in errors).
async fn run(
    db: &D1Database,
    binding: &str,
    statement: &str,
    params: &[JsValue],
) -> Result<usize, ApiError> {
    let result = db
        .prepare(statement)
        .bind(params)
        .map_err(failed(binding))?
        .metered_run()
        .await
        .map_err(failed(binding))?;
    Ok(result.meta()?.and_then(|m| m.changes).unwrap_or(0))
}

/// The target of a move: bound here, with every migration, and written by the consumer. A
/// target the consumer has not confirmed lately gets a probe on the turn queue and a 409 to
/// retry shortly.
async fn check_target(services: &Services, to: &str) -> Result<(), ApiError> {
    services.env.d1(to).map_err(|_| {
        ApiError::invalid(
            "unknown_database",
            format!("this Worker has no D1 binding {to}: add it to both wrangler.toml files"),
        )
    })?;
    let applied = crate::ready::applied_migration(&services.env, to).await;
    match applied {
        Ok(Some(m)) if m == LATEST_MIGRATION => {}
        Ok(other) => {
            return Err(ApiError::Refused(Refusal {
                kind: Kind::Conflict,
                code: "migrations_missing",
                message: format!(
                    "{to} has {} (needs {LATEST_MIGRATION}): run `wrangler d1 migrations apply {to} --remote` first",
                    other.as_deref().unwrap_or("no migrations")
                ),
                retry_after: None,
            }))
        }
        Err(e) => return Err(ApiError::DatabaseUnavailable(format!("{to}: {e}"))),
    }
    let reports: Vec<ConsumerReport> = services
        .control()?
        .prepare(sql::SELECT_CONSUMER_DATABASES)
        .metered_all()
        .await
        .and_then(|r| r.results())
        .map_err(failed(CONTROL))?;
    match moves::consumer_check(&reports, to, now_ms()) {
        ConsumerCheck::Reaches => Ok(()),
        ConsumerCheck::Refused(r) => Err(ApiError::Refused(r)),
        ConsumerCheck::Probe(r) => {
            worker_support::queue::send_texts(
                &services.turns,
                &[Probe::databases(now_ms()).encode()],
            )
            .await
            .map_err(|(_, e)| ApiError::QueueUnavailable(e.to_string()))?;
            Err(ApiError::Refused(r))
        }
    }
}

pub async fn status(services: &Services) -> Result<Response, ApiError> {
    let map = shard_map::refresh(&services.env).await?;
    let rows = shard_map::override_rows(&services.control()?).await?;
    let buckets: Vec<_> = rows
        .iter()
        .map(|r| {
            json!({
                "bucket": r.bucket,
                "binding": r.binding,
                "moving": r.moving != 0,
                "movedFrom": r.moved_from,
                "heldAt": r.held_at,
                "copyTo": r.copy_to,
                "flippedAt": r.flipped_at,
            })
        })
        .collect();
    Ok(Response::from_json(&json!({
        "map": map.describe(),
        "bindings": map.bindings(),
        "bound": worker_support::env::database_bindings(&services.env),
        "overrides": buckets,
        "mapCacheSeconds": shard_map::cache_seconds(&services.env),
    }))?)
}

/// The move steps' ports (`chat_core::move_steps`) over this Worker's bindings.
struct Ports<'a>(&'a Services);

impl MovePorts for Ports<'_> {
    type Error = ApiError;

    fn now_ms(&self) -> i64 {
        now_ms()
    }

    fn grace_ms(&self) -> i64 {
        grace_ms(self.0)
    }

    async fn map(&self) -> Result<Rc<ShardMap>, ApiError> {
        shard_map::refresh(&self.0.env).await
    }

    async fn row(&self, bucket: u8) -> Result<Option<OverrideRow>, ApiError> {
        row(self.0, bucket).await
    }

    async fn change_map(&self, bucket: u8, change: MapChange<'_>, at: i64) -> Result<(), ApiError> {
        let at = JsValue::from(at as f64);
        let (statement, params): (&str, Vec<JsValue>) = match change {
            MapChange::Hold { binding } => {
                (sql::HOLD_BUCKET, vec![bucket.into(), binding.into(), at])
            }
            MapChange::CopyStarted { to } => {
                (sql::COPY_STARTED, vec![bucket.into(), to.into(), at])
            }
            MapChange::Flip { to, from } => (
                sql::FLIP_BUCKET,
                vec![bucket.into(), to.into(), from.into(), at],
            ),
            MapChange::Release => (sql::RELEASE_BUCKET, vec![bucket.into(), at]),
            MapChange::PurgedSource => (sql::PURGED_SOURCE, vec![bucket.into(), at]),
            MapChange::PurgedCopy => (sql::PURGED_COPY, vec![bucket.into(), at]),
        };
        run(&self.0.control()?, CONTROL, statement, &params).await?;
        Ok(())
    }

    async fn fence(
        &self,
        binding: &str,
        bucket: u8,
        reason: Option<&str>,
        at: i64,
    ) -> Result<(), ApiError> {
        let db = database(&self.0.env, binding)?;
        let prefix = bucket_prefix(bucket);
        match reason {
            Some(reason) => {
                run(
                    &db,
                    binding,
                    sql::FENCE_BUCKET,
                    &[prefix.into(), reason.into(), (at as f64).into()],
                )
                .await?
            }
            None => run(&db, binding, sql::UNFENCE_BUCKET, &[prefix.into()]).await?,
        };
        Ok(())
    }

    async fn fenced(&self, binding: &str, bucket: u8) -> Result<bool, ApiError> {
        let db = database(&self.0.env, binding)?;
        let row: Option<serde_json::Value> = db
            .prepare(sql::SELECT_FENCE)
            .bind(&[bucket_prefix(bucket).into()])
            .map_err(failed(binding))?
            .metered_first()
            .await
            .map_err(failed(binding))?;
        Ok(row.is_some())
    }

    async fn check_target(&self, to: &str) -> Result<(), ApiError> {
        check_target(self.0, to).await
    }

    async fn copy_page(
        &self,
        from: &str,
        to: &str,
        bucket: u8,
        cursor: &CopyCursor,
        limit: u32,
    ) -> Result<(usize, Option<(String, String)>), ApiError> {
        let source = database(&self.0.env, from)?;
        let target = database(&self.0.env, to)?;
        let table = &TABLES[cursor.table];
        let (_, hi) = bucket_range(bucket);
        let page: Page = source
            .prepare(table.export_page())
            .bind(&[
                cursor.user.as_str().into(),
                cursor.key.as_str().into(),
                hi.as_str().into(),
                limit.into(),
            ])?
            .metered_first()
            .await
            .map_err(failed(from))?
            .ok_or_else(|| ApiError::Internal("the page query returned no row".into()))?;
        check_value("a page of the copy", page.rows.len()).map_err(|e| {
            ApiError::invalid("page_too_large", format!("{e}; ask for a smaller 'limit'"))
        })?;
        if page.n > 0 {
            run(
                &target,
                to,
                &table.import_page(),
                &[JsValue::from_str(&page.rows)],
            )
            .await?;
        }
        Ok((page.n, page.last_user.zip(page.last_key)))
    }

    async fn summary(&self, binding: &str, bucket: u8) -> Result<BucketSummary, ApiError> {
        let (lo, hi) = bucket_range(bucket);
        database(&self.0.env, binding)?
            .prepare(sql::BUCKET_SUMMARY.as_str())
            .bind(&[lo.as_str().into(), hi.as_str().into()])?
            .metered_first()
            .await
            .map_err(failed(binding))?
            .ok_or_else(|| ApiError::Internal("the summary query returned no row".into()))
    }

    async fn purge_page(&self, binding: &str, bucket: u8, limit: u32) -> Result<usize, ApiError> {
        let db = database(&self.0.env, binding)?;
        let (lo, hi) = bucket_range(bucket);
        for table in TABLES.iter().rev() {
            let deleted = run(
                &db,
                binding,
                &table.purge_page(),
                &[lo.as_str().into(), hi.as_str().into(), limit.into()],
            )
            .await?;
            if deleted > 0 {
                return Ok(deleted);
            }
        }
        Ok(0)
    }

    async fn rebuild_leaders(&self, binding: &str) -> Result<(), ApiError> {
        let db = database(&self.0.env, binding)?;
        let statements = chat_core::sql::leaders::REBUILD
            .iter()
            .map(|s| db.prepare(*s))
            .collect();
        metered_batch(&db, statements)
            .await
            .map_err(failed(binding))?;
        Ok(())
    }
}

#[derive(Deserialize)]
struct Page {
    rows: String,
    n: usize,
    last_user: Option<String>,
    last_key: Option<String>,
}

pub async fn hold(mut req: Request, services: &Services) -> Result<Response, ApiError> {
    let r = request(&mut req, false).await?;
    let held = move_steps::hold(&Ports(services), r.bucket, r.to.as_deref()).await?;
    tracing::warn!(bucket = r.bucket, binding = %held.binding, "bucket held for a move");
    Ok(Response::from_json(&json!({
        "bucket": r.bucket,
        "binding": held.binding,
        "moving": true,
        "heldAt": held.held_at,
        "copyAfter": held.copy_after,
    }))?)
}

pub async fn copy(mut req: Request, services: &Services) -> Result<Response, ApiError> {
    let r = request(&mut req, true).await?;
    let to = r.to.clone().unwrap_or_default();
    let copied =
        move_steps::copy(&Ports(services), r.bucket, &to, r.cursor.as_ref(), r.limit).await?;
    Ok(Response::from_json(&json!({
        "bucket": r.bucket,
        "from": copied.from,
        "to": to,
        "table": TABLES[copied.table].name,
        "copied": copied.copied,
        "nextCursor": copied.next.map(|c| c.encode()),
    }))?)
}

pub async fn verify(mut req: Request, services: &Services) -> Result<Response, ApiError> {
    let r = request(&mut req, true).await?;
    let to = r.to.clone().unwrap_or_default();
    let v = move_steps::verify(&Ports(services), r.bucket, &to).await?;
    Ok(Response::from_json(&json!({
        "bucket": r.bucket,
        "from": v.from,
        "to": to,
        "equal": v.source == v.target,
        "source": v.source,
        "target": v.target,
    }))?)
}

pub async fn flip(mut req: Request, services: &Services) -> Result<Response, ApiError> {
    let r = request(&mut req, true).await?;
    let to = r.to.clone().unwrap_or_default();
    let flipped = move_steps::flip(&Ports(services), r.bucket, &to).await?;
    let Some(summary) = flipped.summary else {
        return Ok(Response::from_json(
            &json!({ "bucket": r.bucket, "binding": to, "movedFrom": flipped.moved_from }),
        )?);
    };
    tracing::warn!(bucket = r.bucket, from = %flipped.moved_from, to = %to, "bucket moved");
    Ok(Response::from_json(&json!({
        "bucket": r.bucket,
        "binding": to,
        "movedFrom": flipped.moved_from,
        "summary": summary,
        "purgeAfter": flipped.purge_after,
    }))?)
}

pub async fn purge(mut req: Request, services: &Services) -> Result<Response, ApiError> {
    let r = request(&mut req, false).await?;
    let purged = move_steps::purge(&Ports(services), r.bucket, r.limit).await?;
    let Some((from, kind)) = purged.from else {
        return Ok(Response::from_json(
            &json!({ "bucket": r.bucket, "deleted": 0, "done": true }),
        )?);
    };
    Ok(Response::from_json(&json!({
        "bucket": r.bucket,
        "from": from,
        "copy": kind,
        "deleted": purged.deleted,
        "done": purged.done,
    }))?)
}

pub async fn release(mut req: Request, services: &Services) -> Result<Response, ApiError> {
    let r = request(&mut req, false).await?;
    let released = move_steps::release(&Ports(services), r.bucket).await?;
    Ok(Response::from_json(&json!({
        "bucket": r.bucket,
        "binding": released.binding,
        "moving": false,
        "abandonedCopy": released.abandoned,
    }))?)
}
