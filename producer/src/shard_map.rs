//! The live bucket map in the chat Worker: `SHARD_MAP` with the control database's
//! overrides (see `chat_core::shards`), kept per isolate for `SHARD_MAP_CACHE_SECONDS` (5 by
//! default) so that a request costs no extra D1 read. `chat-admin shards move` waits longer
//! than that between its steps, so every isolate sees a bucket held before its rows are
//! copied, and moved before the old copy is purged.

use crate::error::ApiError;
use chat_core::shards::{Override, OverrideRow, ShardMap, CONTROL};
use chat_core::sql::shards::SELECT_OVERRIDES;
use std::cell::RefCell;
use std::rc::Rc;
use uuid::Uuid;
use worker::{D1Database, Env};
use worker_support::clock::now_ms;
use worker_support::env::var;

thread_local! {
    /// The map and when it goes stale (epoch ms).
    static CACHE: RefCell<Option<(i64, Rc<ShardMap>)>> = const { RefCell::new(None) };
}

/// The map this isolate routes with.
pub async fn live(env: &Env) -> Result<Rc<ShardMap>, ApiError> {
    let now = now_ms();
    if let Some(map) = CACHE.with_borrow(|c| {
        c.as_ref()
            .filter(|(until, _)| now < *until)
            .map(|(_, m)| m.clone())
    }) {
        return Ok(map);
    }
    let map = Rc::new(read(env).await?);
    let ttl_ms = var(env, "SHARD_MAP_CACHE_SECONDS")
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or(5)
        .clamp(0, 300)
        * 1000;
    CACHE.set(Some((now + ttl_ms, map.clone())));
    Ok(map)
}

/// Reads the map now, and keeps it (after an admin call changed it in this isolate).
pub async fn refresh(env: &Env) -> Result<Rc<ShardMap>, ApiError> {
    CACHE.set(None);
    live(env).await
}

async fn read(env: &Env) -> Result<ShardMap, ApiError> {
    let spec = var(env, "SHARD_MAP").unwrap_or_default();
    let base = ShardMap::parse(&spec).map_err(|e| ApiError::Internal(format!("SHARD_MAP: {e}")))?;
    base.with_overrides(&overrides(&env.d1(CONTROL)?).await?)
        .map_err(|e| ApiError::Internal(format!("shard_buckets: {e}")))
}

/// The control database's overrides, with where each moved bucket came from.
pub async fn override_rows(control: &D1Database) -> Result<Vec<OverrideRow>, ApiError> {
    Ok(control
        .prepare(SELECT_OVERRIDES)
        .all()
        .await?
        .results::<OverrideRow>()?)
}

async fn overrides(control: &D1Database) -> Result<Vec<Override>, ApiError> {
    Ok(override_rows(control)
        .await?
        .iter()
        .map(Override::from)
        .collect())
}

/// The database holding `user`'s rows, for reading.
pub async fn player_db(env: &Env, user: Uuid) -> Result<D1Database, ApiError> {
    let map = live(env).await?;
    Ok(env.d1(map.binding(&user))?)
}

/// The database holding `user`'s rows, for writing: refused while the player's bucket is
/// moving, since a row written now could miss the copy.
pub async fn player_db_for_write(env: &Env, user: Uuid) -> Result<D1Database, ApiError> {
    let map = live(env).await?;
    if map.is_moving(&user) {
        return Err(ApiError::BucketMoving);
    }
    Ok(env.d1(map.binding(&user))?)
}

/// Every database the map names, with its binding.
pub async fn all_dbs(env: &Env) -> Result<Vec<(String, D1Database)>, ApiError> {
    let map = live(env).await?;
    map.bindings()
        .into_iter()
        .map(|b| Ok((b.to_owned(), env.d1(b)?)))
        .collect()
}
