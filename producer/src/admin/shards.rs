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
use chat_core::moves::{self, ConsumerCheck, ConsumerReport, Flip, Purge};
use chat_core::probe::Probe;
use chat_core::refusal::{Kind, Refusal};
use chat_core::shards::{bucket_prefix, BucketSummary, CopyCursor, OverrideRow, CONTROL};
use chat_core::sql::shards::{self as sql, bucket_range, TABLES};
use chat_core::sql::LATEST_MIGRATION;
use serde::Deserialize;
use serde_json::json;
use worker::wasm_bindgen::JsValue;
use worker::{D1Database, Request, Response};
use worker_support::clock::now_ms;

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
        .run()
        .await
        .map_err(failed(binding))?;
    Ok(result.meta()?.and_then(|m| m.changes).unwrap_or(0))
}

/// Runs one statement on the map's overrides in the control database.
async fn change_map(
    services: &Services,
    statement: &str,
    params: &[JsValue],
) -> Result<(), ApiError> {
    run(&services.control()?, CONTROL, statement, params).await?;
    Ok(())
}

/// Fences bucket `bucket` in `binding` (`moving` or `moved`), or lifts its fence (`None`).
async fn fence(
    services: &Services,
    binding: &str,
    bucket: u8,
    reason: Option<&str>,
) -> Result<(), ApiError> {
    let db = database(&services.env, binding)?;
    let prefix = bucket_prefix(bucket);
    match reason {
        Some(reason) => {
            run(
                &db,
                binding,
                sql::FENCE_BUCKET,
                &[prefix.into(), reason.into(), (now_ms() as f64).into()],
            )
            .await?
        }
        None => run(&db, binding, sql::UNFENCE_BUCKET, &[prefix.into()]).await?,
    };
    Ok(())
}

/// Whether `binding` has fenced `bucket`.
async fn fenced(services: &Services, binding: &str, bucket: u8) -> Result<bool, ApiError> {
    let db = database(&services.env, binding)?;
    let row: Option<serde_json::Value> = db
        .prepare(sql::SELECT_FENCE)
        .bind(&[bucket_prefix(bucket).into()])
        .map_err(failed(binding))?
        .first(None)
        .await
        .map_err(failed(binding))?;
    Ok(row.is_some())
}

/// The target of a move: bound here, with every migration, and written by the consumer. A
/// target the consumer has not confirmed lately gets a probe on the turn queue and a 409 to
/// retry shortly.
async fn check_target(services: &Services, to: &str) -> Result<D1Database, ApiError> {
    let target = services.env.d1(to).map_err(|_| {
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
        .all()
        .await
        .and_then(|r| r.results())
        .map_err(failed(CONTROL))?;
    match moves::consumer_check(&reports, to, now_ms()) {
        ConsumerCheck::Reaches => Ok(target),
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

pub async fn hold(mut req: Request, services: &Services) -> Result<Response, ApiError> {
    let r = request(&mut req, false).await?;
    let map = shard_map::refresh(&services.env).await?;
    let current = map.binding_of_bucket(r.bucket).to_owned();
    let row = row(services, r.bucket).await?;
    moves::may_hold(r.bucket, row.as_ref(), &current, r.to.as_deref())
        .map_err(ApiError::Refused)?;
    if let Some(to) = &r.to {
        check_target(services, to).await?;
    }
    // The fence first: once the hold answers, the source refuses the bucket's writes from
    // every writer, whatever map it holds.
    fence(services, &current, r.bucket, Some("moving")).await?;
    let now = now_ms();
    change_map(
        services,
        sql::HOLD_BUCKET,
        &[
            r.bucket.into(),
            current.as_str().into(),
            (now as f64).into(),
        ],
    )
    .await?;
    shard_map::refresh(&services.env).await?;
    tracing::warn!(bucket = r.bucket, binding = %current, "bucket held for a move");
    let held_at = row
        .filter(|r| r.moving != 0)
        .and_then(|r| r.held_at)
        .unwrap_or(now);
    Ok(Response::from_json(&json!({
        "bucket": r.bucket,
        "binding": current,
        "moving": true,
        "heldAt": held_at,
        "copyAfter": held_at + grace_ms(services),
    }))?)
}

#[derive(Deserialize)]
struct Page {
    rows: String,
    n: usize,
    last_user: Option<String>,
    last_key: Option<String>,
}

pub async fn copy(mut req: Request, services: &Services) -> Result<Response, ApiError> {
    let r = request(&mut req, true).await?;
    let to = r.to.clone().unwrap_or_default();
    let map = shard_map::refresh(&services.env).await?;
    let row = row(services, r.bucket).await?;
    moves::may_copy(r.bucket, row.as_ref(), &to, now_ms(), grace_ms(services))
        .map_err(ApiError::Refused)?;
    let current = map.binding_of_bucket(r.bucket).to_owned();
    let target = if r.cursor.is_none() {
        // The first page: the target is checked again, the source must refuse the bucket's
        // writes, and the copy is noted, so that a release leaves it to be purged.
        let target = check_target(services, &to).await?;
        if !fenced(services, &current, r.bucket).await? {
            return Err(ApiError::Refused(Refusal {
                kind: Kind::Conflict,
                code: "not_fenced",
                message: format!(
                    "{current} does not refuse bucket {}'s writes: hold the bucket again",
                    r.bucket
                ),
                retry_after: None,
            }));
        }
        change_map(
            services,
            sql::COPY_STARTED,
            &[
                r.bucket.into(),
                to.as_str().into(),
                (now_ms() as f64).into(),
            ],
        )
        .await?;
        target
    } else {
        database(&services.env, &to)?
    };
    let source = database(&services.env, &current)?;
    let cursor = r
        .cursor
        .clone()
        .unwrap_or_else(|| CopyCursor::start(r.bucket));
    let table = &TABLES[cursor.table];
    let (_, hi) = bucket_range(r.bucket);
    let page: Page = source
        .prepare(table.export_page())
        .bind(&[
            cursor.user.as_str().into(),
            cursor.key.as_str().into(),
            hi.as_str().into(),
            r.limit.into(),
        ])?
        .first(None)
        .await
        .map_err(failed(&current))?
        .ok_or_else(|| ApiError::Internal("the page query returned no row".into()))?;
    check_value("a page of the copy", page.rows.len()).map_err(|e| {
        ApiError::invalid("page_too_large", format!("{e}; ask for a smaller 'limit'"))
    })?;
    if page.n > 0 {
        run(
            &target,
            &to,
            &table.import_page(),
            &[JsValue::from_str(&page.rows)],
        )
        .await?;
    }
    let last = page.last_user.zip(page.last_key);
    let next = cursor.after(r.bucket, page.n, r.limit as usize, last);
    Ok(Response::from_json(&json!({
        "bucket": r.bucket,
        "from": current,
        "to": to,
        "table": table.name,
        "copied": page.n,
        "nextCursor": next.map(|c| c.encode()),
    }))?)
}

async fn summary(db: &D1Database, binding: &str, bucket: u8) -> Result<BucketSummary, ApiError> {
    let (lo, hi) = bucket_range(bucket);
    db.prepare(sql::BUCKET_SUMMARY.as_str())
        .bind(&[lo.as_str().into(), hi.as_str().into()])?
        .first(None)
        .await
        .map_err(failed(binding))?
        .ok_or_else(|| ApiError::Internal("the summary query returned no row".into()))
}

/// Both sides of a move: the current binding's summary and the target's.
async fn compare(
    services: &Services,
    from: &str,
    to: &str,
    bucket: u8,
) -> Result<(BucketSummary, BucketSummary), ApiError> {
    let source = summary(&database(&services.env, from)?, from, bucket).await?;
    let copied = summary(&database(&services.env, to)?, to, bucket).await?;
    Ok((source, copied))
}

pub async fn verify(mut req: Request, services: &Services) -> Result<Response, ApiError> {
    let r = request(&mut req, true).await?;
    let to = r.to.clone().unwrap_or_default();
    let map = shard_map::refresh(&services.env).await?;
    let current = map.binding_of_bucket(r.bucket).to_owned();
    if current == to {
        return Err(ApiError::Refused(Refusal {
            kind: Kind::Conflict,
            code: "already_there",
            message: format!("bucket {} is already in {to}", r.bucket),
            retry_after: None,
        }));
    }
    let (source, copied) = compare(services, &current, &to, r.bucket).await?;
    Ok(Response::from_json(&json!({
        "bucket": r.bucket,
        "from": current,
        "to": to,
        "source": source,
        "target": copied,
        "equal": source == copied,
    }))?)
}

pub async fn flip(mut req: Request, services: &Services) -> Result<Response, ApiError> {
    let r = request(&mut req, true).await?;
    let to = r.to.clone().unwrap_or_default();
    let row = row(services, r.bucket).await?;
    let from = match moves::flip(r.bucket, row.as_ref(), &to).map_err(ApiError::Refused)? {
        Flip::Done => {
            // An earlier flip wrote the map; make sure its last step, lifting the target's
            // fence, happened too.
            fence(services, &to, r.bucket, None).await?;
            let from = row.and_then(|r| r.moved_from).unwrap_or_default();
            return Ok(Response::from_json(
                &json!({ "bucket": r.bucket, "binding": to, "movedFrom": from }),
            )?);
        }
        Flip::Verify { from } => from,
    };
    let (source, copied) = compare(services, &from, &to, r.bucket).await?;
    if source != copied {
        return Err(ApiError::Refused(Refusal {
            kind: Kind::Conflict,
            code: "copy_incomplete",
            message: format!(
                "the copy differs from the source: {copied:?} against {source:?}; copy again"
            ),
            retry_after: None,
        }));
    }
    fence(services, &from, r.bucket, Some("moved")).await?;
    change_map(
        services,
        sql::FLIP_BUCKET,
        &[
            r.bucket.into(),
            to.as_str().into(),
            from.as_str().into(),
            (now_ms() as f64).into(),
        ],
    )
    .await?;
    // Last: the target takes the bucket's writes. Until then its turns wait; if this fails,
    // the flip is run again (`Flip::Done`).
    fence(services, &to, r.bucket, None).await?;
    shard_map::refresh(&services.env).await?;
    tracing::warn!(bucket = r.bucket, from = %from, to = %to, "bucket moved");
    Ok(Response::from_json(&json!({
        "bucket": r.bucket,
        "binding": to,
        "movedFrom": from,
        "summary": source,
        "purgeAfter": now_ms() + grace_ms(services),
    }))?)
}

pub async fn purge(mut req: Request, services: &Services) -> Result<Response, ApiError> {
    let r = request(&mut req, false).await?;
    let row = row(services, r.bucket).await?;
    let (from, done_statement, kind) =
        match moves::purge(r.bucket, row.as_ref(), now_ms(), grace_ms(services))
            .map_err(ApiError::Refused)?
        {
            Purge::Nothing => {
                return Ok(Response::from_json(
                    &json!({ "bucket": r.bucket, "deleted": 0, "done": true }),
                )?);
            }
            Purge::Source(from) => (from, sql::PURGED_SOURCE, "source"),
            Purge::Abandoned(copy) => (copy, sql::PURGED_COPY, "abandoned copy"),
        };
    let db = database(&services.env, &from)?;
    let (lo, hi) = bucket_range(r.bucket);
    let mut deleted = 0;
    for table in TABLES.iter().rev() {
        deleted = run(
            &db,
            &from,
            &table.purge_page(),
            &[lo.as_str().into(), hi.as_str().into(), r.limit.into()],
        )
        .await?;
        if deleted > 0 {
            break;
        }
    }
    let done = deleted == 0;
    if done {
        change_map(
            services,
            done_statement,
            &[r.bucket.into(), (now_ms() as f64).into()],
        )
        .await?;
    }
    Ok(Response::from_json(&json!({
        "bucket": r.bucket,
        "from": from,
        "copy": kind,
        "deleted": deleted,
        "done": done,
    }))?)
}

pub async fn release(mut req: Request, services: &Services) -> Result<Response, ApiError> {
    let r = request(&mut req, false).await?;
    change_map(
        services,
        sql::RELEASE_BUCKET,
        &[r.bucket.into(), (now_ms() as f64).into()],
    )
    .await?;
    let map = shard_map::refresh(&services.env).await?;
    let binding = map.binding_of_bucket(r.bucket).to_owned();
    // The bucket stays where it is: that database takes its writes again.
    fence(services, &binding, r.bucket, None).await?;
    let abandoned = row(services, r.bucket).await?.and_then(|r| r.copy_to);
    Ok(Response::from_json(&json!({
        "bucket": r.bucket,
        "binding": binding,
        "moving": false,
        "abandonedCopy": abandoned,
    }))?)
}
