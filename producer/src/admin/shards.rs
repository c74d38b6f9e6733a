//! The bucket map and bucket moves, under `/admin/shards` (`chat-admin shards` drives them):
//!
//! - `GET /admin/shards`: the live map, the moved and moving buckets.
//! - `POST hold {bucket}`: the bucket's turns wait in the queue from now on (the consumer
//!   reads the map on every batch; chat isolates within `SHARD_MAP_CACHE_SECONDS`).
//! - `POST copy {bucket, to, cursor?, limit?}`: copies one page of the bucket's rows to `to`,
//!   and says where to go on. Safe to repeat: a row already there is left alone.
//! - `POST verify {bucket, to}`: rows per table and point sums on both sides.
//! - `POST flip {bucket, to}`: verifies, then maps the bucket to `to` and lets its turns
//!   through. Refused (409 `copy_incomplete`) unless both sides agree.
//! - `POST purge {bucket, limit?}`: deletes one page of the bucket's rows from the database
//!   it was moved from, once it is moved; `done` when none are left.
//! - `POST release {bucket}`: lets a held bucket's turns through where it is (an abandoned
//!   move).
//!
//! Every step reads and writes the control database's `shard_buckets`, never a variable, so
//! a move needs no redeploy and no restart.

use crate::body;
use crate::error::ApiError;
use crate::services::Services;
use crate::shard_map;
use chat_core::admin::{parse_shard_request, ShardRequest, MAX_ADMIN_BODY_BYTES};
use chat_core::d1_limits::check_value;
use chat_core::shards::{BucketSummary, CopyCursor, OverrideRow};
use chat_core::sql::shards::{self as sql, bucket_range, TABLES};
use serde::Deserialize;
use serde_json::json;
use worker::wasm_bindgen::JsValue;
use worker::{D1Database, Request, Response};
use worker_support::clock::now_ms;

fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::Conflict {
        code,
        message: message.into(),
    }
}

async fn request(req: &mut Request, needs_to: bool) -> Result<ShardRequest, ApiError> {
    Ok(parse_shard_request(
        &body::read_json(req, MAX_ADMIN_BODY_BYTES).await?,
        needs_to,
    )?)
}

/// The bucket's override row, if it has one.
async fn row(services: &Services, bucket: u8) -> Result<Option<OverrideRow>, ApiError> {
    Ok(shard_map::override_rows(&services.control)
        .await?
        .into_iter()
        .find(|r| r.bucket == bucket))
}

/// The database a move goes to: a binding of this Worker, not the bucket's current one.
fn target(services: &Services, current: &str, to: &str) -> Result<D1Database, ApiError> {
    if to == current {
        return Err(conflict(
            "already_there",
            format!("the bucket is already in {to}"),
        ));
    }
    services.env.d1(to).map_err(|_| {
        ApiError::invalid(
            "unknown_database",
            format!("this Worker has no D1 binding {to}: add it to both wrangler.toml files"),
        )
    })
}

/// Runs one statement on the map's overrides in the control database, then rereads the map
/// in this isolate.
async fn change_map(
    services: &Services,
    statement: &str,
    params: &[JsValue],
) -> Result<std::rc::Rc<chat_core::shards::ShardMap>, ApiError> {
    services
        .control
        .prepare(statement)
        .bind(params)?
        .run()
        .await?;
    shard_map::refresh(&services.env).await
}

pub async fn status(services: &Services) -> Result<Response, ApiError> {
    let map = shard_map::refresh(&services.env).await?;
    let rows = shard_map::override_rows(&services.control).await?;
    let buckets: Vec<_> = rows
        .iter()
        .map(|r| json!({ "bucket": r.bucket, "binding": r.binding, "moving": r.moving != 0, "movedFrom": r.moved_from }))
        .collect();
    Ok(Response::from_json(&json!({
        "map": map.describe(),
        "bindings": map.bindings(),
        "overrides": buckets,
    }))?)
}

pub async fn hold(mut req: Request, services: &Services) -> Result<Response, ApiError> {
    let r = request(&mut req, false).await?;
    let map = shard_map::refresh(&services.env).await?;
    let current = map.binding_of_bucket(r.bucket).to_owned();
    change_map(
        services,
        sql::HOLD_BUCKET,
        &[
            r.bucket.into(),
            current.as_str().into(),
            (now_ms() as f64).into(),
        ],
    )
    .await?;
    tracing::warn!(bucket = r.bucket, binding = %current, "bucket held for a move");
    Ok(Response::from_json(
        &json!({ "bucket": r.bucket, "binding": current, "moving": true }),
    )?)
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
    if !map.bucket_is_moving(r.bucket) {
        return Err(conflict(
            "not_held",
            "hold the bucket first (POST /admin/shards/hold), so that nothing writes it while it is copied",
        ));
    }
    let current = map.binding_of_bucket(r.bucket).to_owned();
    let target = target(services, &current, &to)?;
    let source = services.env.d1(&current)?;
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
        .await?
        .ok_or_else(|| ApiError::Internal("the page query returned no row".into()))?;
    check_value("a page of the copy", page.rows.len()).map_err(|e| {
        ApiError::invalid("page_too_large", format!("{e}; ask for a smaller 'limit'"))
    })?;
    if page.n > 0 {
        target
            .prepare(table.import_page())
            .bind(&[JsValue::from_str(&page.rows)])?
            .run()
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

async fn summary(db: &D1Database, bucket: u8) -> Result<BucketSummary, ApiError> {
    let (lo, hi) = bucket_range(bucket);
    db.prepare(sql::BUCKET_SUMMARY.as_str())
        .bind(&[lo.as_str().into(), hi.as_str().into()])?
        .first(None)
        .await?
        .ok_or_else(|| ApiError::Internal("the summary query returned no row".into()))
}

/// Both sides of a move: (current binding, its summary, the target's summary).
async fn compare(
    services: &Services,
    r: &ShardRequest,
) -> Result<(String, BucketSummary, BucketSummary), ApiError> {
    let to = r.to.clone().unwrap_or_default();
    let map = shard_map::refresh(&services.env).await?;
    let current = map.binding_of_bucket(r.bucket).to_owned();
    let target = target(services, &current, &to)?;
    let source = summary(&services.env.d1(&current)?, r.bucket).await?;
    let copied = summary(&target, r.bucket).await?;
    Ok((current, source, copied))
}

pub async fn verify(mut req: Request, services: &Services) -> Result<Response, ApiError> {
    let r = request(&mut req, true).await?;
    let (current, source, copied) = compare(services, &r).await?;
    Ok(Response::from_json(&json!({
        "bucket": r.bucket,
        "from": current,
        "to": r.to,
        "source": source,
        "target": copied,
        "equal": source == copied,
    }))?)
}

pub async fn flip(mut req: Request, services: &Services) -> Result<Response, ApiError> {
    let r = request(&mut req, true).await?;
    let to = r.to.clone().unwrap_or_default();
    let map = shard_map::refresh(&services.env).await?;
    if !map.bucket_is_moving(r.bucket) {
        return Err(conflict("not_held", "only a held bucket can be flipped"));
    }
    let (current, source, copied) = compare(services, &r).await?;
    if source != copied {
        return Err(conflict(
            "copy_incomplete",
            format!("the copy differs from the source: {copied:?} against {source:?}; copy again"),
        ));
    }
    change_map(
        services,
        sql::FLIP_BUCKET,
        &[
            r.bucket.into(),
            to.as_str().into(),
            current.as_str().into(),
            (now_ms() as f64).into(),
        ],
    )
    .await?;
    tracing::warn!(bucket = r.bucket, from = %current, to = %to, "bucket moved");
    Ok(Response::from_json(&json!({
        "bucket": r.bucket,
        "binding": to,
        "movedFrom": current,
        "summary": source,
    }))?)
}

pub async fn purge(mut req: Request, services: &Services) -> Result<Response, ApiError> {
    let r = request(&mut req, false).await?;
    let Some(row) = row(services, r.bucket).await? else {
        return Err(conflict("nothing_to_purge", "this bucket was never moved"));
    };
    let Some(from) = row.moved_from.clone() else {
        return Ok(Response::from_json(
            &json!({ "bucket": r.bucket, "deleted": 0, "done": true }),
        )?);
    };
    if row.moving != 0 || from == row.binding {
        return Err(conflict(
            "still_in_use",
            format!("{from} is still where the bucket is read or written"),
        ));
    }
    let db = services.env.d1(&from)?;
    let (lo, hi) = bucket_range(r.bucket);
    let mut deleted = 0;
    for table in TABLES.iter().rev() {
        let result = db
            .prepare(table.purge_page())
            .bind(&[lo.as_str().into(), hi.as_str().into(), r.limit.into()])?
            .run()
            .await?;
        deleted = result.meta()?.and_then(|m| m.changes).unwrap_or(0);
        if deleted > 0 {
            break;
        }
    }
    let done = deleted == 0;
    if done {
        change_map(
            services,
            sql::PURGED_BUCKET,
            &[r.bucket.into(), (now_ms() as f64).into()],
        )
        .await?;
    }
    Ok(Response::from_json(
        &json!({ "bucket": r.bucket, "from": from, "deleted": deleted, "done": done }),
    )?)
}

pub async fn release(mut req: Request, services: &Services) -> Result<Response, ApiError> {
    let r = request(&mut req, false).await?;
    let map = change_map(
        services,
        sql::RELEASE_BUCKET,
        &[r.bucket.into(), (now_ms() as f64).into()],
    )
    .await?;
    Ok(Response::from_json(&json!({
        "bucket": r.bucket,
        "binding": map.binding_of_bucket(r.bucket),
        "moving": false,
    }))?)
}
